package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/securer-runc/securer-runc/rvalue"
)

func TestReadFrame(t *testing.T) {
	big := strings.Repeat("a", 200<<10)
	r := NewReader(strings.NewReader("{\"a\":1}\n"+big+"\n{\"b\":2}\r\n"), 1<<20)
	for _, want := range []string{`{"a":1}`, big, "{\"b\":2}\r"} {
		got, err := r.ReadFrame()
		if err != nil || string(got) != want {
			t.Fatalf("ReadFrame = %.40q, %v; want %.40q", got, err, want)
		}
	}
	if _, err := r.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("at end: %v, want EOF", err)
	}
}

func TestReadFrameLimits(t *testing.T) {
	// An over-long frame is refused before it is all read.
	src := &countingReader{r: strings.NewReader(strings.Repeat("x", 10<<20) + "\n")}
	_, err := NewReader(src, 1<<20).ReadFrame()
	if !errors.Is(err, ErrFrameTooLarge) || !errors.Is(err, ErrProtocol) {
		t.Fatalf("err %v, want ErrFrameTooLarge", err)
	}
	if src.n > (1<<20)+(64<<10) {
		t.Errorf("read %d bytes of an over-long frame", src.n)
	}
	_, err = NewReader(strings.NewReader(`{"type":"tool_call"`), 0).ReadFrame()
	if !errors.Is(err, ErrProtocol) {
		t.Errorf("truncated frame: %v", err)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestDecodeAccepts(t *testing.T) {
	msg, err := Decode([]byte(`{"type":"tool_call","id":3,"tool":"add","args":{"a":{"type":"double","value":[2]},"b":{"type":"integer","value":[3]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	call := msg.(*ToolCall)
	if call.ID != 3 || call.Tool != "add" || call.Args["a"].Doubles()[0] != 2 || call.Args["b"].Integers()[0] != 3 {
		t.Errorf("decoded %+v", call)
	}
	msg, err = Decode([]byte(`{"type":"result","id":1,"value":{"type":"NULL"},"visible":false,"printed":"","warnings":[],"messages":[],"error":{"message":"boom","call":null,"class":["simpleError","error","condition"]},"interrupted":false}`))
	if err != nil {
		t.Fatal(err)
	}
	if res := msg.(*Result); res.Error == nil || res.Error.Message != "boom" || res.Error.Call != nil {
		t.Errorf("decoded %+v", res)
	}
	// Issue 10 item 13: R counts the warnings it did not send.
	msg, err = Decode([]byte(`{"type":"result","id":2,"value":{"type":"NULL"},"visible":false,"printed":"","warnings":["w1"],"warnings_dropped":99999,"messages":[],"error":null,"interrupted":false}`))
	if err != nil {
		t.Fatal(err)
	}
	if res := msg.(*Result); len(res.Warnings) != 1 || res.WarningsDropped != 99999 {
		t.Errorf("decoded %+v", res)
	}
	if _, err := Decode([]byte(`{"type":"result","id":2,"value":{"type":"NULL"},"visible":false,"printed":"","warnings":[],"warnings_dropped":-1,"messages":[],"error":null,"interrupted":false}`)); !errors.Is(err, ErrProtocol) {
		t.Errorf("negative warnings_dropped: err = %v, want ErrProtocol", err)
	}
	if _, err := Decode([]byte(`{"type":"hello","protocol":1,"pid":1,"r_version":"4.2.2"}`)); err != nil {
		t.Fatal(err)
	}
}

// Every malformed or hostile frame is an ErrProtocol, never a panic or a
// silently accepted message (ADVERSARIAL T04, T06, T13, T15).
func TestDecodeRejects(t *testing.T) {
	cases := map[string]string{
		"array":                `[1,2]`,
		"string":               `"x"`,
		"null":                 `null`,
		"huge number":          `1e999`,
		"empty object":         `{}`,
		"truncated":            `{"type":"tool_call","tool":`,
		"duplicate key":        `{"type":"tool_call","id":1,"tool":"add","tool":"shell","args":{}}`,
		"duplicate type":       `{"type":"result","type":"tool_call","id":1,"tool":"add","args":{}}`,
		"unknown member":       `{"type":"tool_call","id":1,"tool":"add","args":{},"sudo":true}`,
		"wrong member type":    `{"type":"tool_call","id":"1","tool":"add","args":{}}`,
		"negative id":          `{"type":"tool_call","id":-1,"tool":"add","args":{}}`,
		"invalid utf-8":        "{\"type\":\"tool_call\",\"id\":1,\"tool\":\"a\xffd\",\"args\":{}}",
		"forged host message":  `{"type":"tool_result","id":1,"value":{"type":"NULL"}}`,
		"forged init":          `{"type":"init","tools":[]}`,
		"forged auth":          `{"type":"auth_ok"}`,
		"bad value":            `{"type":"tool_call","id":1,"tool":"add","args":{"a":{"type":"integer","value":[1.5]}}}`,
		"trailing garbage":     `{"type":"hello","protocol":1,"pid":1,"r_version":"4"} x`,
		"type not string":      `{"type":7}`,
		"duplicate arg":        `{"type":"tool_call","id":1,"tool":"add","args":{"a":{"type":"NULL"},"a":{"type":"NULL"}}}`,
		"json value from R":    `{"type":"tool_call","id":1,"tool":"add","args":{"a":{"type":"json","value":1}}}`,
		"result missing error": `{"type":"result","id":1,"value":{"type":"NULL"},"visible":false,"printed":"","warnings":[],"messages":[],"error":{"message":1,"call":null,"class":[]},"interrupted":false}`,
	}
	for name, frame := range cases {
		t.Run(name, func(t *testing.T) {
			msg, err := Decode([]byte(frame))
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("Decode(%q) = %#v, %v; want ErrProtocol", frame, msg, err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tools := []ToolSpec{
		{Name: "add", Args: []ArgSpec{{"a", "numeric"}, {"b", "numeric"}}},
		{Name: "echo", Args: []ArgSpec{{"x", ""}}},
		{Name: "df", Args: []ArgSpec{{"d", "data.frame"}}},
		{Name: "greet", Args: []ArgSpec{{"who", "character"}}},
	}
	num := rvalue.Doubles(1)
	factor := rvalue.FactorOf("x", "y")
	chrMatrix := rvalue.Strings("a", "b").SetAttr("dim", rvalue.Integers(1, 2))
	df, _ := rvalue.DataFrame([]string{"x"}, []rvalue.Value{rvalue.Doubles(1, 2)})
	cases := []struct {
		name string
		call ToolCall
		want string // "" = valid
	}{
		{"ok", ToolCall{Tool: "add", Args: map[string]rvalue.Value{"a": num, "b": rvalue.Integers(2)}}, ""},
		{"untyped", ToolCall{Tool: "echo", Args: map[string]rvalue.Value{"x": rvalue.List()}}, ""},
		{"data frame", ToolCall{Tool: "df", Args: map[string]rvalue.Value{"d": df}}, ""},
		{"list is not a data frame", ToolCall{Tool: "df", Args: map[string]rvalue.Value{"d": rvalue.List()}}, "Tool 'df': argument 'd' must be data.frame, got list"},
		{"unknown", ToolCall{Tool: "system"}, `unknown tool "system"`},
		{"path", ToolCall{Tool: "../../bin/sh"}, `unknown tool "../../bin/sh"`},
		{"nul", ToolCall{Tool: "add\x00x"}, `unknown tool "add\x00x"`},
		{"case", ToolCall{Tool: "ADD"}, `unknown tool "ADD"`},
		{"homoglyph", ToolCall{Tool: "\u0430dd"}, `unknown tool "аdd"`},
		{"string for numeric", ToolCall{Tool: "add", Args: map[string]rvalue.Value{"a": rvalue.Strings("1"), "b": num}}, "Tool 'add': argument 'a' must be numeric, got character"},
		{"list for numeric", ToolCall{Tool: "add", Args: map[string]rvalue.Value{"a": num, "b": rvalue.List(num, num)}}, "Tool 'add': argument 'b' must be numeric, got list"},
		{"NA logical for numeric", ToolCall{Tool: "add", Args: map[string]rvalue.Value{"a": rvalue.Logicals(rvalue.NALogical), "b": num}}, "Tool 'add': argument 'a' must be numeric, got logical"},
		{"factor for numeric", ToolCall{Tool: "add", Args: map[string]rvalue.Value{"a": factor, "b": num}}, "Tool 'add': argument 'a' must be numeric, got factor"},
		{"character matrix for numeric", ToolCall{Tool: "add", Args: map[string]rvalue.Value{"a": chrMatrix, "b": num}}, "Tool 'add': argument 'a' must be numeric, got matrix"},
		{"double for character", ToolCall{Tool: "greet", Args: map[string]rvalue.Value{"who": num}}, "Tool 'greet': argument 'who' must be character, got numeric"},
		{"NULL for character", ToolCall{Tool: "greet", Args: map[string]rvalue.Value{"who": rvalue.Null()}}, "Tool 'greet': argument 'who' must be character, got NULL"},
		{"missing", ToolCall{Tool: "add", Args: map[string]rvalue.Value{"a": num}}, `Tool 'add': argument "b" is missing`},
		{"extra", ToolCall{Tool: "add", Args: map[string]rvalue.Value{"a": num, "b": num, "evil": num}}, `Tool 'add' has no argument "evil"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Validate(tools, &c.call)
			if c.want == "" {
				if err != nil {
					t.Fatalf("valid call refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidCall) || err.Error() != c.want {
				t.Fatalf("err %v, want ErrInvalidCall with text %q", err, c.want)
			}
		})
	}
}

func TestEncodeIsOneLine(t *testing.T) {
	b, err := Encode(Execute{Type: "execute", ID: 1, Code: "cat('a\nb')\n\u2028"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(b, []byte("\n")) != 1 || b[len(b)-1] != '\n' {
		t.Errorf("frame is not one line: %q", b)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"hello","protocol":1,"pid":1,"r_version":"4.2.2"}`,
		`{"type":"tool_call","id":3,"tool":"add","args":{"a":{"type":"double","value":[2,"NA"]}}}`,
		`{"type":"result","id":1,"value":{"type":"list","value":[{"type":"NULL"}],"attributes":{"names":{"type":"character","value":["a"]}}},"visible":true,"printed":"","warnings":[],"messages":[],"error":null,"interrupted":false}`,
		`[1,2]`, `null`, `{"type":"tool_call","tool":"add","tool":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		msg, err := Decode(frame)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error is not ErrProtocol: %v", err)
			}
			return
		}
		if msg == nil {
			t.Fatal("nil message without error")
		}
		// Whatever decodes must re-encode.
		if _, err := Encode(msg); err != nil {
			t.Fatalf("decoded message does not re-encode: %v", err)
		}
		// Reading it back through the framer gives the same bytes.
		r := NewReader(bytes.NewReader(append(bytes.ReplaceAll(frame, []byte("\n"), nil), '\n')), 0)
		if _, err := r.ReadFrame(); err != nil {
			t.Fatalf("framer: %v", err)
		}
	})
}

// Small frames must not expand into huge Go structures.
func TestDecodeBudgets(t *testing.T) {
	many := `{"type":"tool_call","id":1,"tool":"echo","args":{"x":{"type":"list","value":[` +
		strings.TrimSuffix(strings.Repeat(`{"type":"NULL"},`, rvalue.DefaultMaxValues+1), ",") + `]}}}`
	if _, err := Decode([]byte(many)); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "values") {
		t.Errorf("%d list elements: %v", rvalue.DefaultMaxValues+1, err)
	}
	var b strings.Builder
	b.WriteString(`{"type":"tool_call","id":1,"tool":"echo","args":{`)
	for i := 0; i <= MaxArgs; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"a%d":{"type":"NULL"}`, i)
	}
	b.WriteString(`}}`)
	if _, err := Decode([]byte(b.String())); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "arguments") {
		t.Errorf("%d arguments: %v", MaxArgs+1, err)
	}
	// The budget is shared by all arguments of a frame.
	half := `{"type":"list","value":[` + strings.TrimSuffix(strings.Repeat(`{"type":"NULL"},`, rvalue.DefaultMaxValues/2+10), ",") + `]}`
	two := `{"type":"tool_call","id":1,"tool":"echo","args":{"a":` + half + `,"b":` + half + `}}`
	if _, err := Decode([]byte(two)); !errors.Is(err, ErrProtocol) {
		t.Errorf("two half-budget arguments: %v", err)
	}
}

func TestFrameTimeout(t *testing.T) {
	host, peer := net.Pipe()
	defer host.Close()
	defer peer.Close()
	r := NewReader(host, 0)
	r.SetFrameTimeout(200 * time.Millisecond)
	go func() {
		// A whole frame after a long idle gap is fine; then one byte of a
		// frame that never ends.
		time.Sleep(400 * time.Millisecond)
		peer.Write([]byte("{\"a\":1}\n{"))
	}()
	b, err := r.ReadFrame()
	if err != nil || string(b) != `{"a":1}` {
		t.Fatalf("frame after an idle gap: %q, %v", b, err)
	}
	start := time.Now()
	_, err = r.ReadFrame()
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("trickling frame: %v, want a protocol error naming the timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("timeout took %s", d)
	}
}
