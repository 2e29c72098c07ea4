// Package bridge is the socket protocol between the host and the R runtime
// inside a session: newline-delimited JSON frames, size-checked before they
// are buffered and strictly decoded, plus the R runtime itself (embedded).
//
// R -> host: hello, ready, forked, tool_call, result, swept, file_reply.
// Host -> R: init, execute, code, tool_result, sweep, put_file, get_file,
// list_files. Every message is one JSON
// object on one line.
package bridge

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/securer-runc/securer-runc/rvalue"
)

// ProtocolVersion is sent by the R runtime in its hello.
const ProtocolVersion = 1

// DefaultMaxFrame caps one frame from R; larger ones end the execution.
const DefaultMaxFrame = 16 << 20

// ErrProtocol marks anything the R side sent that breaks the protocol.
var ErrProtocol = errors.New("protocol violation")

// ErrFrameTooLarge is an ErrProtocol for an over-long frame.
var ErrFrameTooLarge = fmt.Errorf("%w: frame too large", ErrProtocol)

func violation(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, a...))
}

// Hello is the first frame R sends.
type Hello struct {
	Type     string `json:"type"`
	Protocol int    `json:"protocol"`
	Pid      int    `json:"pid"`
	RVersion string `json:"r_version"`
}

// Ready is R's answer to init: the tools are defined and the preloaded
// packages attached, or Error says why not.
type Ready struct {
	Type  string `json:"type"`
	Error string `json:"error"`
}

// Forked is the forked copy of a fresh execution, ready for its code.
type Forked struct {
	Type string `json:"type"`
	ID   uint64 `json:"id"`
}

// Swept is the warm R, done clearing the box after a fresh execution.
// Token repeats the Sweep's: the host sends it only once the execution's
// processes are gone, so no frame they wrote can carry it.
type Swept struct {
	Type  string `json:"type"`
	ID    uint64 `json:"id"`
	Token string `json:"token"`
	// Error says why the box could not be swept clean (files the code
	// left that could not be deleted); the host then retires the box.
	Error string `json:"error,omitempty"`
}

// ToolCall is R asking the host to run a tool.
type ToolCall struct {
	Type string                  `json:"type"`
	ID   uint64                  `json:"id"`
	Tool string                  `json:"tool"`
	Args map[string]rvalue.Value `json:"args"`
}

// RError is an R condition that ended an execution.
type RError struct {
	Message string   `json:"message"`
	Call    *string  `json:"call"`
	Class   []string `json:"class"`
	// Traceback is the code's calls at the signal, innermost last.
	Traceback []string `json:"traceback"`
}

// Display is one plot page: its image under its MIME type (image/png or
// image/svg+xml), base64 in the frame.
type Display struct {
	Data     map[string][]byte `json:"data"`
	Metadata DisplayMetadata   `json:"metadata"`
}

// DisplayMetadata is the size a page was drawn at.
type DisplayMetadata struct {
	Width  int `json:"width"`
	Height int `json:"height"`
	DPI    int `json:"dpi"`
}

// Plot bounds, shared by the host's checks and R's.
const (
	MaxDisplays       = 20
	MinPlotPixels     = 16
	MaxPlotPixels     = 4096
	MinPlotDPI        = 36
	MaxPlotDPI        = 600
	MaxDisplayBytes   = 2 << 20 // one page, decoded
	MaxDisplaysBytes  = 4 << 20 // one execution, decoded
	DisplayMIMEPNG    = "image/png"
	DisplayMIMESVG    = "image/svg+xml"
	PlotFormatPNG     = "png"
	PlotFormatSVG     = "svg"
	PlotFormatNone    = "none"
	DefaultPlotWidth  = 768
	DefaultPlotHeight = 576
	DefaultPlotDPI    = 96
)

// Plots is how an execution's plots come back (Execute.Plots). Zero
// numbers and an empty format mean the defaults.
type Plots struct {
	Format string `json:"format,omitempty"`
	Width  int    `json:"width,omitempty"`
	Height int    `json:"height,omitempty"`
	DPI    int    `json:"dpi,omitempty"`
}

// Result ends an execution.
type Result struct {
	Type        string       `json:"type"`
	ID          uint64       `json:"id"`
	Value       rvalue.Value `json:"value"`
	Visible     bool         `json:"visible"`
	Printed     string       `json:"printed"`
	Warnings    []string     `json:"warnings"`
	Messages    []string     `json:"messages"`
	Error       *RError      `json:"error"`
	Interrupted bool         `json:"interrupted"`

	// WarningsDropped counts warnings past those in Warnings (R sends the
	// first 100); absent means none.
	WarningsDropped int64 `json:"warnings_dropped"`

	// PrintedBytes is how many bytes the auto-print wrote to stdout.
	PrintedBytes int64 `json:"printed_bytes"`
	// Displays are the plot pages the code drew, in order;
	// DisplaysDropped counts those over the limits.
	Displays        []Display `json:"displays"`
	DisplaysDropped int64     `json:"displays_dropped"`
	// Files are the files the code made or changed in the work dir, when
	// the execution collects them; FilesDropped counts those left out.
	Files        []File `json:"files"`
	FilesDropped int64  `json:"files_dropped"`
}

// ToolDecl tells R which tool functions to define.
type ToolDecl struct {
	Name string   `json:"name"`
	Args []string `json:"args"`
}

// Init is the host's answer to hello.
type Init struct {
	Type  string     `json:"type"`
	Tools []ToolDecl `json:"tools"`
	// MaxFrame is the largest frame the host accepts; R refuses to send
	// larger ones itself, with an R error instead of a broken session.
	MaxFrame int `json:"max_frame"`
	// Preload lists R packages to attach once, before any execution.
	Preload []string `json:"preload"`
	// MergePages: offer the start-up memory to page merging once idle
	// (Host.UnsafeMergePages).
	MergePages bool `json:"merge_pages,omitempty"`
}

// Execute asks R to run code.
type Execute struct {
	Type string `json:"type"`
	ID   uint64 `json:"id"`
	Code string `json:"code"`
	// StaleInterrupt: the last execution was interrupted after its code
	// may have ended, so a SIGINT may still be pending in R; R drops it
	// before running this code.
	StaleInterrupt bool `json:"stale_interrupt,omitempty"`
	// Fresh runs the code in a forked copy of the warm R, so that nothing
	// it does persists. Code is then empty: it goes in a Code message to
	// the copy alone, once it reports Forked, so that the warm R never
	// holds any execution's code in its memory.
	Fresh bool `json:"fresh,omitempty"`
	// Plots says how plots come back; nil: the defaults.
	Plots *Plots `json:"plots,omitempty"`
	// Inputs are written to the work dir before the code runs (by the
	// copy, for a fresh execution: they go in its Code message); Collect
	// asks for the files the code made or changed in Result.Files.
	Inputs  []File `json:"inputs,omitempty"`
	Collect bool   `json:"collect,omitzero"`
}

// Code is a fresh execution's code, for its forked copy only.
type Code struct {
	Type    string `json:"type"`
	ID      uint64 `json:"id"`
	Code    string `json:"code"`
	Inputs  []File `json:"inputs,omitempty"`
	Collect bool   `json:"collect,omitzero"`
}

// Sweep asks the warm R to clear the box after fresh execution ID, once
// the host has ended every process of the box but init and the warm R.
// Token is random and new each time; the Swept answer repeats it.
type Sweep struct {
	Type  string `json:"type"`
	ID    uint64 `json:"id"`
	Token string `json:"token"`
}

// ToolResult answers a ToolCall with a value or an error message.
type ToolResult struct {
	Type  string        `json:"type"`
	ID    uint64        `json:"id"`
	Value *rvalue.Value `json:"value,omitempty"`
	Error string        `json:"error,omitempty"`
}

// Encode renders a host message as one frame (newline included).
func Encode(msg any) ([]byte, error) {
	b, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Reader reads frames from R.
type Reader struct {
	br       *bufio.Reader
	maxFrame int
	buf      []byte
	// conn and frameTimeout bound each frame once it has begun.
	conn         interface{ SetReadDeadline(time.Time) error }
	frameTimeout time.Duration
}

// NewReader reads frames of at most maxFrame bytes (0: DefaultMaxFrame).
func NewReader(r io.Reader, maxFrame int) *Reader {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	rd := &Reader{br: bufio.NewReaderSize(r, 64<<10), maxFrame: maxFrame}
	rd.conn, _ = r.(interface{ SetReadDeadline(time.Time) error })
	return rd
}

// SetMaxFrame changes the frame limit for the frames read from now on.
func (r *Reader) SetMaxFrame(n int) { r.maxFrame = n }

// SetFrameTimeout bounds how long a frame may take from its first byte to
// its newline, so that a peer trickling bytes cannot hold the reader
// forever. The wait for a frame to begin stays unbounded: R may compute
// for as long as the host lets it. It needs a source with read deadlines
// (a net.Conn); on other sources it does nothing.
func (r *Reader) SetFrameTimeout(d time.Duration) { r.frameTimeout = d }

// ReadFrame returns the next frame without its newline. The frame's bytes
// are only valid until the next call. A frame longer than the limit is an
// error before more than the limit (plus one read buffer) is held.
func (r *Reader) ReadFrame() ([]byte, error) {
	// A big frame's buffer is not kept for the life of the session.
	if cap(r.buf) > keptFrameBuffer {
		r.buf = nil
	}
	r.buf = r.buf[:0]
	if r.frameTimeout > 0 && r.conn != nil {
		if r.br.Buffered() == 0 {
			if _, err := r.br.Peek(1); err != nil {
				return nil, err
			}
		}
		_ = r.conn.SetReadDeadline(time.Now().Add(r.frameTimeout))
		defer func() { _ = r.conn.SetReadDeadline(time.Time{}) }()
	}
	for {
		chunk, err := r.br.ReadSlice('\n')
		if len(r.buf)+len(chunk) > r.maxFrame+1 {
			r.buf = nil
			return nil, fmt.Errorf("%w: more than %d bytes", ErrFrameTooLarge, r.maxFrame)
		}
		switch {
		case err == nil:
			if len(r.buf) == 0 {
				return chunk[:len(chunk)-1], nil
			}
			r.grow(len(chunk))
			r.buf = append(r.buf, chunk[:len(chunk)-1]...)
			return r.buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			r.grow(len(chunk))
			r.buf = append(r.buf, chunk...)
		case errors.Is(err, io.EOF) && len(r.buf)+len(chunk) > 0:
			return nil, violation("connection closed inside a frame")
		case errors.Is(err, os.ErrDeadlineExceeded):
			got := len(r.buf) + len(chunk)
			r.buf = nil
			return nil, violation("a frame took longer than %s to arrive (%d bytes so far)", r.frameTimeout, got)
		default:
			return nil, err
		}
	}
}

// keptFrameBuffer is the largest frame buffer kept between frames.
const keptFrameBuffer = 1 << 20

// grow makes room for n more bytes: doubling up to keptFrameBuffer, then
// straight to the frame limit, so that even refusing an over-long frame
// holds little more than the limit (append's own growth overshoots it, and
// doubling all the way would hold 1.5 times the limit while copying).
func (r *Reader) grow(n int) {
	need := len(r.buf) + n
	if need <= cap(r.buf) {
		return
	}
	c := max(2*cap(r.buf), need, 64<<10)
	if c > keptFrameBuffer {
		c = r.maxFrame + 1
	}
	c = min(c, r.maxFrame+1)
	b := make([]byte, len(r.buf), c)
	copy(b, r.buf)
	r.buf = b
}

// Decode strictly decodes one frame from R into a *Hello, *ToolCall or
// *Result: unknown members, duplicate names, invalid UTF-8, wrong types and
// unknown message types are all errors.
func Decode(frame []byte) (any, error) {
	frame = bytes.TrimSuffix(frame, []byte("\r"))
	// The runtime writes a tool call's type first: read it in one pass,
	// which is most of the host's time in a call. Any other spelling takes
	// the general path below; both accept exactly the same frames
	// (FuzzToolCallOnePass).
	if bytes.HasPrefix(frame, toolCallPrefix) {
		return decodeToolCall(frame)
	}
	return decodeGeneral(frame)
}

// decodeGeneral reads the type first, then the frame as that message.
func decodeGeneral(frame []byte) (any, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(frame, &head); err != nil {
		return nil, violation("bad frame: %v", err)
	}
	strict := json.RejectUnknownMembers(true)
	// One budget of value objects for the whole frame (see
	// rvalue.DefaultMaxValues): R values are decoded from raw members here
	// rather than by the generic decoder, which would give each its own.
	budget := &valueBudget{left: rvalue.DefaultMaxValues}
	// Messages with nothing but plain members decode as they are.
	plain := map[string]func() any{
		"hello":  func() any { return &Hello{} },
		"ready":  func() any { return &Ready{} },
		"forked": func() any { return &Forked{} },
		"swept":  func() any { return &Swept{} },

		"file_reply": func() any { return &FileReply{} },
	}
	if mk, ok := plain[head.Type]; ok {
		msg := mk()
		if err := json.Unmarshal(frame, msg, strict); err != nil {
			return nil, violation("bad %s frame: %v", head.Type, err)
		}
		return msg, nil
	}
	switch head.Type {
	case "tool_call":
		var w struct {
			Type string         `json:"type"`
			ID   uint64         `json:"id"`
			Tool string         `json:"tool"`
			Args jsontext.Value `json:"args"`
		}
		if err := json.Unmarshal(frame, &w, strict); err != nil {
			return nil, violation("bad tool_call frame: %v", err)
		}
		args, err := decodeArgs(w.Args)
		if err != nil {
			return nil, err
		}
		return &ToolCall{Type: w.Type, ID: w.ID, Tool: w.Tool, Args: args}, nil
	case "result":
		var w struct {
			Type        string         `json:"type"`
			ID          uint64         `json:"id"`
			Value       jsontext.Value `json:"value"`
			Visible     bool           `json:"visible"`
			Printed     string         `json:"printed"`
			Warnings    []string       `json:"warnings"`
			Messages    []string       `json:"messages"`
			Error       *RError        `json:"error"`
			Interrupted bool           `json:"interrupted"`

			WarningsDropped int64     `json:"warnings_dropped"`
			PrintedBytes    int64     `json:"printed_bytes"`
			Displays        []Display `json:"displays"`
			DisplaysDropped int64     `json:"displays_dropped"`
			Files           []File    `json:"files"`
			FilesDropped    int64     `json:"files_dropped"`
		}
		if err := json.Unmarshal(frame, &w, strict); err != nil {
			return nil, violation("bad result frame: %v", err)
		}
		if w.FilesDropped < 0 {
			return nil, violation("bad result frame: files_dropped is %d", w.FilesDropped)
		}
		if w.WarningsDropped < 0 {
			return nil, violation("bad result frame: warnings_dropped is %d", w.WarningsDropped)
		}
		if w.PrintedBytes < 0 || w.DisplaysDropped < 0 {
			return nil, violation("bad result frame: printed_bytes %d, displays_dropped %d", w.PrintedBytes, w.DisplaysDropped)
		}
		if err := checkDisplays(w.Displays); err != nil {
			return nil, err
		}
		v, err := budget.decode(w.Value, "result value")
		if err != nil {
			return nil, err
		}
		return &Result{Type: w.Type, ID: w.ID, Value: v, Visible: w.Visible, Printed: w.Printed,
			Warnings: w.Warnings, Messages: w.Messages, Error: w.Error, Interrupted: w.Interrupted,
			WarningsDropped: w.WarningsDropped, PrintedBytes: w.PrintedBytes,
			Displays: w.Displays, DisplaysDropped: w.DisplaysDropped,
			Files: w.Files, FilesDropped: w.FilesDropped}, nil
	case "":
		return nil, violation("frame has no type")
	}
	return nil, violation("unexpected message type %q", truncate(head.Type, 64))
}

// MaxArgs bounds the arguments of one tool call, before validation looks
// at their names.
const MaxArgs = 64

var toolCallPrefix = []byte(`{"type":"tool_call",`)

// decodeToolCall decodes a tool_call frame in one pass of a strict JSON
// decoder (duplicate names and invalid UTF-8 are errors there), its
// arguments' values included.
func decodeToolCall(frame []byte) (*ToolCall, error) {
	d := jsontext.NewDecoder(bytes.NewReader(frame))
	bad := func(err error) (*ToolCall, error) { return nil, violation("bad tool_call frame: %v", err) }
	if tok, err := d.ReadToken(); err != nil {
		return bad(err)
	} else if tok.Kind() != '{' {
		return bad(fmt.Errorf("not an object"))
	}
	call := &ToolCall{}
	var args map[string]rvalue.Value
	for d.PeekKind() != '}' {
		tok, err := d.ReadToken()
		if err != nil {
			return bad(err)
		}
		switch member := tok.String(); member {
		case "type", "tool":
			v, err := d.ReadToken()
			if err != nil {
				return bad(err)
			}
			switch {
			case v.Kind() == 'n': // null leaves the zero value, as the general decoder does
			case v.Kind() != '"':
				return bad(fmt.Errorf("%s must be a string, not %s", member, v.Kind()))
			case member == "type":
				call.Type = v.String()
			default:
				call.Tool = v.String()
			}
		case "id":
			v, err := d.ReadValue()
			if err != nil {
				return bad(err)
			}
			if v.Kind() == 'n' {
				continue
			}
			if v.Kind() != '0' {
				return bad(fmt.Errorf("id must be a number, not %s", v.Kind()))
			}
			if call.ID, err = strconv.ParseUint(string(v), 10, 64); err != nil {
				return bad(fmt.Errorf("id %s is not a whole number", truncate(string(v), 32)))
			}
		case "args":
			if args, err = readArgs(d); err != nil {
				return nil, err
			}
		default:
			return bad(fmt.Errorf("unknown member %q", truncate(member, 64)))
		}
	}
	if _, err := d.ReadToken(); err != nil {
		return bad(err)
	}
	if _, err := d.ReadToken(); err != io.EOF {
		return bad(fmt.Errorf("data after the object"))
	}
	if call.Type != "tool_call" {
		return nil, violation("unexpected message type %q", truncate(call.Type, 64))
	}
	if args == nil {
		return nil, violation("tool_call has no args")
	}
	call.Args = args
	return call, nil
}

// readArgs reads a tool call's args object from d, each value decoded
// in place within one budget of values for the frame.
func readArgs(d *jsontext.Decoder) (map[string]rvalue.Value, error) {
	if d.PeekKind() != '{' {
		if _, err := d.ReadValue(); err != nil {
			return nil, violation("bad tool_call frame: %v", err)
		}
		return nil, violation("tool_call args must be an object")
	}
	if _, err := d.ReadToken(); err != nil {
		return nil, violation("bad tool_call frame: %v", err)
	}
	budget := valueBudget{left: rvalue.DefaultMaxValues}
	args := map[string]rvalue.Value{}
	for d.PeekKind() != '}' {
		if len(args) == MaxArgs {
			return nil, violation("tool_call has more than %d arguments", MaxArgs)
		}
		tok, err := d.ReadToken()
		if err != nil {
			return nil, violation("bad tool_call args: %v", err)
		}
		name := tok.String()
		// Named only in an error (the string costs an allocation a call).
		what := func() string { return "argument " + strconv.Quote(truncate(name, 64)) }
		if budget.left <= 0 {
			return nil, violation("%s: the frame holds too many values", what())
		}
		v, err := rvalue.DecodeFrom(d, rvalue.DecodeOptions{MaxValues: budget.left})
		if err != nil {
			return nil, violation("%s: %v", what(), err)
		}
		budget.left -= v.Count()
		if hostOnly(v) {
			return nil, violation("%s holds a host-only json value", what())
		}
		args[name] = v
	}
	if _, err := d.ReadToken(); err != nil {
		return nil, violation("bad tool_call args: %v", err)
	}
	return args, nil
}

// decodeArgs decodes the raw args member of a tool_call frame (the
// general path), the same way the one-pass decoder reads it.
func decodeArgs(raw jsontext.Value) (map[string]rvalue.Value, error) {
	if len(raw) == 0 {
		return nil, violation("tool_call has no args")
	}
	return readArgs(jsontext.NewDecoder(bytes.NewReader(raw)))
}

type valueBudget struct{ left int }

// decode decodes one R value within what is left of the frame's budget.
// The json type is refused: only the host may send it (R turns it into
// ordinary values), so from R it is forged.
func (b *valueBudget) decode(raw jsontext.Value, what string) (rvalue.Value, error) {
	if b.left <= 0 {
		return rvalue.Value{}, violation("%s: the frame holds too many values", what)
	}
	v, err := rvalue.Decode(raw, rvalue.DecodeOptions{MaxValues: b.left})
	if err != nil {
		return rvalue.Value{}, violation("%s: %v", what, err)
	}
	b.left -= v.Count()
	if hostOnly(v) {
		return rvalue.Value{}, violation("%s holds a host-only json value", what)
	}
	return v, nil
}

// hostOnly reports whether v holds the json type anywhere: only the host
// may send it (R turns it into ordinary values), so from R it is forged.
func hostOnly(v rvalue.Value) bool {
	if v.Type() == rvalue.TypeJSON {
		return true
	}
	for _, e := range v.List() {
		if hostOnly(e) {
			return true
		}
	}
	for _, a := range v.Attrs() {
		if hostOnly(a.Value) {
			return true
		}
	}
	return false
}

// ToolSpec is what the host knows of a tool when validating a call.
type ToolSpec struct {
	Name string
	Args []ArgSpec
}

// ArgSpec is one declared argument; an empty Type is not checked.
type ArgSpec struct {
	Name string
	Type string
}

// namePattern is what tool and argument names must match (securer's rule).
var namePattern = regexp.MustCompile(`^[A-Za-z.][A-Za-z0-9_.]*$`)

// ValidName reports whether s may name a tool or an argument.
func ValidName(s string) bool { return namePattern.MatchString(s) }

// ValidArgName reports whether s may name a declared argument: a valid
// name that R does not reserve for its own argument passing ("..." and
// "..1", "..2"...), which a tool's R function could not take.
func ValidArgName(s string) bool {
	return ValidName(s) && s != "..." && !dotDotN.MatchString(s)
}

var dotDotN = regexp.MustCompile(`^\.\.[0-9]+$`)

// NameRule describes ValidName's rule for error messages.
const NameRule = `^[A-Za-z.][A-Za-z0-9_.]*$`

// ArgTypes returns the type strings of securer_tool.
func ArgTypes() []string {
	return []string{"numeric", "character", "logical", "integer", "list", "data.frame"}
}

// ErrInvalidCall marks a tool call the host refused.
var ErrInvalidCall = errors.New("invalid tool call")

// CallError is a refused tool call. Its text is what the box's code sees
// as the condition message, worded as securer 0.2.0 worded it ("Tool
// 'add': argument 'a' must be numeric, got character"), so code matching
// those messages keeps working; it matches ErrInvalidCall with errors.Is.
type CallError struct{ msg string }

func (e *CallError) Error() string { return e.msg }

// Unwrap makes errors.Is(err, ErrInvalidCall) hold.
func (e *CallError) Unwrap() error { return ErrInvalidCall }

func callError(format string, a ...any) error {
	return &CallError{msg: fmt.Sprintf(format, a...)}
}

// Validate checks a call against the declared tools: exact name match,
// every declared argument present, no others, and declared types. Names
// that come from the box are quoted with %q (they may hold anything);
// declared names are R identifiers and are quoted as R would.
func Validate(tools []ToolSpec, call *ToolCall) (*ToolSpec, error) {
	var spec *ToolSpec
	for i := range tools {
		if tools[i].Name == call.Tool {
			spec = &tools[i]
			break
		}
	}
	if spec == nil {
		return nil, callError("unknown tool %q", truncate(call.Tool, 64))
	}
	for name := range call.Args {
		known := false
		for _, a := range spec.Args {
			known = known || a.Name == name
		}
		if !known {
			return nil, callError("Tool '%s' has no argument %q", spec.Name, truncate(name, 64))
		}
	}
	for _, a := range spec.Args {
		v, ok := call.Args[a.Name]
		if !ok {
			return nil, callError("Tool '%s': argument %q is missing", spec.Name, a.Name)
		}
		if a.Type == "" {
			continue
		}
		if err := v.Check(a.Type); err != nil {
			return nil, callError("Tool '%s': argument '%s' must be %s, got %s", spec.Name, a.Name, a.Type, rClass(v))
		}
	}
	return spec, nil
}

// rClass is R's class(v)[1] as far as a decoded value tells it: the class
// attribute, else the implicit class ("matrix", "array", "numeric" for
// doubles, "function" for closures, the type otherwise).
func rClass(v rvalue.Value) string {
	if c := v.Class(); len(c) > 0 {
		return truncate(c[0], 64)
	}
	switch dim := v.Dim(); {
	case len(dim) == 2:
		return "matrix"
	case len(dim) > 0:
		return "array"
	}
	switch t := v.Type(); t {
	case rvalue.TypeDouble:
		return "numeric"
	case rvalue.TypeUnsupported:
		return "unsupported"
	default:
		return string(t)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// checkDisplays holds R's displays to the limits R itself keeps: a box
// that sends more, or other content, breaks the protocol.
func checkDisplays(ds []Display) error {
	if len(ds) > MaxDisplays {
		return violation("bad result frame: %d displays, over %d", len(ds), MaxDisplays)
	}
	total := 0
	for i, d := range ds {
		if len(d.Data) != 1 {
			return violation("bad result frame: display %d has %d images, not 1", i+1, len(d.Data))
		}
		for mime, b := range d.Data {
			if mime != DisplayMIMEPNG && mime != DisplayMIMESVG {
				return violation("bad result frame: display %d has type %q", i+1, truncate(mime, 64))
			}
			if len(b) == 0 || len(b) > MaxDisplayBytes {
				return violation("bad result frame: display %d is %d bytes", i+1, len(b))
			}
			if mime == DisplayMIMEPNG && !bytes.HasPrefix(b, pngMagic) {
				return violation("bad result frame: display %d is not a PNG", i+1)
			}
			// R draws a page at the size asked, within bounds: a PNG
			// whose header says otherwise (a 100000-pixel square of
			// zeros compresses to little) would make a client that
			// decodes it allocate gigabytes.
			if mime == DisplayMIMEPNG {
				if w, h, ok := pngSize(b); !ok || w != d.Metadata.Width || h != d.Metadata.Height {
					return violation("bad result frame: display %d's PNG header is not a %dx%d image", i+1, d.Metadata.Width, d.Metadata.Height)
				}
			}
			total += len(b)
		}
		m := d.Metadata
		if !inRange(m.Width, MinPlotPixels, MaxPlotPixels) || !inRange(m.Height, MinPlotPixels, MaxPlotPixels) ||
			!inRange(m.DPI, MinPlotDPI, MaxPlotDPI) {
			return violation("bad result frame: display %d metadata %dx%d at %d dpi", i+1, m.Width, m.Height, m.DPI)
		}
	}
	if total > MaxDisplaysBytes {
		return violation("bad result frame: displays hold %d bytes, over %d", total, MaxDisplaysBytes)
	}
	return nil
}

var pngMagic = []byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}

// pngSize reads a PNG's width and height from its first chunk, which the
// format requires to be IHDR.
func pngSize(b []byte) (w, h int, ok bool) {
	if len(b) < 24 || !bytes.HasPrefix(b, pngMagic) || string(b[12:16]) != "IHDR" {
		return 0, 0, false
	}
	return int(binary.BigEndian.Uint32(b[16:20])), int(binary.BigEndian.Uint32(b[20:24])), true
}

func inRange(v, lo, hi int) bool { return v >= lo && v <= hi }

// CheckPlots reports what is wrong with p (nil: nothing), for the host
// to refuse bad plot options before they reach R.
func CheckPlots(p Plots) error {
	switch p.Format {
	case "", PlotFormatPNG, PlotFormatSVG, PlotFormatNone:
	default:
		return fmt.Errorf("plot format %q: want png, svg or none", truncate(p.Format, 64))
	}
	if (p.Width != 0 && !inRange(p.Width, MinPlotPixels, MaxPlotPixels)) ||
		(p.Height != 0 && !inRange(p.Height, MinPlotPixels, MaxPlotPixels)) {
		return fmt.Errorf("plot size %dx%d: each side must be %d..%d pixels", p.Width, p.Height, MinPlotPixels, MaxPlotPixels)
	}
	if p.DPI != 0 && !inRange(p.DPI, MinPlotDPI, MaxPlotDPI) {
		return fmt.Errorf("plot dpi %d: must be %d..%d", p.DPI, MinPlotDPI, MaxPlotDPI)
	}
	return nil
}

// WithDefaults fills p's zero members from def.
func (p Plots) WithDefaults(def Plots) Plots {
	if p.Format == "" {
		p.Format = def.Format
	}
	if p.Width == 0 {
		p.Width = def.Width
	}
	if p.Height == 0 {
		p.Height = def.Height
	}
	if p.DPI == 0 {
		p.DPI = def.DPI
	}
	return p
}
