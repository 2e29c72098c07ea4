package mcpserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/rvalue"
)

// RunOutput is run_r's structured result.
type RunOutput struct {
	Verdict string `json:"verdict" jsonschema:"how the execution ended: ok, error (an R error), timeout, oom, killed, canceled, output_limit, tool_call_limit or protocol_error"`
	// Value is json.RawMessage so that R's plain JSON passes as it is.
	Value        any        `json:"value" jsonschema:"the value of the last top-level expression as plain JSON (vectors of length one as scalars, NA as null, named lists as objects); null after an error or when over the size bound"`
	ValueType    string     `json:"value_type,omitempty" jsonschema:"the value's type as the engine carries it, mostly typeof()'s name (double, integer, character, logical, list, NULL, closure, ...)"`
	ValueOmitted bool       `json:"value_omitted,omitempty" jsonschema:"true when the value was left out for its size (its printed form is in the text)"`
	Visible      bool       `json:"visible" jsonschema:"whether R printed the value (as at the console)"`
	Error        *ErrorInfo `json:"error,omitempty" jsonschema:"the R error or the sandbox verdict that ended the execution"`
	Plots        int        `json:"plots" jsonschema:"how many plot pages came back as image content"`
	OutputURI    string     `json:"output_uri,omitempty" jsonschema:"when the text was cut: the resource holding the whole output (resources/read)"`
	Session      string     `json:"session,omitempty" jsonschema:"the R session handle the code ran in; empty for a fresh one-shot"`
	Warm         *bool      `json:"warm,omitempty" jsonschema:"for a one-shot: whether a box was ready (true) or had to be started (false)"`
	Timing       Timing     `json:"timing"`
}

// ErrorInfo describes what ended an execution that did not succeed.
type ErrorInfo struct {
	Message   string   `json:"message"`
	Call      string   `json:"call,omitempty"`
	Class     []string `json:"class,omitempty"`
	Traceback []string `json:"traceback,omitempty" jsonschema:"the calls when the error was signalled, outermost first"`
}

// Timing is what the execution cost.
type Timing struct {
	WallMS float64 `json:"wall_ms"`
	CPUMS  float64 `json:"cpu_ms" jsonschema:"user and system CPU of the whole box"`
}

// shaper turns Results into MCP tool results.
type shaper struct {
	// inline is how many bytes of text a result carries before the text
	// is cut to its head and tail and the whole kept in store.
	inline int
	// maxValue bounds the plain-JSON value in the structured result.
	maxValue int
	store    *blobStore
}

// tracebackLines is how many traceback calls the text shows, innermost
// last (the structured error has them all).
const tracebackLines = 10

// shape makes the tool result of an execution that ran (res non-nil);
// err is what the execution returned with it.
func (sh shaper) shape(res *securer.Result, err error) (*mcp.CallToolResult, RunOutput) {
	out := RunOutput{
		Verdict: string(res.Verdict),
		Visible: res.Visible,
		Timing: Timing{
			WallMS: ms(res.Accounting.Wall),
			CPUMS:  ms(res.Accounting.CPUUser + res.Accounting.CPUSystem),
		},
	}
	out.Value, out.ValueOmitted = sh.value(res)
	if res.Verdict == securer.VerdictOK {
		out.ValueType = string(res.Value.Type())
	}

	var content []mcp.Content
	text := consoleText(res)
	if len(text) > sh.inline {
		if uri := sh.store.put(text); uri != "" {
			out.OutputURI = uri
			content = append(content, &mcp.TextContent{Text: cut(text, sh.inline, uri)})
		} else {
			content = append(content, &mcp.TextContent{Text: cut(text, sh.inline, "")})
		}
	} else if text != "" {
		content = append(content, &mcp.TextContent{Text: text})
	}
	if res.Verdict != securer.VerdictOK {
		out.Error = errorInfo(res, err)
		content = append(content, &mcp.TextContent{Text: verdictText(res, out.Error)})
	}
	for _, d := range res.Displays {
		mime, data := displayImage(d)
		if mime == "" {
			continue
		}
		content = append(content, &mcp.ImageContent{Data: data, MIMEType: mime})
		out.Plots++
	}
	if res.DisplaysDropped > 0 {
		content = append(content, &mcp.TextContent{Text: fmt.Sprintf("[%d plot page(s) dropped: at most 20 per run, 2 MiB each, 4 MiB together]", res.DisplaysDropped)})
	}
	if out.OutputURI != "" {
		size := int64(len(text))
		content = append(content, &mcp.ResourceLink{
			URI: out.OutputURI, Name: "output", Title: "the whole output of the R code",
			Description: "stdout, then stderr, of the execution (the text above was cut)",
			MIMEType:    "text/plain", Size: &size,
		})
	}
	if len(content) == 0 {
		content = append(content, &mcp.TextContent{Text: "(no output)"})
	}
	return &mcp.CallToolResult{Content: content, IsError: res.Verdict != securer.VerdictOK}, out
}

// consoleText is stdout (which ends with the value's printed form, as
// at the R console), then stderr (messages, warnings, errors) marked.
func consoleText(res *securer.Result) string {
	var b strings.Builder
	b.WriteString(res.Stdout)
	if res.StdoutElided > 0 {
		fmt.Fprintf(&b, "\n[%d bytes of stdout not kept]\n", res.StdoutElided)
	}
	if res.Stderr != "" || res.StderrElided > 0 {
		if b.Len() > 0 && !strings.HasSuffix(b.String(), "\n") {
			b.WriteByte('\n')
		}
		b.WriteString("[stderr]\n")
		b.WriteString(res.Stderr)
		if res.StderrElided > 0 {
			fmt.Fprintf(&b, "\n[%d bytes of stderr not kept]\n", res.StderrElided)
		}
	}
	return b.String()
}

// cut keeps the head and the tail of text, each about a third of limit,
// on UTF-8 boundaries, and says in between what was cut and where the
// whole is.
func cut(text string, limit int, uri string) string {
	part := limit / 3
	head := text[:part]
	for len(head) > 0 && !utf8.ValidString(head) {
		head = head[:len(head)-1]
	}
	tail := text[len(text)-part:]
	for len(tail) > 0 && !utf8.ValidString(tail) {
		tail = tail[1:]
	}
	where := "the whole output could not be kept (over the store's size bound)"
	if uri != "" {
		where = "the whole output: resources/read " + uri
	}
	return fmt.Sprintf("%s\n[... %d bytes cut; %s ...]\n%s", head, len(text)-len(head)-len(tail), where, tail)
}

func (sh shaper) value(res *securer.Result) (any, bool) {
	if res.Verdict != securer.VerdictOK || res.Value.Type() == rvalue.TypeNull {
		// NULL is JSON null here, not plain JSON's {} (an empty named list).
		return nil, false
	}
	b, err := res.Value.PlainJSONNonFinite()
	if err != nil {
		// A value plain JSON cannot hold (an environment, say): its
		// printed form is in the text.
		return nil, true
	}
	if len(b) > sh.maxValue {
		return nil, true
	}
	return json.RawMessage(b), false
}

func errorInfo(res *securer.Result, err error) *ErrorInfo {
	if res.Error != nil {
		return &ErrorInfo{Message: res.Error.Message, Call: res.Error.Call, Class: res.Error.Class, Traceback: res.Error.Traceback}
	}
	msg := string(res.Verdict)
	if err != nil {
		msg = err.Error()
	}
	if res.Detail != "" {
		msg += ": " + res.Detail
	}
	return &ErrorInfo{Message: msg}
}

// verdictText says why the execution failed, for the model: the R error
// and the head of its traceback, or the sandbox's verdict.
func verdictText(res *securer.Result, e *ErrorInfo) string {
	var b strings.Builder
	if res.Verdict == securer.VerdictError && res.Error != nil {
		b.WriteString(res.Error.Error())
		if tb := res.Error.Traceback; len(tb) > 0 {
			b.WriteString("\nTraceback (outermost first):")
			for i, c := range tb {
				if i == tracebackLines {
					fmt.Fprintf(&b, "\n  ... %d more", len(tb)-i)
					break
				}
				fmt.Fprintf(&b, "\n  %d: %s", i+1, c)
			}
		}
		return b.String()
	}
	fmt.Fprintf(&b, "[%s] %s", res.Verdict, e.Message)
	switch res.Verdict {
	case securer.VerdictTimeout:
		b.WriteString("\nThe code ran over its time limit and was stopped; in a session (new_session), what earlier calls made is kept.")
	case securer.VerdictOutOfMemory:
		b.WriteString("\nR ran out of memory and was killed; a persistent session lost its state.")
	case securer.VerdictOutputLimit:
		b.WriteString("\nThe code wrote more output than the limit allows.")
	}
	return b.String()
}

// displayImage is a plot page's image and its MIME type (PNG first).
func displayImage(d securer.Display) (string, []byte) {
	if png, ok := d.Data["image/png"]; ok {
		return "image/png", png
	}
	mimes := make([]string, 0, len(d.Data))
	for m := range d.Data {
		mimes = append(mimes, m)
	}
	sort.Strings(mimes)
	for _, m := range mimes {
		if strings.HasPrefix(m, "image/") {
			return m, d.Data[m]
		}
	}
	return "", nil
}

// explain adds to err what a model needs to act on it; the SDK turns
// the error of a tool handler into a result with isError set.
func explain(err error) error {
	switch {
	case errors.Is(err, securer.ErrBusy):
		return fmt.Errorf("the R session is busy with another run_r call; wait for it, or use another session: %w", err)
	case errors.Is(err, ErrNoSession):
		return fmt.Errorf("%w; make one with new_session, or leave session out for a fresh one-shot", err)
	}
	return err
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
