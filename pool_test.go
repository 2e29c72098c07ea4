package securer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakePool is a pool of sessions on one fake engine playing script.
func fakePool(t *testing.T, size int, reset ResetPolicy, script func(r *fakeR)) *Pool {
	t.Helper()
	eng := &fakeEngine{script: script}
	h := Host{StateDir: t.TempDir()}
	p, err := newPool(context.Background(), Config{}, size, reset, func(ctx context.Context, cfg Config) (*Session, error) {
		return newSession(ctx, h, cfg, eng)
	})
	if err != nil {
		t.Fatalf("newPool: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Shutdown waits for the executions under way (woken by their release,
// not by a timer), refuses new ones meanwhile, and reports executions it
// had to cut short when its context ends first.
func TestPoolShutdownWaitsForRelease(t *testing.T) {
	script := serve(t, func(r *fakeR, m hostMsg) any { return result(m.ID, 1.0) })
	t.Run("drained", func(t *testing.T) {
		p := fakePool(t, 2, ResetNone, script)
		s, err := p.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		shut := make(chan error, 1)
		go func() { shut <- p.Shutdown(context.Background()) }()
		<-p.drain // Shutdown has begun
		if _, err := p.Acquire(context.Background()); !errors.Is(err, ErrPoolClosed) {
			t.Fatalf("Acquire while shutting down: %v, want ErrPoolClosed", err)
		}
		select {
		case err := <-shut:
			t.Fatalf("Shutdown returned with an execution under way: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if res, err := s.Execute(context.Background(), "1"); err != nil || res.Value.Go() != 1.0 {
			t.Errorf("the execution under way: %+v, %v", res, err)
		}
		p.Release(s)
		if err := <-shut; err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if st := p.Status(); st.Total != 0 {
			t.Errorf("after Shutdown: %+v", st)
		}
	})
	t.Run("cut short", func(t *testing.T) {
		p := fakePool(t, 1, ResetNone, script)
		if _, err := p.Acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		shut := make(chan error, 1)
		go func() { shut <- p.Shutdown(ctx) }()
		cancel()
		if err := <-shut; !errors.Is(err, context.Canceled) {
			t.Errorf("Shutdown = %v, want the context's error", err)
		}
	})
}

// A reset policy outside the three is refused: it used to behave as
// ResetNone, sharing one user's R state with the next.
func TestPoolUnknownResetPolicy(t *testing.T) {
	for _, reset := range []ResetPolicy{-1, 3, 99} {
		_, err := newPool(context.Background(), Config{}, 1, reset, func(ctx context.Context, cfg Config) (*Session, error) {
			return nil, errors.New("a session was started for an invalid pool")
		})
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("reset policy %d: %v, want ErrInvalidConfig", reset, err)
		}
	}
}

// Acquire reuses the session released last (securer 0.2.0 reused the
// first idle one, the warmest): the idle sessions form a stack.
func TestPoolReusesLastReleased(t *testing.T) {
	script := serve(t, func(r *fakeR, m hostMsg) any { return result(m.ID, 1.0) })
	tests := []struct {
		name    string
		release []int // indexes of the acquired sessions, in release order
		want    []int // the sessions the next Acquires take
	}{
		{"in order", []int{0, 1, 2}, []int{2, 1, 0}},
		{"reversed", []int{2, 1, 0}, []int{0, 1, 2}},
		{"middle last", []int{0, 2, 1}, []int{1, 2, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := fakePool(t, 3, ResetNone, script)
			var got [3]*Session
			for i := range got {
				s, err := p.Acquire(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				got[i] = s
			}
			for _, i := range tt.release {
				p.Release(got[i])
			}
			for k, i := range tt.want {
				s, err := p.Acquire(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if s != got[i] {
					t.Errorf("acquire %d took a session other than the one released %s", k, ordinal(len(tt.release)-k))
				}
			}
		})
	}
	// A session released while another waits goes to the waiter, and the
	// one released just before it is the next taken.
	p := fakePool(t, 2, ResetNone, script)
	a, _ := p.Acquire(context.Background())
	b, _ := p.Acquire(context.Background())
	p.Release(a)
	p.Release(b)
	if s, _ := p.Acquire(context.Background()); s != b {
		t.Errorf("after releasing a then b, Acquire did not take b")
	}
}

func ordinal(n int) string {
	return map[int]string{1: "first", 2: "second", 3: "third"}[n]
}

// The acquire wait of ExecuteWithin bounds only the wait for a free
// session: 0 fails at once when none is idle (and never when one is), a
// positive wait fails with ErrPoolBusy after at least that long, a
// release during the wait lets the execution run, and the caller's
// context ending is a cancellation, not busy.
func TestPoolAcquireWait(t *testing.T) {
	script := serve(t, func(r *fakeR, m hostMsg) any { return result(m.ID, 7.0) })
	run := func(p *Pool, ctx context.Context, wait time.Duration) (*Result, error) {
		return p.ExecuteWithin(ctx, "7", ExecOptions{}, wait)
	}
	t.Run("idle session, wait 0", func(t *testing.T) {
		p := fakePool(t, 1, ResetNone, script)
		if res, err := run(p, context.Background(), 0); err != nil || res.Value.Go() != 7.0 {
			t.Errorf("ExecuteWithin(0) with an idle session: %+v, %v", res, err)
		}
	})
	tests := []struct {
		name string
		wait time.Duration
	}{
		{"wait 0", 0},
		{"wait 150ms", 150 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run("all busy, "+tt.name, func(t *testing.T) {
			p := fakePool(t, 1, ResetNone, script)
			s, err := p.Acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			began := time.Now()
			res, err := run(p, context.Background(), tt.wait)
			took := time.Since(began)
			if !errors.Is(err, ErrPoolBusy) || res != nil {
				t.Fatalf("ExecuteWithin(%s) with every session busy: %+v, %v; want ErrPoolBusy", tt.wait, res, err)
			}
			if took < tt.wait {
				t.Errorf("gave up after %s, before its wait of %s", took, tt.wait)
			}
			if errors.Is(err, ErrTimeout) || errors.Is(err, ErrCanceled) {
				t.Errorf("busy is reported as a timeout or cancellation: %v", err)
			}
			p.Release(s)
			if st := p.Status(); st.Busy != 0 || st.Idle != 1 {
				t.Errorf("after the refusal: %+v", st)
			}
		})
	}
	t.Run("released while waiting", func(t *testing.T) {
		p := fakePool(t, 1, ResetNone, script)
		s, err := p.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			res, err := run(p, context.Background(), time.Hour)
			if err == nil && res.Value.Go() != 7.0 {
				err = fmt.Errorf("value %v", res.Value.Go())
			}
			done <- err
		}()
		waitFor(t, func() bool { return waiting(p) })
		p.Release(s)
		if err := <-done; err != nil {
			t.Errorf("ExecuteWithin after a release during its wait: %v", err)
		}
	})
	t.Run("context ends first", func(t *testing.T) {
		p := fakePool(t, 1, ResetNone, script)
		if _, err := p.Acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := run(p, ctx, time.Hour); !errors.Is(err, ErrCanceled) || errors.Is(err, ErrPoolBusy) {
			t.Errorf("ExecuteWithin with its context cancelled: %v, want ErrCanceled", err)
		}
	})
	t.Run("negative waits for ever", func(t *testing.T) {
		p := fakePool(t, 1, ResetNone, script)
		if _, err := p.Acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := run(p, ctx, -1); !errors.Is(err, ErrTimeout) {
			t.Errorf("ExecuteWithin(-1) ended by its context's deadline: %v, want ErrTimeout", err)
		}
	})
}

// waiting reports whether an Acquire waits on p for a free session.
func waiting(p *Pool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiters > 0
}

// waitFor polls cond until it holds (the test's own deadline bounds it).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for !cond() {
		time.Sleep(time.Millisecond)
	}
}

// A gated pool starts its sessions inside the gate: never more at once
// than the gate lets through, all of them in the end; a gate that refuses
// fails the pool with its error, and nothing is left started.
func TestPoolStartGate(t *testing.T) {
	script := serve(t, func(r *fakeR, m hostMsg) any { return result(m.ID, 1.0) })
	eng := &fakeEngine{script: script}
	h := Host{StateDir: t.TempDir()}
	start := func(ctx context.Context, cfg Config) (*Session, error) { return newSession(ctx, h, cfg, eng) }
	tests := []struct {
		name  string
		slots int
		size  int
	}{
		{"one slot", 1, 5},
		{"two slots", 2, 9},
		{"more slots than sessions", 16, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slots := make(chan struct{}, tt.slots)
			var mu sync.Mutex
			in, most, started := 0, 0, 0
			gate := func(ctx context.Context) (func(), error) {
				slots <- struct{}{}
				mu.Lock()
				in, started = in+1, started+1
				most = max(most, in)
				mu.Unlock()
				return func() {
					mu.Lock()
					in--
					mu.Unlock()
					<-slots
				}, nil
			}
			p, err := newPool(context.Background(), Config{}, tt.size, ResetNone, gated(gate, start))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if st := p.Status(); st.Idle != tt.size || started != tt.size || most > tt.slots || most < 1 {
				t.Errorf("status %+v, %d starts gated, at most %d at once (gate of %d)", st, started, most, tt.slots)
			}
		})
	}
	refused := errors.New("no slot")
	before := eng.launches()
	_, err := newPool(context.Background(), Config{}, 3, ResetNone, gated(func(context.Context) (func(), error) { return nil, refused }, start))
	if !errors.Is(err, refused) || eng.launches() != before {
		t.Errorf("refusing gate: %v, %d sessions launched", err, eng.launches()-before)
	}
}
