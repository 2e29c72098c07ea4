package integration

// The session service under hostile clients and load (issue 10): member
// sets, per-client quotas, ordering, id reuse, start bursts, ceilings,
// half-closed sockets, drains, start-up reaping, each against a real
// server over its socket.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/service"
)

// startServiceWith serves opts (Host defaults to testHost, Base to
// baseConfig) on a fresh Unix socket.
func startServiceWith(t *testing.T, opts service.Options) (*service.Server, string) {
	t.Helper()
	if opts.Host == (securer.Host{}) {
		opts.Host = testHost
	}
	if opts.Base.Timeout == 0 {
		opts.Base = baseConfig()
	}
	if opts.Version == "" {
		opts.Version = "test"
	}
	srv := service.New(opts)
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := service.ListenUnix(path, 0o600, -1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		cancel()
		<-done
		waitNoLeftovers(t, 20*time.Second)
	})
	return srv, path
}

func waitNoLeftovers(t *testing.T, d time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(d); len(leftovers()) > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("left behind: %v", leftovers())
		}
	}
}

func errMessageOf(ev map[string]any) string {
	e, _ := ev["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

// serveProc is a securer-runc serve process.
type serveProc struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	addr   string // unix:PATH or tcp:HOST:PORT as it printed
	exited chan struct{}
	err    error // once exited
}

// wait waits for the process to exit and returns how it did.
func (p *serveProc) wait() error {
	<-p.exited
	return p.err
}

// startServe runs the built binary's serve with args (its own state dir
// and cgroup parent added) and waits until it listens.
func startServe(t testing.TB, args ...string) *serveProc {
	t.Helper()
	cmd := exec.Command(cli(t), append([]string{"serve", "--state", stateDir, "--cgroup-parent", cgroupParent}, args...)...)
	p := &serveProc{cmd: cmd, stderr: &lockedBuffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	p.exited = exited
	go func() { p.err = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	for deadline := time.Now().Add(20 * time.Second); p.addr == ""; time.Sleep(20 * time.Millisecond) {
		if _, rest, ok := strings.Cut(p.stderr.String(), "serving on "); ok {
			p.addr, _, _ = strings.Cut(rest, "\n")
		}
		select {
		case <-exited:
			t.Fatalf("serve exited: %s", p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not listen: %s", p.stderr.String())
		}
	}
	if !strings.HasPrefix(p.addr, "tcp:") {
		p.addr = "unix:" + p.addr
	}
	return p
}

func (p *serveProc) dial(t *testing.T) net.Conn {
	t.Helper()
	network, addr, _ := strings.Cut(p.addr, ":")
	nc, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

// memKB reads a field (VmRSS, VmHWM) of /proc/PID/status in KiB.
func memKB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestServiceOrdering: two executes sent back to back on one session run
// in the order they were sent, every time (before: the second ran first
// and the first got busy in 15 of 20 tries).
func TestServiceOrdering(t *testing.T) {
	_, path := startServiceWith(t, service.Options{})
	c := dialService(t, path)
	sess := c.request(map[string]any{"op": "create_session", "id": "s"}, "session")["session"].(string)
	for i := range 20 {
		a, b := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)
		c.send(map[string]any{"op": "execute", "id": a, "session": sess, "code": `Sys.sleep(0.05); ord <- c(get0("ord", ifnotfound = NULL), "first"); length(ord)`})
		c.send(map[string]any{"op": "execute", "id": b, "session": sess, "code": `ord <- c(get0("ord", ifnotfound = NULL), "second"); rm(ord); "done"`})
		ra, rb := c.wait(a, "result", "error"), c.wait(b, "result", "error")
		if ra["type"] != "result" || rb["type"] != "result" || ra["value_plain"] != 1.0 {
			t.Fatalf("try %d: first %v, second %v", i, ra, rb)
		}
		if r := rb["result"].(map[string]any); r["verdict"] != "ok" {
			t.Fatalf("try %d: the second did not run after the first: %v", i, r)
		}
	}
	// A cancelled queued request ends at once with canceled, nothing ran;
	// the one behind it still waits its turn.
	c.send(map[string]any{"op": "execute", "id": "long", "session": sess, "code": `Sys.sleep(1); "long"`})
	c.send(map[string]any{"op": "execute", "id": "q1", "session": sess, "code": `queued_ran <- TRUE`})
	c.send(map[string]any{"op": "execute", "id": "q2", "session": sess, "code": `exists("queued_ran")`})
	c.request(map[string]any{"op": "cancel", "id": "c", "target": "q1"}, "ok")
	if r := c.wait("q1", "result")["result"].(map[string]any); r["verdict"] != "canceled" {
		t.Errorf("cancelled queued execution: %v", r)
	}
	if ev := c.wait("q2", "result", "error"); ev["value_plain"] != false {
		t.Errorf("after the cancelled one: %v", ev)
	}
	if ev := c.wait("long", "result"); ev["value_plain"] != "long" {
		t.Errorf("the running one: %v", ev)
	}
}

// TestServiceIDReuse: an id may be reused as soon as its result has
// arrived (before: "already running" in 37 of 200 tries).
func TestServiceIDReuse(t *testing.T) {
	_, path := startServiceWith(t, service.Options{})
	c := dialService(t, path)
	sess := c.request(map[string]any{"op": "create_session", "id": "s"}, "session")["session"].(string)
	ok := 0
	for i := range 200 {
		ev := c.request(map[string]any{"op": "execute", "id": "same", "session": sess, "code": strconv.Itoa(i)}, "result")
		if ev["type"] == "result" && ev["value_plain"] == float64(i) {
			ok++
		} else {
			t.Errorf("try %d: %v", i, ev)
		}
	}
	if ok != 200 {
		t.Errorf("%d of 200 reuses worked", ok)
	}
}

// TestServiceQuotas: one client cannot take every session; a refusal
// tells nothing of other clients; idle connections are closed so that
// they cannot keep others out.
func TestServiceQuotas(t *testing.T) {
	_, path := startServiceWith(t, service.Options{MaxSessions: 3, MaxSessionsPerClient: 2, MaxClients: 3, IdleTimeout: 3 * time.Second})
	a := dialService(t, path)
	a.request(map[string]any{"op": "create_session", "id": "1"}, "session")
	a.request(map[string]any{"op": "create_session", "id": "2"}, "session")
	ev := a.request(map[string]any{"op": "create_session", "id": "3"}, "session")
	if errCodeOf(ev) != "limit" || !strings.Contains(errMessageOf(ev), "quota of 2") {
		t.Errorf("a third session for one client: %v", ev)
	}
	b := dialService(t, path)
	b.request(map[string]any{"op": "create_session", "id": "1"}, "session")
	ev = b.request(map[string]any{"op": "create_pool", "id": "2", "size": 1}, "pool")
	if errCodeOf(ev) != "limit" || strings.Contains(errMessageOf(ev), "3") || ev["error"].(map[string]any)["retry_after"] == nil {
		t.Errorf("server full: %v (must not tell the server's count, must give a retry hint)", ev)
	}
	// Idle connections: three of them fill MaxClients; once they idle
	// out, a newcomer gets in. a and b are kept busy with pings.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopPings := sync.OnceFunc(func() { close(stop); wg.Wait() })
	// Even when the test ends early, the pings end with it.
	defer stopPings()
	for _, c := range []*svcClient{a, b} {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(500 * time.Millisecond):
				}
				c.send(map[string]any{"op": "ping", "id": "p" + strconv.Itoa(i)})
			}
		})
	}
	idle := dialService(t, path)
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if ev := newSvcClient(t, conn).wait("", "error"); errCodeOf(ev) != "limit" {
		t.Errorf("a fourth client: %v", ev)
	}
	if ev := idle.wait("", "error"); errCodeOf(ev) != "idle" {
		t.Errorf("idle connection: %v", ev)
	}
	// The server drops the idle client from its count just after telling
	// it so: a newcomer that hears limit in that moment retries, as a
	// client told limit does.
	var newcomer *svcClient
	for deadline := time.Now().Add(10 * time.Second); newcomer == nil; time.Sleep(100 * time.Millisecond) {
		nc, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c := newSvcClient(t, nc)
		ev, _ := tryWait(c, "", "hello", "error")
		switch {
		case ev["type"] == "hello":
			newcomer = c
		case errCodeOf(ev) == "limit" && time.Now().Before(deadline):
			nc.Close()
		default:
			t.Fatalf("a client after the idle one left: %v", ev)
		}
	}
	if ev := newcomer.request(map[string]any{"op": "ping", "id": "x"}, "pong"); ev["type"] != "pong" {
		t.Errorf("a client after the idle one left: %v", ev)
	}
	stopPings()
	// Busy clients were not closed.
	if ev := a.request(map[string]any{"op": "execute", "id": "e", "session": "s1", "code": "1"}, "result"); ev["value_plain"] != 1.0 {
		t.Errorf("a pinging client after the idle timeout: %v", ev)
	}
}

// TestServiceStartBurst: many creates at once wait for a start slot; those
// that cannot get one in time hear busy with a retry hint (never internal
// after a timeout), and a start that fails says how.
func TestServiceStartBurst(t *testing.T) {
	_, path := startServiceWith(t, service.Options{MaxSessions: 16, MaxStarts: 1, StartWait: 300 * time.Millisecond})
	const n = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	for i := range n {
		wg.Go(func() {
			c := dialService(t, path)
			for try := 0; ; try++ {
				id := fmt.Sprintf("%d.%d", i, try)
				ev := c.request(map[string]any{"op": "create_session", "id": id}, "session")
				mu.Lock()
				codes[errCodeOf(ev)]++
				mu.Unlock()
				if ev["type"] == "session" {
					return
				}
				e, _ := ev["error"].(map[string]any)
				after, _ := e["retry_after"].(float64)
				if errCodeOf(ev) != "busy" || after <= 0 || try > 100 {
					t.Errorf("create %s: %v", id, ev)
					return
				}
				time.Sleep(time.Duration(after * float64(time.Second)))
			}
		})
	}
	wg.Wait()
	if codes[""] != n || codes["busy"] == 0 {
		t.Errorf("outcomes %v: want %d sessions, some after busy", codes, n)
	}
	t.Logf("burst of %d creates with 1 start slot: %v", n, codes)
}

// TestServiceStartTimeout: a start that times out says so (before:
// internal).
func TestServiceStartTimeout(t *testing.T) {
	cfg := baseConfig()
	cfg.StartTimeout = time.Millisecond
	_, path := startServiceWith(t, service.Options{Base: cfg})
	c := dialService(t, path)
	if ev := c.request(map[string]any{"op": "create_session", "id": "1"}, "session"); errCodeOf(ev) != "start_timeout" {
		t.Errorf("a start past its timeout: %v", ev)
	}
}

// TestServiceCeilings: the operator caps timeout, tool calls, executions
// and output; asking above is invalid_config naming the ceiling; the caps
// apply when a client asks nothing.
func TestServiceCeilings(t *testing.T) {
	_, path := startServiceWith(t, service.Options{Ceilings: service.Ceilings{Timeout: 5 * time.Second, MaxToolCalls: 10, MaxExecutions: 3, OutputLimit: 1000}})
	c := dialService(t, path)
	for _, tc := range []struct {
		opts map[string]any
		want string
	}{
		{map[string]any{"timeout": 10}, "--max-timeout"},
		{map[string]any{"max_tool_calls": 11}, "--max-tool-calls"},
		{map[string]any{"max_executions": 4}, "--max-executions"},
		{map[string]any{"output_limit": 1001}, "--max-output"},
	} {
		ev := c.request(map[string]any{"op": "create_session", "id": "x", "options": tc.opts}, "session")
		if errCodeOf(ev) != "invalid_config" || !strings.Contains(errMessageOf(ev), tc.want) {
			t.Errorf("%v: %v", tc.opts, ev)
		}
	}
	sess := c.request(map[string]any{"op": "create_session", "id": "s"}, "session")["session"].(string)
	if ev := c.request(map[string]any{"op": "execute", "id": "1", "session": sess, "code": "1", "timeout": 6}, "result"); errCodeOf(ev) != "invalid_config" {
		t.Errorf("execute over --max-timeout: %v", ev)
	}
	if ev := c.request(map[string]any{"op": "execute", "id": "2", "session": sess, "code": `repeat { cat(strrep("x", 500)); Sys.sleep(0.01) }`}, "result"); ev["result"].(map[string]any)["verdict"] != "output_limit" {
		t.Errorf("the output ceiling as the default: %v", ev)
	}
	c.request(map[string]any{"op": "execute", "id": "3", "session": sess, "code": "1"}, "result")
	c.request(map[string]any{"op": "execute", "id": "4", "session": sess, "code": "1"}, "result")
	if ev := c.request(map[string]any{"op": "execute", "id": "5", "session": sess, "code": "1"}, "result"); errCodeOf(ev) != "rejected" {
		t.Errorf("a fourth execution under --max-executions 3: %v", ev)
	}
}

// TestServiceHalfClose: a client that shuts its writing side but still
// reads gets the results of what it asked (before: lost silently); a tool
// call it can no longer answer fails at once instead of hanging.
func TestServiceHalfClose(t *testing.T) {
	_, path := startServiceWith(t, service.Options{})
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c := newSvcClient(t, nc)
	c.wait("", "hello")
	sess := c.request(map[string]any{"op": "create_session", "id": "1", "tools": []any{addTool}}, "session")["session"].(string)
	c.send(map[string]any{"op": "execute", "id": "2", "session": sess, "code": `Sys.sleep(0.5); 6 * 7`})
	c.send(map[string]any{"op": "execute", "id": "3", "session": sess, "code": `tryCatch(add(1, 2), error = function(e) "no answer")`})
	if err := nc.(*net.UnixConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if ev := c.wait("2", "result"); ev["value_plain"] != 42.0 {
		t.Errorf("result after the client's half-close: %v", ev)
	}
	if ev := c.wait("3", "result"); ev["value_plain"] != "no answer" {
		t.Errorf("tool call after the half-close: %v", ev)
	}
	// Then the server closes the connection and what it held.
	c.mu.Lock()
	for deadline := time.Now().Add(20 * time.Second); !c.closed && time.Now().Before(deadline); {
		c.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		c.mu.Lock()
	}
	closed := c.closed
	c.mu.Unlock()
	if !closed {
		t.Errorf("the connection stayed open after everything was answered")
	}
	waitNoLeftovers(t, 20*time.Second)
}

// TestServiceDrainLong: with --term-grace 2s, an execution of
// Sys.sleep(20) gets its final event (before: the connection closed
// first); so do requests queued behind it and requests sent late in the
// drain (draining, not not_found).
func TestServiceDrainLong(t *testing.T) {
	p := startServe(t, "--listen", "unix:"+filepath.Join(t.TempDir(), "d.sock"), "--term-grace", "2s")
	c := newSvcClient(t, p.dial(t))
	c.wait("", "hello")
	sess := c.request(map[string]any{"op": "create_session", "id": "1"}, "session")["session"].(string)
	pool := c.request(map[string]any{"op": "create_pool", "id": "2", "size": 1, "reset": "none"}, "pool")["pool"].(string)
	c.send(map[string]any{"op": "execute", "id": "long", "session": sess, "code": "Sys.sleep(20)"})
	c.send(map[string]any{"op": "execute", "id": "queued", "session": sess, "code": "1"})
	c.send(map[string]any{"op": "execute", "id": "plong", "pool": pool, "code": "Sys.sleep(20)"})
	time.Sleep(500 * time.Millisecond)
	c.send(map[string]any{"op": "execute", "id": "pqueued", "pool": pool, "code": "1"})
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	if ev := c.request(map[string]any{"op": "execute", "id": "late", "session": sess, "code": "1"}); errCodeOf(ev) != "draining" {
		t.Errorf("execute during the drain: %v", ev)
	}
	for _, id := range []string{"long", "queued", "plong", "pqueued"} {
		ev := c.wait(id, "result", "error")
		r, _ := ev["result"].(map[string]any)
		switch {
		case ev["type"] == "error" && errCodeOf(ev) == "draining":
		case r != nil && (r["verdict"] == "canceled" || r["verdict"] == "killed"):
		default:
			t.Errorf("%s: final event %v", id, ev)
		}
	}
	if err := p.wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v\n%s", err, p.stderr.String())
	}
	t.Logf("drain with a 20 s execution and --term-grace 2s took %s", time.Since(start).Round(100*time.Millisecond))
	waitNoLeftovers(t, 10*time.Second)
}

// TestServiceReapsAtStart: after kill -9 of the daemon, its leftovers go
// when the next daemon starts, before any session is asked for (before:
// only at the first new session). A client that simply leaves is not
// logged as "not reading".
func TestServiceReapsAtStart(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "r.sock")
	p := startServe(t, "--listen", "unix:"+sock)
	c := newSvcClient(t, p.dial(t))
	c.wait("", "hello")
	c.request(map[string]any{"op": "create_session", "id": "1"}, "session")
	// A client that leaves while its execution writes: gone, not "not
	// reading".
	nc := p.dial(t)
	fmt.Fprintln(nc, `{"op":"create_session","id":"1"}`)
	r := bufio.NewReader(nc)
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(l, `"session"`) {
			break
		}
	}
	fmt.Fprintln(nc, `{"op":"execute","id":"2","session":"s1","code":"repeat cat(strrep('x', 1e4), '\\n')"}`)
	time.Sleep(500 * time.Millisecond)
	nc.Close()
	time.Sleep(time.Second)
	if strings.Contains(p.stderr.String(), "not reading") {
		t.Errorf("a client that left was logged as not reading:\n%s", p.stderr.String())
	}
	_ = p.cmd.Process.Kill()
	_ = p.wait()
	if len(leftovers()) == 0 {
		t.Fatalf("kill -9 left nothing: the test proves nothing")
	}
	os.Remove(sock)
	p2 := startServe(t, "--listen", "unix:"+sock)
	waitNoLeftovers(t, 20*time.Second)
	_ = p2.cmd.Process.Signal(syscall.SIGTERM)
	if err := p2.wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
}

// TestServiceQueuedMemory: requests carrying members their op does not
// define are refused, and what one client may hold queued is bounded in
// bytes, so the daemon's peak memory stays under the ceiling its flags
// give (before: 31 queued executes with a 15 MiB unused member each took
// it from 21 MB to 730 MB, 2.6 GB with 4 clients).
func TestServiceQueuedMemory(t *testing.T) {
	const clients, unused = 4, 12
	opts := service.Options{MaxClients: clients, MaxSessions: 4, Base: baseConfig()}
	ceiling := opts.MemoryCeiling()
	p := startServe(t, "--listen", "unix:"+filepath.Join(t.TempDir(), "m.sock"), "--max-clients", strconv.Itoa(clients), "--max-sessions", "4")
	pid := p.cmd.Process.Pid
	before := memKB(t, pid, "VmRSS")
	big := strings.Repeat("x", 15<<20)
	code := "#" + strings.Repeat("x", 900<<10) + "\n1"
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcome := map[string]int{}
	for i := range clients {
		wg.Go(func() {
			c := newSvcClient(t, p.dial(t))
			c.wait("", "hello")
			pool := c.request(map[string]any{"op": "create_pool", "id": "p", "size": 1, "reset": "none"}, "pool")["pool"]
			c.send(map[string]any{"op": "execute", "id": "busy", "pool": pool, "code": "Sys.sleep(3)"})
			for k := range unused {
				// An unused member, of another op or of none.
				ev := c.request(map[string]any{"op": "execute", "id": fmt.Sprintf("u%d", k), "pool": pool, "code": "1", "tools": []any{map[string]any{"name": "x", "description": big}}})
				mu.Lock()
				outcome["unused member: "+errCodeOf(ev)]++
				mu.Unlock()
			}
			var ids []string
			for k := range 31 {
				id := fmt.Sprintf("q%d", k)
				c.send(map[string]any{"op": "execute", "id": id, "pool": pool, "code": code})
				ids = append(ids, id)
			}
			for _, id := range ids {
				ev := c.wait(id, "result", "error")
				mu.Lock()
				if ev["type"] == "result" {
					outcome["queued: result"]++
				} else {
					outcome["queued: "+errCodeOf(ev)]++
				}
				mu.Unlock()
			}
			c.wait("busy", "result")
			_ = i
		})
	}
	wg.Wait()
	peak := memKB(t, pid, "VmHWM")
	time.Sleep(5 * time.Second)
	after := memKB(t, pid, "VmRSS")
	t.Logf("daemon RSS %d MiB before, peak %d MiB, %d MiB after; ceiling %d MiB; outcomes %v", before>>10, peak>>10, after>>10, ceiling>>20, outcome)
	if outcome["unused member: bad_request"] != clients*unused {
		t.Errorf("executes with an unused member: %v", outcome)
	}
	if outcome["queued: limit"] == 0 || outcome["queued: result"] == 0 {
		t.Errorf("queued big executes: %v; want some run and the rest refused (limit)", outcome)
	}
	if peak<<10 > ceiling {
		t.Errorf("peak RSS %d MiB over the documented ceiling %d MiB", peak>>10, ceiling>>20)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
	waitNoLeftovers(t, 10*time.Second)
}
