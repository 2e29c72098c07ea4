package mcpserver

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/rvalue"
)

var pngSig = []byte("\x89PNG\r\n\x1a\n")

func testShaper() shaper {
	return shaper{inline: 2048, maxValue: 64, store: newBlobStore(4, 1<<20, time.Minute)}
}

func mustValue(t *testing.T, x any) securer.Value {
	t.Helper()
	v, err := rvalue.FromGo(x)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func texts(r *mcp.CallToolResult) []string {
	var out []string
	for _, c := range r.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			out = append(out, tc.Text)
		}
	}
	return out
}

func TestShape(t *testing.T) {
	big := strings.Repeat("0123456789abcdef\n", 400) // 6800 bytes
	rerr := &securer.RError{Message: "boom", Call: "f()", Class: []string{"simpleError", "error", "condition"},
		Traceback: []string{"g()", "f()", "stop(\"boom\")"}}
	tests := []struct {
		name      string
		res       securer.Result
		err       error
		isError   bool
		wantText  []string // substrings of the joined text content
		wantValue string   // the structured value's JSON; "" for none
		omitted   bool
		images    int
		link      bool
	}{
		{name: "ok value", res: securer.Result{Verdict: securer.VerdictOK, Value: mustValue(t, 2.0), Visible: true, Stdout: "[1] 2\n"},
			wantText: []string{"[1] 2\n"}, wantValue: "2"},
		{name: "stderr marked after stdout", res: securer.Result{Verdict: securer.VerdictOK, Value: mustValue(t, nil), Stdout: "hi", Stderr: "msg\n"},
			wantText: []string{"hi\n[stderr]\nmsg\n"}, wantValue: "null"},
		{name: "R error with traceback", res: securer.Result{Verdict: securer.VerdictError, Stderr: "Error in f() : boom\n", Error: rerr}, err: rerr,
			isError: true, wantText: []string{"Error in f() : boom", "Traceback", "1: g()", "3: stop(\"boom\")"}},
		{name: "timeout named", res: securer.Result{Verdict: securer.VerdictTimeout}, err: securer.ErrTimeout,
			isError: true, wantText: []string{"[timeout] execution timed out", "time limit"}},
		{name: "oom named", res: securer.Result{Verdict: securer.VerdictOutOfMemory, Detail: "memory.max 512M"}, err: securer.ErrOutOfMemory,
			isError: true, wantText: []string{"[oom] out of memory: memory.max 512M"}},
		{name: "plot as image", res: securer.Result{Verdict: securer.VerdictOK, Value: mustValue(t, nil),
			Displays: []securer.Display{{Data: map[string][]byte{"image/png": append(pngSig, 1, 2, 3)}}}},
			wantText: nil, wantValue: "null", images: 1},
		{name: "large value omitted", res: securer.Result{Verdict: securer.VerdictOK, Value: mustValue(t, strings.Repeat("x", 100)), Stdout: "[1] \"xxx...\"\n"},
			wantText: []string{"[1]"}, omitted: true},
		{name: "large output cut with link", res: securer.Result{Verdict: securer.VerdictOK, Value: mustValue(t, nil), Stdout: big},
			wantText: []string{"bytes cut; the whole output: resources/read " + outputURIPrefix}, wantValue: "null", link: true},
		{name: "nothing printed", res: securer.Result{Verdict: securer.VerdictOK, Value: mustValue(t, nil)},
			wantText: []string{"(no output)"}, wantValue: "null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sh := testShaper()
			r, out := sh.shape(&tt.res, tt.err)
			if r.IsError != tt.isError {
				t.Errorf("isError = %v, want %v", r.IsError, tt.isError)
			}
			if out.Verdict != string(tt.res.Verdict) {
				t.Errorf("verdict = %q", out.Verdict)
			}
			joined := strings.Join(texts(r), "\n")
			for _, w := range tt.wantText {
				if !strings.Contains(joined, w) {
					t.Errorf("text %q lacks %q", joined, w)
				}
			}
			if tt.isError != (out.Error != nil) {
				t.Errorf("structured error = %+v, isError %v", out.Error, tt.isError)
			}
			if tt.wantValue != "" {
				b, _ := json.Marshal(out.Value)
				if string(b) != tt.wantValue {
					t.Errorf("value = %s, want %s", b, tt.wantValue)
				}
			}
			if want := string(tt.res.Value.Type()); tt.res.Verdict == securer.VerdictOK && out.ValueType != want {
				t.Errorf("value_type = %q, want %q", out.ValueType, want)
			}
			if out.ValueOmitted != tt.omitted {
				t.Errorf("value_omitted = %v", out.ValueOmitted)
			}
			var images, links int
			for _, c := range r.Content {
				switch c := c.(type) {
				case *mcp.ImageContent:
					images++
					if c.MIMEType != "image/png" || !strings.HasPrefix(string(c.Data), string(pngSig)) {
						t.Errorf("image %s does not start with the PNG signature", c.MIMEType)
					}
				case *mcp.ResourceLink:
					links++
					whole, ok := sh.store.get(c.URI)
					if !ok || whole != tt.res.Stdout || c.URI != out.OutputURI || *c.Size != int64(len(whole)) {
						t.Errorf("link %s: stored %d bytes (ok %v), want the whole %d", c.URI, len(whole), ok, len(tt.res.Stdout))
					}
				}
			}
			if images != tt.images || out.Plots != tt.images {
				t.Errorf("images = %d, plots = %d, want %d", images, out.Plots, tt.images)
			}
			if (links == 1) != tt.link {
				t.Errorf("resource links = %d, want link %v", links, tt.link)
			}
			if tt.link && len(joined) > sh.inline {
				t.Errorf("cut text is %d bytes, over the inline bound %d", len(joined), sh.inline)
			}
		})
	}
}

func TestCutKeepsHeadTailAndUTF8(t *testing.T) {
	text := "AAAA" + strings.Repeat("é", 3000) + "ZZZZ"
	got := cut(text, 300, "securer-runc://output/x")
	if !strings.HasPrefix(got, "AAAA") || !strings.HasSuffix(got, "ZZZZ") {
		t.Fatalf("head or tail lost: %q ... %q", got[:10], got[len(got)-10:])
	}
	if !strings.Contains(got, "resources/read securer-runc://output/x") {
		t.Fatalf("no pointer to the whole: %q", got)
	}
	if !utf8Valid(got) {
		t.Fatal("cut split a UTF-8 sequence")
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

func TestExplain(t *testing.T) {
	if err := explain(securer.ErrBusy); !errors.Is(err, securer.ErrBusy) || !strings.Contains(err.Error(), "busy") {
		t.Errorf("busy: %v", err)
	}
	if err := explain(ErrNoSession); !errors.Is(err, ErrNoSession) || !strings.Contains(err.Error(), "new_session") {
		t.Errorf("no session: %v", err)
	}
}
