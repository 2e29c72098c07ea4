package securer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// ResetPolicy says what a Pool does to a session between uses.
type ResetPolicy int

const (
	// ResetFresh runs every Pool.Execute in a fresh R state (ExecuteFresh):
	// nothing one user leaves is seen by the next, at the cost of a fork.
	ResetFresh ResetPolicy = iota
	// ResetNone keeps state between uses (plain Execute). Only for callers
	// that trust each other.
	ResetNone
	// ResetRestart starts a new R after each use (slow: an R start-up).
	ResetRestart
)

// ErrPoolClosed is returned by a closed Pool.
var ErrPoolClosed = errors.New("pool closed")

// PoolStatus is a snapshot of a Pool.
type PoolStatus struct {
	Total    int // sessions owned: idle + busy + starting
	Idle     int
	Busy     int
	Starting int // being started, replaced or restarted
	Dead     int // found dead or used up since the pool started (each was replaced)
}

type slotState int

const (
	slotIdle slotState = iota
	slotBusy
	slotRestarting
)

// Pool keeps size warm sessions. It is safe for concurrent use.
type Pool struct {
	cfg   Config
	size  int
	reset ResetPolicy
	log   *slog.Logger
	// newSession starts a session of cfg (NewSession; tests give a fake).
	newSession func(context.Context, Config) (*Session, error)

	// idle hands sessions to Acquire; the state map is the truth, and an
	// entry whose state is not idle is skipped.
	idle chan *Session

	mu       sync.Mutex
	state    map[*Session]slotState
	starting int // new sessions being started
	dead     int
	closed   bool
	// released is closed (and replaced) whenever a session stops being
	// busy: Shutdown waits on it.
	released chan struct{}

	drain     chan struct{} // closed when Shutdown begins
	drainOnce sync.Once

	bg    sync.WaitGroup // background work in flight
	bgCtx context.Context
	stop  context.CancelFunc
}

// newPool is Host.NewPool starting its sessions with newSession.
func newPool(ctx context.Context, cfg Config, size int, reset ResetPolicy, newSession func(context.Context, Config) (*Session, error)) (*Pool, error) {
	if size < 1 {
		return nil, fmt.Errorf("%w: pool size must be at least 1, got %d", ErrInvalidConfig, size)
	}
	switch reset {
	case ResetFresh, ResetNone, ResetRestart:
	default:
		// An unknown policy must not fall back to sharing state.
		return nil, fmt.Errorf("%w: unknown pool reset policy %d (ResetFresh, ResetRestart or ResetNone)", ErrInvalidConfig, int(reset))
	}
	if cfg.UnsafeNoSandbox && reset == ResetFresh {
		return nil, fmt.Errorf("%w: an unsandboxed pool cannot reset by fresh executions: use ResetRestart or ResetNone", ErrNeedsSandbox)
	}
	bgCtx, stop := context.WithCancel(context.Background())
	p := &Pool{cfg: cfg, size: size, reset: reset, log: cfg.withDefaults().Logger, newSession: newSession,
		idle: make(chan *Session, size), state: map[*Session]slotState{}, bgCtx: bgCtx, stop: stop,
		drain: make(chan struct{}), released: make(chan struct{})}
	errs := make(chan error, size)
	for i := 0; i < size; i++ {
		go func() {
			s, err := p.newSession(ctx, cfg)
			if err == nil {
				p.adopt(s)
			}
			errs <- err
		}()
	}
	var failed error
	for i := 0; i < size; i++ {
		failed = errors.Join(failed, <-errs)
	}
	if failed != nil {
		p.Close()
		return nil, failed
	}
	return p, nil
}

// Acquire takes an idle session, waiting until one is free or ctx ends
// (ErrTimeout or ErrCanceled). A session found dead is replaced in the
// background and another is taken. Give it back with Release.
func (p *Pool) Acquire(ctx context.Context) (*Session, error) {
	for {
		select {
		case <-p.drain:
			return nil, ErrPoolClosed
		default:
		}
		select {
		case <-p.drain:
			return nil, ErrPoolClosed
		case s := <-p.idle:
			p.mu.Lock()
			if p.closed {
				p.mu.Unlock()
				return nil, ErrPoolClosed
			}
			if st, ok := p.state[s]; !ok || st != slotIdle {
				p.mu.Unlock()
				continue // stale hand-off
			}
			if !s.Alive() || s.exhausted() {
				p.retireLocked(s)
				p.mu.Unlock()
				s.Close()
				continue
			}
			p.state[s] = slotBusy
			p.mu.Unlock()
			return s, nil
		case <-ctx.Done():
			return nil, endedContextError(ctx.Err(), "while waiting for a pool session")
		case <-p.bgCtx.Done():
			return nil, ErrPoolClosed
		}
	}
}

// Release gives an acquired session back. Releasing one that is not
// acquired (twice, or after Close) does nothing. A dead or used-up session
// is replaced; with ResetRestart the session gets a new R first.
func (p *Pool) Release(s *Session) {
	if p.releaseLocked(s) {
		s.Close() // retired: closed outside the lock, before Release returns
	}
}

// releaseLocked does Release's bookkeeping; it reports whether s was
// retired and must be closed.
func (p *Pool) releaseLocked(s *Session) (retired bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.state[s]; !ok || st != slotBusy {
		if ok {
			p.log.Warn("pool: Release of a session that is not acquired; ignored")
		}
		return false
	}
	defer p.releasedLocked()
	switch {
	case !s.Alive() || s.exhausted():
		p.retireLocked(s)
		return true
	case p.reset == ResetRestart:
		p.state[s] = slotRestarting
		p.goLocked(func(ctx context.Context) {
			if err := s.Restart(ctx); err != nil {
				p.log.Warn("pool: restarting a session failed; replacing it", "err", err)
				p.mu.Lock()
				p.retireLocked(s)
				p.mu.Unlock()
				s.Close()
				return
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if _, ok := p.state[s]; !ok || p.closed {
				go s.Close()
				return
			}
			p.state[s] = slotIdle
			p.idle <- s
		}, func() { s.Close() })
	default:
		p.state[s] = slotIdle
		p.idle <- s // never blocks: at most size sessions are idle
	}
	return false
}

// Execute runs code on a pooled session: acquire, execute (fresh state by
// default), release.
func (p *Pool) Execute(ctx context.Context, code string) (*Result, error) {
	return p.ExecuteWith(ctx, code, ExecOptions{})
}

// ExecuteWith is Execute adjusted by opts (the pool's ResetFresh makes
// every execution fresh).
func (p *Pool) ExecuteWith(ctx context.Context, code string, opts ExecOptions) (*Result, error) {
	s, err := p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer p.Release(s)
	opts.Fresh = opts.Fresh || p.reset == ResetFresh
	return s.ExecuteWith(ctx, code, opts)
}

// Status reports what the pool holds now.
func (p *Pool) Status() PoolStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := PoolStatus{Starting: p.starting, Dead: p.dead}
	for _, state := range p.state {
		switch state {
		case slotIdle:
			st.Idle++
		case slotBusy:
			st.Busy++
		case slotRestarting:
			st.Starting++
		}
	}
	st.Total = st.Idle + st.Busy + st.Starting
	return st
}

// Shutdown drains the pool: Acquire fails with ErrPoolClosed from now on,
// executions under way may finish until ctx ends, then everything is
// closed as by Close. It returns ctx's error when it had to cut executions
// short.
func (p *Pool) Shutdown(ctx context.Context) error {
	p.drainOnce.Do(func() { close(p.drain) })
	var cut error
	for cut == nil {
		p.mu.Lock()
		busy := 0
		for _, st := range p.state {
			if st == slotBusy {
				busy++
			}
		}
		released := p.released
		p.mu.Unlock()
		if busy == 0 {
			break
		}
		select {
		case <-ctx.Done():
			cut = fmt.Errorf("pool shutdown: %d executions cut short: %w", busy, ctx.Err())
		case <-released:
		}
	}
	return errors.Join(cut, p.Close())
}

// releasedLocked tells Shutdown that a session stopped being busy.
// p.mu must be held.
func (p *Pool) releasedLocked() {
	close(p.released)
	p.released = make(chan struct{})
}

// Close ends every session, busy ones included (their Execute ends with
// ErrSessionClosed), and waits for background work to stop.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	sessions := make([]*Session, 0, len(p.state))
	for s := range p.state {
		sessions = append(sessions, s)
	}
	clear(p.state)
	p.releasedLocked()
	p.mu.Unlock()
	p.stop()
	p.bg.Wait()
	var errs []error
	for _, s := range sessions {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// retireLocked drops a dead or used-up session (the caller closes it once
// the lock is released) and starts a replacement.
func (p *Pool) retireLocked(s *Session) {
	delete(p.state, s)
	p.dead++
	p.starting++
	p.goLocked(p.fill, func() { p.starting-- })
}

// fill starts one session into the pool, retrying with backoff while the
// host cannot start one.
func (p *Pool) fill(ctx context.Context) {
	defer func() {
		p.mu.Lock()
		p.starting--
		p.mu.Unlock()
	}()
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 10*time.Second) {
		s, err := p.newSession(ctx, p.cfg)
		if err == nil {
			p.adopt(s)
			return
		}
		p.log.Warn("pool: starting a session failed", "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// adopt makes s an idle session of the pool, or closes it if the pool has
// been closed meanwhile.
func (p *Pool) adopt(s *Session) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		s.Close() // before the caller's goroutine ends: Close waits for it
		return
	}
	p.state[s] = slotIdle
	p.idle <- s
	p.mu.Unlock()
}

// goLocked runs f in the background, or, once the pool is closed,
// runs closed instead (so nothing it would have handled is leaked).
// p.mu must be held.
func (p *Pool) goLocked(f func(ctx context.Context), closed func()) {
	if p.closed {
		closed()
		return
	}
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		f(p.bgCtx)
	}()
}
