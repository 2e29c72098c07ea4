package service

import (
	"encoding/json"
	"time"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/bridge"
	"github.com/securer-runc/securer-runc/rvalue"
)

// The wire types: every event the server sends and every object in one,
// with each member named explicitly. The engine's types are converted
// into these, never marshalled directly, so that renaming a Go field
// cannot change the protocol; testdata/*.golden pins the bytes.
type (
	helloEvent struct {
		Type     string   `json:"type"` // hello
		Protocol int      `json:"protocol"`
		Server   string   `json:"server"`
		ArgTypes []string `json:"arg_types"`
		// Sandboxed is false on a server started with --unsafe-no-sandbox:
		// its sessions run R on the host, without isolation.
		Sandboxed bool `json:"sandboxed"`
		// AuthRequired: the first request must be auth with the token.
		AuthRequired bool `json:"auth_required"`
	}
	errorEvent struct {
		Type  string    `json:"type"` // error
		ID    string    `json:"id,omitempty"`
		Error errorBody `json:"error"`
	}
	errorBody struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		// RetryAfter, when set, is how many seconds to wait before asking
		// again (busy, limit).
		RetryAfter float64 `json:"retry_after,omitempty"`
	}
	sessionEvent struct {
		Type      string `json:"type"` // session
		ID        string `json:"id"`
		Session   string `json:"session"`
		Sandboxed bool   `json:"sandboxed"`
		// Pid is R's process id as R sees it in the box; Sandbox the
		// session's kind of isolation (securer.Session.SandboxKind).
		Pid     int    `json:"pid"`
		Sandbox string `json:"sandbox"`
		// Limits are those the session got; Clamped names the options
		// a clamp request lowered to the operator's ceilings.
		Limits  *wireLimits `json:"limits"`
		Clamped []string    `json:"clamped,omitempty"`
	}
	poolEvent struct {
		Type   string          `json:"type"` // pool
		ID     string          `json:"id"`
		Pool   string          `json:"pool"`
		Status *wirePoolStatus `json:"status,omitempty"`
		// Set in create_pool's reply only, as in the session event.
		Sandbox string      `json:"sandbox,omitempty"`
		Limits  *wireLimits `json:"limits,omitempty"`
		Clamped []string    `json:"clamped,omitempty"`
	}
	// okEvent is a reply that carries nothing but its type: ok, pong,
	// closed, restarted.
	okEvent struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	}
	// restartedEvent answers restart_session: R's new in-box pid.
	restartedEvent struct {
		Type string `json:"type"` // restarted
		ID   string `json:"id"`
		Pid  int    `json:"pid"`
	}
	textEvent struct {
		Type string `json:"type"` // stdout, stderr
		ID   string `json:"id"`
		Text string `json:"text"`
	}
	toolCallEvent struct {
		Type      string                     `json:"type"` // tool_call
		ID        string                     `json:"id"`
		Call      string                     `json:"call"`
		Tool      string                     `json:"tool"`
		Args      map[string]rvalue.Value    `json:"args"`
		ArgsPlain map[string]json.RawMessage `json:"args_plain"`
	}
	// toolCancelledEvent: a tool_call the server no longer waits for
	// (reason timeout, canceled or ended).
	toolCancelledEvent struct {
		Type   string `json:"type"` // tool_cancelled
		ID     string `json:"id"`
		Call   string `json:"call"`
		Reason string `json:"reason"`
	}
	resultEvent struct {
		Type       string          `json:"type"` // result
		ID         string          `json:"id"`
		Result     *wireResult     `json:"result"`
		ValuePlain json.RawMessage `json:"value_plain"`
		// Warm: a one-shot's only, whether a warm box served it.
		Warm *bool `json:"warm,omitempty"`
		// Clamped: a one-shot's options (and timeout) that clamp lowered
		// to the operator's ceilings, as in the session event.
		Clamped []string `json:"clamped,omitempty"`
	}
)

// wireResult is the result object of a result event. Its members and
// their order are those the engine's Result had on the wire before the
// wire types existed (and still has in run --json): clients depend on
// them. Warnings and messages stay null when the engine has none.
type wireResult struct {
	Verdict         string         `json:"verdict"`
	Value           rvalue.Value   `json:"value"`
	Visible         bool           `json:"visible"`
	Printed         string         `json:"printed"`
	Stdout          string         `json:"stdout"`
	Stderr          string         `json:"stderr"`
	StdoutElided    int64          `json:"stdout_elided,omitempty"`
	StderrElided    int64          `json:"stderr_elided,omitempty"`
	Warnings        []string       `json:"warnings"`
	Messages        []string       `json:"messages"`
	Error           *wireRError    `json:"error,omitempty"`
	Exit            string         `json:"exit,omitempty"`
	Detail          string         `json:"detail,omitempty"`
	StateLost       bool           `json:"state_lost"`
	StateLostReason string         `json:"state_lost_reason,omitempty"`
	Accounting      wireAccounting `json:"accounting"`
	WarningsDropped int64          `json:"warnings_dropped,omitempty"`
	Files           []wireFile     `json:"files,omitempty"`
	FilesDropped    int            `json:"files_dropped,omitempty"`
	PrintedBytes    int64          `json:"printed_bytes"`
	Displays        []wireDisplay  `json:"displays,omitempty"`
	DisplaysDropped int            `json:"displays_dropped,omitempty"`
}

// wireDisplay is one plot page: a MIME bundle (the image base64) and the
// size it was drawn at.
type wireDisplay struct {
	Data     map[string][]byte   `json:"data"`
	Metadata wireDisplayMetadata `json:"metadata"`
}

type wireDisplayMetadata struct {
	Width  int `json:"width"`
	Height int `json:"height"`
	DPI    int `json:"dpi"`
}

// wireRError is the R error of a result.
type wireRError struct {
	Message string   `json:"message"`
	Call    string   `json:"call,omitempty"`
	Class   []string `json:"class"`

	Traceback []string `json:"traceback,omitempty"`
}

// wireAccounting is what an execution cost; durations in nanoseconds.
type wireAccounting struct {
	WallNS          int64  `json:"wall_ns"`
	CPUUserNS       int64  `json:"cpu_user_ns"`
	CPUSystemNS     int64  `json:"cpu_system_ns"`
	PeakMemoryBytes uint64 `json:"peak_memory_bytes"`
	PeakPids        uint64 `json:"peak_pids"`
	OOMKills        uint64 `json:"oom_kills"`
	ToolCalls       int    `json:"tool_calls"`
	StdoutBytes     int64  `json:"stdout_bytes"`
	StderrBytes     int64  `json:"stderr_bytes"`
}

// wirePoolStatus is a pool's snapshot. Until issue 11 its keys were the
// Go field names ("Total", ...).
type wirePoolStatus struct {
	Total    int `json:"total"`
	Idle     int `json:"idle"`
	Busy     int `json:"busy"`
	Starting int `json:"starting"`
	Dead     int `json:"dead"`
}

// wireLimits are the limits a session was created with, named as the
// options that ask for them; timeout in seconds; 0 for max_executions and
// output_limit: none.
type wireLimits struct {
	MemoryBytes   int64   `json:"memory_bytes"`
	Pids          int64   `json:"pids"`
	CPUs          float64 `json:"cpus"`
	TmpBytes      int64   `json:"tmp_bytes"`
	FsizeBytes    uint64  `json:"fsize_bytes"`
	Timeout       float64 `json:"timeout"`
	MaxToolCalls  int     `json:"max_tool_calls"`
	OutputLimit   int64   `json:"output_limit"`
	MaxExecutions int     `json:"max_executions"`
	MaxCodeBytes  int     `json:"max_code_bytes"`
}

// toWireLimits are cfg's limits as a session of it gets them (the
// engine's defaults where cfg leaves one unset).
func toWireLimits(cfg securer.Config) *wireLimits {
	or := func(v, def time.Duration) time.Duration {
		if v > 0 {
			return v
		}
		return def
	}
	l := cfg.Limits.WithDefaults()
	w := &wireLimits{MemoryBytes: l.MemoryBytes, Pids: l.Pids, CPUs: l.CPUs, TmpBytes: l.TmpBytes, FsizeBytes: l.FileSizeBytes,
		Timeout: or(cfg.Timeout, securer.DefaultTimeout).Seconds(), MaxToolCalls: cfg.MaxToolCalls, OutputLimit: cfg.Output.LimitBytes,
		MaxExecutions: cfg.MaxExecutions, MaxCodeBytes: cfg.MaxCodeBytes}
	if w.MaxToolCalls <= 0 {
		w.MaxToolCalls = securer.DefaultMaxToolCalls
	}
	if w.MaxCodeBytes <= 0 {
		w.MaxCodeBytes = securer.DefaultMaxCodeBytes
	}
	return w
}

func newSessionEvent(id, name string, s *securer.Session, cfg securer.Config, clamped []string) sessionEvent {
	return sessionEvent{Type: "session", ID: id, Session: name, Sandboxed: s.Sandboxed(), Pid: s.Pid(), Sandbox: s.SandboxKind(),
		Limits: toWireLimits(cfg), Clamped: clamped}
}

func toWireResult(r *securer.Result) *wireResult {
	w := &wireResult{
		Verdict:         string(r.Verdict),
		Value:           r.Value,
		Visible:         r.Visible,
		Printed:         r.Printed,
		Stdout:          r.Stdout,
		Stderr:          r.Stderr,
		StdoutElided:    r.StdoutElided,
		StderrElided:    r.StderrElided,
		Warnings:        r.Warnings,
		Messages:        r.Messages,
		Exit:            r.Exit,
		Detail:          r.Detail,
		StateLost:       r.StateLost,
		StateLostReason: r.StateLostReason,
		WarningsDropped: r.WarningsDropped,
		PrintedBytes:    r.PrintedBytes,
		DisplaysDropped: r.DisplaysDropped,
		Files:           toWireFiles(r.Files),
		FilesDropped:    r.FilesDropped,
		Accounting: wireAccounting{
			WallNS:          int64(r.Accounting.Wall),
			CPUUserNS:       int64(r.Accounting.CPUUser),
			CPUSystemNS:     int64(r.Accounting.CPUSystem),
			PeakMemoryBytes: r.Accounting.PeakMemoryBytes,
			PeakPids:        r.Accounting.PeakPids,
			OOMKills:        r.Accounting.OOMKills,
			ToolCalls:       r.Accounting.ToolCalls,
			StdoutBytes:     r.Accounting.StdoutBytes,
			StderrBytes:     r.Accounting.StderrBytes,
		},
	}
	if r.Error != nil {
		w.Error = &wireRError{Message: r.Error.Message, Call: r.Error.Call, Class: r.Error.Class, Traceback: r.Error.Traceback}
	}
	for _, d := range r.Displays {
		w.Displays = append(w.Displays, wireDisplay{Data: d.Data, Metadata: wireDisplayMetadata{Width: d.Width, Height: d.Height, DPI: d.DPI}})
	}
	return w
}

func toWirePoolStatus(st securer.PoolStatus) *wirePoolStatus {
	return &wirePoolStatus{Total: st.Total, Idle: st.Idle, Busy: st.Busy, Starting: st.Starting, Dead: st.Dead}
}

// plainJSON is v as plain JSON, null when it has none.
func plainJSON(v rvalue.Value) json.RawMessage {
	b, err := v.PlainJSON()
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}

func newHello(o Options) helloEvent {
	return helloEvent{Type: "hello", Protocol: ProtocolVersion, Server: "securer-runc " + o.Version, ArgTypes: bridge.ArgTypes(),
		Sandboxed: !o.Base.UnsafeNoSandbox, AuthRequired: o.Token != ""}
}

func newErrorEvent(id string, err error) errorEvent {
	return errorEvent{Type: "error", ID: id, Error: errorBody{Code: errCode(err), Message: err.Error(), RetryAfter: retryAfter(err)}}
}

// newReply is a reply without content: typ is ok, pong, closed or
// restarted.
func newReply(typ, id string) okEvent { return okEvent{Type: typ, ID: id} }

func newPoolEvent(id, name string, st securer.PoolStatus) poolEvent {
	return poolEvent{Type: "pool", ID: id, Pool: name, Status: toWirePoolStatus(st)}
}

func newResultEvent(id string, r *securer.Result) resultEvent {
	return resultEvent{Type: "result", ID: id, Result: toWireResult(r), ValuePlain: plainJSON(r.Value)}
}

// newCanceledResult ends an execution that never ran: its value_plain is
// null (nothing ran), not NULL's {}.
func newCanceledResult(id, detail string) resultEvent {
	ev := newResultEvent(id, &securer.Result{Verdict: securer.VerdictCanceled, Value: rvalue.Null(), Detail: detail})
	ev.ValuePlain = json.RawMessage("null")
	return ev
}

func newToolCallEvent(id, call, tool string, args map[string]rvalue.Value) toolCallEvent {
	plain := make(map[string]json.RawMessage, len(args))
	for k, v := range args {
		plain[k] = plainJSON(v)
	}
	return toolCallEvent{Type: "tool_call", ID: id, Call: call, Tool: tool, Args: args, ArgsPlain: plain}
}

// Why a tool call is no longer waited for (tool_cancelled's reason).
const (
	reasonTimeout  = "timeout"  // the execution's timeout, or the tool's own
	reasonCanceled = "canceled" // a cancel, or the connection's end
	reasonEnded    = "ended"    // the execution ended otherwise
)

func newToolCancelledEvent(id, call, reason string) toolCancelledEvent {
	return toolCancelledEvent{Type: "tool_cancelled", ID: id, Call: call, Reason: reason}
}

// encodeEvent is an event as the line the client reads, without its
// newline.
func encodeEvent(ev any) ([]byte, error) { return json.Marshal(ev) }
