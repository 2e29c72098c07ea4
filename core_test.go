package securer

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/securer-runc/securer-runc/bridge"
	"github.com/securer-runc/securer-runc/container"
)

// The fake harness itself: an execution with a tool call round trip.
func TestCoreToolRoundTrip(t *testing.T) {
	add := Tool{Name: "add", Args: numArgs("a", "b"), Handler: func(ctx context.Context, args map[string]Value) (any, error) {
		return args["a"].Doubles()[0] + args["b"].Doubles()[0], nil
	}}
	s, _ := fakeSession(t, Config{Tools: []Tool{add}}, serve(t, func(r *fakeR, m hostMsg) any {
		r.send(toolCall(1, "add", map[string]any{"a": 2.0, "b": 3.0}))
		tr, ok := r.expect(t, "tool_result")
		if !ok {
			return nil
		}
		return bridge.Result{Type: "result", ID: m.ID, Value: mustValue(t, tr.Value), Warnings: []string{}, Messages: []string{}}
	}))
	res, err := s.Execute(context.Background(), "add(2, 3)")
	if err != nil || res.Verdict != VerdictOK || res.Value.Go() != 5.0 || res.Accounting.ToolCalls != 1 {
		t.Fatalf("Execute = %+v, %v", res, err)
	}
}

func mustValue(t *testing.T, raw []byte) Value {
	var v Value
	if err := v.UnmarshalJSON(raw); err != nil {
		t.Errorf("value %s: %v", raw, err)
	}
	return v
}

// blockingAudit holds the execution's event loop inside the audit record
// of each tool call until release: meanwhile other events pile up.
type blockingAudit struct {
	entered chan struct{}
	release chan struct{}
}

func (h *blockingAudit) Enabled(context.Context, slog.Level) bool { return true }
func (h *blockingAudit) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *blockingAudit) WithGroup(string) slog.Handler            { return h }
func (h *blockingAudit) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "tool_call" {
		h.entered <- struct{}{}
		<-h.release
	}
	return nil
}

// A result that is waiting when the deadline fires wins over it: R
// finished in time, so the verdict is ok, not timeout. The loop is held
// (in a tool call's audit record) while R's result arrives and the
// deadline passes, so that both are ready when it next looks.
func TestCoreResultWinsOverDeadline(t *testing.T) {
	// Long enough that the tool call is read before it fires even on a
	// loaded machine; a round where it was not is retried.
	const timeout = 250 * time.Millisecond
	audit := &blockingAudit{entered: make(chan struct{}), release: make(chan struct{})}
	s, _ := fakeSession(t, Config{Timeout: timeout, InterruptGrace: time.Minute, Audit: slog.New(audit)},
		serve(t, func(r *fakeR, m hostMsg) any {
			// A refused call (no such tool), and the result, in one write.
			r.send(toolCall(m.ID, "nosuch", nil), result(m.ID, 7.0))
			r.expect(t, "tool_result") // the refusal
			return nil
		}))
	rounds := 0
	for attempt := 0; rounds < 6; attempt++ {
		if attempt == 30 {
			t.Fatalf("only %d of %d rounds held the loop before the deadline", rounds, attempt)
		}
		done := make(chan struct{})
		var res *Result
		var err error
		go func() {
			defer close(done)
			res, err = s.Execute(context.Background(), "7")
		}()
		select {
		case <-audit.entered:
		case <-done:
			// The deadline fired before the tool call was read (a busy
			// machine): this round tested nothing.
			continue
		}
		rounds++
		// Past the deadline, and time for the result to be read.
		time.Sleep(timeout + 300*time.Millisecond)
		audit.release <- struct{}{}
		<-done
		if err != nil || res.Verdict != VerdictOK || res.Value.Go() != 7.0 {
			t.Fatalf("round %d: a result waiting at the deadline lost to it: %+v, %v", rounds, res, err)
		}
	}
}

// A tool's answer that comes after R was interrupted is dropped, never
// sent to R: in the interrupted execution, and in the next one.
func TestCoreLateToolAnswer(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	var firstCtxErr atomic.Value
	slow := Tool{Name: "slow", Handler: func(ctx context.Context, args map[string]Value) (any, error) {
		if calls.Add(1) == 1 {
			<-release // ignores its context, as a careless tool does
			firstCtxErr.Store(ctx.Err() != nil)
			return "late", nil
		}
		return "second", nil
	}}
	gotLate := make(chan string, 4)
	script := serve(t, func(r *fakeR, m hostMsg) any {
		r.send(toolCall(m.ID, "slow", nil))
		if m.ID == 1 {
			<-r.sigint // the timeout
			// Whatever the host sends now must not be the late answer.
			go func() { release <- struct{}{} }()
			_ = r.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if late, err := r.recv(); err == nil {
				gotLate <- string(late.Value) + late.Error
			}
			_ = r.conn.SetReadDeadline(time.Time{})
			res := result(m.ID, nil)
			res.Error = &bridge.RError{Message: "interrupted", Class: []string{"interrupt", "condition"}}
			return res
		}
		tr, ok := r.expect(t, "tool_result")
		if !ok {
			return nil
		}
		return bridge.Result{Type: "result", ID: m.ID, Value: mustValue(t, tr.Value), Warnings: []string{}, Messages: []string{}}
	})
	// Long enough for the host to read the call before the deadline, on a
	// loaded machine too (read after it, the call is refused unrun).
	s, _ := fakeSession(t, Config{Tools: []Tool{slow}, Timeout: 400 * time.Millisecond, InterruptGrace: time.Minute}, script)
	res, err := s.Execute(context.Background(), "slow()")
	if !errors.Is(err, ErrTimeout) || res.Verdict != VerdictTimeout {
		t.Fatalf("first execution: %+v, %v; want a timeout", res, err)
	}
	select {
	case late := <-gotLate:
		t.Fatalf("R got the late answer of an interrupted execution: %s", late)
	default:
	}
	if v, _ := firstCtxErr.Load().(bool); !v {
		t.Error("the tool's context was not cancelled by the timeout")
	}
	res, err = s.Execute(context.Background(), "slow()")
	if err != nil || res.Value.Go() != "second" {
		t.Fatalf("second execution: %+v, %v; want the second call's answer", res, err)
	}
}

// A frame R sends between executions (here a forged result for the next
// execution's id) ends the next execution with a protocol error before
// its code runs, and R is replaced.
func TestCoreStaleFrameBetweenExecutions(t *testing.T) {
	s, eng := fakeSession(t, Config{}, serve(t, func(r *fakeR, m hostMsg) any {
		if r.n == 1 && m.ID == 1 {
			// The answer, and a forged one for execution 2, together.
			r.send(result(1, 1.0), result(2, "forged"))
			return nil
		}
		return result(m.ID, float64(m.ID))
	}))
	if res, err := s.Execute(context.Background(), "1"); err != nil || res.Value.Go() != 1.0 {
		t.Fatalf("first execution: %+v, %v", res, err)
	}
	time.Sleep(100 * time.Millisecond) // for the forged frame to be read
	res, err := s.Execute(context.Background(), "2")
	if !errors.Is(err, ErrProtocol) || res.Verdict != VerdictProtocolError || !strings.Contains(err.Error(), "between executions") {
		t.Fatalf("second execution: %+v, %v; want a protocol error", res, err)
	}
	res, err = s.Execute(context.Background(), "3")
	if err != nil || res.Value.Go() != 3.0 || !res.StateLost || eng.launches() != 2 {
		t.Fatalf("third execution: %+v, %v (launches %d); want a new R, state lost", res, err, eng.launches())
	}
	if !eng.r(0).destroyed.Load() {
		t.Error("the R that broke the protocol was not destroyed")
	}
}

// A result for another execution's id is a protocol error.
func TestCoreResultForAnotherExecution(t *testing.T) {
	s, _ := fakeSession(t, Config{}, serve(t, func(r *fakeR, m hostMsg) any {
		return result(m.ID+1, 0.0)
	}))
	res, err := s.Execute(context.Background(), "1")
	if !errors.Is(err, ErrProtocol) || res.Verdict != VerdictProtocolError {
		t.Fatalf("Execute = %+v, %v; want a protocol error", res, err)
	}
}

// A tool call R sends after the execution was cancelled (before R saw the
// interrupt) is refused without running the tool; the verdict is
// canceled.
func TestCoreToolCallAfterCancel(t *testing.T) {
	var calls atomic.Int32
	add := Tool{Name: "add", Args: numArgs("a"), Handler: func(ctx context.Context, args map[string]Value) (any, error) {
		calls.Add(1)
		return 1.0, nil
	}}
	running := make(chan struct{})
	answer := make(chan hostMsg, 1)
	s, _ := fakeSession(t, Config{Tools: []Tool{add}, InterruptGrace: time.Minute}, serve(t, func(r *fakeR, m hostMsg) any {
		close(running)
		<-r.sigint
		r.send(toolCall(1, "add", map[string]any{"a": 1.0}))
		tr, ok := r.expect(t, "tool_result")
		if ok {
			answer <- tr
		}
		res := result(m.ID, nil)
		res.Error = &bridge.RError{Message: "interrupted", Class: []string{"interrupt", "condition"}}
		return res
	}))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-running
		cancel()
	}()
	res, err := s.Execute(ctx, "add(1)")
	if !errors.Is(err, ErrCanceled) || res.Verdict != VerdictCanceled {
		t.Fatalf("Execute = %+v, %v; want canceled", res, err)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the tool ran %d times after the cancel", n)
	}
	select {
	case tr := <-answer:
		if tr.Error != "execution interrupted" || len(tr.Value) != 0 {
			t.Errorf("R got %+v, want the refusal", tr)
		}
	default:
		t.Error("R's tool call got no answer")
	}
}

// R dying while a tool runs ends the execution as killed, cancels the
// tool, and the next execution runs in a new R that reports the lost
// state.
func TestCoreRDiesDuringToolCall(t *testing.T) {
	inTool := make(chan struct{})
	toolEnded := make(chan error, 1)
	block := Tool{Name: "block", Handler: func(ctx context.Context, args map[string]Value) (any, error) {
		close(inTool)
		<-ctx.Done()
		toolEnded <- ctx.Err()
		return nil, ctx.Err()
	}}
	s, eng := fakeSession(t, Config{Tools: []Tool{block}}, serve(t, func(r *fakeR, m hostMsg) any {
		if r.n == 1 {
			r.send(toolCall(1, "block", nil))
			<-inTool
			r.die(container.Exit{Code: -1, Signal: 9})
			return nil
		}
		return result(m.ID, "new R")
	}))
	res, err := s.Execute(context.Background(), "block()")
	if !errors.Is(err, ErrKilled) || res.Verdict != VerdictKilled || !strings.Contains(res.Detail, "during a tool call") {
		t.Fatalf("Execute = %+v, %v; want killed during a tool call", res, err)
	}
	select {
	case <-toolEnded:
	case <-time.After(time.Minute):
		t.Fatal("the tool's context was not cancelled")
	}
	if !eng.r(0).destroyed.Load() {
		t.Error("the dead R was not destroyed")
	}
	res, err = s.Execute(context.Background(), "1")
	if err != nil || res.Value.Go() != "new R" || !res.StateLost || !strings.Contains(res.StateLostReason, "during a tool call") {
		t.Fatalf("next execution: %+v, %v; want a new R reporting the lost state", res, err)
	}
}

// An R that dies between executions is cleaned up at once (its instance
// destroyed, its session dir removed), not at the next use.
func TestCoreIdleDeathCleanedUp(t *testing.T) {
	s, eng := fakeSession(t, Config{}, serve(t, func(r *fakeR, m hostMsg) any { return result(m.ID, 1.0) }))
	if _, err := s.Execute(context.Background(), "1"); err != nil {
		t.Fatal(err)
	}
	dir := s.inst.dir
	r := eng.r(0)
	r.die(container.Exit{Code: 1})
	deadline := time.Now().Add(time.Minute)
	for !r.destroyed.Load() {
		if time.Now().After(deadline) {
			t.Fatal("an R that died while idle was not destroyed")
		}
		time.Sleep(time.Millisecond)
	}
	for {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dead R's session dir was not removed")
		}
		time.Sleep(time.Millisecond)
	}
	if s.Alive() {
		t.Error("Alive after R died")
	}
}

// A second concurrent Execute gets ErrBusy at once; the first goes on.
func TestCoreBusy(t *testing.T) {
	release := make(chan struct{})
	running := make(chan struct{})
	s, _ := fakeSession(t, Config{}, serve(t, func(r *fakeR, m hostMsg) any {
		close(running)
		<-release
		return result(m.ID, 1.0)
	}))
	done := make(chan error, 1)
	go func() {
		_, err := s.Execute(context.Background(), "1")
		done <- err
	}()
	<-running
	if _, err := s.Execute(context.Background(), "2"); !errors.Is(err, ErrBusy) {
		t.Errorf("concurrent Execute: %v, want ErrBusy", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("first Execute: %v", err)
	}
}

// An execution on a context that has already ended runs nothing: before,
// the code was sent to R and then interrupted, so part of it ran (an
// outside review saw `y <- 99` take effect under a cancelled context).
func TestCoreEndedContextRunsNothing(t *testing.T) {
	var executes atomic.Int32
	s, _ := fakeSession(t, Config{}, serve(t, func(r *fakeR, m hostMsg) any {
		executes.Add(1)
		return result(m.ID, 1.0)
	}))
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"canceled", canceled, ErrCanceled},
		{"expired", expired, ErrTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := s.Execute(tc.ctx, "y <- 99")
			if res != nil || !errors.Is(err, tc.want) || !errors.Is(err, tc.ctx.Err()) {
				t.Errorf("Execute = %+v, %v; want no result and %v wrapping %v", res, err, tc.want, tc.ctx.Err())
			}
		})
	}
	if n := executes.Load(); n != 0 {
		t.Errorf("R was sent %d executions under an ended context", n)
	}
	// The session is still usable.
	if res, err := s.Execute(context.Background(), "1"); err != nil || res.Value.Go() != 1.0 {
		t.Errorf("after: %+v, %v", res, err)
	}
}

// Tool.Timeout bounds a call even when the handler ignores its context:
// before, the call (and the execution) waited for the handler to return.
func TestCoreToolTimeoutIgnoredContext(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	stuck := Tool{Name: "stuck", Args: numArgs("a"), Timeout: 100 * time.Millisecond,
		Handler: func(ctx context.Context, args map[string]Value) (any, error) {
			<-release // never looks at ctx
			return 1.0, nil
		}}
	answer := make(chan hostMsg, 1)
	s, _ := fakeSession(t, Config{Tools: []Tool{stuck}, Timeout: time.Minute}, serve(t, func(r *fakeR, m hostMsg) any {
		r.send(toolCall(1, "stuck", map[string]any{"a": 1.0}))
		tr, ok := r.expect(t, "tool_result")
		if !ok {
			return nil
		}
		answer <- tr
		return result(m.ID, 2.0)
	}))
	res, err := s.Execute(context.Background(), "stuck(1)")
	if err != nil || res.Verdict != VerdictOK {
		t.Fatalf("Execute = %+v, %v; want ok, the tool's timeout answered R", res, err)
	}
	if tr := <-answer; !strings.Contains(tr.Error, "timed out after 100ms") {
		t.Errorf("R got %+v, want the tool's timeout", tr)
	}
}

// A start ended by the caller's context says so (ErrCanceled or
// ErrTimeout, wrapping the context's error): it said "R did not connect"
// or blamed the host (an outside review).
func TestCoreStartEndedByContext(t *testing.T) {
	silent := func(r *fakeR) { <-r.done } // R that never says hello
	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 200*time.Millisecond)
		}, ErrTimeout},
		{"canceled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(200*time.Millisecond, cancel)
			return ctx, cancel
		}, ErrCanceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			s, err := newSession(ctx, Host{StateDir: t.TempDir()}, Config{}, &fakeEngine{script: silent})
			if s != nil {
				s.Close()
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ctx.Err()) || errors.Is(err, ErrSandboxUnavailable) {
				t.Errorf("newSession = %v; want %v wrapping %v, not ErrSandboxUnavailable", err, tc.want, ctx.Err())
			}
		})
	}
	// StartTimeout's expiry is a timeout too (it matched no sentinel).
	s, err := newSession(context.Background(), Host{StateDir: t.TempDir()}, Config{StartTimeout: 200 * time.Millisecond}, &fakeEngine{script: silent})
	if s != nil {
		s.Close()
	}
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "StartTimeout") || errors.Is(err, ErrCanceled) {
		t.Errorf("newSession past StartTimeout = %v; want ErrTimeout naming StartTimeout", err)
	}
}
