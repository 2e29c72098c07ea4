package securer

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// capture keeps a stream's head and tail within a byte budget; what falls
// between is counted and replaced by a marker, so a flood never grows host
// memory past the cap.
type capture struct {
	max    int
	head   []byte
	tail   []byte // ring of the last max/2 bytes once head is full
	tailAt int
	total  int64
	live   io.Writer
	// limit, when positive, is the most the stream may write: past it the
	// live writer gets nothing more and overLimit is closed once.
	limit     int64
	overLimit chan struct{}
}

func newCapture(max int, live io.Writer, limit int64) *capture {
	return &capture{max: max, live: live, limit: limit, overLimit: make(chan struct{})}
}

func (c *capture) write(p []byte) {
	before := c.total
	c.total += int64(len(p))
	if c.limit > 0 && c.total > c.limit {
		if before <= c.limit {
			if c.live != nil {
				_, _ = c.live.Write(p[:c.limit-before])
			}
			close(c.overLimit)
		}
	} else if c.live != nil {
		_, _ = c.live.Write(p)
	}
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

// text returns the kept output and how many bytes were elided.
func (c *capture) text() (string, int64) {
	tail := append(append([]byte(nil), c.tail[c.tailAt:]...), c.tail[:c.tailAt]...)
	elided := c.total - int64(len(c.head)) - int64(len(tail))
	if elided <= 0 {
		return string(c.head) + string(tail), 0
	}
	return fmt.Sprintf("%s\n[... %d bytes elided ...]\n%s", c.head, elided, tail), elided
}

// pipeReader reads one of R's output pipes. Reading and delivering happen
// under one lock so that drain, called once R has reported a result, can
// guarantee that every byte R wrote before is delivered.
type pipeReader struct {
	f    *os.File
	raw  syscall.RawConn
	mu   sync.Mutex
	sink *capture // nil between executions: output is dropped
	buf  []byte
	done chan struct{}
}

func newPipeReader(f *os.File) (*pipeReader, error) {
	raw, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	p := &pipeReader{f: f, raw: raw, buf: make([]byte, 32<<10), done: make(chan struct{})}
	go p.loop()
	return p, nil
}

func (p *pipeReader) loop() {
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
func (p *pipeReader) readOnce(fd int) (n int, again bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, err := unix.Read(fd, p.buf)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		return 0, true
	}
	if n > 0 && p.sink != nil {
		p.sink.write(p.buf[:n])
	}
	if n < 0 {
		n = 0
	}
	return n, false
}

// setSink starts (or, with nil, stops) delivering to c; it first delivers
// whatever is already in the pipe to the previous sink.
func (p *pipeReader) setSink(c *capture) {
	p.drain()
	p.mu.Lock()
	p.sink = c
	p.mu.Unlock()
}

// drain delivers what is in the pipe now, and no more: a background
// writer cannot keep it going (the FIONREAD count bounds it).
func (p *pipeReader) drain() {
	_ = p.raw.Control(func(fd uintptr) {
		left, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ) // FIONREAD
		if err != nil {
			return
		}
		for left > 0 {
			n, again := p.readOnce(int(fd))
			if again || n == 0 {
				return
			}
			left -= n
		}
	})
}

func (p *pipeReader) close() {
	_ = p.f.Close()
}
