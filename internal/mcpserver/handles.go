package mcpserver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// rsession is what a handle holds: a persistent R session (a
// *securer.Session; tests give a fake).
type rsession interface {
	ExecuteWith(ctx context.Context, code string, opts securer.ExecOptions) (*securer.Result, error)
	Restart(ctx context.Context) error
	Close() error
}

// handlePrefix starts every session handle, so that a model (and a
// reader of logs) can tell one from other strings.
const handlePrefix = "rs_"

// Errors of the handle table, usable with errors.Is.
var (
	ErrNoSession       = errors.New("no such R session (closed, expired, or never made here)")
	ErrTooManySessions = errors.New("too many R sessions open")
	ErrServerClosed    = errors.New("MCP server closed")
)

// handles maps server-minted handles to persistent R sessions. A handle
// is 128 random bits: knowing it is the capability to use the session
// (stateless HTTP has no client session to bind it to). Where the
// transport has a client session, the handle is also bound to it.
type handles struct {
	start func(ctx context.Context) (rsession, error)
	max   int
	idle  time.Duration
	now   func() time.Time

	mu      sync.Mutex
	m       map[string]*entry
	pending int // sessions being started, counted against max
	closed  bool
	bg      sync.WaitGroup // closes of expired sessions in flight
}

type entry struct {
	s        rsession
	owner    string // the MCP client session's id, "" when it has none
	lastUsed time.Time
	busy     int // calls in flight: an entry in use never expires
}

func newHandles(start func(ctx context.Context) (rsession, error), max int, idle time.Duration) *handles {
	return &handles{start: start, max: max, idle: idle, now: time.Now, m: map[string]*entry{}}
}

// open starts a session and mints its handle.
func (h *handles) open(ctx context.Context, owner string) (string, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return "", ErrServerClosed
	}
	h.expireLocked()
	if len(h.m)+h.pending >= h.max {
		h.mu.Unlock()
		return "", fmt.Errorf("%w: at most %d (close one with close_session, or wait for an idle one to expire)", ErrTooManySessions, h.max)
	}
	h.pending++
	h.mu.Unlock()

	s, err := h.start(ctx)

	h.mu.Lock()
	defer h.mu.Unlock()
	h.pending--
	if err != nil {
		return "", err
	}
	if h.closed {
		_ = s.Close()
		return "", ErrServerClosed
	}
	id := handlePrefix + randomID()
	h.m[id] = &entry{s: s, owner: owner, lastUsed: h.now()}
	return id, nil
}

// use runs f with the session of id, which stays in the table (and
// never expires) while f runs.
func (h *handles) use(id, owner string, f func(rsession) error) error {
	e, err := h.acquire(id, owner)
	if err != nil {
		return err
	}
	defer h.release(e)
	return f(e.s)
}

func (h *handles) acquire(id, owner string) (*entry, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrServerClosed
	}
	h.expireLocked()
	e, ok := h.m[strings.TrimSpace(id)]
	// A handle of another client session reads as unknown: saying it
	// exists would tell a guesser it guessed right.
	if !ok || e.owner != owner {
		return nil, fmt.Errorf("%w: %q", ErrNoSession, id)
	}
	e.busy++
	return e, nil
}

func (h *handles) release(e *entry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e.busy--
	e.lastUsed = h.now()
}

// close ends the session of id.
func (h *handles) close(id, owner string) error {
	h.mu.Lock()
	e, ok := h.m[strings.TrimSpace(id)]
	if !ok || e.owner != owner {
		h.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrNoSession, id)
	}
	delete(h.m, strings.TrimSpace(id))
	h.mu.Unlock()
	// Closing stops a running execution too (its caller gets its verdict).
	return e.s.Close()
}

// count is how many sessions are open.
func (h *handles) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.m)
}

// sweep closes sessions idle longer than the idle bound.
func (h *handles) sweep() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.expireLocked()
}

// expireLocked drops idle entries; their Close runs in the background
// (a box teardown takes milliseconds), which closeAll waits for.
func (h *handles) expireLocked() {
	if h.idle <= 0 {
		return
	}
	cut := h.now().Add(-h.idle)
	for id, e := range h.m {
		if e.busy == 0 && e.lastUsed.Before(cut) {
			delete(h.m, id)
			h.bg.Go(func() { _ = e.s.Close() })
		}
	}
}

// closeAll ends every session and refuses new ones.
func (h *handles) closeAll() error {
	h.mu.Lock()
	h.closed = true
	m := h.m
	h.m = map[string]*entry{}
	h.mu.Unlock()
	var errs []error
	for _, e := range m {
		errs = append(errs, e.s.Close())
	}
	h.bg.Wait()
	return errors.Join(errs...)
}
