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

// ErrPoolBusy is returned when every session of a Pool stayed busy for
// the whole wait the caller allowed (ExecuteWithin, AcquireWithin).
var ErrPoolBusy = errors.New("all sessions of the pool are busy")

// PoolStatus is a snapshot of a Pool.
type PoolStatus struct {
	Total int // sessions owned: idle + busy + starting
	Idle  int
	Busy  int
	// Starting: being started, replaced or restarted, or released and
	// being cleaned after a fresh execution (idle once clean).
	Starting int
	Dead     int // found dead or used up since the pool started (each was replaced)
}

type slotState int

const (
	slotIdle slotState = iota
	slotBusy
	slotRestarting
	slotCleaning
)

// Pool keeps size warm sessions. It is safe for concurrent use.
type Pool struct {
	cfg   Config
	size  int
	reset ResetPolicy
	log   *slog.Logger
	// newSession starts a session of cfg (NewSession; tests give a fake).
	newSession func(context.Context, Config) (*Session, error)

	mu    sync.Mutex
	state map[*Session]slotState
	// idle holds the idle sessions, the most recently released last:
	// Acquire takes from the end (as securer 0.2.0 reused the session
	// freed last), so the warmest session serves the next request.
	idle []*Session
	// freed is closed (and replaced) whenever a session becomes idle:
	// Acquire waits on it.
	freed    chan struct{}
	waiters  int // Acquires waiting for a free session
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
		state: map[*Session]slotState{}, freed: make(chan struct{}), bgCtx: bgCtx, stop: stop,
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

// StartGate bounds sandbox starts: it is called before each start and
// returns the func that ends it (a slot of a limiter that several pools
// and sessions share, say), or why the start may not happen.
type StartGate func(ctx context.Context) (release func(), err error)

// NewPoolGated is NewPool with every start of a session of the pool (the
// first ones and replacements) made inside gate, so that a large pool
// does not start all its sandboxes at once. A nil gate is NewPool.
func (h Host) NewPoolGated(ctx context.Context, cfg Config, size int, reset ResetPolicy, gate StartGate) (*Pool, error) {
	return newPool(ctx, cfg, size, reset, gated(gate, h.NewSession))
}

// gated is start made inside gate.
func gated(gate StartGate, start func(context.Context, Config) (*Session, error)) func(context.Context, Config) (*Session, error) {
	if gate == nil {
		return start
	}
	return func(ctx context.Context, cfg Config) (*Session, error) {
		release, err := gate(ctx)
		if err != nil {
			return nil, err
		}
		defer release()
		return start(ctx, cfg)
	}
}

// Acquire takes an idle session, waiting until one is free or ctx ends
// (ErrTimeout or ErrCanceled). A session found dead is replaced in the
// background and another is taken. Give it back with Release.
func (p *Pool) Acquire(ctx context.Context) (*Session, error) {
	return p.AcquireWithin(ctx, -1)
}

// AcquireWithin is Acquire waiting at most wait for a free session, then
// failing with ErrPoolBusy; a wait of 0 takes an idle session or fails at
// once, a negative one waits as long as ctx allows. A session being
// cleaned after its last execution counts as free: AcquireWithin waits
// for its clean-up (milliseconds) whatever the wait, as it once waited
// inside the execution.
func (p *Pool) AcquireWithin(ctx context.Context, wait time.Duration) (*Session, error) {
	var expired <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		expired = t.C
	}
	timedOut := wait == 0
	for {
		select {
		case <-p.drain:
			return nil, ErrPoolClosed
		default:
		}
		s, freed, cleaning, err := p.takeIdle()
		if err != nil {
			return nil, err
		}
		if s != nil {
			return s, nil
		}
		if timedOut && cleaning == 0 {
			if wait == 0 {
				return nil, ErrPoolBusy
			}
			return nil, fmt.Errorf("%w (waited %s)", ErrPoolBusy, wait)
		}
		if timedOut {
			expired = nil // only the sessions being cleaned are waited for now
		}
		p.mu.Lock()
		p.waiters++
		p.mu.Unlock()
		err = p.await(ctx, freed, expired)
		p.mu.Lock()
		p.waiters--
		p.mu.Unlock()
		if errors.Is(err, ErrPoolBusy) {
			timedOut = true
			continue
		}
		if err != nil {
			return nil, err
		}
	}
}

// await waits for a session to be freed; it fails when expired fires
// (ErrPoolBusy), ctx ends or the pool closes.
func (p *Pool) await(ctx context.Context, freed <-chan struct{}, expired <-chan time.Time) error {
	select {
	case <-freed:
		return nil
	case <-expired:
		return ErrPoolBusy
	case <-p.drain:
		return ErrPoolClosed
	case <-ctx.Done():
		return endedContextError(ctx.Err(), "while waiting for a pool session")
	case <-p.bgCtx.Done():
		return ErrPoolClosed
	}
}

// takeIdle takes the most recently released live idle session and marks
// it busy; when none is idle it returns the channel closed at the next
// release and how many sessions are being cleaned. Dead or used-up
// sessions met on the way are replaced.
func (p *Pool) takeIdle() (*Session, <-chan struct{}, int, error) {
	var retired []*Session
	defer func() {
		for _, s := range retired {
			s.Close() // outside the lock
		}
	}()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, nil, 0, ErrPoolClosed
	}
	for n := len(p.idle); n > 0; n = len(p.idle) {
		s := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if !s.Alive() || s.exhausted() {
			p.retireLocked(s)
			retired = append(retired, s)
			continue
		}
		p.state[s] = slotBusy
		return s, nil, 0, nil
	}
	cleaning := 0
	for _, st := range p.state {
		if st == slotCleaning {
			cleaning++
		}
	}
	return nil, p.freed, cleaning, nil
}

// idleLocked makes s idle and wakes the Acquires waiting. p.mu must be
// held.
func (p *Pool) idleLocked(s *Session) {
	p.state[s] = slotIdle
	p.idle = append(p.idle, s)
	p.wakeLocked()
}

// wakeLocked wakes the Acquires waiting, to look at the pool again.
// p.mu must be held.
func (p *Pool) wakeLocked() {
	close(p.freed)
	p.freed = make(chan struct{})
}

// Release gives an acquired session back, at once: the clean-up after a
// fresh execution goes on in the background, and the session becomes idle
// only once it is clean (a session whose clean-up fails is replaced, never
// handed out). Releasing one that is not acquired (twice, or after Close)
// does nothing. A dead or used-up session is replaced; with ResetRestart
// the session gets a new R first.
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
	// Asked before Alive: a clean-up that failed has marked R dead before
	// it ended.
	cleaning := s.cleaning()
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
			p.idleLocked(s)
		}, func() { s.Close() })
	case cleaning:
		p.state[s] = slotCleaning
		p.goLocked(func(ctx context.Context) { p.idleWhenClean(ctx, s) }, func() { s.Close() })
	default:
		p.idleLocked(s)
	}
	return false
}

// idleWhenClean makes s idle once its clean-up after a fresh execution
// has ended and it is fit for the next user; otherwise s is retired and
// replaced.
func (p *Pool) idleWhenClean(ctx context.Context, s *Session) {
	err := s.ready(ctx)
	p.mu.Lock()
	if st, ok := p.state[s]; !ok || st != slotCleaning || p.closed {
		p.mu.Unlock() // the pool closed meanwhile: Close ends s
		return
	}
	if err != nil {
		p.log.Warn("pool: a session's clean-up after an execution failed; replacing it", "err", err)
		p.retireLocked(s)
		// Acquires waiting only for this session's clean-up stop waiting.
		p.wakeLocked()
		p.mu.Unlock()
		s.Close()
		return
	}
	p.idleLocked(s)
	p.mu.Unlock()
}

// Execute runs code on a pooled session: acquire, execute (fresh state by
// default), release.
func (p *Pool) Execute(ctx context.Context, code string) (*Result, error) {
	return p.ExecuteWith(ctx, code, ExecOptions{})
}

// ExecuteWith is Execute adjusted by opts (the pool's ResetFresh makes
// every execution fresh).
func (p *Pool) ExecuteWith(ctx context.Context, code string, opts ExecOptions) (*Result, error) {
	return p.ExecuteWithin(ctx, code, opts, -1)
}

// ExecuteWithin is ExecuteWith waiting at most acquireWait for a free
// session (as AcquireWithin: 0 fails at once with ErrPoolBusy when none
// is idle, a negative wait is bounded by ctx only). The execution itself
// is not bounded by acquireWait.
func (p *Pool) ExecuteWithin(ctx context.Context, code string, opts ExecOptions, acquireWait time.Duration) (*Result, error) {
	s, err := p.AcquireWithin(ctx, acquireWait)
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
		case slotCleaning:
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
	clear(p.idle)
	p.idle = nil
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
	adopted := false
	defer func() {
		if !adopted {
			p.mu.Lock()
			p.starting--
			p.mu.Unlock()
		}
	}()
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 10*time.Second) {
		s, err := p.newSession(ctx, p.cfg)
		if err == nil {
			// No longer starting in the same step that makes it idle:
			// Status never counts it twice.
			p.adoptStarted(s)
			adopted = true
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
func (p *Pool) adopt(s *Session) { p.adoptCounted(s, false) }

// adoptStarted is adopt for a session fill started: it stops counting as
// starting under the same lock.
func (p *Pool) adoptStarted(s *Session) { p.adoptCounted(s, true) }

func (p *Pool) adoptCounted(s *Session, started bool) {
	p.mu.Lock()
	if started {
		p.starting--
	}
	if p.closed {
		p.mu.Unlock()
		s.Close() // before the caller's goroutine ends: Close waits for it
		return
	}
	p.idleLocked(s)
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
