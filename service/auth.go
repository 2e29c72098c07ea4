package service

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Authentication: a client's first request on a server with a token.

// evict closes a connection still authenticating, to make room. A
// connection is closed only once the victims it evicted itself are: its
// client may take the close for the end of its turn, and the server must
// not then still hold more connections than the cap (a newcomer evicted
// while still closing its own victims did).
func (c *conn) evict() {
	c.cancel()
	if c.entered != nil {
		<-c.entered
	}
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
