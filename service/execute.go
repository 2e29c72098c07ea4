package service

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	securer "github.com/securer-runc/securer-runc"
)

// Executions: running code and streaming its output as events.

// execution is one execute request, queued or running: how to cancel it
// and the tool calls waiting for the client's answer.
type execution struct {
	id     string
	ctx    context.Context
	cancel context.CancelFunc

	// told is held while the client is told of calls no longer waited
	// for, and until the end's tool_cancelled events are out: the result
	// is sent after it, so that they always come before the result.
	told sync.Mutex

	mu sync.Mutex
	// calls holds the tool calls sent to the client and neither answered
	// nor yet reported cancelled.
	calls    map[string]*pendingCall
	nextCall int
	// callsClosed: the execution was cancelled or has ended; no call
	// waits for an answer any more, and none is made.
	callsClosed bool
}

// pendingCall is a tool call the client was asked to answer.
type pendingCall struct {
	seq    int
	answer chan toolAnswer // buffered for its one answer
	// waiting: its handler still waits for the answer. A call whose
	// handler gave up as the execution ended stays in calls, refusing
	// answers, until the end tells the client (tool_cancelled).
	waiting bool
}

func newExecution(id string, ctx context.Context, cancel context.CancelFunc) *execution {
	return &execution{id: id, ctx: ctx, cancel: cancel, calls: map[string]*pendingCall{}}
}

// closeCalls ends the waiting for the client's answers and returns the
// calls it had not answered, in the order they were made: from now on a
// tool_result for any of this execution's calls is not_found, whether or
// not the tool's handler has noticed the end yet.
func (e *execution) closeCalls() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.callsClosed = true
	open := make([]string, 0, len(e.calls))
	for call := range e.calls {
		open = append(open, call)
	}
	slices.SortFunc(open, func(a, b string) int { return cmp.Compare(e.calls[a].seq, e.calls[b].seq) })
	clear(e.calls)
	return open
}

// endCalls ends the waiting for e's calls and tells the client of each
// call it had not answered, before anything else of e goes out.
func (c *conn) endCalls(e *execution, reason string) {
	e.told.Lock()
	defer e.told.Unlock()
	for _, call := range e.closeCalls() {
		c.send(newToolCancelledEvent(e.id, call, reason))
	}
}

// dropCall tells the client that one call of a running execution is no
// longer waited for (the tool's own timeout), unless the execution's end
// or an answer got there first.
func (c *conn) dropCall(e *execution, call, reason string) {
	e.told.Lock()
	defer e.told.Unlock()
	e.mu.Lock()
	_, ok := e.calls[call]
	delete(e.calls, call)
	e.mu.Unlock()
	if ok {
		c.send(newToolCancelledEvent(e.id, call, reason))
	}
}

// endReason is why an execution's unanswered calls end, from how it ended.
func endReason(ev any, err error) string {
	if r, ok := ev.(resultEvent); ok && r.Result != nil {
		switch securer.Verdict(r.Result.Verdict) {
		case securer.VerdictTimeout:
			return reasonTimeout
		case securer.VerdictCanceled:
			return reasonCanceled
		}
		return reasonEnded
	}
	if errors.Is(err, securer.ErrTimeout) {
		return reasonTimeout
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, securer.ErrCanceled) {
		return reasonCanceled
	}
	return reasonEnded
}

func (c *conn) canceledResult(j *job, detail string) any {
	return newCanceledResult(j.req.ID, detail)
}

// execKey carries the execution to the client tools it calls.
type execKey struct{}

func (c *conn) execute(j *job) (any, error) {
	req, e := j.req, j.exec
	oneShot := j.sess == nil && j.pool == nil
	var clamped []string
	if ceil := c.srv.opts.Ceilings.Timeout; oneShot && req.Clamp && ceil > 0 && req.Timeout > ceil.Seconds() {
		// As a session's options.timeout is clamped at its creation.
		req.Timeout, clamped = ceil.Seconds(), []string{"timeout"}
	}
	timeout, err := c.timeout("timeout", req.Timeout)
	if err != nil {
		return nil, err
	}
	// The wait for a pool's free session: unbounded (but by the
	// execution's cancellation) unless acquire_timeout is given.
	acquire := time.Duration(-1)
	if req.AcquireTimeout != nil {
		if acquire, err = seconds("acquire_timeout", *req.AcquireTimeout); err != nil {
			return nil, err
		}
	}
	if err := c.srv.admitExecution(); err != nil {
		return nil, err
	}
	defer c.srv.executionDone()
	ctx := context.WithValue(e.ctx, execKey{}, e)
	stdout, stderr := &textStream{c: c, id: req.ID, kind: "stdout"}, &textStream{c: c, id: req.ID, kind: "stderr"}
	opts := securer.ExecOptions{Fresh: req.Fresh, Timeout: timeout, Stdout: stdout, Stderr: stderr,
		Inputs: inputFiles(req.Inputs), CollectOutputs: req.Outputs != nil && req.Outputs.Collect}
	if p := req.Plots; p != nil {
		opts.Plots = &securer.Plots{Format: p.Format, Width: p.Width, Height: p.Height, DPI: p.DPI}
	}
	var res *securer.Result
	var warm *bool
	switch {
	case j.sess != nil:
		res, err = j.sess.ExecuteWith(ctx, req.Code, opts)
	case j.pool != nil:
		res, err = j.pool.pool.ExecuteWithin(ctx, req.Code, opts, acquire)
	default:
		var w bool
		var more []string
		res, w, more, err = c.oneShot(ctx, j, opts)
		warm, clamped = &w, append(clamped, more...)
	}
	stdout.flush()
	stderr.flush()
	if res == nil {
		switch {
		case j.pool != nil && errors.Is(err, securer.ErrPoolClosed) && c.srv.isDraining():
			return nil, fmt.Errorf("%w: %w", errDraining, err)
		case j.pool != nil && errors.Is(err, context.Canceled) && c.ctx.Err() == nil:
			// Cancelled while waiting for a pool session: still a result.
			return c.canceledResult(j, "canceled while waiting for a pool session; nothing ran"), nil
		case j.sess == nil && j.pool == nil && errors.Is(err, context.Canceled) && c.ctx.Err() == nil:
			// A one-shot cancelled while its box started: still a result.
			return c.canceledResult(j, "canceled before it started; nothing ran"), nil
		case j.sess != nil && errors.Is(err, securer.ErrCanceled):
			// Cancelled just before it started: still a result.
			return c.canceledResult(j, "canceled before it started; nothing ran"), nil
		}
	}
	if res == nil {
		return nil, err
	}
	ev := newResultEvent(req.ID, res)
	ev.Warm, ev.Clamped = warm, clamped
	return ev, nil
}

// textStream turns an execution's output into stdout/stderr events,
// never splitting a UTF-8 character between two events; conn.sendText
// joins adjacent pieces into fewer events.
type textStream struct {
	c       *conn
	id      string
	kind    string
	mu      sync.Mutex
	partial []byte
}

func (t *textStream) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := append(t.partial, p...)
	cut := len(b)
	// Hold back an incomplete character at the end (at most 3 bytes).
	for i := len(b) - 1; i >= 0 && i >= len(b)-3; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				cut = i
			}
			break
		}
	}
	t.partial = append([]byte(nil), b[cut:]...)
	if cut > 0 {
		t.c.sendText(t.id, t.kind, string(b[:cut]))
	}
	return len(p), nil
}

func (t *textStream) flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.partial) > 0 {
		t.c.sendText(t.id, t.kind, string(t.partial))
		t.partial = nil
	}
}
