package service

import "time"

// Output coalescing: R writes its output in many small pieces (a cat()
// per line is one piece each), and an event per piece costs the client a
// JSON line to parse and a callback for a few bytes. Adjacent pieces of
// one stream of one execution are joined into one event, sent once the
// batch holds coalesceBytes or is coalesceDelay old, whichever comes
// first, and before any other event: the order of everything on the wire
// stays that in which it was produced.
const (
	coalesceBytes = 64 << 10
	coalesceDelay = 5 * time.Millisecond
)

// outBatch is the output not yet sent (guarded by conn.wmu).
type outBatch struct {
	id, kind string
	text     []byte
	timer    *time.Timer
	gen      uint64        // which batch the timer was armed for
	wbuf     []byte        // reused: the bytes of one write
	delay    time.Duration // how old a batch gets; 0: coalesceDelay (tests set it)
}

// sendText queues output of an execution (id) on a stream (kind); text
// never ends inside a UTF-8 character (textStream holds those back).
func (c *conn) sendText(id, kind, text string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.dead {
		return
	}
	b := &c.out
	if len(b.text) > 0 && (b.id != id || b.kind != kind) {
		c.writeLocked(nil)
	}
	if len(b.text) == 0 {
		b.id, b.kind = id, kind
		b.gen++
		gen := b.gen
		// A timer of an earlier batch firing late finds a newer gen and
		// does nothing.
		if b.timer != nil {
			b.timer.Stop()
		}
		delay := b.delay
		if delay == 0 {
			delay = coalesceDelay
		}
		b.timer = time.AfterFunc(delay, func() { c.flushOutput(gen) })
	}
	b.text = append(b.text, text...)
	if len(b.text) >= coalesceBytes {
		c.writeLocked(nil)
	}
}

// flushOutput sends the batch gen if it is still waiting.
func (c *conn) flushOutput(gen uint64) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.out.gen == gen && len(c.out.text) > 0 && !c.dead {
		c.writeLocked(nil)
	}
}

// flushPending sends the output batch now.
func (c *conn) flushPending() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.writeLocked(nil)
}

// stopOutput ends the batch timer (the connection is closing).
func (c *conn) stopOutput() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.out.timer != nil {
		c.out.timer.Stop()
	}
}
