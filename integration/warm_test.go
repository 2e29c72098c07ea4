package integration

// Warm capacity owned by the daemon (serve --warm) and one-shot
// executions: hits and misses, refill, isolation between one-shots,
// tools, limits, run --connect and its auto-detection, metrics.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/securer-runc/securer-runc/service"
)

// acquireRecorder is an Observer that keeps the acquire paths and
// one-shot paths it is told of.
type acquireRecorder struct {
	mu       sync.Mutex
	acquired []string
	oneShots []string
}

func (r *acquireRecorder) ExecutionEnded(string, time.Duration, uint64) {}
func (r *acquireRecorder) ToolCallEnded(time.Duration, bool)            {}
func (r *acquireRecorder) SandboxStarted(time.Duration, error)          {}
func (r *acquireRecorder) Reaped(int, int)                              {}
func (r *acquireRecorder) ErrorSent(string)                             {}
func (r *acquireRecorder) Acquired(path string, _ time.Duration) {
	r.mu.Lock()
	r.acquired = append(r.acquired, path)
	r.mu.Unlock()
}
func (r *acquireRecorder) OneShot(path string) {
	r.mu.Lock()
	r.oneShots = append(r.oneShots, path)
	r.mu.Unlock()
}

func (r *acquireRecorder) paths() (acquired, oneShots []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.acquired...), append([]string(nil), r.oneShots...)
}

// startWarmService is startServiceWith with opts.Warm boxes started.
func startWarmService(t *testing.T, opts service.Options) (*service.Server, string) {
	t.Helper()
	srv, path := startServiceWith(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := srv.StartWarm(ctx); err != nil {
		t.Fatal(err)
	}
	return srv, path
}

// oneShot sends an execute with neither session nor pool and returns its
// result event (or error).
func oneShot(c *svcClient, id string, req map[string]any) map[string]any {
	c.t.Helper()
	req["op"], req["id"] = "execute", id
	return c.request(req, "result")
}

func warmOf(t *testing.T, ev map[string]any) bool {
	t.Helper()
	if ev["type"] != "result" {
		t.Fatalf("want a result, got %v", ev)
	}
	w, ok := ev["warm"].(bool)
	if !ok {
		t.Fatalf("one-shot result without a warm member: %v", ev)
	}
	return w
}

func resultOf(t *testing.T, ev map[string]any) map[string]any {
	t.Helper()
	r, ok := ev["result"].(map[string]any)
	if !ok {
		t.Fatalf("no result in %v", ev)
	}
	return r
}

func waitWarmIdle(t *testing.T, srv *service.Server, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); srv.Stats().WarmIdle != n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("warm boxes idle: %+v, want %d", srv.Stats(), n)
		}
	}
}

// TestWarmOneShots: a default one-shot runs in the warm box (warm:true);
// one that asks for options of its own, or comes while the warm box is
// busy, gets a box started for it (warm:false) that is gone afterwards;
// a second one-shot in the same warm box sees none of the first's
// variables, files or processes; a create_session without options takes
// the pristine warm box, which is refilled at once.
func TestWarmOneShots(t *testing.T) {
	rec := &acquireRecorder{}
	srv, path := startWarmService(t, service.Options{Base: baseConfig(), Warm: 1, MaxSessions: 4, MaxSessionsPerClient: 2,
		WriteTimeout: 2 * time.Second, Observer: rec})
	if st := srv.Stats(); st.WarmTotal != 1 || st.WarmIdle != 1 || st.Sessions != 1 {
		t.Fatalf("after StartWarm: %+v, want 1 warm box counted as a session", st)
	}
	c := dialService(t, path)

	// A session without options takes the warm box, never used yet; the
	// pool starts another.
	ev := c.request(map[string]any{"op": "create_session", "id": "s"}, "session")
	if ev["type"] != "session" {
		t.Fatalf("create_session: %v", ev)
	}
	if acq, _ := rec.paths(); len(acq) != 1 || acq[0] != "warm" {
		t.Fatalf("create_session acquired %v, want [warm]", acq)
	}
	waitWarmIdle(t, srv, 1)
	if st := srv.Stats(); st.Sessions != 2 {
		t.Fatalf("a taken warm box and its replacement: %+v, want 2 sessions", st)
	}
	c.request(map[string]any{"op": "close_session", "id": "sc", "session": ev["session"]}, "closed")

	// Two one-shots in the one warm box: the second looks for what the
	// first left.
	first := oneShot(c, "a", map[string]any{"code": `x <- 42; options(leak = TRUE); Sys.setenv(LEAK = "1")
writeLines("secret", "/tmp/work/left.txt"); writeLines("secret", "/tmp/left.txt")
system("sleep 300 &"); Sys.sleep(0.2)
length(list.files("/proc", pattern = "^[0-9]+$"))`})
	if !warmOf(t, first) || resultOf(t, first)["verdict"] != "ok" {
		t.Fatalf("first one-shot: %v", first)
	}
	second := oneShot(c, "b", map[string]any{"code": `c(exists("x"), isTRUE(getOption("leak")), nzchar(Sys.getenv("LEAK")),
file.exists("/tmp/work/left.txt"), file.exists("/tmp/left.txt"),
any(grepl("sleep", vapply(list.files("/proc", pattern = "^[0-9]+$", full.names = TRUE),
  function(p) paste(tryCatch(readLines(file.path(p, "cmdline"), warn = FALSE), error = function(e) ""), collapse = " "), ""))))`})
	if !warmOf(t, second) {
		t.Fatalf("second one-shot not warm: %v", second)
	}
	if got := plain(t, second); got != "[false,false,false,false,false,false]" {
		t.Errorf("second one-shot saw the first's x, option, env var, files, sleep: %s (want all false)", got)
	}

	// Options of its own: a box of its own, closed after.
	other := oneShot(c, "c", map[string]any{"code": "Sys.getpid()", "options": map[string]any{"pids": 32}})
	if warmOf(t, other) || resultOf(t, other)["verdict"] != "ok" {
		t.Fatalf("one-shot with options: %v, want warm false and ok", other)
	}
	// The warm box busy: the next default one-shot misses.
	c.send(map[string]any{"op": "execute", "id": "slow", "code": "Sys.sleep(2); 1"})
	waitWarmIdle(t, srv, 0)
	miss := oneShot(c, "d", map[string]any{"code": "2"})
	if warmOf(t, miss) {
		t.Errorf("one-shot while the warm box was busy: warm true")
	}
	if slow := c.wait("slow", "result", "error"); !warmOf(t, slow) {
		t.Errorf("slow one-shot: %v, want warm", slow)
	}
	_, shots := rec.paths()
	if want := "warm warm other warm miss"; strings.Join(shots, " ") != strings.Join(strings.Fields(want), " ") &&
		strings.Join(shots, " ") != "warm warm other miss warm" {
		t.Errorf("one-shot paths %v, want %s (slow and d in either order)", shots, want)
	}
	st := srv.Stats()
	if st.WarmHits != 3 || st.WarmMisses != 1 {
		t.Errorf("stats %+v, want 3 hits and 1 miss", st)
	}
	// Boxes started for one-shots are gone: only the warm box is left.
	if st.Sessions != 1 {
		t.Errorf("sessions after the one-shots: %d, want 1 (the warm box)", st.Sessions)
	}
}

func plain(t *testing.T, ev map[string]any) string {
	t.Helper()
	b, err := json.Marshal(ev["value_plain"])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestOneShotToolsAndLimits: a one-shot with a tool gets its tool_call
// and the client's answer; a one-shot over the client's quota, or with
// options over the operator's ceilings, is refused with nothing run;
// tools are refused on an execute on a session.
func TestOneShotToolsAndLimits(t *testing.T) {
	srv, path := startWarmService(t, service.Options{Base: baseConfig(), Warm: 1, MaxSessions: 3, MaxSessionsPerClient: 1,
		WriteTimeout: 2 * time.Second})
	c := dialService(t, path)
	c.send(map[string]any{"op": "execute", "id": "t", "code": "add(2, 3) * 10", "tools": []any{addTool}})
	call := c.wait("t", "tool_call", "error")
	if call["type"] != "tool_call" || call["tool"] != "add" {
		t.Fatalf("want a tool_call of add, got %v", call)
	}
	c.send(map[string]any{"op": "tool_result", "call": call["call"], "value": 5})
	res := c.wait("t", "result", "error")
	if warmOf(t, res) || plain(t, res) != "50" {
		t.Fatalf("one-shot with a tool: %v, want warm false and 50", res)
	}
	// The client's one session is its quota: a one-shot needing a box
	// of its own is refused; a warm one still runs (it is no client's).
	s := c.request(map[string]any{"op": "create_session", "id": "s", "options": map[string]any{"pids": 40}}, "session")
	if s["type"] != "session" {
		t.Fatalf("create_session: %v", s)
	}
	if ev := oneShot(c, "q", map[string]any{"code": "1", "options": map[string]any{"pids": 32}}); errCodeOf(ev) != "limit" {
		t.Errorf("one-shot over the client's quota: %v, want limit", ev)
	}
	if ev := oneShot(c, "w", map[string]any{"code": "1"}); !warmOf(t, ev) {
		t.Errorf("warm one-shot with the quota used: %v", ev)
	}
	if ev := oneShot(c, "m", map[string]any{"code": "1", "options": map[string]any{"memory_bytes": int64(1) << 40}}); errCodeOf(ev) != "invalid_config" {
		t.Errorf("one-shot over the memory ceiling: %v, want invalid_config", ev)
	}
	ev := c.request(map[string]any{"op": "execute", "id": "x", "session": s["session"], "code": "1", "tools": []any{addTool}}, "result")
	if errCodeOf(ev) != "bad_request" {
		t.Errorf("tools on a session's execute: %v, want bad_request", ev)
	}
	if st := srv.Stats(); st.Sessions != 2 {
		t.Errorf("sessions: %+v, want 2 (warm box and the client's session)", st)
	}
}

// TestRunConnect: run --connect runs through the daemon (warm), with its
// output, exit codes, --json and tools; without --connect, run finds the
// daemon at SECURER_SOCKET, unless --no-daemon or SECURER_NO_DAEMON=1,
// or a flag only a local box honours; a daemon that is not there is a
// clear error with --connect and a silent local run without; the TCP
// daemon wants --token-file; the metrics count the one-shots.
func TestRunConnect(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "d.sock")
	p := startServe(t, "--listen", "unix:"+sock, "--warm", "1", "--max-sessions", "4", "--admin-listen", "127.0.0.1:0", "--log-format", "json")
	stopServe(t, p)
	run := func(env []string, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(cli(t), append([]string{"run"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	noDaemonEnv := []string{"SECURER_SOCKET=" + filepath.Join(dir, "none.sock")}
	out, errOut, code := run(noDaemonEnv, "--connect", "unix:"+sock, "--log-level", "debug", "-e", "cat('hi\\n'); 1+1")
	if code != 0 || out != "hi\n[1] 2\n" || !strings.Contains(errOut, `warm=true`) {
		t.Errorf("run --connect: %q %q exit %d", out, errOut, code)
	}
	if _, _, code := run(noDaemonEnv, "--connect", "unix:"+sock, "-e", "stop('no')"); code != 1 {
		t.Errorf("R error through the daemon: exit %d, want 1", code)
	}
	if _, errOut, code := run(noDaemonEnv, "--connect", "unix:"+sock, "--timeout", "1s", "-e", "Sys.sleep(5)"); code != 124 || !strings.Contains(errOut, "timeout") {
		t.Errorf("timeout through the daemon: exit %d %q, want 124", code, errOut)
	}
	out, _, code = run(noDaemonEnv, "--connect", "unix:"+sock, "--json", "-e", "1:3")
	if code != 0 || !strings.Contains(out, `"verdict": "ok"`) {
		t.Errorf("--json through the daemon: %q exit %d", out, code)
	}
	// --connect with a piped stdin: through the daemon all the same.
	piped := exec.Command(cli(t), "run", "--connect", "unix:"+sock, "--log-level", "debug", "-e", "1+1")
	piped.Stdin = strings.NewReader("input\n")
	if out, err := piped.CombinedOutput(); err != nil || !strings.Contains(string(out), "ran through the daemon") {
		t.Errorf("--connect with a piped stdin: %v\n%s", err, out)
	}
	tools := filepath.Join(dir, "tools.json")
	if err := os.WriteFile(tools, []byte(`{"tools":[{"name":"add","description":"Add","args":{"a":"numeric","b":"numeric"},"command":["sh","-c","echo 7"]}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := run(noDaemonEnv, "--connect", "unix:"+sock, "--tools", tools, "-e", "add(1, 2) + 1"); code != 0 || out != "[1] 8\n" {
		t.Errorf("tools through the daemon: %q %q exit %d", out, errOut, code)
	}
	if _, errOut, code := run(noDaemonEnv, "--connect", "unix:"+filepath.Join(dir, "none.sock"), "-e", "1"); code != 3 || !strings.Contains(errOut, "connecting to the daemon") {
		t.Errorf("--connect to nothing: exit %d %q, want 3 and a clear error", code, errOut)
	}
	if _, errOut, code := run(noDaemonEnv, "--connect", "unix:"+sock, "--rootfs", "/nonexistent", "-e", "1"); code != 2 || !strings.Contains(errOut, "--rootfs") {
		t.Errorf("--connect with --rootfs: exit %d %q, want 2 naming --rootfs", code, errOut)
	}
	// Auto-detection. Local runs use this run's state dir and cgroup
	// parent, which alone would keep the run local ("a box of its own"):
	// --no-daemon and SECURER_NO_DAEMON must decide before that.
	env := []string{"SECURER_SOCKET=" + sock}
	local := []string{"--state", stateDir, "--cgroup-parent", cgroupParent}
	const ownBox = "a box of its own is needed"
	for _, tc := range []struct {
		name        string
		env         []string
		args        []string
		daemon      bool
		log, notLog string
	}{
		{"auto", env, nil, true, "", ownBox},
		{"--no-daemon", env, append([]string{"--no-daemon"}, local...), false, "", ownBox},
		{"SECURER_NO_DAEMON", append(env, "SECURER_NO_DAEMON=1"), local, false, "", ownBox},
		{"--audit", env, append([]string{"--audit", filepath.Join(dir, "audit.log")}, local...), false, "--audit", ""},
		{"no socket", noDaemonEnv, local, false, "", ownBox},
		{"stdin piped", env, append([]string{"--stdin-pipe"}, local...), false, "stdin for the code", ""},
	} {
		args := append([]string{"--log-level", "debug"}, tc.args...)
		cmd := exec.Command(cli(t), append(append([]string{"run"}, args...), "-e", "1+1")...)
		if tc.args != nil && tc.args[0] == "--stdin-pipe" {
			cmd = exec.Command(cli(t), append(append([]string{"run", "--log-level", "debug"}, tc.args[1:]...), "-e", "1+1")...)
			cmd.Stdin = strings.NewReader("input\n")
		}
		cmd.Env = append(os.Environ(), tc.env...)
		var outB, errB strings.Builder
		cmd.Stdout, cmd.Stderr = &outB, &errB
		err := cmd.Run()
		out, errOut := outB.String(), errB.String()
		if err != nil || out != "[1] 2\n" {
			t.Errorf("%s: %q %q %v", tc.name, out, errOut, err)
		}
		if got := strings.Contains(errOut, "ran through the daemon"); got != tc.daemon {
			t.Errorf("%s: through the daemon %v, want %v:\n%s", tc.name, got, tc.daemon, errOut)
		}
		if tc.log != "" && !strings.Contains(errOut, tc.log) {
			t.Errorf("%s: debug log lacks %q:\n%s", tc.name, tc.log, errOut)
		}
		if tc.notLog != "" && strings.Contains(errOut, tc.notLog) {
			t.Errorf("%s: debug log has %q:\n%s", tc.name, tc.notLog, errOut)
		}
	}
	m := scrapeMetrics(t, adminAddr(t, p))
	if m[`securer_oneshots_total{path="warm"}`] != 6 || m[`securer_oneshots_total{path="other"}`] < 1 || m["securer_warm_boxes"] != 1 ||
		m[`securer_acquire_duration_seconds_count{path="warm"}`] != 6 || m[`securer_acquire_duration_seconds_count{path="cold"}`] < 1 {
		t.Errorf("metrics after the runs: %v", pick(m, "securer_oneshots", "securer_warm", "securer_acquire_duration_seconds_count"))
	}

	// TCP: a token is required.
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("s3cret-token-for-the-test-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tp := startServe(t, "--listen", "tcp:127.0.0.1:0", "--token-file", token, "--warm", "1", "--max-sessions", "2")
	stopServe(t, tp)
	if out, errOut, code := run(noDaemonEnv, "--connect", tp.addr, "--token-file", token, "-e", "3"); code != 0 || out != "[1] 3\n" {
		t.Errorf("tcp with the token: %q %q exit %d", out, errOut, code)
	}
	if _, errOut, code := run(noDaemonEnv, "--connect", tp.addr, "-e", "3"); code != 3 || !strings.Contains(errOut, "token") {
		t.Errorf("tcp without a token: exit %d %q, want 3 naming the token", code, errOut)
	}
}

func pick(m map[string]float64, prefixes ...string) string {
	var b strings.Builder
	for k, v := range m {
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				fmt.Fprintf(&b, "%s=%g ", k, v)
			}
		}
	}
	return b.String()
}

// stopServe drains p with SIGTERM at the end of the test (before
// startServe's kill): its warm boxes are closed, not left behind.
func stopServe(t *testing.T, p *serveProc) {
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			t.Errorf("serve did not end on SIGTERM:\n%s", p.stderr.String())
		}
	})
}
