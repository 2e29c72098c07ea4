package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/rvalue"
)

// events of one request id, in the order the client got them.
func eventsOf(t *testing.T, rw *bufConn, id string) []map[string]any {
	t.Helper()
	rw.mu.Lock()
	empty := rw.out.Len() == 0
	rw.mu.Unlock()
	if empty {
		return nil
	}
	var evs []map[string]any
	for _, ev := range rw.events(t) {
		if ev["id"] == id {
			evs = append(evs, ev)
		}
	}
	return evs
}

// sequence is the events' types, with a tool_cancelled's reason.
func sequence(evs []map[string]any) string {
	var s []string
	for _, ev := range evs {
		typ := ev["type"].(string)
		if typ == "tool_cancelled" {
			typ += "(" + ev["call"].(string) + " " + ev["reason"].(string) + ")"
		}
		s = append(s, typ)
	}
	return strings.Join(s, " ")
}

// waitFor polls until rw holds an event of type typ for request id.
func waitFor(t *testing.T, rw *bufConn, id, typ string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		for _, ev := range eventsOf(t, rw, id) {
			if ev["type"] == typ {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("no %s event for %q", typ, id)
}

// execJob admits an execute "7" on c through prepare (a session that is
// never used) and replaces what it runs with do, as the engine would
// call the client tool and end.
func execJob(t *testing.T, c *conn, do func(j *job) (any, error)) *job {
	t.Helper()
	c.mu.Lock()
	c.sessions["s1"] = &securer.Session{}
	c.mu.Unlock()
	j, err := c.prepare(&request{Op: "execute", ID: "7", Session: "s1", Code: "add(1, 2)"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	j.do = do
	return j
}

// callTool runs the client tool "add" as the engine does, with ctx as the
// tool's context; the handler's error goes to the returned channel.
func callTool(c *conn, j *job, ctx context.Context) chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.clientTool("add")(context.WithValue(ctx, execKey{}, j.exec), map[string]securer.Value{"a": rvalue.Doubles(1)})
		done <- err
	}()
	return done
}

// An execution that ends while its tool call is unanswered tells the
// client, once per call and before the result, with the reason its
// verdict gives; however the tool's handler (which sees its context end
// as the engine interrupts R) and the end interleave. A late answer is
// not_found.
func TestToolCancelledBeforeResult(t *testing.T) {
	for _, tc := range []struct {
		verdict securer.Verdict
		reason  string
	}{
		{securer.VerdictTimeout, "timeout"},
		{securer.VerdictCanceled, "canceled"},
		{securer.VerdictOutputLimit, "ended"},
		{securer.VerdictKilled, "ended"},
	} {
		t.Run(string(tc.verdict), func(t *testing.T) {
			for i := range 100 {
				rw := &bufConn{}
				c := newConn(context.Background(), New(Options{}), rw)
				handler := make(chan chan error, 1)
				j := execJob(t, c, func(j *job) (any, error) {
					toolCtx, interrupt := context.WithCancel(j.exec.ctx)
					defer interrupt()
					handler <- callTool(c, j, toolCtx)
					waitFor(t, rw, "7", "tool_call")
					// The engine's interrupt, and R's answer at once: the
					// handler may or may not have noticed when this returns.
					interrupt()
					if i%2 == 0 {
						time.Sleep(time.Millisecond)
					}
					return newResultEvent("7", &securer.Result{Verdict: tc.verdict, Value: rvalue.Null()}), nil
				})
				c.serveJob(j)
				if got, want := sequence(eventsOf(t, rw, "7")), "tool_call tool_cancelled(7.1 "+tc.reason+") result"; got != want {
					t.Fatalf("run %d: events %q, want %q", i, got, want)
				}
				if err := <-<-handler; !errors.Is(err, context.Canceled) {
					t.Fatalf("run %d: the handler returned %v, want context.Canceled", i, err)
				}
				c.handle([]byte(`{"op":"tool_result","call":"7.1","value":3}`))
				if codes := errorCodes(t, rw); len(codes) != 1 || codes[0] != CodeNotFound {
					t.Fatalf("run %d: a late answer got %v, want [not_found]", i, codes)
				}
			}
		})
	}
}

// A cancel tells the client of the call at once (before its ok), and the
// result that follows repeats nothing.
func TestToolCancelledByCancel(t *testing.T) {
	for i := range 100 {
		rw := &bufConn{}
		c := newConn(context.Background(), New(Options{}), rw)
		var handlerErr chan error
		j := execJob(t, c, func(j *job) (any, error) {
			handlerErr = callTool(c, j, j.exec.ctx)
			<-j.exec.ctx.Done()
			return newResultEvent("7", &securer.Result{Verdict: securer.VerdictCanceled, Value: rvalue.Null()}), nil
		})
		served := make(chan struct{})
		go func() { c.serveJob(j); close(served) }()
		waitFor(t, rw, "7", "tool_call")
		c.handle([]byte(`{"op":"cancel","id":"c","target":"7"}`))
		// The tool_cancelled is out when the cancel is answered.
		if got := sequence(eventsOf(t, rw, "7")); !strings.HasPrefix(got, "tool_call tool_cancelled(7.1 canceled)") {
			t.Fatalf("run %d: after the cancel: %q", i, got)
		}
		if got := sequence(eventsOf(t, rw, "c")); got != "ok" {
			t.Fatalf("run %d: the cancel got %q", i, got)
		}
		<-served
		if got := sequence(eventsOf(t, rw, "7")); got != "tool_call tool_cancelled(7.1 canceled) result" {
			t.Fatalf("run %d: events %q", i, got)
		}
		if err := <-handlerErr; !errors.Is(err, context.Canceled) {
			t.Fatalf("run %d: the handler returned %v", i, err)
		}
	}
}

// A tool's own timeout (the execution goes on) tells the client at once;
// the execution's later end repeats nothing, and the next call is
// answered as usual.
func TestToolCancelledByToolTimeout(t *testing.T) {
	rw := &bufConn{}
	c := newConn(context.Background(), New(Options{}), rw)
	second := make(chan error, 1)
	j := execJob(t, c, func(j *job) (any, error) {
		ctx, cancel := context.WithTimeout(j.exec.ctx, 50*time.Millisecond)
		defer cancel()
		if err := <-callTool(c, j, ctx); !errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("the timed-out call returned %v", err)
		}
		if got := sequence(eventsOf(t, rw, "7")); got != "tool_call tool_cancelled(7.1 timeout)" {
			return nil, fmt.Errorf("after the tool's timeout: %q", got)
		}
		// A late answer to it is refused; the execution goes on.
		c.handle([]byte(`{"op":"tool_result","call":"7.1","value":3}`))
		done := callTool(c, j, j.exec.ctx)
		deadline := time.Now().Add(time.Minute)
		for c.waitingCall("7.2") == nil && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		c.handle([]byte(`{"op":"tool_result","call":"7.2","value":4}`))
		second <- <-done
		return newResultEvent("7", &securer.Result{Verdict: securer.VerdictOK, Value: rvalue.Doubles(4)}), nil
	})
	c.serveJob(j)
	if got, want := sequence(eventsOf(t, rw, "7")), "tool_call tool_cancelled(7.1 timeout) tool_call result"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	if err := <-second; err != nil {
		t.Errorf("the second call: %v", err)
	}
	if codes := errorCodes(t, rw); len(codes) != 1 || codes[0] != CodeNotFound {
		t.Errorf("the late answer got %v, want [not_found]", codes)
	}
}

// A call the client answered is not reported at the end.
func TestToolAnsweredNotCancelled(t *testing.T) {
	rw := &bufConn{}
	c := newConn(context.Background(), New(Options{}), rw)
	j := execJob(t, c, func(j *job) (any, error) {
		done := callTool(c, j, j.exec.ctx)
		waitFor(t, rw, "7", "tool_call")
		c.handle([]byte(`{"op":"tool_result","call":"7.1","value":3}`))
		if err := <-done; err != nil {
			return nil, err
		}
		return newResultEvent("7", &securer.Result{Verdict: securer.VerdictTimeout, Value: rvalue.Null()}), nil
	})
	c.serveJob(j)
	if got := sequence(eventsOf(t, rw, "7")); got != "tool_call result" {
		t.Errorf("events %q, want no tool_cancelled", got)
	}
}

// An execution that ends with an error event (no result) still reports
// its unanswered call first.
func TestToolCancelledBeforeError(t *testing.T) {
	rw := &bufConn{}
	c := newConn(context.Background(), New(Options{}), rw)
	j := execJob(t, c, func(j *job) (any, error) {
		callTool(c, j, j.exec.ctx)
		waitFor(t, rw, "7", "tool_call")
		return nil, fmt.Errorf("%w: gone", securer.ErrSessionClosed)
	})
	c.serveJob(j)
	if got := sequence(eventsOf(t, rw, "7")); got != "tool_call tool_cancelled(7.1 ended) error" {
		t.Errorf("events %q", got)
	}
}

func TestEndReason(t *testing.T) {
	res := func(v securer.Verdict) any {
		return newResultEvent("1", &securer.Result{Verdict: v, Value: rvalue.Null()})
	}
	for _, tc := range []struct {
		ev     any
		err    error
		reason string
	}{
		{res(securer.VerdictTimeout), nil, "timeout"},
		{res(securer.VerdictCanceled), nil, "canceled"},
		{res(securer.VerdictOK), nil, "ended"},
		{res(securer.VerdictError), nil, "ended"},
		{res(securer.VerdictToolCallLimit), nil, "ended"},
		{newCanceledResult("1", "queued"), nil, "canceled"},
		{nil, fmt.Errorf("x: %w", context.Canceled), "canceled"},
		{nil, fmt.Errorf("x: %w", securer.ErrTimeout), "timeout"},
		{nil, securer.ErrSessionClosed, "ended"},
		{nil, errDraining, "ended"},
	} {
		if got := endReason(tc.ev, tc.err); got != tc.reason {
			t.Errorf("endReason(%v, %v) = %s, want %s", tc.ev, tc.err, got, tc.reason)
		}
	}
}
