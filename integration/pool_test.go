package integration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

func newPool(t *testing.T, cfg securer.Config, size int, reset securer.ResetPolicy) *securer.Pool {
	t.Helper()
	p, err := testHost.NewPool(context.Background(), cfg, size, reset)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestPoolConcurrentFresh: a pool of 8 serves 1,000 executions from 16
// goroutines, each in fresh state, each getting its own answer.
func TestPoolConcurrentFresh(t *testing.T) {
	cfg := baseConfig()
	cfg.Tools = seedTools(nil)
	p := newPool(t, cfg, 8, securer.ResetFresh)
	const total, workers = 1000, 16
	var next, crossed, stale, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > total {
					return
				}
				nonce := fmt.Sprintf("nonce-%d", i)
				res, err := p.Execute(context.Background(), fmt.Sprintf(`
					clean <- !exists("marker") && !file.exists("/tmp/marker") && !nzchar(Sys.getenv("MARKER"))
					marker <- %[1]q; writeLines(marker, "/tmp/marker"); Sys.setenv(MARKER = marker)
					list(clean = clean, echoed = echo(marker))`, nonce))
				if err != nil {
					failed.Add(1)
					t.Errorf("execution %d: %v", i, err)
					continue
				}
				v, _ := res.Value.Go().(map[string]any)
				if v["echoed"] != nonce {
					crossed.Add(1)
				}
				if v["clean"] != true {
					stale.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	t.Logf("%d fresh executions over 8 sessions in %s (%.0f/s)", total, took, float64(total)/took.Seconds())
	if crossed.Load() != 0 || stale.Load() != 0 || failed.Load() != 0 {
		t.Errorf("crossed %d, saw an earlier execution's state %d, failed %d", crossed.Load(), stale.Load(), failed.Load())
	}
	// The last boxes released are still being cleaned (Release does not
	// wait for it): each must come back idle, none replaced.
	if st := waitCleaned(t, p); st.Total != 8 || st.Idle != 8 || st.Dead != 0 {
		t.Errorf("status after the run: %+v", st)
	}
}

// waitCleaned waits (10 s at most) until no session of p is being
// cleaned after its last execution (counted in Starting), and returns the
// pool's status then.
func waitCleaned(t *testing.T, p *securer.Pool) securer.PoolStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := p.Status()
		if st.Starting == 0 || time.Now().After(deadline) {
			return st
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPoolAcquire(t *testing.T) {
	p := newPool(t, baseConfig(), 1, securer.ResetFresh)
	s, err := p.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st := p.Status(); st.Busy != 1 || st.Idle != 0 {
		t.Errorf("status with one acquired: %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	begin := time.Now()
	if _, err := p.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) || time.Since(begin) > time.Second {
		t.Errorf("Acquire on a busy pool: %v after %s", err, time.Since(begin))
	}
	p.Release(s)
	if _, err := p.Execute(context.Background(), "1"); err != nil {
		t.Errorf("after release: %v", err)
	}
}

// A session whose R died is replaced in the background.
func TestPoolReplacesDead(t *testing.T) {
	p := newPool(t, baseConfig(), 2, securer.ResetFresh)
	s, err := p.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	id := s.ID()
	if err := syscall.Kill(hostPidOf(s), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	p.Release(s)
	assertGone(t, id)
	deadline := time.Now().Add(20 * time.Second)
	for p.Status().Idle != 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := p.Status(); st.Total != 2 || st.Idle != 2 || st.Dead != 1 {
		t.Errorf("status after a death: %+v", st)
	}
	for i := 0; i < 4; i++ {
		if _, err := p.Execute(context.Background(), "1+1"); err != nil {
			t.Errorf("execute after replacement: %v", err)
		}
	}
}

func TestPoolResetPolicies(t *testing.T) {
	keep := newPool(t, baseConfig(), 1, securer.ResetNone)
	if _, err := keep.Execute(context.Background(), "x <- 1"); err != nil {
		t.Fatal(err)
	}
	if res, _ := keep.Execute(context.Background(), "exists('x')"); res.Value.Go() != true {
		t.Errorf("ResetNone lost state")
	}
	restart := newPool(t, baseConfig(), 1, securer.ResetRestart)
	if _, err := restart.Execute(context.Background(), "x <- 1"); err != nil {
		t.Fatal(err)
	}
	if res, _ := restart.Execute(context.Background(), "exists('x')"); res.Value.Go() != false {
		t.Errorf("ResetRestart kept state")
	}
}

func TestPoolClose(t *testing.T) {
	p, err := testHost.NewPool(context.Background(), baseConfig(), 2, securer.ResetFresh)
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	id := s.ID()
	done := make(chan error, 1)
	go func() {
		_, err := s.Execute(context.Background(), "Sys.sleep(30)")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-done; !errors.Is(err, securer.ErrSessionClosed) {
		t.Errorf("busy Execute at Close: %v", err)
	}
	p.Release(s)
	assertGone(t, id)
	if _, err := p.Acquire(context.Background()); !errors.Is(err, securer.ErrPoolClosed) {
		t.Errorf("Acquire after Close: %v", err)
	}
	if st := p.Status(); st.Total != 0 {
		t.Errorf("status after Close: %+v", st)
	}
	if _, err := testHost.NewPool(context.Background(), baseConfig(), 0, securer.ResetFresh); !errors.Is(err, securer.ErrInvalidConfig) {
		t.Errorf("size 0: %v", err)
	}
}

func TestPoolMisuse(t *testing.T) {
	p := newPool(t, baseConfig(), 2, securer.ResetFresh)
	a, _ := p.Acquire(context.Background())
	b, _ := p.Acquire(context.Background())
	p.Release(a)
	p.Release(a) // twice: ignored
	if st := p.Status(); st.Idle != 1 || st.Busy != 1 {
		t.Errorf("after a double release: %+v", st)
	}
	c, err := p.Acquire(context.Background())
	if err != nil || c != a {
		t.Fatalf("Acquire: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if s, err := p.Acquire(ctx); err == nil {
		t.Errorf("a third session was handed out (%p; a=%p b=%p)", s, a, b)
	}
	p.Release(b)
	p.Release(c)
}

// Sessions that used up MaxExecutions are replaced, so the pool goes on.
func TestPoolMaxExecutions(t *testing.T) {
	cfg := baseConfig()
	cfg.MaxExecutions = 2
	p := newPool(t, cfg, 1, securer.ResetFresh)
	for i := 0; i < 5; i++ {
		if _, err := p.Execute(context.Background(), "1"); err != nil {
			t.Fatalf("execution %d: %v", i+1, err)
		}
	}
	if st := p.Status(); st.Dead < 1 {
		t.Errorf("no session was retired: %+v", st)
	}
}
