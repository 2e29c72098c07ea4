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

// toolResult hands a client's answer to the waiting tool call.
func (c *conn) toolResult(req *request) error {
	c.mu.Lock()
	var ch chan toolAnswer
	for _, e := range c.execs {
		e.mu.Lock()
		if x, ok := e.calls[req.Call]; ok {
			ch = x
		}
		e.mu.Unlock()
	}
	c.mu.Unlock()
	if ch == nil {
		return fmt.Errorf("%w: no tool call %q is waiting (answered already, or its execution ended)", errNotFound, req.Call)
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
	select {
	case ch <- a:
	default:
		return fmt.Errorf("%w: tool call %q was answered already", errBadRequest, req.Call)
	}
	return nil
}
