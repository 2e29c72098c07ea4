package service

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/rvalue"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from what the server sends now")

// fullResult has every field set, so that a member dropped, renamed or
// reordered on the wire changes the golden file.
func fullResult() *securer.Result {
	return &securer.Result{
		Verdict: securer.VerdictError, Value: rvalue.Doubles(1.5, 2).SetAttr("names", rvalue.Strings("a", "b")),
		Visible: true, Printed: "  a   b \n1.5 2.0 \n", Stdout: "out\n", Stderr: "err\n", StdoutElided: 11, StderrElided: 12,
		Warnings: []string{"w1"}, Messages: []string{"m1\n"},
		Error: &securer.RError{Message: "boom", Call: "f(x)", Class: []string{"simpleError", "error", "condition"},
			Traceback: []string{"g()", "f(x)"}},
		Exit: "signal: killed", Detail: "detail", StateLost: true, StateLostReason: "oom", WarningsDropped: 3,
		PrintedBytes: 18, DisplaysDropped: 2,
		Displays: []securer.Display{{Data: map[string][]byte{"image/png": {0x89, 'P', 'N', 'G'}}, Width: 768, Height: 576, DPI: 96}},
		Accounting: securer.Accounting{Wall: 1500 * time.Millisecond, CPUUser: 2, CPUSystem: 3, PeakMemoryBytes: 4,
			PeakPids: 5, OOMKills: 6, ToolCalls: 7, StdoutBytes: 8, StderrBytes: 9},
		Files: []securer.File{{Name: "out.csv", Data: []byte("a\n")}}, FilesDropped: 1,
	}
}

// TestWireGolden pins every event's bytes. A change here is a protocol
// change: say so in PROTOCOL.md before running with -update.
func TestWireGolden(t *testing.T) {
	hello := Options{Version: "dev", Token: "t"}
	tests := []struct {
		name string
		ev   any
	}{
		{"hello", newHello(hello)},
		{"hello_unsandboxed", newHello(Options{Version: "v1.2.3", Base: securer.Config{UnsafeNoSandbox: true}})},
		{"session", sessionEvent{Type: "session", ID: "1", Session: "s1", Sandboxed: true, Pid: 2, Sandbox: securer.SandboxContainer,
			Limits: toWireLimits(securer.Config{Timeout: 30 * time.Second, MaxToolCalls: 10000, MaxCodeBytes: 1 << 20})}},
		{"session_clamped", sessionEvent{Type: "session", ID: "1", Session: "s1", Sandboxed: true, Pid: 2, Sandbox: securer.SandboxContainer,
			Limits: toWireLimits(securer.Config{Limits: securer.Limits{MemoryBytes: 1 << 30, Pids: 128, CPUs: 2, TmpBytes: 1 << 26, FileSizeBytes: 1 << 26},
				Timeout: 3600 * time.Second, MaxToolCalls: 5, MaxExecutions: 7, MaxCodeBytes: 1 << 20, Output: securer.Output{LimitBytes: 1 << 20}}),
			Clamped: []string{"memory_bytes", "timeout"}}},
		{"pool", newPoolEvent("2", "p2", securer.PoolStatus{Total: 4, Idle: 1, Busy: 2, Starting: 1, Dead: 3})},
		{"ok", newReply("ok", "3")},
		{"pong", newReply("pong", "4")},
		{"closed", newReply("closed", "5")},
		{"restarted", restartedEvent{Type: "restarted", ID: "6", Pid: 3}},
		{"stdout", textEvent{Type: "stdout", ID: "7", Text: "hi\n"}},
		{"stderr", textEvent{Type: "stderr", ID: "7", Text: "oh\n"}},
		{"tool_call", newToolCallEvent("7", "7.1", "add", map[string]rvalue.Value{"b": rvalue.Doubles(3), "a": rvalue.Doubles(2)})},
		{"tool_cancelled", newToolCancelledEvent("7", "7.1", reasonTimeout)},
		{"result", newResultEvent("7", fullResult())},
		{"result_canceled", newCanceledResult("8", "d")},
		{"error", newErrorEvent("9", securer.ErrInvalidConfig)},
		{"error_retry", newErrorEvent("10", &retryError{errTooMany, 2 * time.Second})},
		{"error_no_id", newErrorEvent("", errIdle)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkGolden(t, tt.name, tt.ev) })
	}
}

// TestWireCarriesEveryField: a field added to the engine's Result,
// Accounting, RError or PoolStatus must be given a wire name (or left out
// on purpose, here).
func TestWireCarriesEveryField(t *testing.T) {
	tests := []struct {
		engine, wire any
	}{
		{securer.Result{}, wireResult{}},
		{securer.Accounting{}, wireAccounting{}},
		{securer.RError{}, wireRError{}},
		{securer.PoolStatus{}, wirePoolStatus{}},
	}
	for _, tt := range tests {
		e, w := reflect.TypeOf(tt.engine), reflect.TypeOf(tt.wire)
		if e.NumField() != w.NumField() {
			t.Errorf("%s has %d fields, its wire type %s %d: convert the new one", e, e.NumField(), w, w.NumField())
		}
	}
	// Every field set in the engine's result is non-zero on the wire.
	var walk func(path string, v reflect.Value)
	walk = func(path string, v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer:
			if v.IsNil() {
				t.Errorf("%s is nil on the wire", path)
				return
			}
			walk(path, v.Elem())
		case reflect.Struct:
			if v.Type() == reflect.TypeOf(rvalue.Value{}) {
				return
			}
			for i := range v.NumField() {
				walk(path+"."+v.Type().Field(i).Name, v.Field(i))
			}
		default:
			if v.IsZero() {
				t.Errorf("%s is zero on the wire though set in the engine's result", path)
			}
		}
	}
	walk("result", reflect.ValueOf(toWireResult(fullResult())))
	walk("status", reflect.ValueOf(toWirePoolStatus(securer.PoolStatus{Total: 1, Idle: 1, Busy: 1, Starting: 1, Dead: 1})))
}

// TestWireNamesExplicit: every member of every wire type is named by a
// json tag, never by its Go name.
func TestWireNamesExplicit(t *testing.T) {
	for _, v := range []any{helloEvent{}, errorEvent{}, errorBody{}, sessionEvent{}, poolEvent{}, okEvent{}, restartedEvent{}, textEvent{},
		toolCallEvent{}, resultEvent{}, wireResult{}, wireRError{}, wireAccounting{}, wirePoolStatus{}, wireLimits{}, wireDisplay{}, wireDisplayMetadata{},
		wireFile{}, wireFileInfo{}, fileEvent{}, filesEvent{}} {
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				t.Errorf("%s.%s has no json name", typ.Name(), f.Name)
			}
			if name != strings.ToLower(name) {
				t.Errorf("%s.%s is %q on the wire: members are lower case", typ.Name(), f.Name, name)
			}
		}
	}
}

// TestPlainFallback: a value without a plain form is null in
// args_plain and value_plain; NULL is {} (as before the wire types).
func TestPlainFallback(t *testing.T) {
	fn := rvalue.Unsupported([]string{"function"}, "function() 1")
	ev := newToolCallEvent("1", "1.1", "f", map[string]rvalue.Value{"x": fn, "y": rvalue.Null()})
	if got := string(ev.ArgsPlain["x"]); got != "null" {
		t.Errorf("args_plain of an unsupported value: %s, want null", got)
	}
	if got := string(ev.ArgsPlain["y"]); got != "{}" {
		t.Errorf("args_plain of NULL: %s, want {}", got)
	}
	if got := string(newResultEvent("2", &securer.Result{Value: fn}).ValuePlain); got != "null" {
		t.Errorf("value_plain of an unsupported value: %s, want null", got)
	}
}

// TestDocumentedHello: PROTOCOL.md's hello is what a server built
// without a version (dev) sends, member for member.
func TestDocumentedHello(t *testing.T) {
	doc, err := os.ReadFile("../PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented string
	for line := range strings.Lines(string(doc)) {
		if strings.HasPrefix(line, `{"type":"hello"`) {
			documented = strings.TrimSpace(line)
			break
		}
	}
	if documented == "" {
		t.Fatal("PROTOCOL.md shows no hello")
	}
	real, err := encodeEvent(newHello(Options{Version: "dev"}))
	if err != nil {
		t.Fatal(err)
	}
	if documented != string(real) {
		t.Errorf("PROTOCOL.md's hello is not the server's:\n doc %s\nreal %s", documented, real)
	}
}

// checkGolden compares ev's wire form with testdata/NAME.golden
// (go test -update rewrites it).
func checkGolden(t *testing.T, name string, ev any) {
	t.Helper()
	got, err := encodeEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the wire changed:\n got %s\nwant %s", got, want)
	}
}
