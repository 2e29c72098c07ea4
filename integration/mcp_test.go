package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// MCP protocol versions the tests speak: the current (stateless) one and
// an older one with initialize.
const (
	mcpCurrent = "2026-07-28"
	mcpOlder   = "2025-06-18"
)

// mcpToolsFile writes a tools file with an add tool (jq does the sum).
func mcpToolsFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tools.json")
	body := `{"tools": [{"name": "add", "description": "Add two numbers", "args": {"a": "numeric", "b": "numeric"}, "command": ["jq", "-c", ".a + .b"]}]}`
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// mcpArgs are the flags of an mcp server in this test run's sandbox.
func mcpArgs(t *testing.T, extra ...string) []string {
	return append([]string{"mcp", "--rootfs", rootfsDir, "--state", stateDir, "--cgroup-parent", cgroupParent,
		"--tools", mcpToolsFile(t), "--timeout", "20s", "--warm", "1", "--inline-output", "4096"}, extra...)
}

// startMCPHTTP starts `securer-runc mcp --listen 127.0.0.1:0` and returns
// its URL; the server is stopped (SIGTERM) and checked for leftovers at
// cleanup.
func startMCPHTTP(t *testing.T, extra ...string) string {
	t.Helper()
	cmd := exec.Command(cli(t), mcpArgs(t, append([]string{"--listen", "127.0.0.1:0"}, extra...)...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log lockedBuffer
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`mcp listening on (http://\S+)`)
		for sc.Scan() {
			fmt.Fprintln(&log, sc.Text())
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				urlc <- m[1]
			}
		}
	}()
	t.Cleanup(func() { stopMCP(t, cmd, &log) })
	select {
	case u := <-urlc:
		return u
	case <-time.After(60 * time.Second):
		t.Fatalf("mcp did not listen; stderr:\n%s", log.String())
	}
	return ""
}

// stopMCP ends the server with SIGTERM and checks it closed every box.
func stopMCP(t *testing.T, cmd *exec.Cmd, log *lockedBuffer) {
	t.Helper()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("mcp exited: %v; stderr:\n%s", err, log.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Errorf("mcp did not stop on SIGTERM; stderr:\n%s", log.String())
	}
	if left := leftovers(); len(left) > 0 {
		t.Errorf("mcp left behind: %v", left)
	}
}

func TestMCPGoStdio(t *testing.T) {
	for _, v := range []string{mcpCurrent, mcpOlder} {
		t.Run(v, func(t *testing.T) {
			var log lockedBuffer
			cmd := exec.Command(cli(t), mcpArgs(t)...)
			cmd.Stderr = &log
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cs, err := mcp.NewClient(&mcp.Implementation{Name: "go-test", Version: "1"}, nil).
				Connect(ctx, &mcp.CommandTransport{Command: cmd}, &mcp.ClientSessionOptions{ProtocolVersion: v})
			if err != nil {
				t.Fatalf("connect: %v; stderr:\n%s", err, log.String())
			}
			if got := cs.InitializeResult().ProtocolVersion; got != v {
				t.Errorf("negotiated %s, want %s", got, v)
			}
			mcpScenario(ctx, t, cs)
			mcpGiveUp(ctx, t, cs)
			// Closing stdin ends the server, which closes its boxes.
			if err := cs.Close(); err != nil {
				t.Errorf("close: %v; stderr:\n%s", err, log.String())
			}
			if left := leftovers(); len(left) > 0 {
				t.Errorf("mcp left behind: %v", left)
			}
		})
	}
}

// bearerTransport adds the token to every request.
type bearerTransport struct{ token string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

func TestMCPGoHTTP(t *testing.T) {
	token := strings.Repeat("ab12", 10)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	url := startMCPHTTP(t, "--token-file", tokenFile)

	// Without the token: refused before any MCP handling.
	resp, err := http.Post(url, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: HTTP %d, want 401", resp.StatusCode)
	}
	for _, v := range []string{mcpCurrent, mcpOlder} {
		t.Run(v, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			tr := &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: bearerTransport{token}}}
			cs, err := mcp.NewClient(&mcp.Implementation{Name: "go-test", Version: "1"}, nil).
				Connect(ctx, tr, &mcp.ClientSessionOptions{ProtocolVersion: v})
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			if got := cs.InitializeResult().ProtocolVersion; got != v {
				t.Errorf("negotiated %s, want %s", got, v)
			}
			mcpScenario(ctx, t, cs)
			mcpGiveUp(ctx, t, cs)
		})
	}
	// A session left open is closed when the server stops (stopMCP
	// checks that nothing is left).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tr := &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: bearerTransport{token}}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "go-test", Version: "1"}, nil).Connect(ctx, tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "new_session", Arguments: map[string]any{}}); err != nil || r.IsError {
		t.Fatalf("new_session: %v %+v", err, r)
	}
}

// An idle session is closed after --session-idle; its handle then fails.
func TestMCPSessionIdle(t *testing.T) {
	var log lockedBuffer
	cmd := exec.Command(cli(t), mcpArgs(t, "--session-idle", "2s", "--warm", "0")...)
	cmd.Stderr = &log
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "go-test", Version: "1"}, nil).Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("connect: %v; stderr:\n%s", err, log.String())
	}
	defer cs.Close()
	r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "new_session", Arguments: map[string]any{}})
	if err != nil || r.IsError {
		t.Fatalf("new_session: %v %+v", err, r)
	}
	h := r.StructuredContent.(map[string]any)["session"]
	deadline := time.Now().Add(10 * time.Second)
	for len(leftovers()) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if left := leftovers(); len(left) > 0 {
		t.Fatalf("the idle session's box is still there after 10 s: %v", left)
	}
	r, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_r", Arguments: map[string]any{"code": "1", "session": h}})
	if err != nil || !r.IsError || !strings.Contains(mcpTexts(r), "no such R session") {
		t.Errorf("expired handle: %v, %q", err, mcpTexts(r))
	}
}

// mcpGiveUp checks that a caller that gives up stops its R: the warm box
// is free again at once, not when the code's 15 s are over.
func mcpGiveUp(ctx context.Context, t *testing.T, cs *mcp.ClientSession) {
	t.Helper()
	gone, giveUp := context.WithTimeout(ctx, time.Second)
	defer giveUp()
	start := time.Now()
	if _, err := cs.CallTool(gone, &mcp.CallToolParams{Name: "run_r", Arguments: map[string]any{"code": "Sys.sleep(15)"}}); err == nil {
		t.Fatal("a call given up after 1 s returned a result")
	}
	var warm any
	for time.Since(start) < 10*time.Second {
		r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_r", Arguments: map[string]any{"code": "1+1"}})
		if err != nil || r.IsError {
			t.Fatalf("run_r: %v %+v", err, r)
		}
		if warm = r.StructuredContent.(map[string]any)["warm"]; warm == true {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if warm != true {
		t.Errorf("the warm box was still busy %s after its caller gave up", time.Since(start))
	}
}

func mcpTexts(r *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range r.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
			b.WriteString("\n")
		}
	}
	return b.String()
}

// mcpScenario is what every client must see: the tool list, a value, a
// plot, a host tool, an R error, a session keeping state and reset, and
// long output behind a resource link.
func mcpScenario(ctx context.Context, t *testing.T, cs *mcp.ClientSession) {
	t.Helper()
	lt, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range lt.Tools {
		names = append(names, tl.Name)
		if tl.Name == "run_r" && !strings.Contains(tl.Description, "add(a: numeric, b: numeric): Add two numbers") {
			t.Errorf("run_r does not describe the host tool: %s", tl.Description)
		}
	}
	if got := strings.Join(names, ","); got != "close_session,new_session,reset_session,run_r" {
		t.Errorf("tools/list: %s", got)
	}
	call := func(name string, args map[string]any) (*mcp.CallToolResult, map[string]any) {
		t.Helper()
		r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatalf("%s %v: %v", name, args, err)
		}
		var sc map[string]any
		if r.StructuredContent != nil {
			b, _ := json.Marshal(r.StructuredContent)
			_ = json.Unmarshal(b, &sc)
		}
		return r, sc
	}

	r, sc := call("run_r", map[string]any{"code": "1+1"})
	if r.IsError || !strings.Contains(mcpTexts(r), "[1] 2") || sc["value"] != 2.0 || sc["verdict"] != "ok" {
		t.Errorf("1+1: isError %v, text %q, structured %v", r.IsError, mcpTexts(r), sc)
	}

	r, sc = call("run_r", map[string]any{"code": "plot(1:10); invisible(NULL)"})
	var pngs int
	for _, c := range r.Content {
		if img, ok := c.(*mcp.ImageContent); ok && img.MIMEType == "image/png" && bytes.HasPrefix(img.Data, []byte("\x89PNG\r\n\x1a\n")) {
			pngs++
		}
	}
	if r.IsError || pngs != 1 || sc["plots"] != 1.0 {
		t.Errorf("plot: isError %v, %d PNG image(s), structured %v", r.IsError, pngs, sc)
	}

	r, sc = call("run_r", map[string]any{"code": "add(2, 3) * 10"})
	if r.IsError || sc["value"] != 50.0 {
		t.Errorf("host tool: isError %v, text %q, structured %v", r.IsError, mcpTexts(r), sc)
	}

	r, sc = call("run_r", map[string]any{"code": `f <- function() stop("boom"); f()`})
	errInfo, _ := sc["error"].(map[string]any)
	if !r.IsError || !strings.Contains(mcpTexts(r), "Error in f() : boom") || sc["verdict"] != "error" || errInfo["message"] != "boom" {
		t.Errorf("R error: isError %v, text %q, structured %v", r.IsError, mcpTexts(r), sc)
	}

	r, sc = call("run_r", map[string]any{"code": "Sys.sleep(5)", "timeout": 0.5})
	if !r.IsError || sc["verdict"] != "timeout" || !strings.Contains(mcpTexts(r), "[timeout]") {
		t.Errorf("timeout: isError %v, text %q, structured %v", r.IsError, mcpTexts(r), sc)
	}

	// One-shots keep nothing.
	call("run_r", map[string]any{"code": "leak <- 1"})
	if _, sc = call("run_r", map[string]any{"code": `exists("leak")`}); sc["value"] != false {
		t.Errorf("a one-shot saw another's state: %v", sc)
	}

	_, sc = call("new_session", map[string]any{})
	h, _ := sc["session"].(string)
	if !strings.HasPrefix(h, "rs_") {
		t.Fatalf("new_session: %v", sc)
	}
	call("run_r", map[string]any{"code": "x <- 41", "session": h})
	if r, sc = call("run_r", map[string]any{"code": "x + 1", "session": h}); r.IsError || sc["value"] != 42.0 || sc["session"] != h {
		t.Errorf("session state: %q %v", mcpTexts(r), sc)
	}
	if r, _ = call("reset_session", map[string]any{"session": h}); r.IsError {
		t.Errorf("reset: %q", mcpTexts(r))
	}
	if _, sc = call("run_r", map[string]any{"code": `exists("x")`, "session": h}); sc["value"] != false {
		t.Errorf("state kept across reset: %v", sc)
	}
	if r, _ = call("close_session", map[string]any{"session": h}); r.IsError {
		t.Errorf("close: %q", mcpTexts(r))
	}
	if r, _ = call("run_r", map[string]any{"code": "1", "session": h}); !r.IsError {
		t.Error("a closed session's handle still runs code")
	}

	// 3000 numbered lines (about 40 KB) are over the 4 KiB inline bound.
	r, sc = call("run_r", map[string]any{"code": `cat(sprintf("line %05d\n", 1:3000), sep = "")`})
	var link *mcp.ResourceLink
	for _, c := range r.Content {
		if l, ok := c.(*mcp.ResourceLink); ok {
			link = l
		}
	}
	text := mcpTexts(r)
	if r.IsError || link == nil || sc["output_uri"] != link.URI || !strings.Contains(text, "line 00001") || !strings.Contains(text, "line 03000") || len(text) > 4096+200 {
		t.Fatalf("large output: isError %v, link %v, %d bytes of text, structured %v", r.IsError, link, len(text), sc)
	}
	rr, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: link.URI})
	if err != nil {
		t.Fatalf("resources/read %s: %v", link.URI, err)
	}
	var want strings.Builder
	for i := 1; i <= 3000; i++ {
		fmt.Fprintf(&want, "line %05d\n", i)
	}
	if len(rr.Contents) != 1 || rr.Contents[0].Text != want.String() {
		t.Errorf("resources/read gave %d contents, first %d bytes; want the whole %d", len(rr.Contents), len(rr.Contents[0].Text), want.Len())
	}
	if _, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "securer-runc://output/00000000000000000000000000000000"}); err == nil {
		t.Error("a made-up output URI was read")
	}
}

// TestMCPNode drives the server with the official TypeScript SDK (a
// third-party client; integration/mcpnode, installed by make deps) over
// both transports, at the SDK's newest protocol version (it predates
// 2026-07-28) and an older one.
func TestMCPNode(t *testing.T) {
	if _, err := os.Stat("mcpnode/node_modules/@modelcontextprotocol/sdk/package.json"); err != nil {
		t.Fatalf("the TypeScript MCP SDK is not installed (make deps runs npm ci in integration/mcpnode): %v", err)
	}
	token := strings.Repeat("cd34", 10)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	url := ""
	// stdio first: its leftover check must not see the HTTP server's boxes.
	for _, kind := range []string{"stdio", "http"} {
		if kind == "http" {
			url = startMCPHTTP(t, "--token-file", tokenFile)
		}
		for _, v := range []string{"2025-11-25", "2025-06-18"} {
			t.Run(kind+"/"+v, func(t *testing.T) {
				args := []string{"mcpnode/client.mjs", "--version", v, kind}
				if kind == "stdio" {
					args = append(append(args, cli(t)), mcpArgs(t)...)
				} else {
					args = append(args, url, token)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, "node", args...)
				var out, errb bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &errb
				if err := cmd.Run(); err != nil {
					t.Fatalf("node client: %v\nstdout: %s\nstderr: %s", err, out.String(), errb.String())
				}
				var got struct {
					ProtocolVersion string   `json:"protocolVersion"`
					Passed          []string `json:"passed"`
				}
				if err := json.Unmarshal(out.Bytes(), &got); err != nil {
					t.Fatalf("node client output %q: %v", out.String(), err)
				}
				if got.ProtocolVersion != v || len(got.Passed) != 14 {
					t.Errorf("negotiated %q (want %s), passed %d checks (want 14): %v", got.ProtocolVersion, v, len(got.Passed), got.Passed)
				}
				if kind == "stdio" {
					if left := leftovers(); len(left) > 0 {
						t.Errorf("mcp left behind: %v", left)
					}
				}
			})
		}
	}
}

// BenchmarkMCP: a run_r call of 1+1 through the MCP server (stdio, Go SDK
// client): a one-shot (a warm box's fresh copy) and a call in a
// persistent session, against bare R in the same run.
func BenchmarkMCP(b *testing.B) {
	ctx := context.Background()
	bin := os.Getenv("SECURER_IT_CLI")
	if bin == "" {
		bin = filepath.Join(b.TempDir(), "securer-runc")
		if out, err := exec.Command("go", "build", "-tags", "seccomp", "-o", bin, "../cmd/securer-runc").CombinedOutput(); err != nil {
			b.Fatalf("go build: %v\n%s", err, out)
		}
	}
	p := filepath.Join(b.TempDir(), "tools.json")
	if err := os.WriteFile(p, []byte(`{"tools": []}`), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "mcp", "--rootfs", rootfsDir, "--state", stateDir, "--cgroup-parent", cgroupParent, "--warm", "1", "--tools", p)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil).Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer cs.Close()
	run := func(args map[string]any) time.Duration {
		start := time.Now()
		r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_r", Arguments: args})
		if err != nil || r.IsError || !strings.Contains(mcpTexts(r), "[1] 2") {
			b.Fatalf("run_r: %v %+v", err, r)
		}
		return time.Since(start)
	}
	nr, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "new_session", Arguments: map[string]any{}})
	if err != nil || nr.IsError {
		b.Fatalf("new_session: %v %+v", err, nr)
	}
	h := nr.StructuredContent.(map[string]any)["session"]
	run(map[string]any{"code": "1+1"}) // the warm box is ready
	var oneShot, inSession, bare []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		oneShot = append(oneShot, run(map[string]any{"code": "1+1"}))
		inSession = append(inSession, run(map[string]any{"code": "1+1", "session": h}))
		if i < 10 {
			bare = append(bare, bareR(b))
		}
	}
	b.ReportMetric(ms(median(oneShot)), "one_shot_ms")
	b.ReportMetric(ms(median(inSession)), "session_ms")
	b.ReportMetric(ms(median(bare)), "bare_R_ms")
	b.ReportMetric(float64(median(oneShot))/float64(median(bare)), "one_shot/bare")
	b.ReportMetric(0, "ns/op")
}
