package service

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/bridge"
	"github.com/securer-runc/securer-runc/rvalue"
)

// conn is one client: its sessions, pools and executions.
type conn struct {
	srv  *Server
	rw   io.ReadWriteCloser
	addr string // source, for the unauthenticated caps
	// spoke: its first line has been read (it is being checked, and will
	// leave the unauthenticated books at once): not to be evicted.
	spoke atomic.Bool

	wmu  sync.Mutex // one event at a time on the wire
	dead bool       // a write failed: the client is gone

	ctx    context.Context // ends when the client goes or the server drains
	cancel context.CancelFunc
	// gone is closed once the client can send nothing more (it closed
	// its side, or left): tool calls waiting for its answer fail at once.
	gone     chan struct{}
	goneOnce sync.Once
	// lost: the client can no longer read either (a write failed, the
	// peer hung up, a pipe closed): its final events would go nowhere.
	lost atomic.Bool
	done chan struct{} // closed when cleanup has finished

	mu       sync.Mutex
	sessions map[string]*securer.Session
	pools    map[string]*clientPool
	execs    map[string]*execution
	// tails holds, per session, the request queued last on it: the next
	// one waits for it, so that a session serves requests in arrival
	// order.
	tails   map[string]chan struct{}
	held    int   // sessions held, pool members and starting ones included
	served  int   // requests being served or queued
	queued  int64 // bytes of those requests
	closing bool  // no new work: the connection is ending
	next    int
	work    sync.WaitGroup // requests being served
}

type clientPool struct {
	pool *securer.Pool
	size int
}

// execution is one execute request, queued or running: how to cancel it
// and the tool calls waiting for the client's answer.
type execution struct {
	id     string
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	calls    map[string]chan toolAnswer
	nextCall int
}

type toolAnswer struct {
	value any
	err   error
}

func newConn(ctx context.Context, s *Server, rw io.ReadWriteCloser) *conn {
	c := &conn{srv: s, rw: rw, addr: addrKey(rw), sessions: map[string]*securer.Session{},
		pools: map[string]*clientPool{}, execs: map[string]*execution{}, tails: map[string]chan struct{}{},
		gone: make(chan struct{}), done: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(ctx)
	return c
}

// maxInFlight caps one client's requests being served or queued at once;
// MaxQueuedBytes caps their bytes.
const maxInFlight = 32

func (c *conn) serve() error {
	defer c.cleanup()
	c.send(newHello(c.srv.opts))
	var in io.Reader = c.rw
	if c.srv.opts.Token != "" {
		// A stranger gets a small buffer, and nothing more is read from
		// it until it has authenticated.
		small := bufio.NewReaderSize(c.rw, authFrameBytes)
		id, err := c.authenticate(small)
		if err != nil {
			return err
		}
		if err := c.srv.authenticated(c); err != nil {
			c.sendError(id, err)
			return err
		}
		c.send(newReply("ok", id))
		in = small
	}
	return c.loop(in)
}

type frame struct {
	b   []byte
	err error
}

// loop reads requests until the client goes, idles out or the connection
// is shut down.
func (c *conn) loop(in io.Reader) error {
	r := bridge.NewReader(in, c.srv.opts.MaxMessageBytes)
	frames := make(chan frame)
	next := make(chan struct{})
	go func() {
		// One frame at a time, handed over without a copy: the next is
		// read once the last is handled.
		for {
			b, err := r.ReadFrame()
			select {
			case frames <- frame{b, err}:
			case <-c.ctx.Done():
				return
			}
			if err != nil {
				return
			}
			select {
			case <-next:
			case <-c.ctx.Done():
				return
			}
		}
	}()
	idle := time.NewTimer(c.srv.opts.IdleTimeout)
	defer idle.Stop()
	for {
		select {
		case f := <-frames:
			if f.err != nil {
				if errors.Is(f.err, bridge.ErrFrameTooLarge) || errors.Is(f.err, bridge.ErrProtocol) {
					c.sendError("", fmt.Errorf("%w: %v; closing the connection", errBadRequest, f.err))
					return f.err
				}
				if errors.Is(f.err, io.EOF) {
					return c.halfClosed()
				}
				c.lost.Store(true)
				return f.err
			}
			c.handle(f.b)
			idle.Reset(c.srv.opts.IdleTimeout)
			select {
			case next <- struct{}{}:
			case <-c.ctx.Done():
				return c.ctx.Err()
			}
		case <-idle.C:
			if c.busy() {
				idle.Reset(c.srv.opts.IdleTimeout)
				continue
			}
			err := fmt.Errorf("%w: nothing sent for %s and nothing running; closing the connection", errIdle, c.srv.opts.IdleTimeout)
			c.sendError("", err)
			return err
		case <-c.ctx.Done():
			return c.ctx.Err()
		}
	}
}

func (c *conn) busy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.served > 0
}

// halfClosed: the client has sent its last request. On a Unix socket it
// may still read: what it asked for is finished and sent (tool calls,
// which it can no longer answer, fail at once), unless it hangs up
// altogether (the kernel says so) or the server drains. Elsewhere a
// half-close cannot be told from a client that left (a TCP peer's FIN,
// a pipe's end), so the connection ends at once, as before.
func (c *conn) halfClosed() error {
	c.markGone()
	uc, ok := c.rw.(*net.UnixConn)
	if !ok {
		c.lost.Store(true)
		return io.EOF
	}
	finished := make(chan struct{})
	go func() { c.work.Wait(); close(finished) }()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-finished:
			return io.EOF
		case <-c.ctx.Done():
			return c.ctx.Err()
		case <-tick.C:
			if hungUp(uc) {
				c.lost.Store(true)
				return io.EOF
			}
		}
	}
}

// hungUp tells whether a Unix socket's peer has closed both directions
// (POLLHUP; a mere shutdown of its writing side is not one).
func hungUp(sc syscall.Conn) bool {
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	hup := false
	_ = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: 0}}
		if n, err := unix.Poll(fds, 0); err == nil && n > 0 {
			hup = fds[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
		}
	})
	return hup
}

func (c *conn) markGone() { c.goneOnce.Do(func() { close(c.gone) }) }

// evict closes a connection still authenticating, to make room.
func (c *conn) evict() {
	c.cancel()
	c.rw.Close()
}

// authFailDelay slows down guessing: a failed attempt costs a connection
// and this long.
const authFailDelay = time.Second

// authFrameBytes caps a connection's first line where a token is needed.
const authFrameBytes = 4 << 10

// authenticate takes the client's first request, which must be auth with
// the server's token, and returns its id; anything else ends the
// connection.
func (c *conn) authenticate(in *bufio.Reader) (string, error) {
	var fail error
	id := ""
	line, err := c.firstLine(in)
	switch {
	case errors.Is(err, errAuthTimeout):
		fail = fmt.Errorf("%w: no auth within %s", errUnauthorized, c.srv.opts.AuthTimeout)
	case errors.Is(err, bufio.ErrBufferFull):
		fail = fmt.Errorf("%w: the first request must be auth with the server's token (its line is over %d bytes)", errUnauthorized, authFrameBytes)
	case err != nil:
		return "", err // gone, evicted or shut down
	default:
		req, err := decodeRequest(line)
		switch {
		case err != nil || req.Op != "auth":
			fail = fmt.Errorf("%w: the first request must be auth with the server's token", errUnauthorized)
		case !tokenMatches(req.Token, c.srv.opts.Token):
			id, fail = req.ID, fmt.Errorf("%w: wrong token", errUnauthorized)
		default:
			return req.ID, nil
		}
	}
	// A refused connection waits out its delay still counted against the
	// unauthenticated caps (it holds an fd and a goroutine until closed),
	// and is the first to be evicted to make room, which cuts its wait
	// short: a flood of refusals cannot make the server hold more.
	c.srv.refused(c)
	c.srv.logRefusal(fail)
	select {
	case <-time.After(authFailDelay):
	case <-c.ctx.Done():
	}
	c.sendError(id, fail)
	return "", fail
}

var errAuthTimeout = errors.New("no auth in time")

// firstLine reads a stranger's first line within AuthTimeout. On a socket
// it reads on this goroutine, under a read deadline (a stranger costs one
// goroutine); ctx ending or an eviction cuts it short.
func (c *conn) firstLine(in *bufio.Reader) ([]byte, error) {
	d, ok := c.rw.(interface{ SetReadDeadline(time.Time) error })
	if !ok {
		first := make(chan frame, 1)
		go func() {
			b, err := in.ReadSlice('\n')
			first <- frame{b, err}
		}()
		t := time.NewTimer(c.srv.opts.AuthTimeout)
		defer t.Stop()
		select {
		case f := <-first:
			return bytes.TrimSuffix(f.b, []byte("\n")), f.err
		case <-t.C:
			return nil, errAuthTimeout
		case <-c.ctx.Done():
			return nil, c.ctx.Err()
		}
	}
	_ = d.SetReadDeadline(time.Now().Add(c.srv.opts.AuthTimeout))
	stop := context.AfterFunc(c.ctx, func() { _ = d.SetReadDeadline(time.Unix(1, 0)) })
	b, err := in.ReadSlice('\n')
	c.spoke.Store(true)
	stop()
	if c.ctx.Err() != nil {
		return nil, c.ctx.Err()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, errAuthTimeout
	}
	_ = d.SetReadDeadline(time.Time{})
	return bytes.TrimSuffix(b, []byte("\n")), err
}

// tokenMatches compares in constant time, lengths included (through
// hashes), so that timing tells nothing about the token.
func tokenMatches(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// cleanupWait bounds how long a connection's end waits for its requests
// to end by themselves (cancelled) before closing their sessions under
// them.
const cleanupWait = 15 * time.Second

// cleanup runs when the connection ends (client gone, idle, or the
// server's drain): cancel what is queued or runs, let every request send
// its final event, close what the client made, then the connection. A
// client that can no longer read has its sessions closed at once.
func (c *conn) cleanup() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.cancel()
	c.markGone()
	if c.lost.Load() {
		c.closeAll()
	}
	finished := make(chan struct{})
	go func() { c.work.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(cleanupWait):
		c.srv.log.Warn("requests still running after their cancel; closing their sessions")
	}
	c.closeAll()
	<-finished
	c.rw.Close()
	close(c.done)
}

// shutdown is the server's drain reaching this client: what runs is
// cancelled (and still reported), then the connection ends.
func (c *conn) shutdown() {
	c.cancel()
	select {
	case <-c.done:
	case <-time.After(2*cleanupWait + c.srv.opts.WriteTimeout):
	}
}

// drain stops this client's pools from handing out sessions and lets what
// runs on them finish until ctx ends.
func (c *conn) drain(ctx context.Context) {
	c.mu.Lock()
	pools := make([]*clientPool, 0, len(c.pools))
	for _, p := range c.pools {
		pools = append(pools, p)
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range pools {
		wg.Go(func() { _ = p.pool.Shutdown(ctx) })
	}
	wg.Wait()
}

func (c *conn) closeAll() {
	c.mu.Lock()
	sessions, pools := c.sessions, c.pools
	c.sessions, c.pools = map[string]*securer.Session{}, map[string]*clientPool{}
	for _, e := range c.execs {
		e.cancel()
	}
	c.mu.Unlock()
	for _, s := range sessions {
		s.Close()
		c.unhold(1)
	}
	for _, p := range pools {
		p.pool.Close()
		c.unhold(p.size)
	}
}

// hold books n sessions against this client's quota and the server's
// limit.
func (c *conn) hold(n int) error {
	c.mu.Lock()
	if c.held+n > c.srv.opts.MaxSessionsPerClient {
		held := c.held
		c.mu.Unlock()
		return fmt.Errorf("%w: this connection holds %d session(s), pool members included; %d more would pass its quota of %d",
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

// send writes one event; a client that stopped reading is its own loss,
// noticed by the reader.
func (c *conn) send(ev any) {
	b, err := encodeEvent(ev)
	if err != nil {
		c.srv.log.Error("encode event", "err", err)
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.dead {
		return
	}
	// A client that stops reading must not hold executions (and their
	// containers) forever: past the deadline it counts as gone.
	if d, ok := c.rw.(interface{ SetWriteDeadline(time.Time) error }); ok {
		_ = d.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout))
	}
	if _, err := c.rw.Write(append(b, '\n')); err != nil {
		c.dead = true
		c.lost.Store(true)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.srv.log.Warn("client not reading; dropping it", "err", err)
		} else {
			// It left (EPIPE, ECONNRESET, closed): nothing to warn about.
			c.srv.log.Debug("client gone", "err", err)
		}
		c.markGone()
		c.cancel()
		c.rw.Close()
	}
}

func (c *conn) sendError(id string, err error) {
	c.send(newErrorEvent(id, err))
}

func (c *conn) name(prefix string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	return prefix + strconv.Itoa(c.next)
}

func (c *conn) handle(line []byte) {
	req, err := decodeRequest(line)
	if err != nil {
		// Tag the error with the request's id when it has a readable one.
		var head struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(line, &head)
		c.sendError(head.ID, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	if req.ID == "" && req.Op != "tool_result" {
		c.sendError("", fmt.Errorf("%w: every request needs an id", errBadRequest))
		return
	}
	switch req.Op {
	case "tool_result":
		// Answered inline: never waits.
		if err := c.toolResult(req); err != nil {
			c.sendError(req.ID, err)
		}
		return
	case "cancel":
		c.mu.Lock()
		e := c.execs[req.Target]
		c.mu.Unlock()
		if e == nil {
			c.sendError(req.ID, fmt.Errorf("%w: no running execution %q", errNotFound, req.Target))
			return
		}
		e.cancel()
		c.send(newReply("ok", req.ID))
		return
	case "ping":
		c.send(newReply("pong", req.ID))
		return
	case "auth":
		// Only reached once authenticated, or on a server without a token.
		c.send(newReply("ok", req.ID))
		return
	}
	j, err := c.prepare(req, int64(len(line)))
	if err != nil {
		c.sendError(req.ID, err)
		return
	}
	// Each request runs on its own: an execution waiting on R must not
	// hold up the tool answers it needs.
	go func() {
		defer c.work.Done()
		ev, err := c.run(j)
		// Everything the request held is given back before its final
		// event goes out: a client may reuse the id, or send more, as
		// soon as it has read it.
		c.finish(j)
		if err != nil {
			c.sendError(req.ID, c.explain(err))
		} else if ev != nil {
			c.send(ev)
		}
		c.unchain(j)
	}()
}

// job is a request served on its own goroutine.
type job struct {
	req  *request
	size int64
	do   func(*job) (any, error)

	exec *execution       // execute
	sess *securer.Session // execute on a session, restart_session
	pool *clientPool      // execute on a pool

	// A request on a session waits for the one before it (prev) and
	// lets the next go (mine) when it ends.
	chain      string
	prev, mine chan struct{}
	waited     bool // prev had ended when this one started
}

// run serves a job; a bug serving one request must not take the server,
// and every other client's sandboxes, down with it.
func (c *conn) run(j *job) (ev any, err error) {
	defer func() {
		if r := recover(); r != nil {
			c.srv.log.Error("panic serving a request", "op", j.req.Op, "panic", r, "stack", string(debug.Stack()))
			ev, err = nil, fmt.Errorf("internal error serving %s", j.req.Op)
		}
	}()
	if j.prev != nil {
		ctx := c.ctx
		if j.exec != nil {
			ctx = j.exec.ctx
		}
		select {
		case <-j.prev:
			j.waited = true
		case <-ctx.Done():
			if j.exec != nil && c.ctx.Err() == nil {
				return c.canceledResult(j, "canceled while queued behind earlier requests on its session; nothing ran"), nil
			}
			return nil, ctx.Err()
		}
	}
	return j.do(j)
}

// finish gives back what a job held.
func (c *conn) finish(j *job) {
	if j.exec != nil {
		j.exec.cancel()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if j.exec != nil && c.execs[j.req.ID] == j.exec {
		delete(c.execs, j.req.ID)
	}
	c.served--
	c.queued -= j.size
}

// unchain lets the next request on the session go, once this one and the
// one before it have ended.
func (c *conn) unchain(j *job) {
	if j.mine == nil {
		return
	}
	end := func() {
		c.mu.Lock()
		if c.tails[j.chain] == j.mine {
			delete(c.tails, j.chain)
		}
		c.mu.Unlock()
		close(j.mine)
	}
	if j.prev != nil && !j.waited {
		go func() { <-j.prev; end() }()
		return
	}
	end()
}

// explain turns what a request ended with into what the client is told.
func (c *conn) explain(err error) error {
	if (errors.Is(err, context.Canceled) || errors.Is(err, securer.ErrPoolClosed) || errors.Is(err, securer.ErrSessionClosed)) &&
		c.srv.isDraining() && !errors.Is(err, errDraining) {
		return fmt.Errorf("%w: %w", errDraining, err)
	}
	return err
}

func (c *conn) canceledResult(j *job, detail string) any {
	return newCanceledResult(j.req.ID, detail)
}

// prepare admits a request that runs on its own goroutine, in the order
// requests arrived: it finds the session or pool it names, registers an
// execution (so that a cancel on the next line finds it) and queues it
// behind the requests already on its session.
func (c *conn) prepare(req *request, size int64) (*job, error) {
	j := &job{req: req, size: size}
	switch req.Op {
	case "create_session":
		j.do = c.createSession
	case "create_pool":
		j.do = c.createPool
	case "close_session":
		j.do = c.closeSession
	case "close_pool":
		j.do = c.closePool
	case "pool_status":
		j.do = c.poolStatus
	case "restart_session":
		j.do, j.chain = c.restartSession, req.Session
	case "execute":
		j.do = c.execute
		if (req.Session == "") == (req.Pool == "") {
			return nil, fmt.Errorf("%w: execute needs exactly one of session and pool", errBadRequest)
		}
		// Code over the server's ceiling is refused before it is queued:
		// waiting requests must not hold much memory.
		if len(req.Code) > c.srv.opts.Base.MaxCodeBytes {
			return nil, fmt.Errorf("%w: code is %d bytes, over the server's %d", securer.ErrRejected, len(req.Code), c.srv.opts.Base.MaxCodeBytes)
		}
		j.chain = req.Session
	default:
		return nil, fmt.Errorf("%w: unknown op %q", errBadRequest, req.Op)
	}
	draining := c.srv.isDraining()
	if draining && !strings.HasPrefix(req.Op, "close_") && req.Op != "pool_status" {
		return nil, errDraining
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return nil, errDraining
	}
	if c.served >= maxInFlight {
		return nil, &retryError{fmt.Errorf("%w: %d requests of this connection are already being served or queued", errTooMany, maxInFlight), time.Second}
	}
	if c.queued+size > c.srv.opts.MaxQueuedBytes {
		return nil, &retryError{fmt.Errorf("%w: this connection's requests being served or queued hold %d bytes; %d more would pass its %d",
			errTooMany, c.queued, size, c.srv.opts.MaxQueuedBytes), time.Second}
	}
	if req.Op == "execute" || req.Op == "restart_session" {
		if req.Session != "" {
			if j.sess = c.sessions[req.Session]; j.sess == nil {
				return nil, c.missing("session", req.Session, draining)
			}
		} else if j.pool = c.pools[req.Pool]; j.pool == nil {
			return nil, c.missing("pool", req.Pool, draining)
		}
	}
	if req.Op == "execute" {
		if c.execs[req.ID] != nil {
			return nil, fmt.Errorf("%w: request id %q is already running", errBadRequest, req.ID)
		}
		ctx, cancel := context.WithCancel(c.ctx)
		j.exec = &execution{id: req.ID, ctx: ctx, cancel: cancel, calls: map[string]chan toolAnswer{}}
		c.execs[req.ID] = j.exec
	}
	if j.chain != "" {
		j.prev = c.tails[j.chain]
		j.mine = make(chan struct{})
		c.tails[j.chain] = j.mine
	}
	c.served++
	c.queued += size
	c.work.Add(1)
	return j, nil
}

func (c *conn) missing(kind, name string, draining bool) error {
	if draining {
		return errDraining
	}
	return fmt.Errorf("%w: no %s %q on this connection", errNotFound, kind, name)
}

// config turns a client's tools and options into a session config within
// the operator's limits and ceilings.
func (c *conn) config(tools []toolDecl, o *sessionOptions) (securer.Config, error) {
	cfg := c.srv.opts.Base
	cfg.Stdout, cfg.Stderr = nil, nil
	ceil := c.srv.opts.Ceilings
	if o != nil {
		max := c.srv.opts.Base.Limits
		pick := func(name string, asked, ceiling int64, into *int64) error {
			if asked < 0 || (ceiling > 0 && asked > ceiling) {
				return fmt.Errorf("%w: %s %d is over the server's %d", securer.ErrInvalidConfig, name, asked, ceiling)
			}
			if asked > 0 {
				*into = asked
			}
			return nil
		}
		var maxCalls, maxExecs int64
		if err := errors.Join(
			pick("memory_bytes", o.MemoryBytes, max.MemoryBytes, &cfg.Limits.MemoryBytes),
			pick("pids", o.Pids, max.Pids, &cfg.Limits.Pids),
			pick("tmp_bytes", o.TmpBytes, max.TmpBytes, &cfg.Limits.TmpBytes),
			pick("max_tool_calls (--max-tool-calls)", int64(o.MaxToolCalls), int64(ceil.MaxToolCalls), &maxCalls),
			pick("max_executions (--max-executions)", int64(o.MaxExecutions), int64(ceil.MaxExecutions), &maxExecs),
			pick("output_limit (--max-output)", o.OutputLimit, ceil.OutputLimit, &cfg.OutputLimit)); err != nil {
			return cfg, err
		}
		// The operator's file-size limit is the ceiling (it defaults to
		// the operator's /tmp size), itself capped at the engine's maximum
		// so that a huge operator value cannot wrap to "no ceiling".
		fsize := int64(cfg.Limits.FileSizeBytes)
		if o.FsizeBytes > securer.MaxFileSizeBytes {
			return cfg, fmt.Errorf("%w: fsize_bytes %d is over the maximum %d", securer.ErrInvalidConfig, o.FsizeBytes, int64(securer.MaxFileSizeBytes))
		}
		if err := pick("fsize_bytes", o.FsizeBytes, int64(min(max.FileSizeBytes, securer.MaxFileSizeBytes)), &fsize); err != nil {
			return cfg, err
		}
		cfg.Limits.FileSizeBytes = uint64(fsize)
		if maxCalls > 0 {
			cfg.MaxToolCalls = int(maxCalls)
		}
		if maxExecs > 0 {
			cfg.MaxExecutions = int(maxExecs)
		}
		if o.CPUs < 0 || (max.CPUs > 0 && o.CPUs > max.CPUs) {
			return cfg, fmt.Errorf("%w: cpus %g is over the server's %g", securer.ErrInvalidConfig, o.CPUs, max.CPUs)
		}
		if o.CPUs > 0 {
			cfg.Limits.CPUs = o.CPUs
		}
		d, err := c.timeout("timeout", o.Timeout)
		if err != nil {
			return cfg, err
		}
		if d > 0 {
			cfg.Timeout = d
		}
		if o.MaxCodeBytes < 0 || o.MaxCodeBytes > c.srv.opts.Base.MaxCodeBytes {
			return cfg, fmt.Errorf("%w: max_code_bytes %d is over the server's %d", securer.ErrInvalidConfig, o.MaxCodeBytes, c.srv.opts.Base.MaxCodeBytes)
		}
		if o.MaxCodeBytes > 0 {
			cfg.MaxCodeBytes = o.MaxCodeBytes
		}
		cfg.Preload = slices.Concat(cfg.Preload, o.Preload)
	}
	// Checked whole before anything else is built or a start slot is
	// taken: a huge declaration must not hold a slot for a start that
	// cannot succeed.
	if len(tools) > securer.MaxTools {
		return cfg, fmt.Errorf("%w: %d tools declared, over the limit of %d tools per session", securer.ErrInvalidConfig, len(tools), securer.MaxTools)
	}
	cfg.Tools = nil
	for _, d := range tools {
		timeout, err := c.timeout("tool timeout", d.Timeout)
		if err != nil {
			return cfg, err
		}
		t := securer.Tool{Name: d.Name, Description: d.Description, Timeout: timeout, Handler: c.clientTool(d.Name)}
		for _, a := range d.Args {
			t.Args = append(t.Args, securer.Arg{Name: a.Name, Type: a.Type})
		}
		cfg.Tools = append(cfg.Tools, t)
	}
	if err := securer.ValidateTools(cfg.Tools); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// timeout is seconds checked against the operator's --max-timeout.
func (c *conn) timeout(name string, v float64) (time.Duration, error) {
	d, err := seconds(name, v)
	if err != nil {
		return 0, err
	}
	if ceil := c.srv.opts.Ceilings.Timeout; ceil > 0 && d > ceil {
		return 0, fmt.Errorf("%w: %s %gs is over the server's ceiling of %s (--max-timeout)", securer.ErrInvalidConfig, name, v, ceil)
	}
	return d, nil
}

// maxSeconds bounds every duration a client gives (a week).
const maxSeconds = 7 * 24 * 3600

// seconds turns a client's seconds into a duration, refusing what is
// negative or absurdly long (which would overflow).
func seconds(name string, v float64) (time.Duration, error) {
	if v < 0 || v > maxSeconds || v != v {
		return 0, fmt.Errorf("%w: %s must be between 0 and %d seconds, got %g", securer.ErrInvalidConfig, name, maxSeconds, v)
	}
	return time.Duration(v * float64(time.Second)), nil
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
	cfg, err := c.config(j.req.Tools, j.req.Options)
	if err != nil {
		return nil, err
	}
	if err := c.hold(1); err != nil {
		return nil, err
	}
	var s *securer.Session
	if err := c.starting(func() (err error) { s, err = securer.NewSession(c.ctx, cfg); return err }); err != nil {
		c.unhold(1)
		return nil, err
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
	return sessionEvent{Type: "session", ID: j.req.ID, Session: name, Sandboxed: !cfg.UnsafeNoSandbox}, nil
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
	if err := c.starting(func() error { return j.sess.Restart(c.ctx) }); err != nil {
		return nil, err
	}
	return newReply("restarted", j.req.ID), nil
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
	if req.Size < 1 || req.Size > c.srv.opts.MaxSessions {
		return nil, fmt.Errorf("%w: pool size must be between 1 and the server's %d sessions, got %d", errBadRequest, c.srv.opts.MaxSessions, req.Size)
	}
	cfg, err := c.config(req.Tools, req.Options)
	if err != nil {
		return nil, err
	}
	if err := c.hold(req.Size); err != nil {
		return nil, err
	}
	var p *securer.Pool
	if err := c.starting(func() (err error) { p, err = securer.NewPool(c.ctx, cfg, req.Size, reset); return err }); err != nil {
		c.unhold(req.Size)
		return nil, err
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
	return newPoolEvent(req.ID, name, p.Status()), nil
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

// execKey carries the execution to the client tools it calls.
type execKey struct{}

func (c *conn) execute(j *job) (any, error) {
	req, e := j.req, j.exec
	timeout, err := c.timeout("timeout", req.Timeout)
	if err != nil {
		return nil, err
	}
	if err := c.srv.admitExecution(); err != nil {
		return nil, err
	}
	defer c.srv.executionDone()
	ctx := context.WithValue(e.ctx, execKey{}, e)
	stdout, stderr := &textStream{c: c, id: req.ID, kind: "stdout"}, &textStream{c: c, id: req.ID, kind: "stderr"}
	opts := securer.ExecOptions{Fresh: req.Fresh, Timeout: timeout, Stdout: stdout, Stderr: stderr}
	var res *securer.Result
	if j.sess != nil {
		res, err = j.sess.ExecuteWith(ctx, req.Code, opts)
	} else {
		res, err = j.pool.pool.ExecuteWith(ctx, req.Code, opts)
	}
	stdout.flush()
	stderr.flush()
	if res == nil && j.pool != nil {
		switch {
		case errors.Is(err, securer.ErrPoolClosed) && c.srv.isDraining():
			return nil, fmt.Errorf("%w: %w", errDraining, err)
		case errors.Is(err, context.Canceled) && c.ctx.Err() == nil:
			// Cancelled while waiting for a pool session: still a result.
			return c.canceledResult(j, "canceled while waiting for a pool session; nothing ran"), nil
		}
	}
	if res == nil {
		return nil, err
	}
	return newResultEvent(req.ID, res), nil
}

// clientTool is a tool the client answers: the call goes out as an event,
// the handler waits for the client's tool_result or the call's end.
func (c *conn) clientTool(name string) securer.ToolFunc {
	return func(ctx context.Context, args map[string]securer.Value) (any, error) {
		e, _ := ctx.Value(execKey{}).(*execution)
		if e == nil {
			return nil, errors.New("tool called outside an execution")
		}
		e.mu.Lock()
		e.nextCall++
		call := e.id + "." + strconv.Itoa(e.nextCall)
		ch := make(chan toolAnswer, 1)
		e.calls[call] = ch
		e.mu.Unlock()
		defer func() {
			e.mu.Lock()
			delete(e.calls, call)
			e.mu.Unlock()
		}()
		c.send(newToolCallEvent(e.id, call, name, args))
		select {
		case a := <-ch:
			return a.value, a.err
		case <-c.gone:
			return nil, errors.New("the client closed its side of the connection: it cannot answer tool calls")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// toolResult hands a client's answer to the waiting tool call.
func (c *conn) toolResult(req *request) error {
	c.mu.Lock()
	var ch chan toolAnswer
	for _, e := range c.execs {
		e.mu.Lock()
		if x, ok := e.calls[req.Call]; ok {
			ch = x
		}
		e.mu.Unlock()
	}
	c.mu.Unlock()
	if ch == nil {
		return fmt.Errorf("%w: no tool call %q is waiting (answered already, or its execution ended)", errNotFound, req.Call)
	}
	var a toolAnswer
	switch {
	case req.Error != nil:
		a.err = errors.New(*req.Error)
	case len(req.Typed) > 0:
		v, err := rvalue.Decode(req.Typed, rvalue.DecodeOptions{})
		if err != nil {
			return fmt.Errorf("%w: typed value: %v", errBadRequest, err)
		}
		a.value = v
	case len(req.Value) > 0:
		a.value = json.RawMessage(req.Value)
	}
	select {
	case ch <- a:
	default:
		return fmt.Errorf("%w: tool call %q was answered already", errBadRequest, req.Call)
	}
	return nil
}

// textStream turns an execution's output into stdout/stderr events,
// never splitting a UTF-8 character between two events.
type textStream struct {
	c       *conn
	id      string
	kind    string
	mu      sync.Mutex
	partial []byte
}

func (t *textStream) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := append(t.partial, p...)
	cut := len(b)
	// Hold back an incomplete character at the end (at most 3 bytes).
	for i := len(b) - 1; i >= 0 && i >= len(b)-3; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				cut = i
			}
			break
		}
	}
	t.partial = append([]byte(nil), b[cut:]...)
	if cut > 0 {
		t.c.send(textEvent{Type: t.kind, ID: t.id, Text: string(b[:cut])})
	}
	return len(p), nil
}

func (t *textStream) flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.partial) > 0 {
		t.c.send(textEvent{Type: t.kind, ID: t.id, Text: string(t.partial)})
		t.partial = nil
	}
}

// hasInput tells whether the client has spoken: its first line has been
// read, or bytes from it wait in the kernel, unread.
func (c *conn) hasInput() bool {
	if c.spoke.Load() {
		return true
	}
	sc, ok := c.rw.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	in := false
	_ = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 0); err == nil && n > 0 {
			in = fds[0].Revents&unix.POLLIN != 0
		}
	})
	return in
}
