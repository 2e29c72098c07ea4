package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/service"
)

// hostConfig is baseConfig without the sandbox.
func hostConfig() securer.Config {
	cfg := baseConfig()
	cfg.UnsafeNoSandbox = true
	return cfg
}

// rPidOf is the pid R reports for itself (on the host, its host pid).
func rPidOf(t *testing.T, s *securer.Session) int {
	t.Helper()
	res := mustOK(t, s, "Sys.getpid()")
	pid, err := strconv.Atoi(fmt.Sprint(res.Value.Go()))
	if err != nil || pid <= 0 {
		t.Fatalf("Sys.getpid(): %#v", res.Value.Go())
	}
	return pid
}

func TestUnsandboxed(t *testing.T) {
	t.Setenv("SECURER_IT_SECRET", "do-not-leak")
	cfg := hostConfig()
	cfg.Tools = seedTools(nil)
	s := newSession(t, cfg)
	if s.Sandboxed() {
		t.Fatal("Sandboxed() = true for an UnsafeNoSandbox session")
	}
	id := s.ID()
	if _, err := os.Stat(filepath.Join(stateDir, "containers", id)); !os.IsNotExist(err) {
		t.Errorf("an unsandboxed session made container state: %v", err)
	}

	t.Run("tools and values", func(t *testing.T) {
		if res := mustOK(t, s, "add(2, 3)"); res.Stdout != "[1] 5\n" {
			t.Errorf("add(2, 3): stdout %q", res.Stdout)
		}
		res := mustOK(t, s, `w <- get_weather("Boston"); stopifnot(identical(w$temp, 72)); echo(list(a = 1L, b = NA))`)
		if m, ok := res.Value.Go().(map[string]any); !ok || len(m) != 2 {
			t.Errorf("echo: %#v", res.Value.Go())
		}
		res = execute(t, s, `add("two", 3)`)
		if res.Verdict != securer.VerdictError || !strings.Contains(res.Error.Message, "numeric") {
			t.Errorf("bad tool argument: verdict %s error %+v", res.Verdict, res.Error)
		}
	})

	t.Run("runs on the host, without the environment", func(t *testing.T) {
		host, _ := os.Hostname()
		res := mustOK(t, s, `list(node = Sys.info()[["nodename"]], secret = Sys.getenv("SECURER_IT_SECRET"), tmp = tempdir(), wd = getwd())`)
		got := res.Value.Go().(map[string]any)
		if got["node"] != host {
			t.Errorf("nodename %v, want the host's %q", got["node"], host)
		}
		if got["secret"] != "" {
			t.Errorf("the host's environment leaked: %v", got["secret"])
		}
		sessDir := filepath.Join(stateDir, "sessions", id)
		for _, k := range []string{"tmp", "wd"} {
			if p, _ := got[k].(string); !strings.HasPrefix(p, sessDir+"/") {
				t.Errorf("%s = %v, want under the session's own dir %s", k, got[k], sessDir)
			}
		}
	})

	t.Run("limits", func(t *testing.T) {
		l, err := s.EnforcedLimits()
		want := securer.DefaultLimits()
		if err != nil || l.MemoryBytes != want.MemoryBytes || l.NoFile != want.NoFile || l.FileSizeBytes != want.FileSizeBytes {
			t.Fatalf("EnforcedLimits: %+v %v, want memory %d nofile %d fsize %d", l, err, want.MemoryBytes, want.NoFile, want.FileSizeBytes)
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", rPidOf(t, s))); err != nil || strings.TrimSpace(string(b)) != "1000" {
			t.Errorf("R's oom_score_adj: %q %v, want 1000 (killed first)", b, err)
		}
		res := execute(t, s, "x <- numeric(1e8); length(x)") // 800 MB, over 512 MiB
		if res.Verdict != securer.VerdictError || !strings.Contains(res.Error.Message, "cannot allocate") {
			t.Errorf("800 MB vector: verdict %s error %+v", res.Verdict, res.Error)
		}
		mustOK(t, s, "y <- 1")
		if res := mustOK(t, s, "y + 1"); res.Value.Go() != 2.0 {
			t.Errorf("state lost after the allocation failure: %#v", res.Value.Go())
		}
	})

	t.Run("timeout keeps the session", func(t *testing.T) {
		res, err := s.ExecuteWith(context.Background(), "Sys.sleep(30)", securer.ExecOptions{Timeout: time.Second})
		if !errors.Is(err, securer.ErrTimeout) || res.Verdict != securer.VerdictTimeout {
			t.Fatalf("verdict %s err %v", res.Verdict, err)
		}
		if res := mustOK(t, s, "y"); res.Value.Go() != 1.0 {
			t.Errorf("state lost after the timeout: %#v", res.Value.Go())
		}
	})

	t.Run("background processes end with the execution", func(t *testing.T) {
		res := mustOK(t, s, `as.integer(system("sleep 300 >/dev/null 2>&1 & echo $!", intern = TRUE))`)
		pid, _ := strconv.Atoi(fmt.Sprint(res.Value.Go()))
		if pid <= 0 {
			t.Fatalf("background pid: %#v", res.Value.Go())
		}
		if alive(pid) {
			t.Errorf("background sleep (pid %d) outlived its execution", pid)
		}
	})

	t.Run("fresh executions are refused", func(t *testing.T) {
		res, err := s.ExecuteFresh(context.Background(), "1")
		if !errors.Is(err, securer.ErrNeedsSandbox) || res != nil {
			t.Fatalf("ExecuteFresh: %v %v, want ErrNeedsSandbox", res, err)
		}
		mustOK(t, s, "1")
	})

	t.Run("R killed", func(t *testing.T) {
		pid := rPidOf(t, s)
		go func() {
			time.Sleep(300 * time.Millisecond)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}()
		res := execute(t, s, "Sys.sleep(30)")
		if res.Verdict != securer.VerdictKilled || res.Exit != "killed by signal killed" {
			t.Fatalf("verdict %s exit %q", res.Verdict, res.Exit)
		}
		if rPidOf(t, s) == pid {
			t.Error("R was not replaced")
		}
		res = execute(t, s, `quit(save = "no", status = 3)`)
		if res.Verdict != securer.VerdictKilled || res.Exit != "exit status 3" {
			t.Errorf("quit(): verdict %s exit %q", res.Verdict, res.Exit)
		}
	})

	t.Run("close removes everything", func(t *testing.T) {
		pid := rPidOf(t, s)
		mustOK(t, s, `system("sleep 300 >/dev/null 2>&1 &")`)
		id := s.ID()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if alive(pid) {
			t.Errorf("R (pid %d) outlived Close", pid)
		}
		assertGone(t, id)
	})
}

func TestUnsandboxedConfig(t *testing.T) {
	ctx := context.Background()
	cfg := hostConfig()
	cfg.Mounts = []securer.Mount{{Source: "/etc", Destination: "/mnt"}}
	if _, err := testHost.NewSession(ctx, cfg); !errors.Is(err, securer.ErrInvalidConfig) {
		t.Errorf("Mounts without the sandbox: %v, want ErrInvalidConfig", err)
	}
	cfg = hostConfig()
	cfg.HostRscript = "/nonexistent/Rscript"
	if _, err := testHost.NewSession(ctx, cfg); !errors.Is(err, securer.ErrInvalidConfig) || !strings.Contains(err.Error(), "install R") {
		t.Errorf("missing Rscript: %v", err)
	}
	if _, err := testHost.NewPool(ctx, hostConfig(), 1, securer.ResetFresh); !errors.Is(err, securer.ErrNeedsSandbox) {
		t.Errorf("unsandboxed pool with ResetFresh: %v, want ErrNeedsSandbox", err)
	}
	p, err := testHost.NewPool(ctx, hostConfig(), 2, securer.ResetRestart)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range 3 {
		res, err := p.Execute(ctx, fmt.Sprintf("stopifnot(!exists('z')); z <- %d; Sys.getpid()", i))
		if err != nil {
			t.Fatalf("pool execution %d: %v (%+v)", i, err, res)
		}
	}
}

// TestUnsandboxedHostCrash: when the host process dies, its unsandboxed R
// dies with it (parent-death signal); what R started in the background
// and was still running is ended by the next Reap, which knows it by its
// process group and the session's marker in its environment.
func TestUnsandboxedHostCrash(t *testing.T) {
	for _, busy := range []bool{true, false} {
		t.Run(map[bool]string{true: "busy with a background child", false: "idle"}[busy], func(t *testing.T) {
			id, pid := crashAChild(t, hostCrashChildEnv+"="+strconv.FormatBool(busy))
			if alive(pid) {
				t.Errorf("R (pid %d) outlived its host process", pid)
			}
			strays := groupMembers(pid)
			if busy && len(strays) == 0 {
				t.Fatal("the background child should outlive R until reaped")
			}
			reaped, err := testHost.Reap(context.Background())
			if err != nil || !contains(reaped.Sessions, id) {
				t.Fatalf("Reap: %v %v", reaped, err)
			}
			for _, p := range strays {
				if alive(p) {
					t.Errorf("background child (pid %d) alive after reaping", p)
				}
			}
			assertGone(t, id)
		})
	}
}

// groupMembers lists the live processes of process group pgid.
func groupMembers(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 2 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

const hostCrashChildEnv = "SECURER_IT_HOST_CRASH_CHILD"

// hostCrashChild starts an unsandboxed session, reports it, optionally
// sets R spinning after starting a background child, and waits to be
// killed.
func hostCrashChild(busy bool) {
	s, pid := childSession(hostConfig())
	if busy {
		go s.Execute(context.Background(), `system("sleep 300 >/dev/null 2>&1 &"); repeat {}`)
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Printf("%s %v\n", s.ID(), pid)
	select {}
}

func TestUnsandboxedService(t *testing.T) {
	c, _, _ := startService(t, hostConfig(), 8)
	if c.hello["sandboxed"] != false {
		t.Errorf("hello of an unsandboxed server: %v", c.hello)
	}
	ev := c.request(map[string]any{"op": "create_session", "id": "1", "tools": []any{addTool}}, "session")
	if ev["sandboxed"] != false {
		t.Errorf("session event: %v", ev)
	}
	c.send(map[string]any{"op": "execute", "id": "2", "session": ev["session"], "code": "add(40, 2)"})
	call := c.wait("2", "tool_call")
	c.send(map[string]any{"op": "tool_result", "call": call["call"], "value": 42})
	if res := c.wait("2", "result"); res["value_plain"] != 42.0 {
		t.Errorf("result: %v", res)
	}
	ev = c.request(map[string]any{"op": "execute", "id": "3", "session": ev["session"], "code": "1", "fresh": true}, "error")
	if errCodeOf(ev) != service.CodeNeedsSandbox {
		t.Errorf("fresh execution: %v, want %s", ev, service.CodeNeedsSandbox)
	}
	ev = c.request(map[string]any{"op": "create_pool", "id": "4", "size": 1}, "error")
	if errCodeOf(ev) != service.CodeNeedsSandbox || !strings.Contains(fmt.Sprint(ev), "ResetRestart") {
		t.Errorf("pool with fresh resets: %v", ev)
	}
	ev = c.request(map[string]any{"op": "create_pool", "id": "5", "size": 1, "reset": "restart"}, "pool")
	for i := range 2 {
		id := fmt.Sprintf("p%d", i)
		res := c.request(map[string]any{"op": "execute", "id": id, "pool": ev["pool"], "code": `stopifnot(!exists("leak")); leak <- 1; 7`}, "result")
		if res["value_plain"] != 7.0 {
			t.Errorf("pool execution %d: %v", i, res)
		}
	}
}

// TestUnsandboxedCLI: --unsafe-no-sandbox is loud, only for --stdio when
// serving, and works for a user who is not root.
func TestUnsandboxedCLI(t *testing.T) {
	r := runCLI(t, "", "serve", "--listen", "unix:"+filepath.Join(t.TempDir(), "x.sock"), "--unsafe-no-sandbox")
	if r.code != 2 || !strings.Contains(r.stderr, "only allowed with --stdio") {
		t.Errorf("serve --listen --unsafe-no-sandbox: exit %d, stderr %q", r.code, r.stderr)
	}
	r = runCLI(t, "", "run", "--rscript", "Rscript", "-e", "1")
	if r.code != 2 || !strings.Contains(r.stderr, "--rscript needs --unsafe-no-sandbox") {
		t.Errorf("--rscript alone: exit %d, stderr %q", r.code, r.stderr)
	}

	// As nobody: a binary and a temp dir nobody can use.
	dir, err := os.MkdirTemp("", "securer-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "securer-runc")
	src, err := os.ReadFile(cli(t))
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := errors.Join(os.WriteFile(bin, src, 0o755), os.Chmod(dir, 0o755), os.Mkdir(tmp, 0o777), os.Chmod(tmp, 0o1777)); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("runuser", "-u", "nobody", "--", "env", "TMPDIR="+tmp, "XDG_RUNTIME_DIR=", bin, "run", "--unsafe-no-sandbox",
		"-e", `cat(Sys.info()[["effective_user"]], Sys.getenv("SECURER_IT_SECRET"), "\n")`)
	cmd.Env = append(os.Environ(), "SECURER_IT_SECRET=leaked")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "nobody  \n") || !strings.Contains(string(out), "WARNING: --unsafe-no-sandbox") {
		t.Errorf("run --unsafe-no-sandbox as nobody: %v\n%q", err, out)
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(tmp, "securer-runc-"+u.Uid, "sessions"))
	if err != nil || len(ents) != 0 {
		t.Errorf("nobody's state dir: %v, %d sessions left", err, len(ents))
	}
}

// TestPythonClientUnsandboxed: the Python client refuses a server without
// the sandbox unless told to accept it.
func TestPythonClientUnsandboxed(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	script := `
import sys
sys.path.insert(0, "../clients/python")
from securer_client import Client, ServerError, Tool
cmd = [sys.argv[1], "serve", "--stdio", "--unsafe-no-sandbox", "--state", sys.argv[2]]
try:
    Client.spawn(cmd)
    print("accepted")
except ServerError as e:
    print("refused", e.code)
with Client.spawn(cmd, require_sandbox=False) as c:
    s = c.create_session(tools=[Tool("add", lambda a, b: a + b, args={"a": "numeric", "b": "numeric"})])
    print("unsandboxed", s.execute("add(2, 3)")["value_plain"])
`
	out, err := exec.Command(py, "-c", script, cli(t), stateDir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "refused needs_sandbox\n") || !strings.Contains(string(out), "unsandboxed 5\n") {
		t.Errorf("python client: %v\n%s", err, out)
	}
	if left := leftovers(); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}
