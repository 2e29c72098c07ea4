package securer

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/securer-runc/securer-runc/bridge"
	"github.com/securer-runc/securer-runc/rvalue"
)

// runTool runs one tool call on the host and hands its outcome to done.
func (s *Session) runTool(ctx context.Context, t Tool, call *bridge.ToolCall, done chan<- toolOutcome) {
	out := toolOutcome{id: call.ID}
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("tool answer panicked", "tool", t.Name, "panic", p, "stack", string(debug.Stack()))
			out = toolOutcome{id: call.ID, err: fmt.Errorf("tool %q failed (panic)", t.Name)}
		}
		done <- out // buffered: one answer per call
	}()
	v, err := s.callHandler(ctx, t, call)
	if err != nil {
		out.err = err
		return
	}
	val, err := rvalue.FromGo(v)
	if err != nil {
		out.err = fmt.Errorf("tool %q returned a value R cannot take: %w", t.Name, err)
		return
	}
	b, err := val.MarshalJSON()
	if err != nil {
		out.err = fmt.Errorf("tool %q returned an unencodable value: %w", t.Name, err)
		return
	}
	if len(b) > s.cfg.MaxFrameBytes-1024 {
		out.err = fmt.Errorf("tool %q returned %d bytes, over the %d-byte frame limit", t.Name, len(b), s.cfg.MaxFrameBytes)
		return
	}
	out.frame = toolResultFrame(call.ID, b)
}

// toolResultFrame is the tool_result frame for call id answering with the
// encoded value: what bridge.Encode writes for a ToolResult with that
// Value, without encoding the value a second time.
func toolResultFrame(id uint64, value []byte) []byte {
	frame := make([]byte, 0, len(value)+64)
	frame = append(frame, `{"type":"tool_result","id":`...)
	frame = strconv.AppendUint(frame, id, 10)
	frame = append(frame, `,"value":`...)
	frame = append(frame, value...)
	return append(frame, "}\n"...)
}

// callHandler runs the tool's handler. With a Timeout, the call ends when
// the timeout does, whether or not the handler heeds its context: one that
// does not is left to finish on its own, and its answer is dropped.
func (s *Session) callHandler(ctx context.Context, t Tool, call *bridge.ToolCall) (any, error) {
	if t.Timeout <= 0 {
		return s.guardedHandler(ctx, t, call)
	}
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	type answer struct {
		v   any
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		v, err := s.guardedHandler(ctx, t, call)
		answered <- answer{v, err}
	}()
	var a answer
	select {
	case a = <-answered:
	case <-ctx.Done():
		a.err = ctx.Err()
	}
	if a.err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil, fmt.Errorf("tool %q timed out after %s", t.Name, t.Timeout)
	}
	return a.v, a.err
}

// guardedHandler is the handler with a panic turned into the call's error.
func (s *Session) guardedHandler(ctx context.Context, t Tool, call *bridge.ToolCall) (v any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("tool panicked", "tool", t.Name, "panic", p, "stack", string(debug.Stack()))
			v, err = nil, fmt.Errorf("tool %q failed (panic)", t.Name)
		}
	}()
	return t.Handler(ctx, call.Args)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return truncate(err.Error(), 1024)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// truncate shortens s to at most n bytes on a character boundary, with
// invalid UTF-8 replaced: the result always encodes.
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "... (truncated)"
}
