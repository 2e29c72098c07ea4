package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// Server serves sessions to any number of clients at once.
type Server struct {
	opts   Options
	log    *slog.Logger
	starts chan struct{} // a token per sandbox starting

	mu       sync.Mutex
	conns    map[*conn]struct{}
	preauth  map[*conn]*preEntry    // connections still to authenticate
	preQ     map[string][]*preEntry // per address, oldest first (with leavers, skipped)
	preCount map[string]int
	refQ     map[string][]*preEntry // per address, refused ones, oldest first
	nPre     int
	refusals int       // failed authentications not yet logged
	evicted  int       // unauthenticated connections evicted, not yet logged
	lastLog  time.Time // of a failed authentication
	sessions int       // live sessions, pool members included
	draining bool
	idle     *sync.Cond // signalled when executions end
	running  int        // executions in flight, all clients

	clientSeq atomic.Uint64 // names clients in log records

	warm atomic.Pointer[warmBoxes] // nil: none (StartWarm)
}

// New returns a server; it starts nothing until a client asks.
func New(opts Options) *Server {
	opts = opts.withDefaults()
	opts.Base = withObserver(opts.Base, opts.Observer)
	s := &Server{opts: opts, log: opts.Logger, conns: map[*conn]struct{}{}, preauth: map[*conn]*preEntry{},
		preQ: map[string][]*preEntry{}, preCount: map[string]int{}, refQ: map[string][]*preEntry{},
		starts: make(chan struct{}, opts.MaxStarts)}
	s.idle = sync.NewCond(&s.mu)
	return s
}

// ServeConn serves one client until it disconnects, ctx ends or the
// server shuts down; then it closes every session and pool the client
// made. rw is closed on return.
func (s *Server) ServeConn(ctx context.Context, rw io.ReadWriteCloser) error {
	c := newConn(ctx, s, rw)
	c.log.Debug("client connected", "addr", c.addr)
	defer c.log.Debug("client gone")
	if s.opts.Token != "" {
		// Admitted after it authenticates (conn.serve).
		s.enterPreauth(c)
	} else if err := s.admit(c); err != nil {
		c.sendError("", err)
		c.cancel()
		rw.Close()
		return err
	}
	defer func() {
		s.leavePreauth(c)
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
		return &retryError{fmt.Errorf("%w: the server has all the clients it takes (%d)", errTooMany, s.opts.MaxClients), 5 * time.Second}
	}
	s.conns[c] = struct{}{}
	return nil
}

// Serve accepts clients on ln until ctx ends, serving each on its own
// goroutine. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	closed := make(chan struct{})
	go func() {
		<-ctx.Done()
		ln.Close()
		close(closed)
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	// Closed (its socket removed) before Serve returns, so that a new
	// server may take the path at once.
	defer func() {
		if ctx.Err() != nil {
			<-closed
		}
	}()
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
// refused at once, running executions may finish until ctx ends; then
// what still runs is cancelled, every request gets its final event (a
// result, or a draining error), and every client's sessions are closed.
// It returns ctx's error if it had to cut executions short.
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
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	// Pools hand out no more sessions: executions queued for one end
	// with "draining" instead of starting new code.
	var drains sync.WaitGroup
	defer drains.Wait() // a pool's shutdown ends by closing it: wait for that
	for _, c := range conns {
		drains.Go(func() { c.drain(ctx) })
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
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(c.shutdown)
	}
	wg.Wait()
	s.closeWarm()
	if cut != nil {
		// Wake the waiter: cancelling ended the executions.
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

// reserve books n session slots. Its error tells nothing of what other
// clients hold.
func (s *Server) reserve(n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return errDraining
	}
	if n < 0 || n > s.opts.MaxSessions-s.sessions {
		return &retryError{fmt.Errorf("%w: the server has no room for %d more session(s) now (--max-sessions)", errTooMany, n), 5 * time.Second}
	}
	s.sessions += n
	return nil
}

func (s *Server) release(n int) {
	s.mu.Lock()
	s.sessions -= n
	s.mu.Unlock()
}

// startSlot waits, up to StartWait, for one of the MaxStarts slots for
// starting a sandbox; the returned func gives it back. A burst of creates
// queues here instead of starting everything at once and timing out.
func (s *Server) startSlot(ctx context.Context) (func(), error) {
	release := func() { <-s.starts }
	select {
	case s.starts <- struct{}{}:
		return release, nil
	default:
	}
	t := time.NewTimer(s.opts.StartWait)
	defer t.Stop()
	select {
	case s.starts <- struct{}{}:
		return release, nil
	case <-t.C:
		return nil, &retryError{fmt.Errorf("%w: sandboxes are starting for other requests; waited %s", securer.ErrBusy, s.opts.StartWait), 2 * time.Second}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
