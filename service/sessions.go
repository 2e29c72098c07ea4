package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// Sessions and pools a client makes, and its quota of them.

// hold books n sessions against this client's quota and the server's
// limit.
func (c *conn) hold(n int) error {
	c.mu.Lock()
	if c.held+n > c.srv.opts.MaxSessionsPerClient {
		held := c.held
		c.mu.Unlock()
		return fmt.Errorf("%w: this connection holds %d session(s), pool members included; %d more would pass its quota of %d (--max-sessions-per-client)",
			errTooMany, held, n, c.srv.opts.MaxSessionsPerClient)
	}
	c.held += n
	c.mu.Unlock()
	if err := c.srv.reserve(n); err != nil {
		c.mu.Lock()
		c.held -= n
		c.mu.Unlock()
		return err
	}
	return nil
}

func (c *conn) unhold(n int) {
	c.mu.Lock()
	c.held -= n
	c.mu.Unlock()
	c.srv.release(n)
}

// startErr names what went wrong starting a sandbox, where the engine's
// error has no code of its own.
func startErr(err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", errStartTimeout, err)
	}
	if errCode(err) != CodeInternal {
		return err
	}
	return fmt.Errorf("%w: %w", errStartFailed, err)
}

// starting runs f (which starts sandboxes) in one of the server's start
// slots.
func (c *conn) starting(f func() error) error {
	release, err := c.srv.startSlot(c.ctx)
	if err != nil {
		return err
	}
	defer release()
	return startErr(f())
}

func (c *conn) createSession(j *job) (any, error) {
	cfg, clamped, err := c.config(j.req.Tools, j.req.Options, j.req.Clamp)
	if err != nil {
		return nil, err
	}
	if err := c.hold(1); err != nil {
		return nil, err
	}
	// A warm box that never ran code is as good as a new one.
	s := c.srv.takeWarm(cfg)
	if s == nil {
		began := time.Now()
		if err := c.starting(func() (err error) { s, err = c.srv.opts.Host.NewSession(c.ctx, cfg); return err }); err != nil {
			c.unhold(1)
			return nil, err
		}
		c.srv.acquired("cold", began)
	}
	name := c.name("s")
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		s.Close()
		c.unhold(1)
		return nil, c.ctx.Err()
	}
	c.sessions[name] = s
	c.mu.Unlock()
	return newSessionEvent(j.req.ID, name, s, cfg, clamped), nil
}

func (c *conn) closeSession(j *job) (any, error) {
	c.mu.Lock()
	s := c.sessions[j.req.Session]
	delete(c.sessions, j.req.Session)
	c.mu.Unlock()
	if s == nil {
		return nil, c.missing("session", j.req.Session, c.srv.isDraining())
	}
	err := s.Close()
	c.unhold(1)
	if err != nil {
		return nil, err
	}
	return newReply("closed", j.req.ID), nil
}

func (c *conn) restartSession(j *job) (any, error) {
	if c.srv.isDraining() {
		return nil, errDraining
	}
	began := time.Now()
	if err := c.starting(func() error { return j.sess.Restart(c.ctx) }); err != nil {
		return nil, err
	}
	c.srv.acquired("restart", began)
	return restartedEvent{Type: "restarted", ID: j.req.ID, Pid: j.sess.Pid()}, nil
}

var resets = map[string]securer.ResetPolicy{
	"": securer.ResetFresh, "fresh": securer.ResetFresh, "none": securer.ResetNone, "restart": securer.ResetRestart,
}

func (c *conn) createPool(j *job) (any, error) {
	req := j.req
	reset, ok := resets[req.Reset]
	if !ok {
		return nil, fmt.Errorf("%w: reset must be fresh, none or restart, not %q", errBadRequest, req.Reset)
	}
	if req.Size < 1 {
		return nil, fmt.Errorf("%w: pool size must be at least 1, got %d", errBadRequest, req.Size)
	}
	// A pool larger than a cap can never be made on this server: say
	// which flag would allow it. (Its members count as sessions.)
	if max := c.srv.opts.MaxSessions; req.Size > max {
		return nil, fmt.Errorf("%w: pool size %d is over the server's %d sessions in all (--max-sessions)", errBadRequest, req.Size, max)
	}
	if max := c.srv.opts.MaxSessionsPerClient; req.Size > max {
		return nil, fmt.Errorf("%w: pool size %d is over the %d sessions one connection may hold (--max-sessions-per-client)", errTooMany, req.Size, max)
	}
	cfg, clamped, err := c.config(req.Tools, req.Options, req.Clamp)
	if err != nil {
		return nil, err
	}
	if err := c.hold(req.Size); err != nil {
		return nil, err
	}
	// Each member starts in a start slot of its own (as a session does),
	// so that a large pool does not start all its sandboxes at once.
	p, err := c.srv.opts.Host.NewPoolGated(c.ctx, cfg, req.Size, reset, c.srv.poolGate())
	if err != nil {
		c.unhold(req.Size)
		return nil, startErr(err)
	}
	name := c.name("p")
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		p.Close()
		c.unhold(req.Size)
		return nil, c.ctx.Err()
	}
	c.pools[name] = &clientPool{pool: p, size: req.Size}
	c.mu.Unlock()
	ev := newPoolEvent(req.ID, name, p.Status())
	ev.Sandbox, ev.Limits, ev.Clamped = c.srv.opts.Host.SandboxKind(cfg), toWireLimits(cfg), clamped
	return ev, nil
}

func (c *conn) poolStatus(j *job) (any, error) {
	c.mu.Lock()
	p := c.pools[j.req.Pool]
	c.mu.Unlock()
	if p == nil {
		return nil, c.missing("pool", j.req.Pool, c.srv.isDraining())
	}
	return newPoolEvent(j.req.ID, j.req.Pool, p.pool.Status()), nil
}

func (c *conn) closePool(j *job) (any, error) {
	c.mu.Lock()
	p := c.pools[j.req.Pool]
	delete(c.pools, j.req.Pool)
	c.mu.Unlock()
	if p == nil {
		return nil, c.missing("pool", j.req.Pool, c.srv.isDraining())
	}
	err := p.pool.Close()
	c.unhold(p.size)
	if err != nil {
		return nil, err
	}
	return newReply("closed", j.req.ID), nil
}

// poolGate is the start gate of one pool's members: each takes a start
// slot of its own. A member waits for one while the pool makes progress
// (one of its members got or gave back a slot within --start-wait), so a
// pool larger than --max-starts is not refused for waiting its turn; it
// gets busy once no member got or gave back a slot for --start-wait.
func (s *Server) poolGate() securer.StartGate {
	var mu sync.Mutex
	var last time.Time // a member got or gave back a slot
	progress := func() {
		mu.Lock()
		last = time.Now()
		mu.Unlock()
	}
	return func(ctx context.Context) (func(), error) {
		began := time.Now()
		for {
			mu.Lock()
			from := began
			if last.After(from) {
				from = last
			}
			wait := time.Until(from.Add(s.opts.StartWait))
			mu.Unlock()
			if wait <= 0 {
				return nil, &retryError{fmt.Errorf("%w: sandboxes are starting for other requests; a member of the pool waited %s", securer.ErrBusy, s.opts.StartWait), 2 * time.Second}
			}
			t := time.NewTimer(wait)
			select {
			case s.starts <- struct{}{}:
				t.Stop()
				progress()
				return func() { <-s.starts; progress() }, nil
			case <-t.C:
				// The pool may have made progress meanwhile: look again.
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			}
		}
	}
}
