// Package integration starts real containers with real R. It needs root,
// the rootfs (make rootfs) and a seccomp build (-tags seccomp); it fails,
// never skips, without them.
package integration

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/cgroup"
	"github.com/securer-runc/securer-runc/container"
	"github.com/securer-runc/securer-runc/rootfs"
)

// Each test run gets its own state dir and cgroup parent so that it can
// prove it left nothing behind without touching anyone else's.
var (
	runID        = envOr(runIDEnv, strconv.Itoa(os.Getpid()))
	stateDir     = "/run/securer-it-" + runID
	cgroupParent = "/securer-it-" + runID
	rootfsDir    = envOr("SECURER_ROOTFS", rootfs.DefaultDir)
)

// uidRegistry is where executors claim host uid ranges (securer's own).
const uidRegistry = "/run/securer-runc-uids"

// runIDEnv passes the run's id to child processes of the tests.
const runIDEnv = "SECURER_IT_RUN"

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// init pins the main goroutine to the main thread while it is surely on
// it: by the time TestMain runs, the testing package's start-up may have
// moved it to another thread, and then libcontainer could leave the main
// thread inside a box's mount namespace (container.MaybeInit's doc), so
// that /proc/self and /proc/1 show the box's mounts (seen in the v2 guest:
// every leftover check failed on a live session's mounts).
func init() { runtime.LockOSThread() }

func TestMain(m *testing.M) {
	container.MaybeInit()
	if os.Getenv(crashChildEnv) != "" {
		crashChild()
		return
	}
	if os.Getenv(crashBusyChildEnv) != "" {
		crashBusyChild()
		return
	}
	if busy := os.Getenv(hostCrashChildEnv); busy != "" {
		hostCrashChild(busy == "true")
		return
	}
	if kind := os.Getenv(faultChildEnv); kind != "" {
		faultChild(kind)
		return
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "integration tests start real containers and must run as root")
		os.Exit(1)
	}
	if _, err := rootfs.Check(rootfsDir); err != nil {
		fmt.Fprintf(os.Stderr, "integration tests need the rootfs: %v\n", err)
		os.Exit(1)
	}
	dir, err := buildProbe()
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration tests need the probe helper: %v\n", err)
		os.Exit(1)
	}
	probeDir = dir
	// A daemon on this host's default socket must not take the CLI runs
	// of the tests (run uses one when it is there); tests of that set
	// SECURER_SOCKET themselves.
	if os.Getenv("SECURER_SOCKET") == "" {
		os.Setenv("SECURER_SOCKET", "/nonexistent/securer-it.sock")
	}
	code := m.Run()
	_ = os.RemoveAll(probeDir)
	if code == 0 {
		if left := leftovers(); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: the test run left these behind:\n  %s\n", strings.Join(left, "\n  "))
			code = 1
		}
	}
	if p, err := cgroup.EnsureParent(cgroupParent, cgroup.Limits{}); err == nil {
		_ = p.Remove()
	}
	_ = os.RemoveAll(stateDir)
	os.Exit(code)
}

// testHost keeps this test run's sessions apart from every other's.
var testHost = securer.Host{RootFSDir: rootfsDir, StateDir: stateDir, CgroupParent: cgroupParent}

// baseConfig is the session config most tests start from.
func baseConfig() securer.Config {
	return securer.Config{Timeout: 20 * time.Second}
}

func newSession(t *testing.T, cfg securer.Config) *securer.Session {
	t.Helper()
	return newHostSession(t, testHost, cfg)
}

func newHostSession(t *testing.T, h securer.Host, cfg securer.Config) *securer.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := h.NewSession(ctx, cfg)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func execute(t *testing.T, s *securer.Session, code string) *securer.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	res, err := s.Execute(ctx, code)
	if res == nil {
		t.Fatalf("Execute(%q): no result: %v", code, err)
	}
	return res
}

// mustOK runs code and fails the test unless it succeeded.
func mustOK(t *testing.T, s *securer.Session, code string) *securer.Result {
	t.Helper()
	res := execute(t, s, code)
	if res.Verdict != securer.VerdictOK {
		t.Fatalf("Execute(%q): verdict %s, error %v, detail %q, stderr %q", code, res.Verdict, res.Error, res.Detail, res.Stderr)
	}
	return res
}

// leftovers lists anything of this test run still on the host: session
// and container state, cgroup leaves, mounts naming a session.
func leftovers() []string {
	return leftoversIn(stateDir, cgroupParent)
}

// leftoversIn is leftovers for the given state dir and cgroup parent.
func leftoversIn(stateDir, cgroupParent string) []string {
	var out []string
	for _, sub := range []string{"sessions", "containers"} {
		ents, _ := os.ReadDir(filepath.Join(stateDir, sub))
		for _, e := range ents {
			out = append(out, filepath.Join(stateDir, sub, e.Name()))
		}
	}
	if p, err := cgroup.EnsureParent(cgroupParent, cgroup.Limits{}); err == nil {
		leaves, _ := p.Leaves()
		for _, l := range leaves {
			out = append(out, "cgroup "+cgroupParent+"/"+l)
		}
	}
	// Host uid ranges claimed by this run's sessions.
	ents, _ := os.ReadDir(uidRegistry)
	for _, e := range ents {
		if target, _ := os.Readlink(filepath.Join(uidRegistry, e.Name())); strings.HasPrefix(target, stateDir+"/") {
			out = append(out, "uid range "+e.Name()+" -> "+target)
		}
	}
	// This run's paths only: other runs may be going on beside it.
	out = append(out, mountsMatching(stateDir+"/")...)
	out = append(out, mountsMatching(cgroupParent+"/")...)
	out = append(out, mountsIn("/proc/1/mountinfo", stateDir+"/")...)
	return out
}

func mountsMatching(substr string) []string {
	return mountsIn("/proc/self/mountinfo", substr)
}

func mountsIn(file, substr string) []string {
	f, err := os.Open(file)
	if err != nil {
		return []string{"cannot read mountinfo: " + err.Error()}
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), substr) {
			out = append(out, "mount "+sc.Text())
		}
	}
	return out
}

// ownStateDir is a state dir and cgroup parent of the test's own (this
// run's, with suffix); at the end it checks that nothing was left there,
// then reaps and removes them.
func ownStateDir(t *testing.T, suffix string) (state, cg string) {
	t.Helper()
	state, cg = stateDir+suffix, cgroupParent+suffix
	t.Cleanup(func() {
		if left := leftoversIn(state, cg); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
		_ = exec.Command(cli(t), "reap", "--state", state, "--cgroup-parent", cg).Run()
		if p, err := cgroup.EnsureParent(cg, cgroup.Limits{}); err == nil {
			_ = p.Remove()
		}
		_ = os.RemoveAll(state)
	})
	return state, cg
}
