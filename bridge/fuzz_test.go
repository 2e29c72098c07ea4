package bridge

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/securer-runc/securer-runc/rvalue"
)

// FuzzReadFrame feeds the framer arbitrary bytes in arbitrary chunk sizes.
// Whatever it returns must be exactly the input's lines, in order, none over
// the limit; it may refuse an over-long line or a partial last line, never
// more.
func FuzzReadFrame(f *testing.F) {
	for _, s := range []struct {
		in    string
		chunk uint8
	}{
		{"{\"type\":\"hello\"}\n", 0},
		{"a\nbb\nccc\n", 1},
		{"\n\n\n", 2},
		{"{\"type\":\"tool_call\",\"tool\":", 3},
		{"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nshort\n", 7},
		{"a\r\nb\r\n", 0},
	} {
		f.Add([]byte(s.in), s.chunk)
	}
	const limit = 64
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		var src io.Reader = bytes.NewReader(in)
		if chunk > 0 {
			src = &chunkReader{b: in, n: int(chunk)}
		}
		r := NewReader(iotest.DataErrReader(src), limit)
		rest := in
		for {
			frame, err := r.ReadFrame()
			if err != nil {
				line, _, found := bytes.Cut(rest, []byte("\n"))
				switch {
				case errors.Is(err, io.EOF):
					if len(rest) != 0 {
						t.Fatalf("EOF with %d bytes unread", len(rest))
					}
				case errors.Is(err, ErrFrameTooLarge):
					if len(line) <= limit {
						t.Fatalf("refused a %d-byte line as too large", len(line))
					}
				case errors.Is(err, ErrProtocol):
					if found || len(rest) == 0 {
						t.Fatalf("protocol error %v with a complete line ahead", err)
					}
				default:
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(frame) > limit {
				t.Fatalf("frame of %d bytes over the %d limit", len(frame), limit)
			}
			line, after, found := bytes.Cut(rest, []byte("\n"))
			if !found || !bytes.Equal(line, frame) {
				t.Fatalf("frame %q, want the next line %q", frame, line)
			}
			rest = after
		}
	})
}

// chunkReader returns at most n bytes a call, to reach every buffer seam.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[n:]
	return n, nil
}

// FuzzValidate runs frames through the decoder and then the host's call
// validation against fixed tools. A call that passes must name a declared
// tool exactly and carry exactly its arguments, each of its declared type.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{
		`{"type":"tool_call","id":1,"tool":"add","args":{"a":{"type":"double","value":[2]},"b":{"type":"double","value":[3]}}}`,
		`{"type":"tool_call","id":2,"tool":"add","args":{"a":{"type":"character","value":["1"]},"b":{"type":"double","value":[3]}}}`,
		`{"type":"tool_call","id":3,"tool":"add","args":{"a":{"type":"double","value":[1]}}}`,
		`{"type":"tool_call","id":4,"tool":"add","args":{"a":{"type":"double","value":[1]},"b":{"type":"double","value":[2]},"evil":{"type":"NULL"}}}`,
		`{"type":"tool_call","id":5,"tool":"ADD","args":{}}`,
		`{"type":"tool_call","id":6,"tool":"\u0430dd","args":{}}`,
		`{"type":"tool_call","id":7,"tool":"echo","args":{"x":{"type":"list","value":[{"type":"NULL"}]}}}`,
		`{"type":"tool_call","id":8,"tool":"frame","args":{"df":{"type":"list","value":[{"type":"integer","value":[1,2]}],"attributes":{"names":{"type":"character","value":["a"]},"class":{"type":"character","value":["data.frame"]},"row.names":{"type":"integer","value":[null,-2]}}}}}`,
		`{"type":"tool_call","id":9,"tool":"flag","args":{"on":{"type":"logical","value":[null]}}}`,
		`{"type":"tool_call","id":10,"tool":"count","args":{"n":{"type":"integer","value":[3]}}}`,
	} {
		f.Add([]byte(s))
	}
	tools := []ToolSpec{
		{Name: "add", Args: []ArgSpec{{"a", "numeric"}, {"b", "numeric"}}},
		{Name: "echo", Args: []ArgSpec{{"x", ""}}},
		{Name: "frame", Args: []ArgSpec{{"df", "data.frame"}}},
		{Name: "flag", Args: []ArgSpec{{"on", "logical"}}},
		{Name: "count", Args: []ArgSpec{{"n", "integer"}}},
		{Name: "items", Args: []ArgSpec{{"l", "list"}, {"s", "character"}}},
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		msg, err := Decode(frame)
		if err != nil {
			return
		}
		call, ok := msg.(*ToolCall)
		if !ok {
			return
		}
		spec, err := Validate(tools, call)
		if err != nil {
			if !errors.Is(err, ErrInvalidCall) {
				t.Fatalf("refusal is not ErrInvalidCall: %v", err)
			}
			return
		}
		if spec.Name != call.Tool {
			t.Fatalf("call to %q validated as %q", call.Tool, spec.Name)
		}
		if len(call.Args) != len(spec.Args) {
			t.Fatalf("%d arguments accepted for %d declared", len(call.Args), len(spec.Args))
		}
		total := 0
		for _, a := range spec.Args {
			v, ok := call.Args[a.Name]
			if !ok {
				t.Fatalf("argument %q missing but accepted", a.Name)
			}
			if a.Type != "" {
				if err := v.Check(a.Type); err != nil {
					t.Fatalf("argument %q accepted but Check says %v", a.Name, err)
				}
			}
			if hostOnly(v) {
				t.Fatalf("argument %q holds the host-only json type", a.Name)
			}
			total += v.Count()
		}
		if total > rvalue.DefaultMaxValues {
			t.Fatalf("%d values accepted, over the frame's budget", total)
		}
	})
}

// FuzzToolCallOnePass: the one-pass tool_call decoder (frames that start
// with the runtime's prefix) and the general decoder accept exactly the
// same frames and decode them to the same call.
func FuzzToolCallOnePass(f *testing.F) {
	for _, s := range []string{
		`{"type":"tool_call","id":1,"tool":"add","args":{"a":{"type":"double","value":[2]},"b":{"type":"double","value":[3]}}}`,
		`{"type":"tool_call","id":1,"tool":"add","args":{}}`,
		`{"type":"tool_call","id":-0,"tool":"add","args":{}}`,
		`{"type":"tool_call","id":1e2,"tool":"add","args":{}}`,
		`{"type":"tool_call","id":18446744073709551616,"tool":"add","args":{}}`,
		`{"type":"tool_call","tool":"add","args":{},"id":2}`,
		`{"type":"tool_call","id":1,"tool":"add","args":{"a":{"type":"json","value":1}}}`,
		`{"type":"tool_call","id":1,"tool":"add","args":[]}`,
		`{"type":"tool_call","id":1,"tool":"add","args":null}`,
		`{"type":"tool_call","id":1,"tool":"add"}`,
		`{"type":"tool_call","id":1,"tool":null,"args":{}}`,
		`{"type":"tool_call","id":1,"tool":"add","args":{}} `,
		`{"type":"tool_call","id":1,"tool":"add","args":{}}x`,
		`{"type":"tool_call","type":"result","id":1,"tool":"add","args":{}}`,
		`{"type":"tool_call","id":1,"tool":"e","args":{"x":{"type":"list","value":[{"type":"NULL"},{"type":"integer","value":[null,1]}]}}}`,
		`{"type":"tool_call","id":1,"tool":"e","args":{"x":{"type":"double","value":[1]},"x":{"type":"double","value":[1]}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		frame = append([]byte(nil), frame...)
		if !bytes.HasPrefix(frame, toolCallPrefix) {
			frame = append(append([]byte(nil), toolCallPrefix...), frame...)
		}
		fast, fastErr := Decode(frame)
		general, generalErr := decodeGeneral(frame)
		if (fastErr == nil) != (generalErr == nil) {
			t.Fatalf("one pass: %v; general: %v", fastErr, generalErr)
		}
		if fastErr != nil {
			if !errors.Is(fastErr, ErrProtocol) {
				t.Fatalf("refusal is not ErrProtocol: %v", fastErr)
			}
			return
		}
		a, b := fast.(*ToolCall), general.(*ToolCall)
		if a.Type != b.Type || a.ID != b.ID || a.Tool != b.Tool || len(a.Args) != len(b.Args) {
			t.Fatalf("one pass %+v, general %+v", a, b)
		}
		for name, v := range b.Args {
			w, ok := a.Args[name]
			if !ok || !rvalue.Equal(v, w) {
				t.Fatalf("argument %q: one pass %v, general %v", name, w, v)
			}
		}
	})
}
