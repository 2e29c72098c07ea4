package integration

// Issue 14: tool calls the client answers are cancellable. The protocol
// is driven directly, by a client that never answers: the execution ends
// at its timeout, and the client is told (tool_cancelled) before the
// result. And a Go tool that ignores its context does not hold an
// execution past its timeout.

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

var slowTool = map[string]any{"name": "slow", "description": "A tool the client never answers"}

// cancelledCall checks a tool_cancelled event: for call, with reason.
func cancelledCall(t *testing.T, ev map[string]any, call any, reason string) {
	t.Helper()
	if ev["type"] != "tool_cancelled" || ev["call"] != call || ev["reason"] != reason {
		t.Errorf("got %v, want tool_cancelled for call %v with reason %s (before the result)", ev, call, reason)
	}
}

func TestServiceToolCancelled(t *testing.T) {
	c, _, _ := startService(t, baseConfig(), 8)
	sess := c.request(map[string]any{"op": "create_session", "id": "1", "tools": []any{slowTool}}, "session")["session"].(string)

	// Timeout 2, the tool never answered: tool_cancelled, then the result,
	// at about 2 s.
	start := time.Now()
	c.send(map[string]any{"op": "execute", "id": "2", "session": sess, "code": "slow()", "timeout": 2})
	call := c.wait("2", "tool_call")["call"]
	ev := c.wait("2", "tool_cancelled", "result")
	cancelledAt := time.Since(start)
	cancelledCall(t, ev, call, "timeout")
	res := c.wait("2", "result")
	took := time.Since(start)
	if r := res["result"].(map[string]any); r["verdict"] != "timeout" {
		t.Errorf("verdict %v, want timeout", r["verdict"])
	}
	t.Logf("timeout 2 s, tool never answered: tool_cancelled at %s, result at %s", cancelledAt.Round(time.Millisecond), took.Round(time.Millisecond))
	if took < 2*time.Second || took > 3*time.Second {
		t.Errorf("the result came %s after the execute; want about 2 s (the timeout)", took)
	}
	// The late answer is not_found, and harms nothing.
	c.send(map[string]any{"op": "tool_result", "call": call, "value": 1})
	if ev := c.wait("", "error"); errCodeOf(ev) != "not_found" {
		t.Errorf("late tool_result: %v", ev)
	}
	if ev := c.request(map[string]any{"op": "execute", "id": "3", "session": sess, "code": "1 + 1"}, "result"); ev["value_plain"] != 2.0 {
		t.Errorf("after the timeout: %v", ev)
	}

	// A cancel: tool_cancelled (canceled) before the cancel's ok and the
	// result.
	c.send(map[string]any{"op": "execute", "id": "4", "session": sess, "code": "slow()", "timeout": 30})
	call = c.wait("4", "tool_call")["call"]
	start = time.Now()
	c.send(map[string]any{"op": "cancel", "id": "5", "target": "4"})
	cancelledCall(t, c.wait("4", "tool_cancelled", "result"), call, "canceled")
	c.wait("5", "ok")
	if r := c.wait("4", "result")["result"].(map[string]any); r["verdict"] != "canceled" {
		t.Errorf("cancel: verdict %v", r["verdict"])
	}
	t.Logf("cancel: result %s after it", time.Since(start).Round(time.Millisecond))
	c.send(map[string]any{"op": "tool_result", "call": call, "value": 1})
	if ev := c.wait("", "error"); errCodeOf(ev) != "not_found" {
		t.Errorf("tool_result after the cancel: %v", ev)
	}

	// The tool's own timeout: the client is told at once, R gets an error
	// and the execution goes on.
	sess2 := c.request(map[string]any{"op": "create_session", "id": "6",
		"tools": []any{map[string]any{"name": "slow", "description": "times out", "timeout": 0.5}}}, "session")["session"].(string)
	start = time.Now()
	c.send(map[string]any{"op": "execute", "id": "7", "session": sess2, "timeout": 20,
		"code": `tryCatch(slow(), error = function(e) paste("caught:", conditionMessage(e)))`})
	call = c.wait("7", "tool_call")["call"]
	cancelledCall(t, c.wait("7", "tool_cancelled", "result"), call, "timeout")
	res = c.wait("7", "result")
	if v, _ := res["value_plain"].(string); !strings.HasPrefix(v, "caught:") || !strings.Contains(v, "timed out") {
		t.Errorf("the tool's timeout reached R as %v", res["value_plain"])
	}
	t.Logf("tool timeout 0.5 s: result at %s", time.Since(start).Round(time.Millisecond))

	// Closing the session ends the execution: its call is reported
	// (ended) before the execution's final event.
	c.send(map[string]any{"op": "execute", "id": "8", "session": sess, "code": "slow()", "timeout": 30})
	call = c.wait("8", "tool_call")["call"]
	c.send(map[string]any{"op": "close_session", "id": "9", "session": sess})
	ev = c.wait("8", "tool_cancelled", "result", "error")
	cancelledCall(t, ev, call, "ended")
	end := c.wait("8", "result", "error")
	t.Logf("close_session: the execution ended with %v", end)
	c.wait("9", "closed")
}

// A Go tool that never looks at its context: the context is cancelled at
// the execution's timeout, and the execution ends then, not when the
// tool returns.
func TestGoToolIgnoringContextEndsAtTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var cancelledAfter atomic.Int64
	started := make(chan time.Time, 1)
	careless := securer.Tool{Name: "careless", Handler: func(ctx context.Context, _ map[string]securer.Value) (any, error) {
		began := time.Now()
		started <- began
		go func() {
			<-ctx.Done()
			cancelledAfter.Store(int64(time.Since(began)))
		}()
		<-release // ignores ctx
		return 1.0, nil
	}}
	cfg := baseConfig()
	cfg.Tools = []securer.Tool{careless}
	s := newSession(t, cfg)
	const timeout = 2 * time.Second
	start := time.Now()
	res, err := s.ExecuteWith(context.Background(), "careless()", securer.ExecOptions{Timeout: timeout})
	took := time.Since(start)
	if !errors.Is(err, securer.ErrTimeout) || res.Verdict != securer.VerdictTimeout {
		t.Fatalf("Execute = %+v, %v; want a timeout", res, err)
	}
	began := <-started
	for wait := time.Now(); cancelledAfter.Load() == 0 && time.Since(wait) < time.Second; {
		time.Sleep(time.Millisecond)
	}
	t.Logf("timeout %s, tool ignoring its context: result at %s, the tool's context cancelled %s after its call",
		timeout, took.Round(time.Millisecond), time.Duration(cancelledAfter.Load()).Round(time.Millisecond))
	if limit := timeout + securer.DefaultInterruptGrace; took > limit {
		t.Errorf("the execution took %s, past its timeout and the interrupt grace (%s)", took, limit)
	}
	if c := time.Duration(cancelledAfter.Load()); c == 0 || c > timeout+500*time.Millisecond-began.Sub(start) {
		t.Errorf("the tool's context was cancelled %s after its call (0: never), want at the timeout", c)
	}
	if v := mustOK(t, s, "1 + 1").Value.Go(); v != 2.0 {
		t.Errorf("after the timeout: %v", v)
	}
}
