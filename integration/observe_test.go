package integration

// Observability of a real serve (issue 12 item 5): its admin endpoints
// scraped while it works, the numbers moving as it does; the health
// command; request-scoped JSON log records.

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// scrapeMetrics reads /metrics into "name{labels}" -> value.
func scrapeMetrics(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	code, body := httpGet(t, addr, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

func httpGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// adminAddr finds the admin address in serve's JSON log.
func adminAddr(t *testing.T, p *serveProc) string {
	t.Helper()
	for _, l := range strings.Split(p.stderr.String(), "\n") {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(l), &rec) == nil && rec.Msg == "admin endpoints" {
			return rec.Addr
		}
	}
	t.Fatalf("no admin endpoints record:\n%s", p.stderr.String())
	return ""
}

// TestServeObservability: a serve with --admin-listen, after a serve that
// was killed -9 with a session: the leftovers reaped at start are counted;
// executions (ok, with a tool call, an R error, a timeout, an OOM kill) and a refused
// request move their counters and histograms; the gauges show the live
// session and client; each execution has a JSON log record naming its
// client, session and request; /readyz turns 503 "draining" on SIGTERM
// while /healthz stays 200, and the health command says so.
func TestServeObservability(t *testing.T) {
	dead := startServe(t, "--listen", "unix:"+filepath.Join(t.TempDir(), "dead.sock"))
	dc := newSvcClient(t, dead.dial(t))
	dc.wait("", "hello")
	dc.request(map[string]any{"op": "create_session", "id": "1"}, "session")
	_ = dead.cmd.Process.Kill()
	_ = dead.wait()
	if len(leftovers()) == 0 {
		t.Fatal("kill -9 left nothing: the reaped count proves nothing")
	}

	p := startServe(t, "--listen", "unix:"+filepath.Join(t.TempDir(), "o.sock"), "--admin-listen", "127.0.0.1:0",
		"--log-format", "json", "--term-grace", "30s")
	addr := adminAddr(t, p)
	if code, body := httpGet(t, addr, "/readyz"); code != 200 {
		t.Fatalf("/readyz of a serving server: %d %q", code, body)
	}
	before := scrapeMetrics(t, addr)
	if before[`securer_reaped_leftovers_total{kind="session"}`] < 1 {
		t.Errorf("the dead server's session was reaped at start, not counted: %v", before[`securer_reaped_leftovers_total{kind="session"}`])
	}

	c := newSvcClient(t, p.dial(t))
	c.wait("", "hello")
	sess := c.request(map[string]any{"op": "create_session", "id": "cs", "tools": []any{addTool}}, "session")["session"].(string)
	small := c.request(map[string]any{"op": "create_session", "id": "cs2", "options": map[string]any{"memory_bytes": 256 << 20}}, "session")["session"].(string)
	run := func(id, code string, timeout float64, answer bool) string {
		t.Helper()
		req := map[string]any{"op": "execute", "id": id, "session": sess, "code": code}
		if id == "oom" {
			req["session"] = small
		}
		if timeout > 0 {
			req["timeout"] = timeout
		}
		c.send(req)
		if answer {
			call := c.wait(id, "tool_call")
			c.send(map[string]any{"op": "tool_result", "call": call["call"], "value": 5})
		}
		ev := c.wait(id, "result", "error")
		r, _ := ev["result"].(map[string]any)
		v, _ := r["verdict"].(string)
		return v
	}
	for _, x := range []struct {
		id, code string
		timeout  float64
		answer   bool
		verdict  string
	}{
		{"x1", "1 + 1", 0, false, "ok"},
		{"x2", "add(2, 3)", 0, true, "ok"},
		{"x3", "stop('boom')", 0, false, "error"},
		{"x4", "Sys.sleep(60)", 1, false, "timeout"},
		{"oom", oomCode, 0, false, "oom"},
	} {
		if v := run(x.id, x.code, x.timeout, x.answer); v != x.verdict {
			t.Errorf("%s: verdict %q, want %q", x.code, v, x.verdict)
		}
	}
	if ev := c.request(map[string]any{"op": "execute", "id": "nf", "session": "s99", "code": "1"}); errCodeOf(ev) != "not_found" {
		t.Errorf("execute on no session: %v", ev)
	}

	after := scrapeMetrics(t, addr)
	moved := func(key string, want float64) {
		t.Helper()
		if d := after[key] - before[key]; d != want {
			t.Errorf("%s moved by %g, want %g (before %g, after %g)", key, d, want, before[key], after[key])
		}
	}
	moved(`securer_executions_total{verdict="ok"}`, 2)
	moved(`securer_executions_total{verdict="error"}`, 1)
	moved(`securer_executions_total{verdict="timeout"}`, 1)
	moved(`securer_executions_total{verdict="oom"}`, 1)
	moved(`securer_execution_duration_seconds_count`, 5)
	if d := after["securer_oom_kills_total"] - before["securer_oom_kills_total"]; d < 1 {
		t.Errorf("securer_oom_kills_total moved by %g after an OOM kill", d)
	}
	moved(`securer_tool_calls_total{outcome="ok"}`, 1)
	moved(`securer_tool_call_duration_seconds_count`, 1)
	moved(`securer_errors_total{code="not_found"}`, 1)
	if d := after[`securer_sandbox_starts_total{outcome="ok"}`] - before[`securer_sandbox_starts_total{outcome="ok"}`]; d < 2 {
		t.Errorf("sandbox starts moved by %g, want at least the two sessions'", d)
	}
	if after[`securer_sandbox_start_duration_seconds_count`] < 1 || after[`securer_sandbox_start_duration_seconds_sum`] <= 0 {
		t.Errorf("no sandbox start latency recorded")
	}
	// The timeout took at least its second: it is in a bucket above 1 s.
	if above := after[`securer_execution_duration_seconds_count`] - after[`securer_execution_duration_seconds_bucket{le="1"}`]; above < 1 {
		t.Errorf("no execution over 1 s in the histogram")
	}
	for key, want := range map[string]float64{"securer_sessions": 2, "securer_clients": 1, "securer_ready": 1, "securer_executions_running": 0} {
		if after[key] != want {
			t.Errorf("%s = %g, want %g", key, after[key], want)
		}
	}

	// Request-scoped log records: each execution's names its client,
	// session and request.
	var logged int
	for _, l := range strings.Split(p.stderr.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) != nil || rec["msg"] != "execution ended" {
			continue
		}
		logged++
		if rec["client"] == nil || (rec["session"] != sess && rec["session"] != small) || rec["request"] == nil || rec["verdict"] == nil {
			t.Errorf("execution record without its fields: %s", l)
		}
	}
	if logged != 5 {
		t.Errorf("%d execution records, want 5:\n%s", logged, p.stderr.String())
	}

	// A drain: not ready at once (an execution still running), alive.
	c.send(map[string]any{"op": "execute", "id": "slow", "session": sess, "code": "Sys.sleep(4); 7"})
	time.Sleep(time.Second)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	var code int
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, body = httpGet(t, addr, "/readyz"); code == 503 || time.Now().After(deadline) {
			break
		}
	}
	if code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("/readyz during the drain: %d %q, want 503 draining", code, body)
	}
	if code, _ := httpGet(t, addr, "/healthz"); code != 200 {
		t.Errorf("/healthz during the drain: %d", code)
	}
	out, err := exec.Command(cli(t), "health", "--admin", addr).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "draining") {
		t.Errorf("health during the drain: %v %q, want exit 1 naming the drain", err, out)
	}
	if out, err := exec.Command(cli(t), "health", "--admin", addr, "--live").CombinedOutput(); err != nil {
		t.Errorf("health --live during the drain: %v %q", err, out)
	}
	if m := scrapeMetrics(t, addr); m["securer_ready"] != 0 || m["securer_executions_running"] != 1 {
		t.Errorf("during the drain: securer_ready %g, running %g; want 0 and 1", m["securer_ready"], m["securer_executions_running"])
	}
	if ev := c.wait("slow", "result", "error"); ev["value_plain"] != 7.0 {
		t.Errorf("the execution running at SIGTERM: %v", ev)
	}
	if err := p.wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v\n%s", err, p.stderr.String())
	}
	waitNoLeftovers(t, 10*time.Second)
}
