// Package oneshot runs code through a securer-runc daemon's one-shot
// execute (PROTOCOL.md, "One-shot executions"): connect, authenticate
// when asked, send one execute with neither session nor pool, answer its
// tool calls, stream its output, return its result.
package oneshot

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/rvalue"
)

// ErrServer is wrapped by the errors the daemon sent (an error event);
// *ServerError says which.
var ErrServer = errors.New("daemon refused")

// ServerError is an error event of the daemon.
type ServerError struct {
	Code    string
	Message string
}

func (e *ServerError) Error() string { return fmt.Sprintf("daemon: %s: %s", e.Code, e.Message) }
func (e *ServerError) Unwrap() error { return ErrServer }

// Request is one one-shot execution.
type Request struct {
	Code    string
	Timeout time.Duration // 0: the daemon's default
	Plots   *Plots
	Inputs  []securer.File
	Collect bool // return the files the code made or changed
	Tools   []securer.Tool
	// Options are create_session's options (memory_bytes, pids, ...);
	// nil: the daemon's defaults, which a warm box has.
	Options map[string]any
	Stdout  io.Writer // streamed output; nil: dropped
	Stderr  io.Writer
}

// Plots are the execute's plot options.
type Plots struct {
	Format string `json:"format,omitempty"`
	Width  int    `json:"width,omitempty"`
	Height int    `json:"height,omitempty"`
	DPI    int    `json:"dpi,omitempty"`
}

// Conn is a connection to a daemon.
type Conn struct {
	nc  net.Conn
	in  *bufio.Reader
	wmu sync.Mutex
}

// Dial connects to addr (unix:PATH, tcp:HOST:PORT, or a socket path) and
// authenticates with token when the daemon asks for one.
func Dial(ctx context.Context, addr, token string) (*Conn, error) {
	network, where := "unix", addr
	switch {
	case strings.HasPrefix(addr, "unix:"):
		where = strings.TrimPrefix(addr, "unix:")
	case strings.HasPrefix(addr, "tcp:"):
		network, where = "tcp", strings.TrimPrefix(addr, "tcp:")
	}
	if where == "" {
		return nil, fmt.Errorf("daemon address %q: want unix:PATH or tcp:HOST:PORT", addr)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, where)
	if err != nil {
		return nil, fmt.Errorf("connecting to the daemon at %s: %w", addr, err)
	}
	c := &Conn{nc: nc, in: bufio.NewReaderSize(nc, 64<<10)}
	if err := c.handshake(ctx, token, addr); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// Close ends the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// handshake reads the hello and authenticates, within ctx.
func (c *Conn) handshake(ctx context.Context, token, addr string) error {
	stop := context.AfterFunc(ctx, func() { c.nc.SetReadDeadline(time.Now()) })
	err := c.greet(token, addr)
	if !stop() {
		// ctx ended: the read deadline is (being) set, the connection
		// is of no more use.
		return fmt.Errorf("connecting to the daemon at %s: %w", addr, ctx.Err())
	}
	return err
}

func (c *Conn) greet(token, addr string) error {
	if token != "" {
		// Sent without waiting for the hello (PROTOCOL.md allows it).
		if err := c.send(map[string]any{"op": "auth", "id": "auth", "token": token}); err != nil {
			return err
		}
	}
	var hello struct {
		Type         string `json:"type"`
		Protocol     int    `json:"protocol"`
		Sandboxed    bool   `json:"sandboxed"`
		AuthRequired bool   `json:"auth_required"`
	}
	ev, err := c.next()
	if err != nil {
		return fmt.Errorf("reading the daemon's hello: %w", err)
	}
	if ev.Type == "error" {
		return ev.err()
	}
	if err := json.Unmarshal(ev.raw, &hello); err != nil || hello.Type != "hello" {
		return fmt.Errorf("%s does not speak the securer-runc protocol (first message %q)", addr, ev.Type)
	}
	if hello.Protocol != 1 {
		return fmt.Errorf("daemon speaks protocol %d; this client speaks 1", hello.Protocol)
	}
	if !hello.Sandboxed {
		return errors.New("the daemon runs R without a sandbox (--unsafe-no-sandbox): refusing to use it")
	}
	if hello.AuthRequired && token == "" {
		return fmt.Errorf("the daemon at %s wants a token: give --token-file", addr)
	}
	if token != "" {
		ev, err := c.next()
		if err != nil {
			return fmt.Errorf("authenticating: %w", err)
		}
		if ev.Type == "error" {
			return ev.err()
		}
	}
	return nil
}

// event is one message of the daemon, its type and id read, the rest
// kept for whoever handles it.
type event struct {
	Type  string `json:"type"`
	ID    string `json:"id"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	raw []byte
}

func (e *event) err() error {
	if e.Error == nil {
		return &ServerError{Code: "internal", Message: "error event without an error"}
	}
	return &ServerError{Code: e.Error.Code, Message: e.Error.Message}
}

func (c *Conn) next() (*event, error) {
	line, err := c.in.ReadBytes('\n')
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("the daemon closed the connection: %w", err)
		}
		return nil, err
	}
	ev := &event{raw: line}
	if err := json.Unmarshal(line, ev); err != nil {
		return nil, fmt.Errorf("bad message from the daemon: %w", err)
	}
	return ev, nil
}

func (c *Conn) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err = c.nc.Write(append(b, '\n'))
	return err
}

type toolDecl struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Args        []argDecl `json:"args,omitempty"`
	Timeout     float64   `json:"timeout,omitempty"`
}

type argDecl struct {
	Name string `json:"name"`
	Type string `json:"type,omitempty"`
}

// Execute runs req as a one-shot and returns its result and whether a
// warm box served it. Cancelling ctx cancels the execution (its result
// then has verdict canceled).
func (c *Conn) Execute(ctx context.Context, req Request) (*securer.Result, bool, error) {
	const id = "1"
	msg := map[string]any{"op": "execute", "id": id, "code": req.Code}
	if req.Timeout > 0 {
		msg["timeout"] = req.Timeout.Seconds()
	}
	if req.Plots != nil {
		msg["plots"] = req.Plots
	}
	if len(req.Inputs) > 0 {
		msg["inputs"] = req.Inputs
	}
	if req.Collect {
		msg["outputs"] = map[string]bool{"collect": true}
	}
	if len(req.Options) > 0 {
		msg["options"] = req.Options
	}
	tools := map[string]securer.ToolFunc{}
	if len(req.Tools) > 0 {
		decls := make([]toolDecl, 0, len(req.Tools))
		for _, t := range req.Tools {
			d := toolDecl{Name: t.Name, Description: t.Description, Timeout: t.Timeout.Seconds()}
			for _, a := range t.Args {
				d.Args = append(d.Args, argDecl{Name: a.Name, Type: a.Type})
			}
			decls = append(decls, d)
			tools[t.Name] = t.Handler
		}
		msg["tools"] = decls
	}
	if err := c.send(msg); err != nil {
		return nil, false, fmt.Errorf("sending the execution: %w", err)
	}
	// A cancel is a request of its own; the result still follows.
	stop := context.AfterFunc(ctx, func() { _ = c.send(map[string]any{"op": "cancel", "id": "cancel", "target": id}) })
	defer stop()
	toolCtx, cancelTools := context.WithCancel(context.Background())
	defer cancelTools()
	var calls sync.WaitGroup
	defer calls.Wait()
	for {
		ev, err := c.next()
		if err != nil {
			return nil, false, err
		}
		if ev.ID != id {
			continue // the cancel's ok, or an error for it
		}
		switch ev.Type {
		case "stdout", "stderr":
			var t struct {
				Text string `json:"text"`
			}
			if err := json.Unmarshal(ev.raw, &t); err != nil {
				return nil, false, fmt.Errorf("bad %s event: %w", ev.Type, err)
			}
			w := req.Stdout
			if ev.Type == "stderr" {
				w = req.Stderr
			}
			if w != nil {
				_, _ = io.WriteString(w, t.Text)
			}
		case "tool_call":
			var call struct {
				Call string                  `json:"call"`
				Tool string                  `json:"tool"`
				Args map[string]rvalue.Value `json:"args"`
			}
			if err := json.Unmarshal(ev.raw, &call); err != nil {
				return nil, false, fmt.Errorf("bad tool_call event: %w", err)
			}
			calls.Go(func() { c.answer(toolCtx, tools[call.Tool], call.Call, call.Tool, call.Args) })
		case "tool_cancelled":
			// The execution stopped waiting for that call: its answer is
			// dropped by the daemon, so nothing is to be done here.
		case "result":
			cancelTools()
			var r struct {
				Result *securer.Result `json:"result"`
				Warm   bool            `json:"warm"`
			}
			if err := json.Unmarshal(ev.raw, &r); err != nil || r.Result == nil {
				return nil, false, fmt.Errorf("bad result event: %v", err)
			}
			return r.Result, r.Warm, nil
		case "error":
			return nil, false, ev.err()
		}
	}
}

// answer calls a tool and sends its answer: a typed R value when the
// tool returns one, else plain JSON, or the tool's error.
func (c *Conn) answer(ctx context.Context, f securer.ToolFunc, call, name string, args map[string]rvalue.Value) {
	msg := map[string]any{"op": "tool_result", "call": call}
	var (
		v   any
		err error
	)
	if f == nil {
		err = fmt.Errorf("no tool %q", name)
	} else {
		v, err = f(ctx, args)
	}
	if err != nil {
		msg["error"] = err.Error()
	} else if tv, ok := v.(rvalue.Value); ok {
		msg["typed"] = tv
	} else {
		msg["value"] = v
	}
	_ = c.send(msg)
}
