package securer

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/securer-runc/securer-runc/bridge"
	"github.com/securer-runc/securer-runc/container"
)

// sweepR plays a warm R serving fresh executions whose sweep report waits
// for onSweep: it returns the frames to send for the sweep (none: R sends
// nothing and the host's wait runs on).
func sweepR(t *testing.T, onSweep func(r *fakeR, m hostMsg) []any) func(r *fakeR) {
	return freshRWith(t, func(r *fakeR, id uint64, code string) { r.send(result(id, code)) }, onSweep)
}

// freshRWith is freshR with the sweep answered by onSweep.
func freshRWith(t *testing.T, copy func(r *fakeR, id uint64, code string), onSweep func(r *fakeR, m hostMsg) []any) func(r *fakeR) {
	return func(r *fakeR) {
		if !r.handshake() {
			return
		}
		for {
			m, err := r.recv()
			if err != nil {
				return
			}
			switch {
			case m.Type == "execute" && m.Fresh:
				r.send(bridge.Forked{Type: "forked", ID: m.ID})
				c, ok := r.expect(t, "code")
				if !ok {
					return
				}
				copy(r, m.ID, c.Code)
			case m.Type == "sweep":
				if frames := onSweep(r, m); len(frames) > 0 {
					r.send(frames...)
				}
			default:
				t.Errorf("R got %+v", m)
				return
			}
		}
	}
}

// An ExecuteFresh returns its result before the box is clean; the next
// execution waits for the clean-up, and a context that ends meanwhile
// fails that execution alone (nothing ran) and keeps the box.
func TestFreshCleanUpAfterResult(t *testing.T) {
	release := make(chan struct{})
	s, eng := fakeSession(t, Config{}, sweepR(t, func(r *fakeR, m hostMsg) []any {
		<-release
		return []any{bridge.Swept{Type: "swept", ID: m.ID, Token: m.Token}}
	}))
	res, err := s.ExecuteFresh(context.Background(), "first")
	if err != nil || res.Value.Go() != "first" {
		t.Fatalf("first: %+v, %v", res, err)
	}
	if !s.cleaning() {
		t.Fatal("the clean-up ended before R reported its sweep")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if res, err := s.ExecuteFresh(ctx, "early"); !errors.Is(err, ErrTimeout) || res != nil {
		t.Fatalf("an execution whose context ends during the clean-up: %+v, %v; want no result and ErrTimeout", res, err)
	}
	close(release)
	res, err = s.ExecuteFresh(context.Background(), "second")
	if err != nil || res.Value.Go() != "second" {
		t.Fatalf("second: %+v, %v", res, err)
	}
	if n := eng.launches(); n != 1 {
		t.Errorf("R was started %d times; waiting for the clean-up must keep the warm R", n)
	}
}

// A pool's Release returns at once; the session is not idle (not handed
// out) until its clean-up ends, and then it is.
func TestPoolIdleOnlyWhenClean(t *testing.T) {
	release := make(chan struct{})
	eng := &fakeEngine{script: sweepR(t, func(r *fakeR, m hostMsg) []any {
		<-release
		return []any{bridge.Swept{Type: "swept", ID: m.ID, Token: m.Token}}
	})}
	p := enginePool(t, eng, 1)
	ctx := context.Background()
	s, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := s.ExecuteFresh(ctx, "x"); err != nil || res.Value.Go() != "x" {
		t.Fatalf("ExecuteFresh: %+v, %v", res, err)
	}
	p.Release(s)
	if st := p.Status(); st.Starting != 1 || st.Idle != 0 || st.Total != 1 {
		t.Fatalf("after Release, clean-up pending: %+v; want 1 starting (being cleaned), 0 idle", st)
	}
	// A session being cleaned is as good as free: even a wait of 0
	// waits for its clean-up rather than failing with ErrPoolBusy.
	got := make(chan *Session, 1)
	go func() {
		s, err := p.AcquireWithin(ctx, 0)
		if err != nil {
			t.Errorf("AcquireWithin(0) with the only session being cleaned: %v", err)
		}
		got <- s
	}()
	select {
	case <-got:
		t.Fatal("Acquire returned a session whose clean-up had not ended")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	select {
	case s2 := <-got:
		if s2 != s {
			t.Errorf("a new session was handed out; the cleaned one should be")
		}
		p.Release(s2)
	case <-time.After(5 * time.Second):
		t.Fatal("the cleaned session never became idle")
	}
	if n := eng.launches(); n != 1 {
		t.Errorf("R was started %d times, want 1", n)
	}
}

// A session whose clean-up fails is retired and replaced, never handed
// out again: its R is destroyed and the next Acquire gets a new one.
func TestPoolRetiresUncleanSession(t *testing.T) {
	tests := []struct {
		name    string
		onSweep func(r *fakeR, m hostMsg) []any
	}{
		{"R dies while sweeping", func(r *fakeR, m hostMsg) []any {
			r.die(container.Exit{Code: -1, Signal: syscall.SIGKILL})
			return nil
		}},
		{"R reports files it could not delete", func(r *fakeR, m hostMsg) []any {
			return []any{bridge.Swept{Type: "swept", ID: m.ID, Token: m.Token, Error: "files of the execution could not be deleted"}}
		}},
		{"a broken frame instead of the report", func(r *fakeR, m hostMsg) []any {
			_, _ = r.conn.Write([]byte("{not json\n"))
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eng := &fakeEngine{script: sweepR(t, tt.onSweep)}
			p := enginePool(t, eng, 1)
			ctx := context.Background()
			s, err := p.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if res, err := s.ExecuteFresh(ctx, "x"); err != nil || res.Value.Go() != "x" {
				t.Fatalf("ExecuteFresh: %+v, %v", res, err)
			}
			p.Release(s)
			if s0, err := p.AcquireWithin(ctx, 0); err == nil {
				if s0 == s {
					t.Fatal("AcquireWithin(0) handed out the session whose clean-up failed")
				}
				p.Release(s0)
			} else if !errors.Is(err, ErrPoolBusy) {
				t.Fatalf("AcquireWithin(0) after a failed clean-up: %v, want a new session or ErrPoolBusy", err)
			}
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			s2, err := p.Acquire(actx)
			if err != nil {
				t.Fatalf("Acquire after a failed clean-up: %v (%+v)", err, p.Status())
			}
			defer p.Release(s2)
			if s2 == s {
				t.Fatal("the session whose clean-up failed was handed out again")
			}
			if !eng.r(0).destroyed.Load() {
				t.Error("the unclean box was not destroyed")
			}
			if st := p.Status(); st.Dead != 1 || st.Total != 1 {
				t.Errorf("status: %+v; want 1 dead (replaced), 1 in all", st)
			}
			if n := eng.launches(); n != 2 {
				t.Errorf("R was started %d times, want 2", n)
			}
		})
	}
}

// Close during a clean-up ends it and the box: nothing is left waiting.
func TestPoolCloseWhileCleaning(t *testing.T) {
	eng := &fakeEngine{script: sweepR(t, func(r *fakeR, m hostMsg) []any { return nil })}
	p := enginePool(t, eng, 1)
	ctx := context.Background()
	s, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ExecuteFresh(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	p.Release(s)
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung on a session being cleaned")
	}
	if !eng.r(0).destroyed.Load() {
		t.Error("the box being cleaned was not destroyed by Close")
	}
	if s.cleaning() {
		t.Error("the clean-up outlived Close")
	}
}

// enginePool is a pool of sessions on eng.
func enginePool(t *testing.T, eng *fakeEngine, size int) *Pool {
	t.Helper()
	h := Host{StateDir: t.TempDir()}
	p, err := newPool(context.Background(), Config{}, size, ResetFresh, func(ctx context.Context, cfg Config) (*Session, error) {
		return newSession(ctx, h, cfg, eng)
	})
	if err != nil {
		t.Fatalf("newPool: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}
