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
	Starting int // being started or replaced
	Dead     int // found dead since the pool started (each was replaced)
}

// Pool keeps size warm sessions. It is safe for concurrent use.
type Pool struct {
	cfg   Config
	size  int
	reset ResetPolicy
	log   *slog.Logger

	idle chan *Session // ready sessions; capacity size

	mu       sync.Mutex
	all      map[*Session]bool // every live session, idle or busy
	starting int
	dead     int
	closed   bool
	bg       sync.WaitGroup // replacements in flight
	stop     context.CancelFunc
	bgCtx    context.Context
}

// NewPool starts size sessions of cfg (in parallel) and returns when all
// are ready. Pool.Execute resets state as reset says.
func NewPool(ctx context.Context, cfg Config, size int, reset ResetPolicy) (*Pool, error) {
	if size < 1 {
		return nil, fmt.Errorf("%w: pool size must be at least 1, got %d", ErrInvalidConfig, size)
	}
	bgCtx, stop := context.WithCancel(context.Background())
	p := &Pool{cfg: cfg, size: size, reset: reset, idle: make(chan *Session, size),
		all: map[*Session]bool{}, bgCtx: bgCtx, stop: stop, log: cfg.withDefaults().Logger}
	errs := make(chan error, size)
	for i := 0; i < size; i++ {
		go func() {
			s, err := NewSession(ctx, cfg)
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

// Acquire takes an idle session, waiting until one is free or ctx ends.
// A session found dead is replaced in the background and another is
// taken. Give it back with Release.
func (p *Pool) Acquire(ctx context.Context) (*Session, error) {
	for {
		select {
		case s := <-p.idle:
			if p.isClosed() {
				s.Close()
				return nil, ErrPoolClosed
			}
			if s.Alive() {
				return s, nil
			}
			p.replace(s)
		case <-ctx.Done():
			return nil, fmt.Errorf("acquire a pool session: %w", ctx.Err())
		case <-p.bgCtx.Done():
			return nil, ErrPoolClosed
		}
	}
}

// Release gives a session back. A dead one is replaced; with ResetRestart
// the session gets a new R before it is idle again.
func (p *Pool) Release(s *Session) {
	p.mu.Lock()
	owned, closed := p.all[s], p.closed
	p.mu.Unlock()
	switch {
	case !owned:
		return
	case closed:
		p.forget(s)
		s.Close()
	case !s.Alive():
		p.replace(s)
	case p.reset == ResetRestart:
		// Out of the pool while it restarts: counted as starting.
		p.forget(s)
		p.background(func(ctx context.Context) {
			if err := s.Restart(ctx); err != nil {
				p.log.Warn("pool: restarting a session failed; starting a new one", "err", err)
				s.Close()
				p.fill(ctx)
				return
			}
			p.adopt(s)
		})
	default:
		p.idle <- s
	}
}

// Execute runs code on a pooled session: acquire, execute (fresh state by
// default), release.
func (p *Pool) Execute(ctx context.Context, code string) (*Result, error) {
	s, err := p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer p.Release(s)
	if p.reset == ResetFresh {
		return s.ExecuteFresh(ctx, code)
	}
	return s.Execute(ctx, code)
}

// Status reports what the pool holds now.
func (p *Pool) Status() PoolStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	idle := len(p.idle)
	return PoolStatus{
		Total:    len(p.all) + p.starting,
		Idle:     idle,
		Busy:     len(p.all) - idle,
		Starting: p.starting,
		Dead:     p.dead,
	}
}

// Close ends every session, busy ones included (their Execute ends with
// ErrSessionClosed), and waits for replacements in flight.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	sessions := make([]*Session, 0, len(p.all))
	for s := range p.all {
		sessions = append(sessions, s)
	}
	p.all = map[*Session]bool{}
	p.mu.Unlock()
	p.stop()
	p.bg.Wait()
	var errs []error
	for _, s := range sessions {
		errs = append(errs, s.Close())
	}
	for {
		select {
		case s := <-p.idle:
			errs = append(errs, s.Close()) // replacements that finished last
		default:
			return errors.Join(errs...)
		}
	}
}

func (p *Pool) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *Pool) forget(s *Session) {
	p.mu.Lock()
	delete(p.all, s)
	p.mu.Unlock()
}

// replace closes a dead session and starts another in the background,
// retrying with backoff while the host cannot start one.
func (p *Pool) replace(old *Session) {
	p.mu.Lock()
	delete(p.all, old)
	p.dead++
	p.mu.Unlock()
	old.Close()
	p.background(p.fill)
}

// fill starts one new session into the pool, retrying with backoff while
// the host cannot start one.
func (p *Pool) fill(ctx context.Context) {
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 10*time.Second) {
		s, err := NewSession(ctx, p.cfg)
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

// adopt makes s an idle session of the pool (or closes it, if the pool
// has been closed meanwhile).
func (p *Pool) adopt(s *Session) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		s.Close()
		return
	}
	p.all[s] = true
	p.mu.Unlock()
	p.idle <- s
}

// background runs f counted as starting, unless the pool is closed.
func (p *Pool) background(f func(ctx context.Context)) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.starting++
	p.bg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.bg.Done()
		defer func() {
			p.mu.Lock()
			p.starting--
			p.mu.Unlock()
		}()
		f(p.bgCtx)
	}()
}
