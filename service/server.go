package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/bridge"
)

// Options configure a Server.
type Options struct {
	// Base is the operator's session config: rootfs, state dir, cgroup
	// parent, isolation switches. Its Limits are the most a client may
	// ask for, and the defaults when it asks for nothing.
	Base securer.Config
	// Ceilings cap what a client may ask for beyond Base.Limits.
	Ceilings Ceilings
	// MaxSessions caps sessions across all clients, pool members included
	// (default 64).
	MaxSessions int
	// MaxSessionsPerClient caps the sessions of one connection, pool
	// members included (default 16, at most MaxSessions), so that one
	// client cannot take every session.
	MaxSessionsPerClient int
	// MaxClients caps connected clients (default 64).
	MaxClients int
	// MaxMessageBytes caps one message from a client (default
	// MaxRequestBytes, 16 MiB).
	MaxMessageBytes int
	// MaxQueuedBytes caps the bytes of one client's requests being served
	// or waiting (default 8 MiB): with MaxClients and MaxMessageBytes it
	// bounds the memory clients can make the server hold.
	MaxQueuedBytes int64
	// MaxStarts caps sandboxes starting at once, all clients together
	// (default 4); further creates and restarts wait for a slot up to
	// StartWait (default 20 s), then get busy with a retry hint.
	MaxStarts int
	StartWait time.Duration
	// IdleTimeout closes a connection that sent nothing for this long
	// while nothing of it was being served (default 10 min), so that idle
	// connections cannot keep others out.
	IdleTimeout time.Duration
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
	// (default 2048; each costs about 32 KiB); MaxUnauthenticatedPerAddr
	// caps those of one source address (an IPv6 /64 counts as one;
	// default half of MaxUnauthenticated). They do not count toward MaxClients. At a cap,
	// the oldest unauthenticated connection (of that address, or of the
	// address holding the most) is closed to make room: a newcomer is
	// never refused, so that a flood cannot lock out token holders.
	MaxUnauthenticated        int
	MaxUnauthenticatedPerAddr int
	// Version is reported in the hello.
	Version string
	Logger  *slog.Logger
}

// Ceilings are the operator's caps on what clients ask for; zero means
// no ceiling beyond the engine's own.
type Ceilings struct {
	Timeout       time.Duration // per execution
	MaxToolCalls  int           // per execution
	MaxExecutions int           // per session; also applied when a client asks none
	OutputLimit   int64         // bytes per execution; also applied when a client asks none
}

func (o Options) withDefaults() Options {
	if o.MaxSessions <= 0 {
		o.MaxSessions = 64
	}
	if o.MaxSessionsPerClient <= 0 {
		o.MaxSessionsPerClient = 16
	}
	o.MaxSessionsPerClient = min(o.MaxSessionsPerClient, o.MaxSessions)
	if o.MaxClients <= 0 {
		o.MaxClients = 64
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = MaxRequestBytes
	}
	if o.MaxQueuedBytes <= 0 {
		o.MaxQueuedBytes = 8 << 20
	}
	if o.MaxStarts <= 0 {
		o.MaxStarts = 4
	}
	if o.StartWait <= 0 {
		o.StartWait = 20 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 10 * time.Minute
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.AuthTimeout <= 0 {
		o.AuthTimeout = 10 * time.Second
	}
	if o.MaxUnauthenticated <= 0 {
		o.MaxUnauthenticated = 2048
	}
	if o.MaxUnauthenticatedPerAddr <= 0 {
		o.MaxUnauthenticatedPerAddr = max(1, o.MaxUnauthenticated/2)
	}
	// The base limits are the ceilings of what clients ask for: make them
	// concrete.
	o.Base.Limits = o.Base.Limits.WithDefaults()
	if o.Base.MaxCodeBytes <= 0 {
		o.Base.MaxCodeBytes = securer.DefaultMaxCodeBytes
	}
	if o.Base.MaxOutputBytes <= 0 {
		o.Base.MaxOutputBytes = securer.DefaultMaxOutputBytes
	}
	if o.Base.MaxFrameBytes <= 0 {
		o.Base.MaxFrameBytes = bridge.DefaultMaxFrame
	}
	if o.Ceilings.Timeout > 0 && (o.Base.Timeout <= 0 || o.Base.Timeout > o.Ceilings.Timeout) {
		o.Base.Timeout = o.Ceilings.Timeout
	}
	if o.Ceilings.MaxToolCalls > 0 && (o.Base.MaxToolCalls <= 0 || o.Base.MaxToolCalls > o.Ceilings.MaxToolCalls) {
		o.Base.MaxToolCalls = o.Ceilings.MaxToolCalls
	}
	if o.Ceilings.MaxExecutions > 0 && (o.Base.MaxExecutions <= 0 || o.Base.MaxExecutions > o.Ceilings.MaxExecutions) {
		o.Base.MaxExecutions = o.Ceilings.MaxExecutions
	}
	if o.Ceilings.OutputLimit > 0 && (o.Base.OutputLimit <= 0 || o.Base.OutputLimit > o.Ceilings.OutputLimit) {
		o.Base.OutputLimit = o.Ceilings.OutputLimit
	}
	return o
}

// Memory ceiling terms (PROTOCOL.md, "Memory"): what the server may hold,
// besides its baseline, for one connection of each kind and one session.
const (
	memBaseline      = 64 << 20 // runtime, binary, caches
	memPreauthConn   = 32 << 10 // goroutines and a 4 KiB line buffer
	memConnOverhead  = 256 << 10
	frameCopiesHeld  = 3 // a value from R: the frame, the decoded value, the encoded event
	outputCopiesHeld = 4 // each of stdout and stderr kept, then encoded
)

// MemoryCeiling is the most memory the server's clients can make it hold,
// computed from the options (the formula is in PROTOCOL.md). Sessions'
// own memory (R, in its cgroup) is not counted: it is capped by --memory.
func (o Options) MemoryCeiling() int64 {
	o = o.withDefaults()
	perClient := int64(memConnOverhead) + 2*int64(o.MaxMessageBytes) + o.MaxQueuedBytes
	perSession := int64(frameCopiesHeld)*int64(o.Base.MaxFrameBytes) + int64(outputCopiesHeld)*int64(o.Base.MaxOutputBytes)
	unauth := int64(0)
	if o.Token != "" {
		unauth = int64(o.MaxUnauthenticated) * memPreauthConn
	}
	return memBaseline + unauth + int64(o.MaxClients)*perClient + int64(o.MaxSessions)*perSession
}

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
}

type preEntry struct {
	c    *conn
	addr string
	left bool
}

// New returns a server; it starts nothing until a client asks.
func New(opts Options) *Server {
	opts = opts.withDefaults()
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

// addrKey is the source a connection counts against for the
// unauthenticated caps: its IP, an IPv6 address by its /64 (one host
// usually has a whole /64); "" when unknown (Unix sockets, pipes).
func addrKey(rw io.ReadWriteCloser) string {
	nc, ok := rw.(net.Conn)
	if !ok {
		return ""
	}
	ap, err := netip.ParseAddrPort(nc.RemoteAddr().String())
	if err != nil {
		return ""
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// enterPreauth counts a connection as authenticating. At a cap, the
// oldest authenticating connection of the same address (at the
// per-address cap) or of the address holding the most (at the global
// cap) is closed: a stranger's flood only ever pushes out its own or
// older connections, and a token holder who answers the hello is not
// pushed out unless MaxUnauthenticatedPerAddr newer connections arrive
// from its own address before its answer does (one whose answer has
// arrived, unread, is spared).
func (s *Server) enterPreauth(c *conn) {
	s.mu.Lock()
	var victims []*conn
	for s.preCount[c.addr] >= s.opts.MaxUnauthenticatedPerAddr {
		victims = append(victims, s.evictLocked(c.addr))
	}
	for s.nPre >= s.opts.MaxUnauthenticated {
		most := ""
		for a, n := range s.preCount {
			if n > s.preCount[most] || (n == s.preCount[most] && a < most) {
				most = a
			}
		}
		victims = append(victims, s.evictLocked(most))
	}
	e := &preEntry{c: c, addr: c.addr}
	s.preauth[c] = e
	s.preQ[c.addr] = append(s.preQ[c.addr], e)
	s.preCount[c.addr]++
	s.nPre++
	s.evicted += len(victims)
	s.mu.Unlock()
	for _, v := range victims {
		v.evict()
	}
}

// evictLocked takes an authenticating connection of addr out of the
// books (the caller closes it): the oldest already refused (waiting out
// its delay), else the oldest silent one: one whose first line has
// arrived is spared (it is being checked), unless all have.
func (s *Server) evictLocked(addr string) *conn {
	q := s.preQ[addr]
	for len(q) > 0 && q[0].left {
		q = q[1:]
	}
	s.preQ[addr] = q
	rq := s.refQ[addr]
	for len(rq) > 0 && rq[0].left {
		rq = rq[1:]
	}
	if len(rq) > 0 {
		v := rq[0]
		s.refQ[addr] = rq[1:]
		s.dropPreauthLocked(v)
		return v.c
	}
	pick := -1
	for i := 0; pick < 0 && i < len(q); i++ {
		if q[i].left {
			continue
		}
		if !q[i].c.hasInput() {
			pick = i
		}
	}
	for i := 0; pick < 0 && i < len(q); i++ {
		if !q[i].left {
			pick = i // all have spoken: the oldest
		}
	}
	v := q[pick]
	s.preQ[addr] = q
	s.dropPreauthLocked(v)
	return v.c
}

func (s *Server) dropPreauthLocked(e *preEntry) {
	e.left = true
	delete(s.preauth, e.c)
	s.nPre--
	if s.preCount[e.addr]--; s.preCount[e.addr] == 0 {
		delete(s.preCount, e.addr)
		delete(s.preQ, e.addr)
		delete(s.refQ, e.addr)
	}
}

// refused marks an authenticating connection as refused: it stays in the
// books (it still holds an fd) until closed, and is the first of its
// address to be evicted.
func (s *Server) refused(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.preauth[c]; e != nil {
		rq := s.refQ[e.addr]
		for len(rq) > 0 && rq[0].left { // closed after their delay
			rq = rq[1:]
		}
		s.refQ[e.addr] = append(rq, e)
	}
}

// leavePreauth ends a connection's authenticating; false when it was
// evicted (or had left) before.
func (s *Server) leavePreauth(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.preauth[c]
	if e == nil {
		return false
	}
	s.dropPreauthLocked(e)
	return true
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

// authenticated moves a connection from authenticating to admitted (or
// out, when it was evicted, or the server is full or draining).
func (s *Server) authenticated(c *conn) error {
	if !s.leavePreauth(c) {
		return fmt.Errorf("%w: evicted before authenticating (too many unauthenticated connections)", errTooMany)
	}
	return s.admit(c)
}

// logRefusal logs failed authentications at most once a second, with
// how many there were (and how many silent connections were evicted), so
// that a flood of them cannot flood the log.
func (s *Server) logRefusal(err error) {
	s.mu.Lock()
	s.refusals++
	if time.Since(s.lastLog) < time.Second {
		s.mu.Unlock()
		return
	}
	n, ev := s.refusals, s.evicted
	s.refusals, s.evicted, s.lastLog = 0, 0, time.Now()
	s.mu.Unlock()
	s.log.Warn("client refused", "err", err, "refusals_since_last_log", n, "evicted_unauthenticated", ev)
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
		return &retryError{fmt.Errorf("%w: the server has no room for %d more session(s) now", errTooMany, n), 5 * time.Second}
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
