package service

import (
	"context"
	"fmt"
	"testing"

	securer "github.com/securer-runc/securer-runc"
)

// Whatever a drain refuses or ends, the client gets one code and one
// message: before, an execution cancelled by the drain said "the server
// is shutting down: context canceled", a pool closed by it "...: pool
// closed".
func TestDrainErrorIsStable(t *testing.T) {
	srv := New(Options{})
	srv.mu.Lock()
	srv.draining = true
	srv.mu.Unlock()
	for _, err := range []error{
		errDraining,
		context.Canceled,
		fmt.Errorf("waiting for a pool session: %w", context.Canceled),
		securer.ErrPoolClosed,
		securer.ErrSessionClosed,
		fmt.Errorf("%w: %w", errDraining, securer.ErrPoolClosed),
		fmt.Errorf("%w: %w", errDraining, context.Canceled),
	} {
		rw := &bufConn{}
		c := newConn(context.Background(), srv, rw)
		c.sendError("9", c.explain(err))
		evs := rw.events(t)
		if len(evs) != 1 {
			t.Fatalf("%v: events %v", err, evs)
		}
		body := evs[0]["error"].(map[string]any)
		if evs[0]["id"] != "9" || body["code"] != CodeDraining || body["message"] != errDraining.Error() {
			t.Errorf("%v: event %v; want code %s, message %q", err, evs[0], CodeDraining, errDraining.Error())
		}
	}
}
