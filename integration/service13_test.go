package integration

// Issue 13, item 7 through the service: a pool's acquire_timeout, the
// session reply's pid, sandbox and limits (clamp), and creates that fail
// or are abandoned leaving nothing.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/service"
)

// acquire_timeout bounds only the wait for a free session: 0 and a short
// wait fail with pool_busy while the only session runs, a long one gets
// the session once it is freed, and 0 succeeds when it is idle.
func TestServiceAcquireTimeout(t *testing.T) {
	c, _, _ := startService(t, baseConfig(), 4)
	pool := c.request(map[string]any{"op": "create_pool", "id": "1", "size": 1}, "pool")["pool"]
	if pool == nil {
		t.Fatal("no pool")
	}
	c.send(map[string]any{"op": "execute", "id": "busy", "pool": pool, "code": "Sys.sleep(4); 1"})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st := c.request(map[string]any{"op": "pool_status", "id": "st", "pool": pool}, "pool")["status"].(map[string]any)
		if st["busy"] == 1.0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pool's session never got busy: %v", st)
		}
	}
	for i, wait := range []float64{0, 0.3} {
		id := fmt.Sprintf("w%d", i)
		began := time.Now()
		ev := c.request(map[string]any{"op": "execute", "id": id, "pool": pool, "code": "2", "acquire_timeout": wait}, "result")
		if errCodeOf(ev) != "pool_busy" {
			t.Errorf("acquire_timeout %g with the session busy: %v, want pool_busy", wait, ev)
		}
		if took := time.Since(began); took < time.Duration(wait*float64(time.Second)) {
			t.Errorf("acquire_timeout %g: refused after %s", wait, took)
		}
	}
	// A waiter with room to wait gets the session when it is freed.
	ev := c.request(map[string]any{"op": "execute", "id": "long", "pool": pool, "code": "3", "acquire_timeout": 60}, "result")
	if ev["value_plain"] != 3.0 {
		t.Errorf("acquire_timeout 60: %v", ev)
	}
	if ev := c.wait("busy", "result", "error"); ev["value_plain"] != 1.0 {
		t.Errorf("the long execution: %v", ev)
	}
	if ev := c.request(map[string]any{"op": "execute", "id": "idle", "pool": pool, "code": "4", "acquire_timeout": 0}, "result"); ev["value_plain"] != 4.0 {
		t.Errorf("acquire_timeout 0 with the session idle: %v", ev)
	}
}

// The session reply carries R's in-box pid (the one R itself reports),
// the sandbox kind and the limits applied; with clamp, limits over the
// ceilings are lowered to them and named, without it refused.
func TestServiceSessionReply(t *testing.T) {
	base := baseConfig()
	base.Limits = securer.Limits{MemoryBytes: 256 << 20, Pids: 64}
	srv, path := startServiceWith(t, service.Options{Base: base, MaxSessions: 4})
	_ = srv
	c := dialService(t, path)
	ev := c.request(map[string]any{"op": "create_session", "id": "1"}, "session")
	pid, _ := ev["pid"].(float64)
	if pid < 1 || ev["sandbox"] != securer.SandboxContainer {
		t.Fatalf("session reply: %v", ev)
	}
	if res := c.request(map[string]any{"op": "execute", "id": "2", "session": ev["session"], "code": "Sys.getpid()"}, "result"); res["value_plain"] != pid {
		t.Errorf("R says its pid is %v, the reply said %v", res["value_plain"], pid)
	}
	// A restart's reply gives the new R's pid.
	name := ev["session"]
	ev = c.request(map[string]any{"op": "restart_session", "id": "r", "session": name}, "restarted")
	if res := c.request(map[string]any{"op": "execute", "id": "r2", "session": name, "code": "Sys.getpid()"}, "result"); ev["pid"] == nil || res["value_plain"] != ev["pid"] {
		t.Errorf("after restart R says its pid is %v, the reply said %v", res["value_plain"], ev["pid"])
	}
	over := map[string]any{"memory_bytes": 1 << 30, "pids": 64}
	if ev := c.request(map[string]any{"op": "create_session", "id": "3", "options": over}, "session"); errCodeOf(ev) != "invalid_config" {
		t.Errorf("memory over the ceiling without clamp: %v", ev)
	}
	ev = c.request(map[string]any{"op": "create_session", "id": "4", "options": over, "clamp": true}, "session")
	limits, _ := ev["limits"].(map[string]any)
	if limits["memory_bytes"] != float64(256<<20) || limits["pids"] != 64.0 || fmt.Sprint(ev["clamped"]) != "[memory_bytes]" {
		t.Errorf("clamped session reply: %v", ev)
	}
	if res := c.request(map[string]any{"op": "execute", "id": "5", "session": ev["session"], "code": "1"}, "result"); res["value_plain"] != 1.0 {
		t.Errorf("the clamped session: %v", res)
	}
	if ev := c.request(map[string]any{"op": "create_session", "id": "6", "options": map[string]any{"memory_bytes": 0}, "clamp": true}); errCodeOf(ev) != "invalid_config" ||
		!strings.Contains(fmt.Sprint(ev["error"]), "positive") {
		t.Errorf("memory_bytes 0: %v", ev)
	}
}

// A create that fails after the container started (R cannot attach a
// preloaded package), and one whose client disconnects while the
// container starts (a session's or a pool's), leave nothing: no state
// dir, container, cgroup, uid range or mount.
func TestServiceFailedCreateLeavesNothing(t *testing.T) {
	_, path := startServiceWith(t, service.Options{MaxSessions: 4})
	clean := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); len(leftovers()) > 0; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s left: %v", what, leftovers())
			}
		}
	}
	clean("a test before this one")
	c := dialService(t, path)
	ev := c.request(map[string]any{"op": "create_session", "id": "1", "options": map[string]any{"preload": []string{"noSuchPackage13"}}}, "session")
	if errCodeOf(ev) == "" || !strings.Contains(fmt.Sprint(ev["error"]), "noSuchPackage13") {
		t.Errorf("create with a missing preload: %v", ev)
	}
	clean("a create that failed in R's init")

	for _, create := range []map[string]any{
		{"op": "create_session", "id": "1"},
		{"op": "create_pool", "id": "1", "size": 2},
	} {
		c2 := dialService(t, path)
		c2.send(create)
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Millisecond) {
			if started(leftovers()) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no container appeared: %v", create["op"], leftovers())
			}
		}
		c2.mu.Lock()
		replied := len(c2.events["1"]) > 0
		c2.mu.Unlock()
		c2.conn.Close()
		if replied {
			t.Errorf("%s ended before the client left: not a disconnect in the middle of a create", create["op"])
		}
		clean(fmt.Sprintf("%s abandoned by its client", create["op"]))
	}
	// The server still serves.
	c3 := dialService(t, path)
	ev = c3.request(map[string]any{"op": "create_session", "id": "1"}, "session")
	if res := c3.request(map[string]any{"op": "execute", "id": "2", "session": ev["session"], "code": "1 + 1"}, "result"); res["value_plain"] != 2.0 {
		t.Errorf("after the abandoned create: %v", res)
	}
}

// started reports whether leftovers show a container or its cgroup.
func started(left []string) bool {
	for _, l := range left {
		if strings.Contains(l, "/containers/") || strings.HasPrefix(l, "cgroup ") {
			return true
		}
	}
	return false
}

// A pool's members start one start slot each: with one slot, a pool of 3
// still starts (one after the other), and its executions run.
func TestServicePoolStartsInSlots(t *testing.T) {
	_, path := startServiceWith(t, service.Options{MaxSessions: 4, MaxStarts: 1, StartWait: 2 * time.Minute})
	c := dialService(t, path)
	ev := c.request(map[string]any{"op": "create_pool", "id": "1", "size": 3}, "pool")
	if st, _ := ev["status"].(map[string]any); st["total"] != 3.0 {
		t.Fatalf("a pool of 3 on a server with one start slot: %v", ev)
	}
	if ev := c.request(map[string]any{"op": "execute", "id": "2", "pool": ev["pool"], "code": "6 * 7"}, "result"); ev["value_plain"] != 42.0 {
		t.Errorf("execute on it: %v", ev)
	}
}
