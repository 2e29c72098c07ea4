package securer

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestHooksStarted: Hooks.Started hears of every start of an R (the first,
// a Restart) and of a failed one, with its error.
func TestHooksStarted(t *testing.T) {
	var mu sync.Mutex
	var errs []error
	hooks := Hooks{Started: func(took time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		if took <= 0 {
			t.Errorf("Started: took %v, want > 0", took)
		}
		errs = append(errs, err)
	}}
	s, _ := fakeSession(t, Config{Hooks: hooks}, serve(t, func(r *fakeR, m hostMsg) any { return result(m.ID, 1.0) }))
	if err := s.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(errs) != 2 || errs[0] != nil || errs[1] != nil {
		t.Errorf("after a start and a restart: Started errors %v, want two nil", errs)
	}
	errs = nil
	mu.Unlock()

	silent := func(r *fakeR) { <-r.done } // never says hello
	_, err := newSession(context.Background(), Host{StateDir: t.TempDir()},
		Config{Hooks: hooks, StartTimeout: 100 * time.Millisecond}, &fakeEngine{script: silent})
	mu.Lock()
	defer mu.Unlock()
	if err == nil || len(errs) != 1 || !errors.Is(errs[0], ErrTimeout) {
		t.Errorf("a start past StartTimeout: newSession %v, Started errors %v; want one ErrTimeout", err, errs)
	}
}

// Reaped is called only when something was removed.
func TestHooksReapedOnlyWhenSome(t *testing.T) {
	var got [][2]int
	h := Hooks{Reaped: func(s, c int) { got = append(got, [2]int{s, c}) }}
	h.reaped(0, 0)
	h.reaped(2, 0)
	h.reaped(0, 1)
	Hooks{}.reaped(1, 1) // no hook: nothing happens
	if len(got) != 2 || got[0] != [2]int{2, 0} || got[1] != [2]int{0, 1} {
		t.Errorf("Reaped calls %v, want [[2 0] [0 1]]", got)
	}
}
