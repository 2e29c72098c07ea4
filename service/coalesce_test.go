package service

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestOutputCoalesced(t *testing.T) {
	tests := []struct {
		name  string
		write func(c *conn, out, errs *textStream)
		// want: the events' type and text, in order.
		want []string
	}{
		{"lines joined", func(c *conn, out, _ *textStream) {
			for i := range 3 {
				fmt.Fprintf(out, "line %d\n", i)
			}
		}, []string{"stdout:line 0\nline 1\nline 2\n"}},
		{"other stream flushes first", func(c *conn, out, errs *textStream) {
			out.Write([]byte("a"))
			out.Write([]byte("b"))
			errs.Write([]byte("E"))
			out.Write([]byte("c"))
		}, []string{"stdout:ab", "stderr:E", "stdout:c"}},
		{"other event flushes first", func(c *conn, out, _ *textStream) {
			out.Write([]byte("before"))
			c.send(newToolCallEvent("1", "1.1", "f", nil))
			out.Write([]byte("after"))
		}, []string{"stdout:before", "tool_call:", "stdout:after"}},
		{"another execution flushes first", func(c *conn, out, _ *textStream) {
			out.Write([]byte("x"))
			other := &textStream{c: c, id: "2", kind: "stdout"}
			other.Write([]byte("y"))
			out.Write([]byte("z"))
		}, []string{"stdout:x", "stdout:y", "stdout:z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rw := &bufConn{}
			c := newConn(context.Background(), New(Options{}), rw)
			out, errs := &textStream{c: c, id: "1", kind: "stdout"}, &textStream{c: c, id: "1", kind: "stderr"}
			tt.write(c, out, errs)
			c.flushPending()
			var got []string
			for _, ev := range rw.events(t) {
				text, _ := ev["text"].(string)
				got = append(got, ev["type"].(string)+":"+text)
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("events %q, want %q", got, tt.want)
			}
		})
	}
}

func TestOutputBatchBounds(t *testing.T) {
	rw := &bufConn{}
	c := newConn(context.Background(), New(Options{}), rw)
	// No timer fires while the lines are written (a loaded machine may
	// take longer than coalesceDelay to write them): only size sends.
	c.out.delay = time.Hour
	out := &textStream{c: c, id: "1", kind: "stdout"}
	line := strings.Repeat("x", 99) + "\n"
	n := 3 * coalesceBytes / len(line)
	for range n {
		out.Write([]byte(line))
	}
	// Full batches go at once, without waiting for the timer.
	evs := rw.events(t)
	if len(evs) != 2 {
		t.Fatalf("%d events after %d bytes, want 2 full batches", len(evs), n*len(line))
	}
	for i, ev := range evs {
		if l := len(ev["text"].(string)); l < coalesceBytes || l >= coalesceBytes+len(line) {
			t.Errorf("batch %d holds %d bytes, want %d up to one line more", i, l, coalesceBytes)
		}
	}
	c.flushPending()
	total := 0
	evs = rw.events(t)
	for _, ev := range evs {
		total += len(ev["text"].(string))
	}
	if len(evs) != 3 || total != n*len(line) {
		t.Errorf("%d events of %d bytes in all, want 3 of %d", len(evs), total, n*len(line))
	}
}

// TestOutputBatchTimer: a batch that never fills goes once it is
// coalesceDelay old.
func TestOutputBatchTimer(t *testing.T) {
	rw := &bufConn{}
	c := newConn(context.Background(), New(Options{}), rw)
	out := &textStream{c: c, id: "1", kind: "stdout"}
	out.Write([]byte("short"))
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(coalesceDelay) {
		rw.mu.Lock()
		sent := rw.out.Len() > 0
		rw.mu.Unlock()
		if !sent {
			continue
		}
		if evs := rw.events(t); len(evs) != 1 || evs[0]["text"] != "short" {
			t.Fatalf("events %v, want the one batch", evs)
		}
		return
	}
	t.Fatal("the batch was not flushed by its timer")
}
