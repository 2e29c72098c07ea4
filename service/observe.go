package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// What the server tells an operator: an Observer for metrics, Stats and
// Ready for health endpoints, and request-scoped log records.

// Observer is told what the server does, for metrics. Its methods are
// called on the server's goroutines: they must be quick and safe for
// concurrent use. It takes plain values (no ids of clients or sessions)
// so that an implementation needs no import of this package and cannot
// make a metric per client.
type Observer interface {
	// ExecutionEnded: an execution ran and ended with verdict, after wall,
	// with oomKills OOM kills in its container.
	ExecutionEnded(verdict string, wall time.Duration, oomKills uint64)
	// ToolCallEnded: a tool the client answers was called and answered
	// (failed: with an error, or not at all) after took.
	ToolCallEnded(took time.Duration, failed bool)
	// SandboxStarted: an R (a container, when sandboxed) started, or
	// failed to (err), after took: a session's, a pool member's, a
	// restart or a replacement after R died.
	SandboxStarted(took time.Duration, err error)
	// Reaped: leftovers of crashed sessions were removed (sessions, and
	// orphaned cgroups).
	Reaped(sessions, cgroups int)
	// ErrorSent: an error event with this code went to a client.
	ErrorSent(code string)
}

// Stats is a snapshot of what the server holds.
type Stats struct {
	Clients        int  // connected and admitted
	Authenticating int  // connected, still to authenticate
	Sessions       int  // live sessions, pool members and starting ones included
	Pools          int  // live pools
	Executions     int  // executions running
	MaxSessions    int  // Options.MaxSessions
	MaxClients     int  // Options.MaxClients
	Draining       bool // Shutdown has begun
	// Warm boxes (Options.Warm): idle and in all (idle, busy, starting);
	// one-shots served by an idle warm box (WarmHits) and those that
	// asked for the default profile but found none idle (WarmMisses).
	WarmIdle, WarmTotal  int
	WarmHits, WarmMisses uint64
}

// Stats returns a snapshot of the server's clients, sessions, pools and
// executions.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := Stats{Clients: len(s.conns), Authenticating: s.nPre, Sessions: s.sessions, Executions: s.running,
		MaxSessions: s.opts.MaxSessions, MaxClients: s.opts.MaxClients, Draining: s.draining}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		st.Pools += len(c.pools)
		c.mu.Unlock()
	}
	if w := s.warm.Load(); w != nil {
		ps := w.pool.Status()
		st.WarmIdle, st.WarmTotal = ps.Idle, ps.Total
		st.WarmHits, st.WarmMisses = w.hits.Load(), w.misses.Load()
	}
	return st
}

// ErrNotReady is what Ready's errors wrap.
var ErrNotReady = errors.New("not ready")

// Ready says whether the server takes new work: nil, or an error wrapping
// ErrNotReady that says why not (draining, every session or client slot
// taken).
func (s *Server) Ready() error {
	st := s.Stats()
	switch {
	case st.Draining:
		return fmt.Errorf("%w: draining (shutting down)", ErrNotReady)
	case st.Sessions-st.WarmIdle >= st.MaxSessions:
		// An idle warm box is room: a one-shot or a session takes it.
		return fmt.Errorf("%w: at capacity: %d of %d sessions", ErrNotReady, st.Sessions, st.MaxSessions)
	case st.Clients >= st.MaxClients:
		return fmt.Errorf("%w: at capacity: %d of %d clients", ErrNotReady, st.Clients, st.MaxClients)
	}
	return nil
}

// withObserver makes the engine's hooks in base tell o too (keeping the
// operator's own).
func withObserver(base securer.Config, o Observer) securer.Config {
	if o == nil {
		return base
	}
	own := base.Hooks
	base.Hooks = securer.Hooks{
		Started: func(took time.Duration, err error) {
			o.SandboxStarted(took, err)
			if own.Started != nil {
				own.Started(took, err)
			}
		},
		Reaped: func(sessions, cgroups int) {
			o.Reaped(sessions, cgroups)
			if own.Reaped != nil {
				own.Reaped(sessions, cgroups)
			}
		},
	}
	return base
}

// observedTool times a client tool's calls for the observer.
func (c *conn) observedTool(f securer.ToolFunc) securer.ToolFunc {
	o := c.srv.opts.Observer
	if o == nil {
		return f
	}
	return func(ctx context.Context, args map[string]securer.Value) (any, error) {
		began := time.Now()
		v, err := f(ctx, args)
		o.ToolCallEnded(time.Since(began), err != nil)
		return v, err
	}
}

// observeError counts an error event and logs it with the request's
// fields.
func (c *conn) observeError(id string, err error) {
	code := errCode(err)
	if o := c.srv.opts.Observer; o != nil {
		o.ErrorSent(code)
	}
	// Refusals are the client's business (and a client could make many):
	// debug. Failures of the server or the host are the operator's: warn.
	// Failed authentications are logged, rate-limited, by logRefusal.
	level := slog.LevelDebug
	switch code {
	case CodeInternal, CodeStartFailed, CodeStartTimeout, CodeUnavailable:
		level = slog.LevelWarn
	case CodeUnauthorized:
		return
	}
	c.log.Log(context.Background(), level, "error sent", "request", id, "code", code, "err", err)
}

// observeJob logs a request that ran on its own goroutine (executions at
// info, the others at debug) and tells the observer of an execution's end.
func (c *conn) observeJob(j *job, ev any, err error) {
	attrs := []any{"request", j.req.ID, "op", j.req.Op}
	if j.req.Session != "" {
		attrs = append(attrs, "session", j.req.Session)
	}
	if j.req.Pool != "" {
		attrs = append(attrs, "pool", j.req.Pool)
	}
	attrs = append(attrs, "took", time.Since(j.began))
	if r, ok := ev.(resultEvent); ok && r.Result != nil {
		a := r.Result.Accounting
		attrs = append(attrs, "verdict", r.Result.Verdict, "wall", time.Duration(a.WallNS), "tool_calls", a.ToolCalls)
		if a.OOMKills > 0 {
			attrs = append(attrs, "oom_kills", a.OOMKills)
		}
		if o := c.srv.opts.Observer; o != nil && a.WallNS > 0 {
			// Ran: an execution cancelled before it started has no wall.
			o.ExecutionEnded(r.Result.Verdict, time.Duration(a.WallNS), a.OOMKills)
		}
		c.log.Info("execution ended", attrs...)
		return
	}
	if err != nil {
		attrs = append(attrs, "code", errCode(err))
	}
	c.log.Debug("request ended", attrs...)
}
