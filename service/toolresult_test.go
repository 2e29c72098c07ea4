package service

import (
	"context"
	"strings"
	"testing"
	"time"
)

// waitingToolCall starts a client tool call of a running execution "7" on
// c and returns once its tool_call event is out; done gets the handler's
// error.
func waitingToolCall(t *testing.T, c *conn, rw *bufConn) (done chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := newExecution("7", ctx, cancel)
	c.mu.Lock()
	c.execs["7"] = e
	c.mu.Unlock()
	done = make(chan error, 1)
	go func() {
		_, err := c.clientTool("add")(context.WithValue(ctx, execKey{}, e), nil)
		done <- err
	}()
	deadline := time.Now().Add(time.Minute)
	for {
		rw.mu.Lock()
		out := rw.out.String()
		rw.mu.Unlock()
		if strings.Contains(out, `"tool_call"`) {
			return done
		}
		if time.Now().After(deadline) {
			t.Fatal("no tool_call event")
		}
		time.Sleep(time.Millisecond)
	}
}

// errorCodes lists the codes of the error events rw got.
func errorCodes(t *testing.T, rw *bufConn) []string {
	t.Helper()
	var codes []string
	for _, ev := range rw.events(t) {
		if ev["type"] == "error" {
			codes = append(codes, ev["error"].(map[string]any)["code"].(string))
		}
	}
	return codes
}

// A tool_result sent right after a cancel (on the next line) is refused
// with not_found every time: the cancel ends the waiting at once, whether
// or not the tool's handler has noticed it yet. Before, it was sometimes
// taken silently and sometimes not_found.
func TestToolResultAfterCancel(t *testing.T) {
	for i := range 200 {
		rw := &bufConn{}
		c := newConn(context.Background(), New(Options{}), rw)
		done := waitingToolCall(t, c, rw)
		c.handle([]byte(`{"op":"cancel","id":"c","target":"7"}`))
		c.handle([]byte(`{"op":"tool_result","call":"7.1","value":1}`))
		if codes := errorCodes(t, rw); len(codes) != 1 || codes[0] != CodeNotFound {
			t.Fatalf("run %d: error codes %v after cancel; want [not_found]", i, codes)
		}
		if err := <-done; err == nil {
			t.Fatalf("run %d: the cancelled call returned no error", i)
		}
	}
}

// A call takes one answer: a second tool_result for it is not_found,
// whether or not the handler has taken the first yet.
func TestToolResultAnsweredTwice(t *testing.T) {
	for i := range 200 {
		rw := &bufConn{}
		c := newConn(context.Background(), New(Options{}), rw)
		done := waitingToolCall(t, c, rw)
		c.handle([]byte(`{"op":"tool_result","call":"7.1","value":1}`))
		c.handle([]byte(`{"op":"tool_result","call":"7.1","value":2}`))
		if codes := errorCodes(t, rw); len(codes) != 1 || codes[0] != CodeNotFound {
			t.Fatalf("run %d: error codes %v; want [not_found] for the second answer", i, codes)
		}
		if err := <-done; err != nil {
			t.Fatalf("run %d: the answered call failed: %v", i, err)
		}
	}
}
