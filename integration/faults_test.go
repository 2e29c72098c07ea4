package integration

// Operator faults (ADVERSARIAL.md, "Faults an operator expects to
// survive"): R or the executor killed at every stage, SIGTERM drains,
// huge tool answers, missing kernel features, planted state, clock jumps.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/cgroup"
)

// waitGone polls until nothing of session id is left, and says how long
// that took; it fails the test after limit.
func waitGone(t *testing.T, id string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		_, e1 := os.Stat(filepath.Join(stateDir, "sessions", id))
		_, e2 := os.Stat(filepath.Join(stateDir, "containers", id))
		if os.IsNotExist(e1) && os.IsNotExist(e2) && len(mountsMatching(id)) == 0 {
			assertGone(t, id)
			return time.Since(start)
		}
		if time.Since(start) > limit {
			assertGone(t, id)
			t.Fatalf("session %s not cleaned up within %s", id, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFaultRKilled(t *testing.T) {
	started := make(chan struct{}, 1)
	cfg := baseConfig()
	cfg.Tools = append(seedTools(nil), securer.Tool{Name: "block", Args: []securer.Arg{{Name: "s"}},
		Handler: func(ctx context.Context, _ map[string]securer.Value) (any, error) {
			started <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}})

	t.Run("idle", func(t *testing.T) {
		s := newSession(t, cfg)
		id, pid := s.ID(), hostPidOf(s)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Nobody is executing: the session notices by itself and removes
		// the dead container without waiting for the next use.
		took := waitGone(t, id, 5*time.Second)
		t.Logf("idle R killed: container removed %s later", took)
		if s.Alive() {
			t.Error("session reports a live R after the kill")
		}
		res := mustOK(t, s, "1+1")
		if s.ID() == id || res.Value.Go() != 2.0 {
			t.Errorf("next execute: id %s (old %s), value %v", s.ID(), id, res.Value.Go())
		}
	})
	for _, tc := range []struct {
		name, code, detail string
		ready              func()
	}{
		{"mid-execute", "Sys.sleep(30)", "during the execution", func() { time.Sleep(300 * time.Millisecond) }},
		{"mid-tool-call", "block(1)", "during a tool call", func() { <-started }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSession(t, cfg)
			id, pid := s.ID(), hostPidOf(s)
			var killedAt atomic.Int64
			go func() {
				tc.ready()
				killedAt.Store(time.Now().UnixNano())
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}()
			res := execute(t, s, tc.code)
			verdictAfter := time.Since(time.Unix(0, killedAt.Load()))
			if res.Verdict != securer.VerdictKilled || !strings.Contains(res.Detail, tc.detail) || !strings.Contains(res.Exit, "killed") {
				t.Fatalf("verdict %s exit %q detail %q", res.Verdict, res.Exit, res.Detail)
			}
			t.Logf("R killed %s: verdict %s after the kill", tc.name, verdictAfter.Round(time.Millisecond))
			if verdictAfter > time.Second {
				t.Errorf("the verdict took %s after the kill (target about 200 ms)", verdictAfter)
			}
			assertGone(t, id)
			if v := mustOK(t, s, "1+1").Value.Go(); v != 2.0 {
				t.Errorf("fresh R after the kill: %v", v)
			}
		})
	}
}

const crashBusyChildEnv = "SECURER_IT_CRASH_BUSY"

// crashBusyChild starts three sessions (idle, executing, in a tool call),
// reports "id pid" for each, then "busy", and waits to be killed.
func crashBusyChild() {
	cfg := baseConfig()
	cfg.Timeout = 5 * time.Minute
	cfg.Tools = []securer.Tool{{Name: "block", Args: []securer.Arg{{Name: "s"}},
		Handler: func(ctx context.Context, _ map[string]securer.Value) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}}}
	var sessions []*securer.Session
	for range 3 {
		s, err := testHost.NewSession(context.Background(), cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		sessions = append(sessions, s)
		fmt.Printf("%s %d\n", s.ID(), hostPidOf(s))
	}
	go sessions[1].Execute(context.Background(), "Sys.sleep(600)")
	go sessions[2].Execute(context.Background(), "block(1)")
	time.Sleep(500 * time.Millisecond)
	fmt.Println("busy")
	select {}
}

// TestFaultHostKilled is L03 of the catalogue, with a session in each state.
func TestFaultHostKilled(t *testing.T) {
	// L03: the executor dies (kill -9) with an idle session, one executing
	// and one in a tool call. The next executor to start reaps them all.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashBusyChildEnv+"=1", runIDEnv+"="+runID)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type orphan struct {
		id  string
		pid int
	}
	var orphans []orphan
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "busy" {
		f := strings.Fields(sc.Text())
		pid, _ := strconv.Atoi(f[1])
		orphans = append(orphans, orphan{f[0], pid})
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if len(orphans) != 3 {
		t.Fatalf("crash child reported %d sessions", len(orphans))
	}
	for _, o := range orphans {
		if !running(o.pid) {
			t.Fatalf("orphaned R %d died before the reaper ran: the test proves nothing", o.pid)
		}
	}
	// The next start reaps before it accepts work.
	start := time.Now()
	s := newSession(t, baseConfig())
	t.Logf("next session started, reaping 3 orphans on the way, in %s", time.Since(start).Round(time.Millisecond))
	for _, o := range orphans {
		assertGone(t, o.id)
		if alive(o.pid) {
			t.Errorf("orphaned R %d survived the reaper", o.pid)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(stateDir, "sessions")); len(ents) != 1 {
		t.Errorf("%d session dirs (sockets) after reaping, want only the new session's", len(ents))
	}
	mustOK(t, s, "1+1")
}

func TestFaultDrain(t *testing.T) {
	cfg := baseConfig()
	t.Run("pool finishes within the grace", func(t *testing.T) {
		p, err := testHost.NewPool(context.Background(), cfg, 2, securer.ResetNone)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan *securer.Result, 1)
		go func() {
			res, _ := p.Execute(context.Background(), "Sys.sleep(1.5); 42")
			done <- res
		}()
		time.Sleep(300 * time.Millisecond)
		shut := make(chan error, 1)
		start := time.Now()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			shut <- p.Shutdown(ctx)
		}()
		time.Sleep(100 * time.Millisecond)
		if _, err := p.Acquire(context.Background()); !errors.Is(err, securer.ErrPoolClosed) {
			t.Errorf("Acquire while draining: %v, want ErrPoolClosed", err)
		}
		res := <-done
		if res == nil || res.Verdict != securer.VerdictOK || res.Value.Go() != 42.0 {
			t.Errorf("the running execution was not let finish: %+v", res)
		}
		if err := <-shut; err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		t.Logf("drained in %s", time.Since(start).Round(time.Millisecond))
		if left := leftovers(); len(left) > 0 {
			t.Errorf("left after Shutdown: %v", left)
		}
	})
	t.Run("pool cut at the end of the grace", func(t *testing.T) {
		p, err := testHost.NewPool(context.Background(), cfg, 1, securer.ResetNone)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := p.Execute(context.Background(), "Sys.sleep(60)")
			done <- err
		}()
		time.Sleep(300 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		err = p.Shutdown(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown past its grace: %v, want DeadlineExceeded", err)
		}
		select {
		case err := <-done:
			if err == nil {
				t.Error("the cut execution reported success")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the execution did not end after Shutdown")
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("Shutdown with a 1 s grace took %s", took)
		}
		if left := leftovers(); len(left) > 0 {
			t.Errorf("left after Shutdown: %v", left)
		}
	})
	for _, tc := range []struct {
		name, grace, code, want string
		exit                    int
	}{
		{"CLI finishes the run", "10s", `cat("started\n"); Sys.sleep(2); cat("finished\n")`, "finished", 0},
		{"CLI stops at the end of the grace", "500ms", `cat("started\n"); Sys.sleep(60); cat("finished\n")`, "", 130},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(cli(t), "run", "--state", stateDir, "--cgroup-parent", cgroupParent, "--term-grace", tc.grace, "-e", tc.code)
			// SIGTERM once the code runs (a fixed delay lands in the
			// start-up on a slow machine, and then nothing is running).
			pr, pw := io.Pipe()
			var stdout strings.Builder
			started := make(chan struct{})
			copied := make(chan struct{})
			go func() {
				defer close(copied)
				sc := bufio.NewScanner(pr)
				for sc.Scan() {
					stdout.WriteString(sc.Text() + "\n")
					if sc.Text() == "started" {
						close(started)
					}
				}
			}()
			cmd.Stdout = pw
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-started:
			case <-time.After(2 * time.Minute):
				_ = cmd.Process.Kill()
				t.Fatal("the code never started")
			}
			_ = cmd.Process.Signal(syscall.SIGTERM)
			start := time.Now()
			err := cmd.Wait()
			pw.Close()
			<-copied
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			}
			if code != tc.exit || (tc.want != "" && !strings.Contains(stdout.String(), tc.want)) {
				t.Errorf("SIGTERM: exit %d stdout %q, want exit %d and %q", code, stdout.String(), tc.exit, tc.want)
			}
			if took := time.Since(start); took > 8*time.Second {
				t.Errorf("exit took %s after SIGTERM", took)
			}
			if left := leftovers(); len(left) > 0 {
				t.Errorf("left after SIGTERM: %v", left)
			}
		})
	}
}

func TestFaultTools(t *testing.T) {
	cfg := baseConfig()
	cfg.Tools = []securer.Tool{
		{Name: "huge", Handler: func(context.Context, map[string]securer.Value) (any, error) {
			return strings.Repeat("x", 100<<20), nil
		}},
		{Name: "nan", Handler: func(context.Context, map[string]securer.Value) (any, error) {
			return []float64{0, 1}, nil
		}},
	}
	s := newSession(t, cfg)
	mustOK(t, s, "keep <- 'state'")
	res := mustOK(t, s, `tryCatch({huge(); "ACCEPTED"}, error = function(e) conditionMessage(e))`)
	if m := fmt.Sprint(res.Value.Go()); !strings.Contains(m, "over the") || !strings.Contains(m, "limit") {
		t.Errorf("a 100 MB tool answer: %q, want an R error naming the limit", m)
	}
	if v := mustOK(t, s, "keep").Value.Go(); v != "state" {
		t.Errorf("the session lost its state after a huge answer: %v", v)
	}
}

// faultChildEnv names the kernel feature a child process hides from
// itself (in its own mount namespace) before it tries to start a session.
const faultChildEnv = "SECURER_IT_FAULT"

// faultChild hides one kernel feature by mounting over the file or
// hierarchy the host checks read, then reports what NewSession says.
func faultChild(kind string) {
	tmp, err := os.MkdirTemp("", "securer-fault-")
	if err != nil {
		fmt.Println("setup:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(tmp)
	over := func(target, content string) error {
		f := filepath.Join(tmp, "over")
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			return err
		}
		return unix.Mount(f, target, "", unix.MS_BIND, "")
	}
	switch kind {
	case "none":
	case "userns":
		err = over("/proc/sys/user/max_user_namespaces", "0\n")
	case "seccomp":
		err = over("/proc/sys/kernel/seccomp/actions_avail", "allow log\n")
	case "pids":
		if cgroup.DetectMode() != cgroup.Unified {
			err = unix.Mount("tmpfs", "/sys/fs/cgroup/pids", "tmpfs", 0, "size=1m")
			break
		}
		// v2: the same controller list without pids.
		file := filepath.Join(cgroup.Root, "cgroup.controllers")
		var b []byte
		if b, err = os.ReadFile(file); err == nil {
			rest := slices.DeleteFunc(strings.Fields(string(b)), func(c string) bool { return c == "pids" })
			err = over(file, strings.Join(rest, " ")+"\n")
		}
	}
	if err != nil {
		fmt.Println("setup:", err)
		os.Exit(1)
	}
	s, err := testHost.NewSession(context.Background(), baseConfig())
	if err == nil {
		s.Close()
		fmt.Println("started")
		return
	}
	fmt.Printf("refused %v %v\n", errors.Is(err, securer.ErrSandboxUnavailable), err)
}

func TestFaultMissingKernelFeature(t *testing.T) {
	for _, tc := range []struct{ kind, want string }{
		{"none", "started"}, // control: the child harness itself works
		{"userns", "user namespaces (max_user_namespaces=0"},
		{"seccomp", "seccomp filters"},
		{"pids", "missing pids"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), faultChildEnv+"="+tc.kind, runIDEnv+"="+runID)
			cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
			out, err := cmd.CombinedOutput()
			got := strings.TrimSpace(string(out))
			if err != nil {
				t.Fatalf("fault child: %v\n%s", err, got)
			}
			if tc.kind != "none" && !strings.HasPrefix(got, "refused true ") {
				t.Errorf("with %s hidden: %q, want a refusal wrapping ErrSandboxUnavailable", tc.kind, got)
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("with %s hidden: %q does not name %q", tc.kind, got, tc.want)
			}
			if left := leftovers(); len(left) > 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

func TestFaultPlantedState(t *testing.T) {
	for _, sub := range []string{"sessions", "containers", "runtime"} {
		t.Run("symlink at "+sub, func(t *testing.T) {
			dir := stateDir + "-planted-" + sub
			target := t.TempDir()
			if err := os.MkdirAll(dir, 0o711); err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			if err := os.Symlink(target, filepath.Join(dir, sub)); err != nil {
				t.Fatal(err)
			}
			h := testHost
			h.StateDir = dir
			_, err := h.NewSession(context.Background(), baseConfig())
			if err == nil || !strings.Contains(err.Error(), "refusing") {
				t.Errorf("NewSession through a symlinked %s: %v, want a refusal", sub, err)
			}
			if ents, _ := os.ReadDir(target); len(ents) != 0 {
				t.Errorf("%d entries written through the planted link", len(ents))
			}
			if _, err := h.Reap(context.Background()); err == nil && sub != "runtime" {
				t.Errorf("Reap walked a symlinked state dir")
			}
		})
	}
	t.Run("stale session and socket", func(t *testing.T) {
		// What a crashed executor leaves: a session dir whose owner is
		// gone, with its socket still on disk.
		id := "stale-" + randHex(4)
		dir := filepath.Join(stateDir, "sessions", id)
		if err := os.MkdirAll(filepath.Join(dir, "sock"), 0o711); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "owner"), []byte("999999999 1\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "sock", "bridge.sock"), Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close() // the socket file stays, as after a crash
		s := newSession(t, baseConfig())
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("the stale session dir survived the next start: %v", err)
		}
		mustOK(t, s, "1+1")
	})
}

// TestFaultClockJump: time-outs run on the monotonic clock, so jumping the
// wall clock five minutes either way neither fires them early nor delays
// them (a wall-clock timer would fire at once, or 5 minutes late). The
// jump is short and small, and the clock is put back to where it would
// have been, so that nothing else on the machine is disturbed.
func TestFaultClockJump(t *testing.T) {
	for _, jump := range []time.Duration{5 * time.Minute, -5 * time.Minute} {
		t.Run(jump.String(), func(t *testing.T) {
			cfg := baseConfig()
			cfg.Timeout = 2 * time.Second
			s := newSession(t, cfg)
			wall0, mono0 := time.Now().Round(0), time.Now()
			restore := func() {
				now := wall0.Add(time.Since(mono0))
				ts := unix.NsecToTimespec(now.UnixNano())
				if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
					t.Errorf("restore the clock: %v", err)
				}
			}
			defer restore()
			go func() {
				time.Sleep(500 * time.Millisecond)
				ts := unix.NsecToTimespec(wall0.Add(time.Since(mono0)).Add(jump).UnixNano())
				if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
					t.Errorf("jump the clock: %v", err)
				}
			}()
			start := time.Now()
			res := execute(t, s, "Sys.sleep(30)")
			took := time.Since(start)
			restore()
			if res.Verdict != securer.VerdictTimeout {
				t.Errorf("verdict %s, want timeout", res.Verdict)
			}
			if took < 1800*time.Millisecond || took > 4*time.Second {
				t.Errorf("a 2 s timeout with the clock jumped %s fired after %s", jump, took)
			}
			t.Logf("clock jumped %s: timeout after %s", jump, took.Round(time.Millisecond))
			mustOK(t, s, "1+1")
		})
	}
}
