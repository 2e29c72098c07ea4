// Package capture owns R's output streams on the host side: reading a
// pipe so that everything written before a point can be drained and
// delivered, and keeping a stream's head and tail within a byte budget
// while passing it on live and watching an output limit.
package capture

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Capture keeps a stream's head and tail within a byte budget; what falls
// between is counted and replaced by a marker, so a flood never grows host
// memory past the cap.
type Capture struct {
	max    int
	head   []byte
	tail   []byte // ring of the last max/2 bytes once head is full
	tailAt int
	total  int64
	// kept counts the bytes taken into head and tail: all of them but
	// those past the limit.
	kept int64
	live io.Writer
	// limit, when positive, is the most the stream may write: past it
	// nothing more is passed on or kept (what the result keeps agrees with
	// what was streamed), and overLimit is closed once.
	limit     int64
	overLimit chan struct{}
}

// Total is how many bytes the stream has written in all.
func (c *Capture) Total() int64 { return c.total }

// OverLimit is closed once the stream has written more than its limit.
func (c *Capture) OverLimit() <-chan struct{} { return c.overLimit }

// New returns a capture that keeps max bytes (head and tail), writes
// through to live (if not nil) and, when limit is positive, stops passing
// on and keeping output past limit bytes and closes OverLimit.
func New(max int, live io.Writer, limit int64) *Capture {
	return &Capture{max: max, live: live, limit: limit, overLimit: make(chan struct{})}
}

// Write takes one chunk of the stream.
func (c *Capture) Write(p []byte) {
	before := c.total
	c.total += int64(len(p))
	if c.limit > 0 && c.total > c.limit {
		if before > c.limit {
			return // past the limit: counted, neither passed on nor kept
		}
		p = p[:c.limit-before]
		defer close(c.overLimit)
	}
	if c.live != nil && len(p) > 0 {
		c.writeLive(p)
	}
	c.kept += int64(len(p))
	headCap := c.max - c.max/2
	if n := min(headCap-len(c.head), len(p)); n > 0 {
		c.head = append(c.head, p[:n]...)
		p = p[n:]
	}
	tailCap := c.max / 2
	if tailCap == 0 {
		return
	}
	for len(p) > 0 {
		if len(c.tail) < tailCap {
			n := min(tailCap-len(c.tail), len(p))
			c.tail = append(c.tail, p[:n]...)
			p = p[n:]
			continue
		}
		n := copy(c.tail[c.tailAt:], p)
		c.tailAt = (c.tailAt + n) % tailCap
		p = p[n:]
	}
}

// Text returns the kept output and how many bytes were elided from its
// middle. Output past the limit is in neither (Total counts it).
func (c *Capture) Text() (string, int64) {
	tail := append(append([]byte(nil), c.tail[c.tailAt:]...), c.tail[:c.tailAt]...)
	elided := c.kept - int64(len(c.head)) - int64(len(tail))
	if elided <= 0 {
		return string(c.head) + string(tail), 0
	}
	return fmt.Sprintf("%s\n[... %d bytes elided ...]\n%s", c.head, elided, tail), elided
}

// Pipe reads one of R's output pipes. Reading and delivering happen
// under one lock so that drain, called once R has reported a result, can
// guarantee that every byte R wrote before is delivered.
type Pipe struct {
	f    *os.File
	raw  syscall.RawConn
	mu   sync.Mutex
	sink *Capture // nil between executions: output is dropped
	buf  []byte
	done chan struct{}
}

// NewPipe starts reading f, the read end of a pipe, dropping what it
// reads until SetSink.
func NewPipe(f *os.File) (*Pipe, error) {
	raw, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	p := &Pipe{f: f, raw: raw, buf: make([]byte, 32<<10), done: make(chan struct{})}
	go p.loop()
	return p, nil
}

func (p *Pipe) loop() {
	defer close(p.done)
	for {
		var eof bool
		err := p.raw.Read(func(fd uintptr) bool {
			n, again := p.readOnce(int(fd))
			eof = n == 0 && !again
			return !again
		})
		if err != nil || eof {
			return
		}
	}
}

// readOnce reads and delivers one chunk; again means nothing was ready.
func (p *Pipe) readOnce(fd int) (n int, again bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.readOnceLocked(fd)
}

func (p *Pipe) readOnceLocked(fd int) (n int, again bool) {
	n, err := unix.Read(fd, p.buf)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		return 0, true
	}
	if n > 0 && p.sink != nil {
		p.sink.Write(p.buf[:n])
	}
	if n < 0 {
		n = 0
	}
	return n, false
}

// SetSink starts (or, with nil, stops) delivering to c; it first delivers
// whatever is already in the pipe to the previous sink.
func (p *Pipe) SetSink(c *Capture) {
	p.Drain()
	p.mu.Lock()
	p.sink = c
	p.mu.Unlock()
}

// Drain delivers what is in the pipe now, and no more: a background
// writer cannot keep it going (the FIONREAD count bounds it). What the
// reader has already taken from the pipe is delivered too: Drain waits
// for a delivery under way.
func (p *Pipe) Drain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.raw.Control(func(fd uintptr) {
		left, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ) // FIONREAD
		if err != nil {
			return
		}
		for left > 0 {
			n, again := p.readOnceLocked(int(fd))
			if again || n == 0 {
				return
			}
			left -= n
		}
	})
}

// Close closes the pipe; the reader ends.
func (p *Pipe) Close() {
	_ = p.f.Close()
}

// writeLive passes p on to the caller's writer. A writer that panics gets
// nothing more: its panic must not take down the program (R's output is
// still kept), and a Write error is the writer's own business.
func (c *Capture) writeLive(p []byte) {
	defer func() {
		if r := recover(); r != nil {
			c.live = nil
		}
	}()
	_, _ = c.live.Write(p)
}
