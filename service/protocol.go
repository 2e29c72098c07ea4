// Package service serves securer sessions to clients that do not link Go:
// newline-delimited JSON messages over one stream (a parent's stdin and
// stdout, or a Unix socket connection). PROTOCOL.md documents it.
package service

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	securer "github.com/securer-runc/securer-runc"
)

// ProtocolVersion is sent in the server's hello.
const ProtocolVersion = 1

// MaxRequestBytes is the default cap on one message from a client
// (Options.MaxMessageBytes).
const MaxRequestBytes = 16 << 20

// request is every message a client sends; which members matter depends
// on Op. Unknown members and duplicate names are refused.
type request struct {
	Op string `json:"op"`
	ID string `json:"id"`

	// create_session, create_pool
	Tools   []toolDecl      `json:"tools,omitempty"`
	Options *sessionOptions `json:"options,omitempty"`
	Size    int             `json:"size,omitempty"`
	Reset   string          `json:"reset,omitempty"`
	// Clamp lowers limits asked above the operator's ceilings to them
	// instead of refusing the request.
	Clamp bool `json:"clamp,omitempty"`

	// execute, close_session, restart_session, close_pool, pool_status
	Session string  `json:"session,omitempty"`
	Pool    string  `json:"pool,omitempty"`
	Code    string  `json:"code,omitempty"`
	Fresh   bool    `json:"fresh,omitempty"`
	Timeout float64 `json:"timeout,omitempty"` // seconds
	// AcquireTimeout (seconds, pool execute) bounds the wait for a free
	// session; absent: as long as the execution may wait.
	AcquireTimeout *float64     `json:"acquire_timeout,omitempty"`
	Plots          *plotOptions `json:"plots,omitempty"`

	// tool_result
	Call  string         `json:"call,omitempty"`
	Value jsontext.Value `json:"value,omitempty"` // plain JSON, simplified in R as jsonlite would
	Typed jsontext.Value `json:"typed,omitempty"` // a typed R value (the wire format)
	Error *string        `json:"error,omitempty"`

	// cancel
	Target string `json:"target,omitempty"`

	// put_file, get_file (with session); execute's files
	Name    string          `json:"name,omitempty"`
	Data    []byte          `json:"data,omitempty"` // base64
	Inputs  []wireFile      `json:"inputs,omitempty"`
	Outputs *outputsRequest `json:"outputs,omitempty"`

	// auth: the first request on a server with a token
	Token string `json:"token,omitempty"`
}

// plotOptions say how one execution's plots come back; zero members take
// the defaults (png, 768x576, 96 dpi).
type plotOptions struct {
	Format string `json:"format,omitempty"` // png, svg or none
	Width  int    `json:"width,omitempty"`  // pixels
	Height int    `json:"height,omitempty"` // pixels
	DPI    int    `json:"dpi,omitempty"`
}

// toolDecl is a tool the client answers itself.
type toolDecl struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Args        []argDecl `json:"args,omitempty"`
	Timeout     float64   `json:"timeout,omitempty"` // seconds; 0: the execution's
}

type argDecl struct {
	Name string `json:"name"`
	Type string `json:"type,omitempty"`
}

// sessionOptions are what a client may choose; everything else (rootfs,
// state, cgroups, isolation) is the operator's.
type sessionOptions struct {
	MemoryBytes   *int64   `json:"memory_bytes,omitempty"` // given as 0: refused
	Pids          int64    `json:"pids,omitempty"`
	CPUs          float64  `json:"cpus,omitempty"`
	TmpBytes      int64    `json:"tmp_bytes,omitempty"`
	FsizeBytes    int64    `json:"fsize_bytes,omitempty"`
	Timeout       float64  `json:"timeout,omitempty"` // seconds, per execution
	MaxToolCalls  int      `json:"max_tool_calls,omitempty"`
	OutputLimit   int64    `json:"output_limit,omitempty"`
	MaxExecutions int      `json:"max_executions,omitempty"`
	MaxCodeBytes  int      `json:"max_code_bytes,omitempty"`
	Preload       []string `json:"preload,omitempty"`
}

// opMembers are the members each op may carry. A member another op
// defines is refused too: whatever a request carries, the server may hold
// while the request waits, so it takes only what the op uses.
var opMembers = map[string][]string{
	"auth":            {"token"},
	"ping":            nil,
	"create_session":  {"tools", "options", "clamp"},
	"create_pool":     {"size", "reset", "tools", "options", "clamp"},
	"execute":         {"session", "pool", "code", "fresh", "timeout", "acquire_timeout", "plots", "inputs", "outputs", "tools", "options", "clamp"},
	"tool_result":     {"call", "value", "typed", "error"},
	"cancel":          {"target"},
	"restart_session": {"session"},
	"close_session":   {"session"},
	"pool_status":     {"pool"},
	"close_pool":      {"pool"},
	"put_file":        {"session", "name", "data"},
	"get_file":        {"session", "name"},
	"list_files":      {"session"},
}

func decodeRequest(line []byte) (*request, error) {
	var r request
	if err := jsonv2.Unmarshal(line, &r, jsonv2.RejectUnknownMembers(true)); err != nil {
		return nil, err
	}
	allowed, ok := opMembers[r.Op]
	if !ok {
		return &r, nil // the caller says "unknown op"
	}
	names, err := memberNames(line)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if n != "op" && n != "id" && !slices.Contains(allowed, n) {
			return nil, fmt.Errorf("%s does not take %q", r.Op, n)
		}
	}
	return &r, nil
}

// memberNames lists the top-level member names of a JSON object, skipping
// the values.
func memberNames(line []byte) ([]string, error) {
	d := jsontext.NewDecoder(bytes.NewReader(line))
	if _, err := d.ReadToken(); err != nil { // {
		return nil, err
	}
	var names []string
	for d.PeekKind() != '}' {
		tok, err := d.ReadToken()
		if err != nil {
			return nil, err
		}
		names = append(names, tok.String())
		if err := d.SkipValue(); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// Error codes in error events.
const (
	CodeBadRequest    = "bad_request"
	CodeNotFound      = "not_found"
	CodeInvalidConfig = "invalid_config"
	CodeBusy          = "busy"
	CodePoolBusy      = "pool_busy"
	CodeClosed        = "closed"
	CodeRejected      = "rejected"
	CodeUnavailable   = "sandbox_unavailable"
	CodeNeedsSandbox  = "needs_sandbox"
	CodeUnauthorized  = "unauthorized"
	CodeDraining      = "draining"
	CodeLimit         = "limit"
	CodeIdle          = "idle"
	CodeStartTimeout  = "start_timeout"
	CodeStartFailed   = "start_failed"
	CodeCanceled      = "canceled"
	CodeInternal      = "internal"
)

// errCode maps an engine error to its code.
func errCode(err error) string {
	switch {
	case errors.Is(err, errBadRequest):
		return CodeBadRequest
	case isFileRefused(err):
		return CodeFileRefused
	case errors.Is(err, errNotFound):
		return CodeNotFound
	case errors.Is(err, errDraining):
		return CodeDraining
	case errors.Is(err, errTooMany):
		return CodeLimit
	case errors.Is(err, errIdle):
		return CodeIdle
	case errors.Is(err, errStartTimeout):
		return CodeStartTimeout
	case errors.Is(err, errStartFailed):
		return CodeStartFailed
	case errors.Is(err, errUnauthorized):
		return CodeUnauthorized
	case errors.Is(err, securer.ErrInvalidConfig):
		return CodeInvalidConfig
	case errors.Is(err, securer.ErrBusy):
		return CodeBusy
	case errors.Is(err, securer.ErrPoolBusy):
		return CodePoolBusy
	case errors.Is(err, securer.ErrSessionClosed), errors.Is(err, securer.ErrPoolClosed):
		return CodeClosed
	case errors.Is(err, securer.ErrRejected):
		return CodeRejected
	case errors.Is(err, securer.ErrSandboxUnavailable):
		return CodeUnavailable
	case errors.Is(err, securer.ErrNeedsSandbox):
		return CodeNeedsSandbox
	case errors.Is(err, securer.ErrCanceled):
		// The request was given up (its client gone, or a cancel) before
		// the code ran: not the server's failure.
		return CodeCanceled
	}
	return CodeInternal
}

var (
	errBadRequest   = errors.New("bad request")
	errNotFound     = errors.New("not found")
	errDraining     = errors.New("the server is shutting down")
	errTooMany      = errors.New("over a server limit")
	errUnauthorized = errors.New("unauthorized")
	errIdle         = errors.New("idle connection")
	errStartTimeout = errors.New("the sandbox did not start in time")
	errStartFailed  = errors.New("the sandbox failed to start")
)

// retryError is a refusal that may succeed later: the error event says
// after how long to try again.
type retryError struct {
	err   error
	after time.Duration
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

func retryAfter(err error) float64 {
	var r *retryError
	if errors.As(err, &r) {
		return r.after.Seconds()
	}
	return 0
}
