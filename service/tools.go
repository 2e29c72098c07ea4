package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/rvalue"
)

// Tools the client answers: tool_call events out, tool_result requests in.

type toolAnswer struct {
	value any
	err   error
}

// clientTool is a tool the client answers: the call goes out as an event,
// the handler waits for the client's tool_result or the call's end.
func (c *conn) clientTool(name string) securer.ToolFunc {
	return func(ctx context.Context, args map[string]securer.Value) (any, error) {
		e, _ := ctx.Value(execKey{}).(*execution)
		if e == nil {
			return nil, errors.New("tool called outside an execution")
		}
		call, p := c.makeCall(e, name, args)
		if p == nil {
			return nil, fmt.Errorf("the execution was cancelled: %w", context.Canceled)
		}
		select {
		case a := <-p.answer:
			return a.value, a.err
		case <-c.gone:
			e.forgetCall(call)
			return nil, errors.New("the client closed its side of the connection: it cannot answer tool calls")
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) && e.ctx.Err() == nil {
				// The tool's own timeout: R gets an error and goes on;
				// the client is told now.
				c.dropCall(e, call, reasonTimeout)
			} else {
				// The execution is ending (interrupted, cancelled): its
				// end tells the client, before its result.
				e.abandonCall(call)
			}
			return nil, ctx.Err()
		}
	}
}

// makeCall registers a call and sends its tool_call event, unless the
// execution has ended (nil). Both happen under told: a tool_cancelled
// for the call cannot overtake its tool_call.
func (c *conn) makeCall(e *execution, name string, args map[string]securer.Value) (string, *pendingCall) {
	e.told.Lock()
	defer e.told.Unlock()
	e.mu.Lock()
	if e.callsClosed {
		e.mu.Unlock()
		return "", nil
	}
	e.nextCall++
	call := e.id + "." + strconv.Itoa(e.nextCall)
	p := &pendingCall{seq: e.nextCall, answer: make(chan toolAnswer, 1), waiting: true}
	e.calls[call] = p
	e.mu.Unlock()
	c.send(newToolCallEvent(e.id, call, name, args))
	return call, p
}

// abandonCall: the call's handler no longer waits; the call refuses
// answers until the execution's end reports it.
func (e *execution) abandonCall(call string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.calls[call]; p != nil {
		p.waiting = false
	}
}

// forgetCall drops a call the client can no longer answer.
func (e *execution) forgetCall(call string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.calls, call)
}

// toolResult hands a client's answer to the waiting tool call. A call
// takes one answer: it stops waiting when answered, and when its
// execution is cancelled or ends, so that any later answer is not_found,
// however the tool's handler and the client's lines interleave.
func (c *conn) toolResult(req *request) error {
	notWaiting := fmt.Errorf("%w: no tool call %q is waiting (answered already, or its execution was cancelled or ended)", errNotFound, req.Call)
	e := c.waitingCall(req.Call)
	if e == nil {
		return notWaiting
	}
	var a toolAnswer
	switch {
	case req.Error != nil:
		a.err = errors.New(*req.Error)
	case len(req.Typed) > 0:
		v, err := rvalue.Decode(req.Typed, rvalue.DecodeOptions{})
		if err != nil {
			return fmt.Errorf("%w: typed value: %v", errBadRequest, err)
		}
		a.value = v
	case len(req.Value) > 0:
		a.value = json.RawMessage(req.Value)
	}
	// Taken under the lock: the answer goes to a call still waiting, once.
	e.mu.Lock()
	p := e.calls[req.Call]
	if p == nil || !p.waiting {
		e.mu.Unlock()
		return notWaiting
	}
	delete(e.calls, req.Call)
	e.mu.Unlock()
	p.answer <- a // buffered for its one answer
	return nil
}

// waitingCall finds the execution whose tool call id waits for an answer.
func (c *conn) waitingCall(call string) *execution {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.execs {
		e.mu.Lock()
		p := e.calls[call]
		e.mu.Unlock()
		if p != nil && p.waiting {
			return e
		}
	}
	return nil
}
