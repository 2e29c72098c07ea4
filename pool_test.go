package securer

import (
	"context"
	"errors"
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
