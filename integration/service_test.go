package integration

// The session service (securer-runc serve): protocol conformance,
// client-answered tools, pools, disconnects, drain, bad input.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/service"
)

// svcClient speaks the protocol over one connection. Events are sorted by
// request id as they arrive.
type svcClient struct {
	t    *testing.T
	conn net.Conn
	wmu  sync.Mutex

	mu     sync.Mutex
	events map[string][]map[string]any
	cond   *sync.Cond
	hello  map[string]any
	closed bool
}

func newSvcClient(t *testing.T, conn net.Conn) *svcClient {
	c := &svcClient{t: t, conn: conn, events: map[string][]map[string]any{}}
	c.cond = sync.NewCond(&c.mu)
	go func() {
		sc := bufio.NewScanner(conn)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var ev map[string]any
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("server sent a line that is not JSON: %q", sc.Text())
				continue
			}
			c.mu.Lock()
			if ev["type"] == "hello" {
				c.hello = ev
			}
			id, _ := ev["id"].(string)
			c.events[id] = append(c.events[id], ev)
			c.cond.Broadcast()
			c.mu.Unlock()
		}
		c.mu.Lock()
		c.closed = true
		c.cond.Broadcast()
		c.mu.Unlock()
	}()
	t.Cleanup(func() { conn.Close() })
	return c
}

func (c *svcClient) sendRaw(line string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.conn.Write([]byte(line + "\n")); err != nil {
		c.t.Errorf("write to the server: %v", err)
	}
}

func (c *svcClient) send(req map[string]any) {
	b, err := json.Marshal(req)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(string(b))
}

// wait returns the first event of request id whose type is one of types,
// consuming it and everything before it.
func (c *svcClient) wait(id string, types ...string) map[string]any {
	c.t.Helper()
	ev, ok := tryWait(c, id, types...)
	if !ok {
		c.mu.Lock()
		evs, closed := c.events[id], c.closed
		c.mu.Unlock()
		c.t.Fatalf("no %v event for request %q (have %v; connection closed: %v)", types, id, evs, closed)
	}
	return ev
}

// request sends req and waits for its reply (or an error).
func (c *svcClient) request(req map[string]any, types ...string) map[string]any {
	c.t.Helper()
	c.send(req)
	return c.wait(req["id"].(string), append(types, "error")...)
}

func errCodeOf(ev map[string]any) string {
	e, _ := ev["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// startService serves base on a fresh Unix socket (startServiceWith) and
// returns a connected client and the server.
func startService(t *testing.T, base securer.Config, maxSessions int) (*svcClient, *service.Server, string) {
	t.Helper()
	srv, path := startServiceWith(t, service.Options{Base: base, MaxSessions: maxSessions, WriteTimeout: 2 * time.Second})
	return dialService(t, path), srv, path
}

func dialService(t *testing.T, path string) *svcClient {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c := newSvcClient(t, conn)
	c.wait("", "hello")
	return c
}

var addTool = map[string]any{"name": "add", "description": "Add two numbers",
	"args": []any{map[string]any{"name": "a", "type": "numeric"}, map[string]any{"name": "b", "type": "numeric"}}}

func TestServiceProtocol(t *testing.T) {
	c, _, _ := startService(t, baseConfig(), 8)
	if c.hello["protocol"] != 1.0 || c.hello["arg_types"] == nil || c.hello["sandboxed"] != true {
		t.Errorf("hello: %v", c.hello)
	}
	ev := c.request(map[string]any{"op": "create_session", "id": "1", "tools": []any{addTool}}, "session")
	sess, _ := ev["session"].(string)
	if sess == "" || ev["sandboxed"] != true {
		t.Fatalf("create_session: %v", ev)
	}

	// Output streams, a tool call answered by the client, the result.
	c.send(map[string]any{"op": "execute", "id": "2", "session": sess, "code": `cat("hi\n"); add(2, 3) * 10`})
	call := c.wait("2", "tool_call")
	plain, _ := call["args_plain"].(map[string]any)
	if call["tool"] != "add" || plain["a"] != 2.0 || plain["b"] != 3.0 {
		t.Errorf("tool_call: %v", call)
	}
	if typed, _ := call["args"].(map[string]any); typed["a"].(map[string]any)["type"] != "double" {
		t.Errorf("typed args: %v", call["args"])
	}
	c.send(map[string]any{"op": "tool_result", "call": call["call"], "value": 5})
	res := c.wait("2", "result")
	r := res["result"].(map[string]any)
	if r["verdict"] != "ok" || res["value_plain"] != 50.0 || !strings.Contains(r["stdout"].(string), "hi") {
		t.Errorf("result: %v", res)
	}

	// A client error becomes an R error inside, with its message.
	c.send(map[string]any{"op": "execute", "id": "3", "session": sess, "code": `tryCatch(add(1, 1), error = function(e) conditionMessage(e))`})
	call = c.wait("3", "tool_call")
	c.send(map[string]any{"op": "tool_result", "call": call["call"], "error": "no adding today"})
	res = c.wait("3", "result")
	if v, _ := res["value_plain"].(string); !strings.Contains(v, "no adding today") {
		t.Errorf("tool error: %v", res["value_plain"])
	}

	// A typed answer keeps its R type.
	c.send(map[string]any{"op": "execute", "id": "4", "session": sess, "code": `x <- add(1, 1); c(class(x), length(x))`})
	call = c.wait("4", "tool_call")
	c.send(map[string]any{"op": "tool_result", "call": call["call"], "typed": map[string]any{"type": "integer", "value": []any{1, 2, nil}}})
	res = c.wait("4", "result")
	if fmt.Sprint(res["value_plain"]) != "[integer 3]" {
		t.Errorf("typed answer: %v", res["value_plain"])
	}

	// Validation happens before the client sees anything.
	res = c.request(map[string]any{"op": "execute", "id": "5", "session": sess, "code": `add("x", 1)`}, "result")
	if r := res["result"].(map[string]any); r["verdict"] != "error" {
		t.Errorf("badly typed call: %v", r)
	}
	if evs := c.events["5"]; len(evs) > 0 {
		t.Errorf("events after the result: %v", evs)
	}

	// Bad input: a clear error, and the connection keeps working.
	for _, tc := range []struct{ line, code string }{
		{`{not json`, "bad_request"},
		{`{"op":"execute","id":"6","session":"` + sess + `","code":"1","bogus":1}`, "bad_request"},
		{`{"op":"execute","id":"7","session":"s99","code":"1"}`, "not_found"},
		{`{"op":"fly","id":"8"}`, "bad_request"},
		{`{"op":"create_session","id":"9","options":{"memory_bytes":1099511627776}}`, "invalid_config"},
		{`{"op":"create_session","id":"10","tools":[{"name":"bad name"}]}`, "invalid_config"},
		// Neither session nor pool is a one-shot; both is refused.
		{`{"op":"execute","id":"11","session":"` + sess + `","pool":"p1","code":"1"}`, "bad_request"},
		{`{"op":"tool_result","call":"nope","value":1}`, "not_found"},
		{`{"op":"ping"}`, "bad_request"},
	} {
		c.sendRaw(tc.line)
		var id struct{ ID string }
		_ = json.Unmarshal([]byte(tc.line), &id)
		ev := c.wait(id.ID, "error")
		if errCodeOf(ev) != tc.code {
			t.Errorf("%s: %v, want code %s", tc.line, ev, tc.code)
		}
	}
	// Code over the server's ceiling is refused before it is queued.
	if ev := c.request(map[string]any{"op": "execute", "id": "big", "session": sess, "code": strings.Repeat("1;", 600<<10)}); errCodeOf(ev) != "rejected" {
		t.Errorf("1.2 MB of code: %v", ev)
	}
	if ev := c.request(map[string]any{"op": "ping", "id": "12"}, "pong"); ev["type"] != "pong" {
		t.Errorf("ping after bad input: %v", ev)
	}
	if ev := c.request(map[string]any{"op": "execute", "id": "13", "session": sess, "code": "21 * 2"}, "result"); ev["value_plain"] != 42.0 {
		t.Errorf("the session after bad input: %v", ev)
	}
	if ev := c.request(map[string]any{"op": "close_session", "id": "14", "session": sess}, "closed"); ev["type"] != "closed" {
		t.Errorf("close_session: %v", ev)
	}
	if ev := c.request(map[string]any{"op": "execute", "id": "15", "session": sess, "code": "1"}); errCodeOf(ev) != "not_found" {
		t.Errorf("execute on a closed session: %v", ev)
	}
}

func TestServiceToolTimeoutAndCancel(t *testing.T) {
	c, _, _ := startService(t, baseConfig(), 8)
	ev := c.request(map[string]any{"op": "create_session", "id": "1", "tools": []any{addTool}, "options": map[string]any{"timeout": 1}}, "session")
	sess := ev["session"].(string)
	// A client that never answers: the execution times out like any tool.
	start := time.Now()
	c.send(map[string]any{"op": "execute", "id": "2", "session": sess, "code": "add(1, 2)"})
	call := c.wait("2", "tool_call")
	res := c.wait("2", "result")
	if r := res["result"].(map[string]any); r["verdict"] != "timeout" || time.Since(start) > 5*time.Second {
		t.Errorf("unanswered tool: %v after %s", r["verdict"], time.Since(start))
	}
	// The late answer is refused, the session still works.
	c.send(map[string]any{"op": "tool_result", "call": call["call"], "value": 3})
	if ev := c.wait("", "error"); errCodeOf(ev) != "not_found" {
		t.Errorf("late tool_result: %v", ev)
	}
	// A per-execution timeout and a cancel.
	res = c.request(map[string]any{"op": "execute", "id": "3", "session": sess, "code": "Sys.sleep(10)", "timeout": 0.3}, "result")
	if r := res["result"].(map[string]any); r["verdict"] != "timeout" {
		t.Errorf("per-execution timeout: %v", r["verdict"])
	}
	c.send(map[string]any{"op": "execute", "id": "4", "session": sess, "code": "Sys.sleep(0.5); Sys.sleep(10)", "timeout": 30})
	time.Sleep(200 * time.Millisecond)
	c.request(map[string]any{"op": "cancel", "id": "5", "target": "4"}, "ok")
	res = c.wait("4", "result")
	if r := res["result"].(map[string]any); r["verdict"] != "canceled" {
		t.Errorf("cancel: %v", r["verdict"])
	}
	// A cancel on the very next line still finds the execution.
	c.send(map[string]any{"op": "execute", "id": "6", "session": sess, "code": "Sys.sleep(10)", "timeout": 30})
	c.send(map[string]any{"op": "cancel", "id": "7", "target": "6"})
	c.wait("7", "ok")
	if r := c.wait("6", "result")["result"].(map[string]any); r["verdict"] != "canceled" {
		t.Errorf("immediate cancel: %v", r["verdict"])
	}
	if ev := c.request(map[string]any{"op": "execute", "id": "8", "session": sess, "code": "1 + 1"}, "result"); ev["value_plain"] != 2.0 {
		t.Errorf("after timeout and cancel: %v", ev)
	}
	// Cancelling an execution still queued for a pool session: a result
	// with verdict canceled, nothing ran.
	pool := c.request(map[string]any{"op": "create_pool", "id": "9", "size": 1, "reset": "none"}, "pool")["pool"].(string)
	c.send(map[string]any{"op": "execute", "id": "10", "pool": pool, "code": "Sys.sleep(1.5)"})
	time.Sleep(200 * time.Millisecond)
	c.send(map[string]any{"op": "execute", "id": "11", "pool": pool, "code": "queued_ran <- TRUE"})
	time.Sleep(100 * time.Millisecond)
	c.request(map[string]any{"op": "cancel", "id": "12", "target": "11"}, "ok")
	if r := c.wait("11", "result")["result"].(map[string]any); r["verdict"] != "canceled" {
		t.Errorf("cancel of a queued execution: %v", r)
	}
	c.wait("10", "result")
	if ev := c.request(map[string]any{"op": "execute", "id": "13", "pool": pool, "code": `exists("queued_ran")`}, "result"); ev["value_plain"] != false {
		t.Errorf("the cancelled queued execution ran: %v", ev["value_plain"])
	}
}

func TestServicePool(t *testing.T) {
	c, _, _ := startService(t, baseConfig(), 8)
	ev := c.request(map[string]any{"op": "create_pool", "id": "1", "size": 2, "tools": []any{addTool}}, "pool")
	pool, _ := ev["pool"].(string)
	if pool == "" {
		t.Fatalf("create_pool: %v", ev)
	}
	// Six executions on two sessions, each with its own tool answer and a
	// variable that must not survive into the next (fresh by default).
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("e%d", i)
			c.send(map[string]any{"op": "execute", "id": id, "pool": pool, "code": fmt.Sprintf(`stopifnot(!exists("leak")); leak <- 1; add(%d, 0)`, i)})
			call := c.wait(id, "tool_call")
			plain := call["args_plain"].(map[string]any)
			c.send(map[string]any{"op": "tool_result", "call": call["call"], "value": plain["a"].(float64) * 100})
			res := c.wait(id, "result")
			if res["value_plain"] != float64(i*100) {
				t.Errorf("%s: %v", id, res)
			}
		}()
	}
	wg.Wait()
	ev = c.request(map[string]any{"op": "pool_status", "id": "2", "pool": pool}, "pool")
	if st := ev["status"].(map[string]any); st["total"] != 2.0 {
		t.Errorf("pool status: %v", st)
	}
	c.request(map[string]any{"op": "close_pool", "id": "3", "pool": pool}, "closed")
}

func TestServiceLimits(t *testing.T) {
	c, _, _ := startService(t, baseConfig(), 2)
	c.request(map[string]any{"op": "create_session", "id": "1"}, "session")
	c.request(map[string]any{"op": "create_session", "id": "2"}, "session")
	if ev := c.request(map[string]any{"op": "create_session", "id": "3"}); errCodeOf(ev) != "limit" {
		t.Errorf("a third session on a 2-session server: %v", ev)
	}
	if ev := c.request(map[string]any{"op": "create_pool", "id": "4", "size": 1}); errCodeOf(ev) != "limit" {
		t.Errorf("a pool over the limit: %v", ev)
	}
	c.request(map[string]any{"op": "close_session", "id": "5", "session": "s1"}, "closed")
	sess := c.request(map[string]any{"op": "create_session", "id": "6"}, "session")["session"].(string)
	// Sizes and durations that would overflow are refused, not wrapped.
	for _, line := range []string{
		`{"op":"create_pool","id":"7","size":9223372036854775807}`,
		`{"op":"create_pool","id":"8","size":-1}`,
		`{"op":"create_session","id":"9","options":{"timeout":1e300}}`,
		`{"op":"execute","id":"10","session":"` + sess + `","code":"1","timeout":-1}`,
	} {
		c.sendRaw(line)
		var id struct{ ID string }
		_ = json.Unmarshal([]byte(line), &id)
		if ev := c.wait(id.ID, "error"); errCodeOf(ev) != "bad_request" && errCodeOf(ev) != "invalid_config" {
			t.Errorf("%s: %v", line, ev)
		}
	}
	if ev := c.request(map[string]any{"op": "execute", "id": "11", "session": sess, "code": "1 + 1"}, "result"); ev["value_plain"] != 2.0 {
		t.Errorf("the server after absurd sizes: %v", ev)
	}
}

func TestServiceDisconnect(t *testing.T) {
	c, _, path := startService(t, baseConfig(), 8)
	c.request(map[string]any{"op": "create_session", "id": "1", "tools": []any{addTool}}, "session")
	c.request(map[string]any{"op": "create_pool", "id": "2", "size": 1}, "pool")
	c.send(map[string]any{"op": "execute", "id": "3", "session": "s1", "code": "add(1, 2)"})
	c.wait("3", "tool_call")
	c.send(map[string]any{"op": "execute", "id": "4", "pool": "p2", "code": "Sys.sleep(30)"})
	time.Sleep(300 * time.Millisecond)
	c.conn.Close() // the client dies mid-execution and mid-tool-call
	for deadline := time.Now().Add(15 * time.Second); len(leftovers()) > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a vanished client's sessions were not cleaned up: %v", leftovers())
		}
	}
	// The server serves the next client.
	c2 := dialService(t, path)
	ev := c2.request(map[string]any{"op": "create_session", "id": "1"}, "session")
	if ev := c2.request(map[string]any{"op": "execute", "id": "2", "session": ev["session"], "code": "1 + 1"}, "result"); ev["value_plain"] != 2.0 {
		t.Errorf("next client: %v", ev)
	}
}

func TestServiceDrain(t *testing.T) {
	c, srv, _ := startService(t, baseConfig(), 8)
	c.request(map[string]any{"op": "create_session", "id": "1"}, "session")
	c.send(map[string]any{"op": "execute", "id": "2", "session": "s1", "code": "Sys.sleep(1.5); 42"})
	time.Sleep(300 * time.Millisecond)
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	time.Sleep(100 * time.Millisecond)
	if ev := c.request(map[string]any{"op": "create_session", "id": "3"}); errCodeOf(ev) != "draining" {
		t.Errorf("create_session while draining: %v", ev)
	}
	if ev := c.wait("2", "result"); ev["value_plain"] != 42.0 {
		t.Errorf("the running execution was not let finish: %v", ev)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(leftovers()) > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("left after the drain: %v", leftovers())
		}
	}
}

// TestServiceCLI: serve --listen with a group-readable socket, a client
// over it, then SIGTERM: exit 0 and nothing left, socket removed.
func TestServiceCLI(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.sock")
	cmd := exec.Command(cli(t), "serve", "--listen", "unix:"+path, "--socket-mode", "0660", "--socket-group", "0",
		"--state", stateDir, "--cgroup-parent", cgroupParent, "--term-grace", "10s")
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no socket: %s", stderr.String())
		}
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %s, want 0660", fi.Mode().Perm())
	}
	c := dialService(t, path)
	ev := c.request(map[string]any{"op": "create_session", "id": "1", "tools": []any{addTool}}, "session")
	c.send(map[string]any{"op": "execute", "id": "2", "session": ev["session"], "code": "Sys.sleep(1); add(20, 22)"})
	call := c.wait("2", "tool_call")
	_ = cmd.Process.Signal(syscall.SIGTERM)
	c.send(map[string]any{"op": "tool_result", "call": call["call"], "value": 42})
	if ev := c.wait("2", "result"); ev["value_plain"] != 42.0 {
		t.Errorf("execution during the drain: %v", ev)
	}
	err := cmd.Wait()
	if err != nil {
		t.Errorf("serve after SIGTERM: %v; stderr %s", err, stderr.String())
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the socket outlived the server")
	}
	if left := leftovers(); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestPythonClient runs the Python example (standard library only): R in
// a sandbox calls tools answered in Python.
func TestPythonClient(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is needed for the Python client test (make deps installs it): %v", err)
	}
	cmd := exec.Command(py, "../clients/python/example.py")
	cmd.Env = append(os.Environ(), "SECURER_RUNC="+cli(t), "SECURER_SERVE_ARGS=--state "+stateDir+" --cgroup-parent "+cgroupParent)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("example.py: %v\n%s", err, out)
	}
	for _, want := range []string{
		"add: ok 5", "weather: Boston 72 sunny", "tool error: cannot handle 1",
		"streamed: ['line 1 ', 'line 2 ', 'line 3 '] hostname: sandbox", "timeout: timeout",
		"session: container pid", "clamped: ['memory_bytes'] True",
		"plots: 2 [('image/png', 640, 480, True), ('image/png', 640, 480, True)]",
		"output without the print: 'before\\n'", `traceback: ['g()', 'f()', 'stop("inner")']`,
		"files: 2 ['out.csv'] True {'in/data.csv': 12, 'out.csv': 16}", "refused: file_refused",
		"inputs: {'shout.txt': b'HELLO\\n'}",
	} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("example.py output lacks %q:\n%s", want, out)
		}
	}
	if left := leftovers(); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestServiceClientStopsReading: a client that sends work and never reads
// the events counts as gone once a write waits past the deadline; its
// sessions are removed.
func TestServiceClientStopsReading(t *testing.T) {
	_, _, path := startService(t, baseConfig(), 8)
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintln(conn, `{"op":"create_session","id":"1"}`)
	// Read up to the session's reply, then nothing more. (Waiting a fixed
	// time instead let a slow start answer the execute below with
	// not_found: no output, so nothing to drop the client for.)
	lines := bufio.NewScanner(conn)
	for lines.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(lines.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		if ev["id"] == "1" {
			if ev["type"] != "session" {
				t.Fatalf("create_session: %v", ev)
			}
			break
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(stateDir, "sessions")); len(ents) != 1 {
		t.Fatalf("%d sessions before the flood, want 1", len(ents))
	}
	start := time.Now()
	fmt.Fprintln(conn, `{"op":"execute","id":"2","session":"s1","code":"repeat cat(strrep('x', 1e5), '\\n')"}`)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if ents, _ := os.ReadDir(filepath.Join(stateDir, "sessions")); len(ents) == 0 && len(leftovers()) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a client that stopped reading still holds: %v", leftovers())
		}
	}
	// Well before the 20 s execution timeout: the write deadline did it.
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("dropped after %s", took)
	}
}

// TestServiceTCP: a daemon on loopback TCP with a bearer token serves the
// Python example; a wrong token is refused; bad token setups do not start.
func TestServiceTCP(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	token := "4f1c2b9e0d8a7c6b5a4f3e2d1c0b9a8f"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(dir, "loose")
	short := filepath.Join(dir, "short")
	if err := errors.Join(os.WriteFile(loose, []byte(token), 0o644), os.WriteFile(short, []byte("abc"), 0o600)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		args       []string
	}{
		{"no token", "needs --token-file", nil},
		{"readable by others", "lets others read it", []string{"--token-file", loose}},
		{"short", "at least 32 characters", []string{"--token-file", short}},
	} {
		r := runCLI(t, "", append([]string{"serve", "--listen", "tcp:127.0.0.1:0"}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q, want %q", tc.name, r.code, r.stderr, tc.want)
		}
	}

	cmd := exec.Command(cli(t), "serve", "--listen", "tcp:127.0.0.1:0", "--token-file", tokenFile,
		"--state", stateDir, "--cgroup-parent", cgroupParent)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == ""; time.Sleep(20 * time.Millisecond) {
		if _, rest, ok := strings.Cut(stderr.String(), "serving on tcp:"); ok {
			addr, _, _ = strings.Cut(rest, "\n")
		}
		if time.Now().After(deadline) {
			t.Fatalf("no address: %s", stderr.String())
		}
	}

	// A wrong token: refused, connection closed.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := newSvcClient(t, conn)
	c.wait("", "hello")
	if c.hello["auth_required"] != true {
		t.Errorf("hello: %v", c.hello)
	}
	ev := c.request(map[string]any{"op": "auth", "id": "1", "token": strings.ToUpper(token)}, "error")
	if errCodeOf(ev) != service.CodeUnauthorized {
		t.Errorf("wrong token: %v", ev)
	}

	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	run := exec.Command(py, "../clients/python/example.py")
	run.Env = append(os.Environ(), "SECURER_ADDR=tcp:"+addr, "SECURER_TOKEN="+token)
	out, err := run.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "add: ok 5\n") || !strings.Contains(string(out), "hostname: sandbox\n") {
		t.Errorf("example.py over TCP: %v\n%s", err, out)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v; stderr %s", err, stderr.String())
	}
	if left := leftovers(); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}
