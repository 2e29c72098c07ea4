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
		e.mu.Lock()
		if e.callsClosed {
			e.mu.Unlock()
			return nil, fmt.Errorf("the execution was cancelled: %w", context.Canceled)
		}
		e.nextCall++
		call := e.id + "." + strconv.Itoa(e.nextCall)
		ch := make(chan toolAnswer, 1)
		e.calls[call] = ch
		e.mu.Unlock()
		defer func() {
			e.mu.Lock()
			delete(e.calls, call)
			e.mu.Unlock()
		}()
		c.send(newToolCallEvent(e.id, call, name, args))
		select {
		case a := <-ch:
			return a.value, a.err
		case <-c.gone:
			return nil, errors.New("the client closed its side of the connection: it cannot answer tool calls")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
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
	ch, ok := e.calls[req.Call]
	delete(e.calls, req.Call)
	e.mu.Unlock()
	if !ok {
		return notWaiting
	}
	ch <- a // buffered for its one answer
	return nil
}

// waitingCall finds the execution whose tool call id waits for an answer.
func (c *conn) waitingCall(call string) *execution {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.execs {
		e.mu.Lock()
		_, ok := e.calls[call]
		e.mu.Unlock()
		if ok {
			return e
		}
	}
	return nil
}
