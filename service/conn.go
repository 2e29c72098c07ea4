package service

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/bridge"
)

// conn is one client: its sessions, pools and executions.
type conn struct {
	srv  *Server
	rw   io.ReadWriteCloser
	addr string // source, for the unauthenticated caps
	// spoke: its first line has been read (it is being checked, and will
	// leave the unauthenticated books at once): not to be evicted.
	spoke atomic.Bool
	// entered is closed once enterPreauth has closed the connections it
	// evicted to make room for this one (nil: not through enterPreauth).
	entered chan struct{}

	wmu  sync.Mutex // one event at a time on the wire
	dead bool       // a write failed: the client is gone
	out  outBatch   // output waiting to be sent (under wmu)

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
	who  string        // the client's name in log records: c1, c2...
	log  *slog.Logger  // with who (request-scoped records)

	mu       sync.Mutex
	sessions map[string]*securer.Session
	pools    map[string]*clientPool
	execs    map[string]*execution
	// tails holds, per session, the request queued last on it: the next
	// one waits for it, so that a session serves requests in arrival
	// order.
	tails  map[string]chan struct{}
	held   int // sessions held, pool members and starting ones included
	served int // requests being served or queued
	// lastDone is when served last fell to zero: the idle timeout counts
	// from there, not from the request that started the work.
	lastDone time.Time
	queued   int64 // bytes of those requests
	closing  bool  // no new work: the connection is ending
	next     int
	work     sync.WaitGroup // requests being served
}

type clientPool struct {
	pool *securer.Pool
	size int
}

func newConn(ctx context.Context, s *Server, rw io.ReadWriteCloser) *conn {
	c := &conn{srv: s, rw: rw, addr: addrKey(rw), sessions: map[string]*securer.Session{},
		pools: map[string]*clientPool{}, execs: map[string]*execution{}, tails: map[string]chan struct{}{},
		gone: make(chan struct{}), done: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(ctx)
	c.who = "c" + strconv.FormatUint(s.clientSeq.Add(1), 10)
	c.log = s.log.With("client", c.who)
	return c
}

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
			if left := c.idleLeft(time.Now()); left > 0 {
				idle.Reset(left)
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

// idleLeft is how much longer the connection may stay silent at now: the
// whole timeout while something of it is served, else what remains since
// its last request ended (a session that took long to start must not
// leave its client a moment to send the next request).
func (c *conn) idleLeft(now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.served > 0 {
		return c.srv.opts.IdleTimeout
	}
	return c.srv.opts.IdleTimeout - now.Sub(c.lastDone)
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
	c.stopOutput()
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

// send writes one event, after the output batched before it; a client
// that stopped reading is its own loss, noticed by the reader.
func (c *conn) send(ev any) {
	b, err := encodeEvent(ev)
	if err != nil {
		c.srv.log.Error("encode event", "err", err)
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.writeLocked(b)
}

// writeLocked writes the pending output batch, if any, then ev (an
// encoded event, or nil), in one write. c.wmu is held.
func (c *conn) writeLocked(ev []byte) {
	if c.dead {
		return
	}
	w := c.out.wbuf[:0]
	if len(c.out.text) > 0 {
		t, err := encodeEvent(textEvent{Type: c.out.kind, ID: c.out.id, Text: string(c.out.text)})
		c.out.text = c.out.text[:0]
		if err != nil {
			c.srv.log.Error("encode event", "err", err)
		} else {
			w = append(append(w, t...), '\n')
		}
	}
	if ev != nil {
		w = append(append(w, ev...), '\n')
	}
	// Keep a buffer of a batch's size, not one of a rare huge event.
	if cap(w) <= 2*coalesceBytes {
		c.out.wbuf = w
	} else {
		c.out.wbuf = nil
	}
	if len(w) == 0 {
		return
	}
	// A client that stops reading must not hold executions (and their
	// containers) forever: past the deadline it counts as gone.
	if d, ok := c.rw.(interface{ SetWriteDeadline(time.Time) error }); ok {
		_ = d.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout))
	}
	if _, err := c.rw.Write(w); err != nil {
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
	if errors.Is(err, errDraining) {
		// One code and message for whatever the drain refused or ended
		// (what it interrupted, "context canceled" or a closed pool, is
		// no news to the client).
		err = errDraining
	}
	c.observeError(id, err)
	c.send(newErrorEvent(id, err))
}

func (c *conn) name(prefix string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	return prefix + strconv.Itoa(c.next)
}
