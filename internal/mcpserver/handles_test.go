package mcpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	securer "github.com/securer-runc/securer-runc"
)

// fakeR is a persistent session that remembers the code it ran since its
// last restart, so tests can see state kept and state reset.
type fakeR struct {
	mu      sync.Mutex
	history []string
	closed  bool
}

func (f *fakeR) ExecuteWith(_ context.Context, code string, _ securer.ExecOptions) (*securer.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, securer.ErrSessionClosed
	}
	f.history = append(f.history, code)
	return &securer.Result{Verdict: securer.VerdictOK, Stdout: strings.Join(f.history, ";") + "\n"}, nil
}

func (f *fakeR) Restart(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.history = nil
	return nil
}

func (f *fakeR) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeR) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

type fakeStarter struct {
	mu      sync.Mutex
	started []*fakeR
}

func (s *fakeStarter) start(context.Context) (rsession, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &fakeR{}
	s.started = append(s.started, f)
	return f, nil
}

func TestHandlesBoundsOwnersAndExpiry(t *testing.T) {
	var fs fakeStarter
	h := newHandles(fs.start, 2, time.Minute)
	now := time.Unix(0, 0)
	h.now = func() time.Time { return now }
	ctx := context.Background()

	a, err := h.open(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a, handlePrefix) || len(a) != len(handlePrefix)+32 {
		t.Fatalf("handle %q: want %s and 128 random bits", a, handlePrefix)
	}
	b, err := h.open(ctx, "client-2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.open(ctx, ""); !errors.Is(err, ErrTooManySessions) {
		t.Fatalf("third open: %v, want ErrTooManySessions", err)
	}
	// A handle bound to another client session reads as unknown.
	if err := h.use(b, "", func(rsession) error { return nil }); !errors.Is(err, ErrNoSession) {
		t.Errorf("other owner's handle: %v", err)
	}
	if err := h.use(b, "client-2", func(rsession) error { return nil }); err != nil {
		t.Errorf("own handle: %v", err)
	}
	if err := h.use("rs_guess", "", func(rsession) error { return nil }); !errors.Is(err, ErrNoSession) {
		t.Errorf("made-up handle: %v", err)
	}

	// A session in use never expires; an idle one does, and is closed.
	inUse := make(chan struct{})
	release := make(chan struct{})
	go func() {
		_ = h.use(a, "", func(rsession) error { close(inUse); <-release; return nil })
	}()
	<-inUse
	now = now.Add(2 * time.Minute)
	h.sweep()
	if h.count() != 1 {
		t.Fatalf("after the sweep %d open, want 1 (a's in use, b's idle)", h.count())
	}
	close(release)
	h.bg.Wait()
	if !fs.started[1].isClosed() {
		t.Error("expired session not closed")
	}
	if err := h.closeAll(); err != nil {
		t.Fatal(err)
	}
	if !fs.started[0].isClosed() {
		t.Error("closeAll left a session open")
	}
	if _, err := h.open(ctx, ""); !errors.Is(err, ErrServerClosed) {
		t.Errorf("open after closeAll: %v", err)
	}
}

// TestToolsOverMCP drives the session tools through the SDK's in-memory
// transport, with fake R sessions: the listing, the annotations and the
// handle life cycle.
func TestToolsOverMCP(t *testing.T) {
	ctx := context.Background()
	tools := []securer.Tool{{Name: "add", Description: "Add two numbers", Args: []securer.Arg{{Name: "a", Type: "numeric"}, {Name: "b", Type: "numeric"}},
		Handler: func(context.Context, map[string]securer.Value) (any, error) { return nil, nil }}}
	srv, err := New(ctx, Options{Config: securer.Config{Tools: tools, Timeout: 5 * time.Second}, MaxSessions: 2, SessionIdle: time.Minute, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var fs fakeStarter
	srv.handles.start = fs.start
	defer srv.Close()
	st, ct := mcp.NewInMemoryTransports()
	if _, err := srv.MCP().Connect(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()

	for range 2 { // the same order every time
		lt, err := cs.ListTools(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tl := range lt.Tools {
			names = append(names, tl.Name)
			a := tl.Annotations
			if a == nil || a.ReadOnlyHint || a.OpenWorldHint == nil || *a.OpenWorldHint || a.DestructiveHint == nil || tl.OutputSchema == nil {
				t.Errorf("%s: annotations %+v, output schema %v", tl.Name, a, tl.OutputSchema)
			}
			if tl.Name == "run_r" && !strings.Contains(tl.Description, "add(a: numeric, b: numeric): Add two numbers") {
				t.Errorf("run_r's description does not describe the host tool: %s", tl.Description)
			}
		}
		if got := strings.Join(names, ","); got != "close_session,new_session,reset_session,run_r" {
			t.Errorf("tools/list = %s", got)
		}
	}

	call := func(name string, args map[string]any) *mcp.CallToolResult {
		t.Helper()
		r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return r
	}
	r := call("new_session", map[string]any{})
	handle, _ := r.StructuredContent.(map[string]any)["session"].(string)
	if !strings.HasPrefix(handle, handlePrefix) {
		t.Fatalf("new_session gave %v", r.StructuredContent)
	}
	call("run_r", map[string]any{"code": "x <- 1", "session": handle})
	r = call("run_r", map[string]any{"code": "x", "session": handle})
	if got := strings.Join(texts(r), ""); got != "x <- 1;x\n" {
		t.Errorf("state not kept: %q", got)
	}
	call("reset_session", map[string]any{"session": handle})
	r = call("run_r", map[string]any{"code": "x", "session": handle})
	if got := strings.Join(texts(r), ""); got != "x\n" {
		t.Errorf("state kept across reset: %q", got)
	}
	for _, tc := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"run_r", map[string]any{"code": "1", "session": "rs_0123"}, "new_session"},
		{"run_r", map[string]any{"code": "  "}, "code is empty"},
		{"run_r", map[string]any{"code": "1", "timeout": 6}, "at most the server's limit of 5 s"},
		{"run_r", map[string]any{"code": "1", "timeout": -1}, "want more than 0"},
		{"run_r", map[string]any{"code": "1", "bogus": true}, "bogus"},
		{"reset_session", map[string]any{"session": "rs_nope"}, "no such R session"},
	} {
		r := call(tc.tool, tc.args)
		if !r.IsError || !strings.Contains(strings.Join(texts(r), ""), tc.want) {
			t.Errorf("%s %v: isError %v, %q; want an error saying %q", tc.tool, tc.args, r.IsError, texts(r), tc.want)
		}
	}
	call("new_session", map[string]any{})
	if r := call("new_session", map[string]any{}); !r.IsError || !strings.Contains(fmt.Sprint(texts(r)), "too many R sessions") {
		t.Errorf("over --max-sessions: %q", texts(r))
	}
	call("close_session", map[string]any{"session": handle})
	if !fs.started[0].isClosed() {
		t.Error("close_session left the session open")
	}
	if r := call("run_r", map[string]any{"code": "x", "session": handle}); !r.IsError {
		t.Error("a closed handle still runs code")
	}
}

func TestHTTPHandlerAuth(t *testing.T) {
	srv, err := New(context.Background(), Options{MaxSessions: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	token := strings.Repeat("k", 40)
	h := srv.HTTPHandler(token)
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"}}}}`
	for _, tc := range []struct {
		name, auth, origin string
		want               int
	}{
		{"no token", "", "", http.StatusUnauthorized},
		{"wrong token", "Bearer " + strings.Repeat("x", 40), "", http.StatusUnauthorized},
		{"token prefix", "Bearer " + token[:39], "", http.StatusUnauthorized},
		{"cross-origin browser", "Bearer " + token, "https://evil.example", http.StatusForbidden},
		{"token", "Bearer " + token, "", http.StatusOK},
	} {
		req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", "tools/list")
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
			req.Header.Set("Sec-Fetch-Site", "cross-site")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s: HTTP %d, want %d: %s", tc.name, rec.Code, tc.want, rec.Body.String())
		}
		if tc.want == http.StatusOK && !strings.Contains(rec.Body.String(), "run_r") {
			t.Errorf("%s: body lacks the tools: %s", tc.name, rec.Body.String())
		}
	}
}
