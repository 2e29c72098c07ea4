package oneshot

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/rvalue"
)

// fakeDaemon serves one connection on a Unix socket: it sends hello,
// then runs script with the connection's lines.
func fakeDaemon(t *testing.T, hello string, script func(in *bufio.Scanner, out net.Conn)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "d.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		nc.Write([]byte(hello + "\n"))
		script(bufio.NewScanner(nc), nc)
	}()
	return "unix:" + path
}

const sandboxedHello = `{"type":"hello","protocol":1,"server":"fake","sandboxed":true,"auth_required":false}`

func readReq(t *testing.T, in *bufio.Scanner) map[string]any {
	t.Helper()
	if !in.Scan() {
		t.Errorf("no request: %v", in.Err())
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(in.Bytes(), &m); err != nil {
		t.Errorf("request is not JSON: %q", in.Text())
	}
	return m
}

// TestExecute: the request is a one-shot (no session, no pool) with the
// tools and options given; output is streamed, a tool call answered with
// the tool's typed value, and the result and warm decoded.
func TestExecute(t *testing.T) {
	got := make(chan map[string]any, 2)
	addr := fakeDaemon(t, sandboxedHello, func(in *bufio.Scanner, out net.Conn) {
		req := readReq(t, in)
		got <- req
		out.Write([]byte(`{"type":"stdout","id":"1","text":"hi\n"}` + "\n"))
		out.Write([]byte(`{"type":"tool_call","id":"1","call":"1.1","tool":"add","args":{"a":{"type":"double","value":[2]}},"args_plain":{"a":2}}` + "\n"))
		got <- readReq(t, in)
		out.Write([]byte(`{"type":"stderr","id":"1","text":"warn\n"}` + "\n"))
		out.Write([]byte(`{"type":"result","id":"1","result":{"verdict":"ok","value":{"type":"double","value":[5]},"visible":true,"printed":"[1] 5","stdout":"hi\n","stderr":"","warnings":null,"messages":null,"state_lost":false,"accounting":{"wall_ns":1000,"cpu_user_ns":0,"cpu_system_ns":0,"peak_memory_bytes":0,"peak_pids":0,"oom_kills":0,"tool_calls":1,"stdout_bytes":3,"stderr_bytes":0},"printed_bytes":6},"value_plain":5,"warm":true}` + "\n"))
	})
	c, err := Dial(context.Background(), addr, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var stdout, stderr strings.Builder
	add := securer.Tool{Name: "add", Description: "Add", Args: []securer.Arg{{Name: "a", Type: "numeric"}},
		Handler: func(_ context.Context, args map[string]securer.Value) (any, error) {
			return rvalue.FromRawJSON([]byte("3"))
		}}
	res, warm, err := c.Execute(context.Background(), Request{Code: "add(2)", Timeout: 5 * time.Second, Tools: []securer.Tool{add},
		Options: map[string]any{"pids": 32}, Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		t.Fatal(err)
	}
	req := <-got
	if req["op"] != "execute" || req["session"] != nil || req["pool"] != nil || req["code"] != "add(2)" || req["timeout"] != 5.0 {
		t.Errorf("request %v", req)
	}
	if tools, _ := req["tools"].([]any); len(tools) != 1 || tools[0].(map[string]any)["name"] != "add" {
		t.Errorf("tools %v", req["tools"])
	}
	if o, _ := req["options"].(map[string]any); o["pids"] != 32.0 {
		t.Errorf("options %v", req["options"])
	}
	answer := <-got
	if answer["op"] != "tool_result" || answer["call"] != "1.1" || answer["typed"] == nil || answer["error"] != nil {
		t.Errorf("tool answer %v", answer)
	}
	if !warm || res.Verdict != securer.VerdictOK || res.Accounting.Wall != time.Microsecond || res.Accounting.ToolCalls != 1 {
		t.Errorf("result %+v warm %v", res, warm)
	}
	if stdout.String() != "hi\n" || stderr.String() != "warn\n" {
		t.Errorf("streams %q %q", stdout.String(), stderr.String())
	}
}

// TestRefusals: an error event is a *ServerError wrapping ErrServer; a
// daemon without the sandbox, one that wants a token not given, and
// something that is not a daemon are refused at Dial.
func TestRefusals(t *testing.T) {
	addr := fakeDaemon(t, sandboxedHello, func(in *bufio.Scanner, out net.Conn) {
		readReq(t, in)
		out.Write([]byte(`{"type":"error","id":"1","error":{"code":"limit","message":"full"}}` + "\n"))
	})
	c, err := Dial(context.Background(), addr, "")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Execute(context.Background(), Request{Code: "1"})
	var se *ServerError
	if !errors.Is(err, ErrServer) || !errors.As(err, &se) || se.Code != "limit" {
		t.Errorf("error event: %v", err)
	}
	c.Close()
	for name, tc := range map[string]struct{ hello, want string }{
		"unsandboxed": {`{"type":"hello","protocol":1,"sandboxed":false}`, "without a sandbox"},
		"token":       {`{"type":"hello","protocol":1,"sandboxed":true,"auth_required":true}`, "--token-file"},
		"protocol":    {`{"type":"hello","protocol":2,"sandboxed":true}`, "protocol 2"},
		"not ours":    {`{"jsonrpc":"2.0"}`, "does not speak"},
	} {
		addr := fakeDaemon(t, tc.hello, func(*bufio.Scanner, net.Conn) {})
		if c, err := Dial(context.Background(), addr, ""); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Dial = %v, want an error saying %q", name, err, tc.want)
			if c != nil {
				c.Close()
			}
		}
	}
}

// TestAuth: with a token, auth is sent first and its ok awaited.
func TestAuth(t *testing.T) {
	got := make(chan map[string]any, 1)
	addr := fakeDaemon(t, `{"type":"hello","protocol":1,"sandboxed":true,"auth_required":true}`, func(in *bufio.Scanner, out net.Conn) {
		got <- readReq(t, in)
		out.Write([]byte(`{"type":"ok","id":"auth"}` + "\n"))
	})
	c, err := Dial(context.Background(), addr, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if req := <-got; req["op"] != "auth" || req["token"] != "s3cret" {
		t.Errorf("auth request %v", req)
	}
}

// TestDialTimeout: a listener that never greets does not hang Dial.
func TestDialTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mute.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := Dial(ctx, "unix:"+path, ""); err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("Dial to a mute listener: %v after %s", err, time.Since(start))
	}
}
