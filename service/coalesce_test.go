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
	out := &textStream{c: c, id: "1", kind: "stdout"}
	line := strings.Repeat("x", 99) + "\n"
	n := 3 * coalesceBytes / len(line)
	for range n {
		out.Write([]byte(line))
	}
	// Full batches go at once, without waiting for the timer.
	if evs := rw.events(t); len(evs) != 2 {
		t.Fatalf("%d events after %d bytes, want 2 full batches", len(evs), n*len(line))
	}
	// The rest goes once the batch is coalesceDelay old.
	deadline := time.Now().Add(2 * time.Second)
	var total int
	for time.Now().Before(deadline) {
		total = 0
		evs := rw.events(t)
		for _, ev := range evs {
			total += len(ev["text"].(string))
		}
		if total == n*len(line) {
			if len(evs) != 3 {
				t.Errorf("%d events, want 3", len(evs))
			}
			return
		}
		time.Sleep(coalesceDelay)
	}
	t.Fatalf("%d of %d bytes sent: the last batch was not flushed by its timer", total, n*len(line))
}
