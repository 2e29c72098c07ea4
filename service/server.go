package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	securer "securer-runc"
)

// Options configure a Server.
type Options struct {
	// Base is the operator's session config: rootfs, state dir, cgroup
	// parent, isolation switches. Its Limits are the most a client may
	// ask for, and the defaults when it asks for nothing.
	Base securer.Config
	// MaxSessions caps sessions across all clients, pool members included
	// (default 64).
	MaxSessions int
	// MaxClients caps connected clients (default 64). With the cap on
	// requests in flight per client and on code size, it bounds what
	// clients can make the server hold.
	MaxClients int
	// WriteTimeout is how long one event may wait for a client to read it
	// before the client counts as gone (default 30 s).
	WriteTimeout time.Duration
	// Token, when set, must be presented by every client in an auth
	// request before any other (a bearer token, compared in constant
	// time). Required on TCP, where the peer's identity is unknown.
	Token string
	// AuthTimeout is how long a client has to authenticate (default 10 s).
	AuthTimeout time.Duration
	// MaxUnauthenticated caps connections that have yet to authenticate
	// (default 16). They do not count toward MaxClients, so that strangers
	// holding connections open cannot lock clients out.
	MaxUnauthenticated int
	// Version is reported in the hello.
	Version string
	Logger  *slog.Logger
}

// Server serves sessions to any number of clients at once.
type Server struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	conns    map[*conn]struct{}
	unauthed int       // connections still to authenticate
	refusals int       // failed authentications not yet logged
	lastLog  time.Time // of a failed authentication
	sessions int       // live sessions, pool members included
	draining bool
	idle     *sync.Cond // signalled when executions end
	running  int        // executions in flight, all clients
}

// New returns a server; it starts nothing until a client asks.
func New(opts Options) *Server {
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 64
	}
	if opts.MaxClients <= 0 {
		opts.MaxClients = 64
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.AuthTimeout <= 0 {
		opts.AuthTimeout = 10 * time.Second
	}
	if opts.MaxUnauthenticated <= 0 {
		opts.MaxUnauthenticated = 16
	}
	// The base limits are the ceilings of what clients ask for: make them
	// concrete.
	opts.Base.Limits = opts.Base.Limits.WithDefaults()
	if opts.Base.MaxCodeBytes <= 0 {
		opts.Base.MaxCodeBytes = securer.DefaultMaxCodeBytes
	}
	s := &Server{opts: opts, log: opts.Logger, conns: map[*conn]struct{}{}}
	s.idle = sync.NewCond(&s.mu)
	return s
}

// ServeConn serves one client until it disconnects, ctx ends or the
// server shuts down; then it closes every session and pool the client
// made. rw is closed on return.
func (s *Server) ServeConn(ctx context.Context, rw io.ReadWriteCloser) error {
	c := newConn(ctx, s, rw)
	if s.opts.Token != "" {
		// Admitted after it authenticates (conn.serve).
		s.mu.Lock()
		if s.unauthed >= s.opts.MaxUnauthenticated {
			s.mu.Unlock()
			c.sendError("", fmt.Errorf("%w: %d connections are authenticating, the server's limit", errTooMany, s.opts.MaxUnauthenticated))
			c.cancel()
			rw.Close()
			return errTooMany
		}
		s.unauthed++
		s.mu.Unlock()
	} else if err := s.admit(c); err != nil {
		c.sendError("", err)
		c.cancel()
		rw.Close()
		return err
	}
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	return c.serve()
}

// admit counts a client in, unless the server is draining or full.
func (s *Server) admit(c *conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return errDraining
	}
	if len(s.conns) >= s.opts.MaxClients {
		return fmt.Errorf("%w: %d clients connected, the server's limit", errTooMany, s.opts.MaxClients)
	}
	s.conns[c] = struct{}{}
	return nil
}

// authenticated moves a connection from authenticating to admitted (or
// out, when the server is full or draining).
func (s *Server) authenticated(c *conn) error {
	s.authDone()
	return s.admit(c)
}

func (s *Server) authDone() {
	s.mu.Lock()
	s.unauthed--
	s.mu.Unlock()
}

// logRefusal logs failed authentications at most once a second, with
// how many there were, so that a flood of them cannot flood the log.
func (s *Server) logRefusal(err error) {
	s.mu.Lock()
	s.refusals++
	if time.Since(s.lastLog) < time.Second {
		s.mu.Unlock()
		return
	}
	n := s.refusals
	s.refusals, s.lastLog = 0, time.Now()
	s.mu.Unlock()
	s.log.Warn("client refused", "err", err, "refusals_since_last_log", n)
}

// Serve accepts clients on ln until ctx ends, serving each on its own
// goroutine. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			s.log.Warn("accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.ServeConn(ctx, nc); err != nil && !errors.Is(err, io.EOF) {
				s.log.Debug("client ended", "err", err)
			}
		}()
	}
}

// Shutdown drains the server: new sessions, pools and executions are
// refused at once, running executions may finish until ctx ends, then
// every client's sessions are closed. It returns ctx's error if it had to
// cut executions short.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	done := make(chan struct{})
	go func() {
		s.mu.Lock()
		for s.running > 0 {
			s.idle.Wait()
		}
		s.mu.Unlock()
		close(done)
	}()
	s.mu.Unlock()
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	// Pools hand out no more sessions: executions queued for one end
	// with "draining" instead of starting new code.
	for _, c := range conns {
		go c.drain(ctx)
	}
	var cut error
	select {
	case <-done:
	case <-ctx.Done():
		cut = fmt.Errorf("shutdown: executions cut short: %w", ctx.Err())
	}
	s.mu.Lock()
	conns = conns[:0]
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.shutdown()
	}
	if cut != nil {
		// Wake the waiter: closing the sessions ended the executions.
		<-done
	}
	return cut
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// admitExecution counts an execution in, unless the server is draining.
func (s *Server) admitExecution() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return errDraining
	}
	s.running++
	return nil
}

func (s *Server) executionDone() {
	s.mu.Lock()
	s.running--
	s.idle.Broadcast()
	s.mu.Unlock()
}

// reserve books n session slots.
func (s *Server) reserve(n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return errDraining
	}
	if n < 0 || n > s.opts.MaxSessions-s.sessions {
		return fmt.Errorf("%w: %d live, %d asked, at most %d on this server", errTooMany, s.sessions, n, s.opts.MaxSessions)
	}
	s.sessions += n
	return nil
}

func (s *Server) release(n int) {
	s.mu.Lock()
	s.sessions -= n
	s.mu.Unlock()
}

// ListenUnix makes a Unix socket at path for clients, with the given file
// mode and, when gid >= 0, group. A stale socket (nobody listening) is
// replaced; anything else at path is an error.
func ListenUnix(path string, mode os.FileMode, gid int) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket: refusing to replace it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another server is listening there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("socket group: %w", err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket mode: %w", err)
	}
	return ln, nil
}
