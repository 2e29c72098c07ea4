package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// Warm capacity: boxes the server keeps ready with the operator's
// defaults and no tools (the default profile), for one-shot executions
// (an execute with neither session nor pool) and for create_session
// requests that ask for nothing else.
//
// A warm box serves one-shots by fresh executions only (the pool resets
// fresh): one-shot after one-shot, each sees the box as it started.
// create_session takes only a box that never ran code; the pool starts
// a replacement at once.

// warmBoxes is the server's warm pool and what it counts.
type warmBoxes struct {
	pool *securer.Pool
	cfg  securer.Config // the default profile
	n    int

	hits, misses atomic.Uint64
}

// AcquireObserver is told, besides what Observer is, how long getting a
// box took, by path: "warm" (a warm box taken), "cold" (a box started for
// a one-shot or a session), "restart" (restart_session); and of each
// one-shot whether a warm box served it. An Observer that implements it
// gets these calls too.
type AcquireObserver interface {
	Acquired(path string, took time.Duration)
	// OneShot: a one-shot got its box by path: "warm" (a warm box was
	// idle), "miss" (it asked for the default profile but every warm box
	// was busy, or there are none) or "other" (it asked for tools or
	// options of its own).
	OneShot(path string)
}

// StartWarm starts Options.Warm boxes (nothing when it is 0) and counts
// them toward MaxSessions. Call it once, before serving; Shutdown closes
// them.
func (s *Server) StartWarm(ctx context.Context) error {
	n := s.opts.Warm
	if n <= 0 {
		return nil
	}
	if s.warm.Load() != nil {
		return errors.New("warm boxes already started")
	}
	if n > s.opts.MaxSessions {
		return fmt.Errorf("%w: --warm %d is over --max-sessions %d", securer.ErrInvalidConfig, n, s.opts.MaxSessions)
	}
	if s.opts.Base.UnsafeNoSandbox {
		return fmt.Errorf("%w: warm boxes serve one-shots by fresh executions, which need the sandbox", securer.ErrNeedsSandbox)
	}
	if err := s.reserve(n); err != nil {
		return err
	}
	cfg := s.defaultProfile()
	p, err := s.opts.Host.NewPoolGated(ctx, cfg, n, securer.ResetFresh, s.poolGate())
	if err != nil {
		s.release(n)
		return fmt.Errorf("starting %d warm boxes: %w", n, err)
	}
	s.warm.Store(&warmBoxes{pool: p, cfg: cfg, n: n})
	return nil
}

// closeWarm closes the warm boxes (Shutdown, once executions ended).
func (s *Server) closeWarm() {
	w := s.warm.Swap(nil)
	if w == nil {
		return
	}
	if err := w.pool.Close(); err != nil {
		s.log.Warn("closing the warm boxes", "err", err)
	}
	s.release(w.n)
}

// defaultProfile is the config of a session whose client asked for no
// tools and no options.
func (s *Server) defaultProfile() securer.Config {
	cfg := s.opts.Base
	cfg.Output.Stdout, cfg.Output.Stderr = nil, nil
	cfg.Tools = nil
	if cfg.Logger != nil {
		cfg.Logger = cfg.Logger.With("warm", true)
	}
	return cfg
}

// sameProfile reports whether a client's config is the default profile's
// in everything a client may choose. A one-shot's timeout is its own
// (given per execution) and its box serves it once, so neither the
// timeout nor the executions cap has to match; a session's must.
func sameProfile(a, b securer.Config, session bool) bool {
	if len(a.Tools) != 0 || len(b.Tools) != 0 || a.Limits != b.Limits || a.MaxToolCalls != b.MaxToolCalls ||
		a.Output.LimitBytes != b.Output.LimitBytes || a.MaxCodeBytes != b.MaxCodeBytes || !slices.Equal(a.Preload, b.Preload) {
		return false
	}
	return !session || (a.Timeout == b.Timeout && a.MaxExecutions == b.MaxExecutions)
}

func (s *Server) acquired(path string, began time.Time) {
	if o, ok := s.opts.Observer.(AcquireObserver); ok {
		o.Acquired(path, time.Since(began))
	}
}

// takeWarm takes a pristine warm box for a session asking for cfg, or
// returns nil.
func (s *Server) takeWarm(cfg securer.Config) *securer.Session {
	w := s.warm.Load()
	if w == nil || !sameProfile(cfg, w.cfg, true) {
		return nil
	}
	began := time.Now()
	sess := w.pool.TakeUnused()
	if sess != nil {
		s.acquired("warm", began)
	}
	return sess
}

// oneShot runs an execute with neither session nor pool: in an idle warm
// box by a fresh execution when the request asks for the default profile
// and one is idle, else in a box started for it and closed after. warm
// says which.
func (c *conn) oneShot(ctx context.Context, j *job, opts securer.ExecOptions) (res *securer.Result, warm bool, clamped []string, err error) {
	req := j.req
	cfg, clamped, err := c.config(req.Tools, req.Options, req.Clamp)
	if err != nil {
		return nil, false, nil, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = cfg.Timeout
	}
	s := c.srv
	path := "other"
	if w := s.warm.Load(); w == nil && sameProfile(cfg, s.defaultProfile(), false) {
		path = "miss"
	} else if w != nil && sameProfile(cfg, w.cfg, false) {
		path = "miss"
		began := time.Now()
		sess, err := w.pool.AcquireWithin(ctx, 0)
		if err == nil {
			s.acquired("warm", began)
			w.hits.Add(1)
			s.oneShotSeen("warm")
			defer w.pool.Release(sess)
			// Fresh: the box's warm R is never touched, and what the code
			// leaves (variables, files, processes) is swept after it.
			opts.Fresh = true
			res, err = sess.ExecuteWith(ctx, req.Code, opts)
			return res, true, clamped, err
		}
		if !errors.Is(err, securer.ErrPoolBusy) && !errors.Is(err, securer.ErrPoolClosed) {
			return nil, false, nil, err
		}
		w.misses.Add(1)
	}
	s.oneShotSeen(path)
	if err := c.hold(1); err != nil {
		return nil, false, nil, err
	}
	defer c.unhold(1)
	began := time.Now()
	var sess *securer.Session
	if err := c.startingCtx(ctx, func() (err error) { sess, err = s.opts.Host.NewSession(ctx, cfg); return err }); err != nil {
		return nil, false, nil, err
	}
	s.acquired("cold", began)
	// Nothing of the box is kept: it is destroyed before the result goes
	// out.
	defer sess.Close()
	res, err = sess.ExecuteWith(ctx, req.Code, opts)
	return res, false, clamped, err
}

func (s *Server) oneShotSeen(path string) {
	if o, ok := s.opts.Observer.(AcquireObserver); ok {
		o.OneShot(path)
	}
}

// startingCtx is starting, the wait for a slot also ended by ctx (an
// execution's: a cancel ends it).
func (c *conn) startingCtx(ctx context.Context, f func() error) error {
	release, err := c.srv.startSlot(ctx)
	if err != nil {
		return err
	}
	defer release()
	return startErr(f())
}
