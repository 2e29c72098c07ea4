package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/rvalue"
)

func seedTools(calls *atomic.Int64) []securer.Tool {
	return []securer.Tool{
		{
			Name: "add", Description: "Add two numbers",
			Args: []securer.Arg{{Name: "a", Type: "numeric"}, {Name: "b", Type: "numeric"}},
			Handler: func(ctx context.Context, args map[string]securer.Value) (any, error) {
				if calls != nil {
					calls.Add(1)
				}
				return number(args["a"]) + number(args["b"]), nil
			},
		},
		{
			Name: "get_weather", Description: "Get the weather for a city",
			Args: []securer.Arg{{Name: "city", Type: "character"}},
			Handler: func(ctx context.Context, args map[string]securer.Value) (any, error) {
				return map[string]any{"temp": 72.0, "condition": "sunny"}, nil
			},
		},
		{
			Name: "echo", Description: "Return the argument unchanged",
			Args: []securer.Arg{{Name: "x"}},
			Handler: func(ctx context.Context, args map[string]securer.Value) (any, error) {
				return args["x"], nil
			},
		},
		{
			Name: "slow", Description: "Sleep, honouring cancellation",
			Args: []securer.Arg{{Name: "seconds", Type: "numeric"}},
			Handler: func(ctx context.Context, args map[string]securer.Value) (any, error) {
				d, _ := args["seconds"].Go().(float64)
				select {
				case <-time.After(time.Duration(d * float64(time.Second))):
					return "done", nil
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			},
		},
		{
			Name: "fail", Description: "Always fails",
			Handler: func(ctx context.Context, args map[string]securer.Value) (any, error) {
				return nil, errors.New("the tool is broken")
			},
		},
		{
			Name: "boom", Description: "Panics",
			Handler: func(ctx context.Context, args map[string]securer.Value) (any, error) {
				panic("tool bug")
			},
		},
	}
}

// number reads a length-one numeric (integer or double) argument.
func number(v securer.Value) float64 {
	if ints := v.Integers(); len(ints) == 1 {
		return float64(ints[0])
	}
	if d := v.Doubles(); len(d) == 1 {
		return d[0]
	}
	return math.NaN()
}

func TestSeedExamples(t *testing.T) {
	cfg := baseConfig()
	cfg.Tools = seedTools(nil)
	s := newSession(t, cfg)

	// The runtime leaves nothing of its own in the user's workspace.
	if res := mustOK(t, s, `ls(globalenv(), all.names = TRUE)`); fmt.Sprint(res.Value.Go()) != "[]" {
		t.Errorf("a new session's global environment holds %v", res.Value.Go())
	}

	res := mustOK(t, s, "1 + 1")
	if res.Stdout != "[1] 2\n" || res.Printed != "[1] 2" {
		t.Errorf("1 + 1: stdout %q printed %q, want [1] 2", res.Stdout, res.Printed)
	}
	if v, ok := res.Value.Go().(float64); !ok || v != 2 {
		t.Errorf("1 + 1: value %#v", res.Value.Go())
	}

	res = mustOK(t, s, "add(2, 3)")
	if res.Stdout != "[1] 5\n" {
		t.Errorf("add(2, 3): stdout %q", res.Stdout)
	}
	res = mustOK(t, s, "stopifnot(identical(add(2L, 3L), 5)); add(a = 2, b = 3)")
	if res.Value.Go() != 5.0 {
		t.Errorf("add(a = 2, b = 3) = %#v", res.Value.Go())
	}
	res = mustOK(t, s, `w <- get_weather("Boston"); stopifnot(is.list(w), identical(w$temp, 72), identical(w$condition, "sunny")); w`)
	got, ok := res.Value.Go().(map[string]any)
	if !ok || got["temp"] != 72.0 || got["condition"] != "sunny" {
		t.Errorf("get_weather: %#v", res.Value.Go())
	}
}

func TestToolValidation(t *testing.T) {
	var calls atomic.Int64
	cfg := baseConfig()
	cfg.Tools = seedTools(&calls)
	s := newSession(t, cfg)
	cases := []struct {
		code, want string
	}{
		{`add(a = "1", b = 2)`, `Tool 'add': argument 'a' must be numeric, got character`},
		{`add(1, list(1, 2))`, `Tool 'add': argument 'b' must be numeric, got list`},
		{`add(a = NA, b = 1)`, `Tool 'add': argument 'a' must be numeric, got logical`},
		{`add(1)`, `argument "b" is missing`},
		{`add(1, 2, evil = 3)`, `unused argument`},
		{`get_weather(42)`, `Tool 'get_weather': argument 'city' must be character, got numeric`},
		{`fail()`, `the tool is broken`},
		{`boom()`, `panic`},
	}
	for _, c := range cases {
		t.Run(c.code, func(t *testing.T) {
			before := calls.Load()
			res := execute(t, s, c.code)
			if res.Verdict != securer.VerdictError || res.Error == nil || !strings.Contains(res.Error.Message, c.want) {
				t.Fatalf("verdict %s, error %+v; want an R error containing %q", res.Verdict, res.Error, c.want)
			}
			if calls.Load() != before {
				t.Errorf("the add handler ran for a refused call")
			}
		})
	}
	// A tool error is an ordinary R error: catchable, and the session goes on.
	res := mustOK(t, s, `tryCatch(fail(), error = function(e) class(e)[1])`)
	if res.Value.Go() != "securer_tool_error" {
		t.Errorf("tool error class: %#v", res.Value.Go())
	}
	res = execute(t, s, "fail()")
	if !errors.Is(errorOf(res), securer.ErrToolFailed) {
		t.Errorf("uncaught tool error should match ErrToolFailed: %+v", res.Error)
	}
	mustOK(t, s, "add(1, 1)")
}

func errorOf(res *securer.Result) error {
	if res.Error == nil {
		return nil
	}
	return res.Error
}

func TestStateAndErrors(t *testing.T) {
	s := newSession(t, baseConfig())
	mustOK(t, s, "x <- 41")
	res := mustOK(t, s, "x + 1")
	if res.Value.Go() != 42.0 {
		t.Errorf("state lost: %#v", res.Value.Go())
	}
	ctx := context.Background()
	res, err := s.Execute(ctx, `stop("custom failure")`)
	var rerr *securer.RError
	if !errors.As(err, &rerr) || !errors.Is(err, securer.ErrRError) || rerr.Message != "custom failure" {
		t.Fatalf("R error: %v", err)
	}
	if !strings.Contains(res.Stderr, "Error: custom failure") {
		t.Errorf("stderr %q lacks the R error", res.Stderr)
	}
	res = execute(t, s, `f <- function() stop("inner"); f()`)
	if res.Error == nil || res.Error.Call != "f()" || !contains(res.Error.Class, "simpleError") {
		t.Errorf("error call/class: %+v", res.Error)
	}
	res = execute(t, s, "1 +")
	if res.Verdict != securer.VerdictError || !res.Error.IsParseError() {
		t.Errorf("parse error: %+v", res.Error)
	}
	// Rscript semantics: statements run in order, the first error stops.
	res = execute(t, s, "cat('a\\n'); stop('b'); cat('c\\n')")
	if res.Stdout != "a\n" {
		t.Errorf("after an error nothing more runs: stdout %q", res.Stdout)
	}
	res = mustOK(t, s, `warning("careful"); message("note"); invisible(7)`)
	if !contains(res.Warnings, "careful") || !contains(res.Messages, "note\n") || res.Visible {
		t.Errorf("warnings %q messages %q visible %v", res.Warnings, res.Messages, res.Visible)
	}
	if !strings.Contains(res.Stderr, "Warning message:") || !strings.Contains(res.Stderr, "note") {
		t.Errorf("stderr %q", res.Stderr)
	}
	if res.Value.Go() != 7.0 {
		t.Errorf("invisible value %#v", res.Value.Go())
	}
	mustOK(t, s, "stopifnot(x == 41)")
}

func contains(xs []string, want string) bool {
	for _, x := range xs {
		if x == want {
			return true
		}
	}
	return false
}

func TestOutputStreamsInOrder(t *testing.T) {
	var live lockedBuffer
	cfg := baseConfig()
	cfg.Output.Stdout = &live
	s := newSession(t, cfg)
	// The first line must reach the host while R still runs.
	done := make(chan *securer.Result, 1)
	go func() {
		res, _ := s.Execute(context.Background(), `cat("first\n"); Sys.sleep(1.5); cat("second\n")`)
		done <- res
	}()
	deadline := time.Now().Add(1200 * time.Millisecond)
	for !strings.Contains(live.String(), "first") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(live.String(), "first") {
		t.Errorf("output was not streamed while R ran")
	}
	res := <-done
	if res.Stdout != "first\nsecond\n" {
		t.Errorf("stdout %q", res.Stdout)
	}
	res = mustOK(t, s, `for (i in 1:10000) cat(i, "\n", sep = "")`)
	lines := strings.Split(strings.TrimSuffix(res.Stdout, "\n"), "\n")
	if len(lines) != 10000 || lines[0] != "1" || lines[9999] != "10000" {
		t.Errorf("10000 lines: got %d, first %q last %q", len(lines), lines[0], lines[len(lines)-1])
	}
}

func TestTimeouts(t *testing.T) {
	cfg := baseConfig()
	cfg.Tools = seedTools(nil)
	cfg.Timeout = 2 * time.Second
	s := newSession(t, cfg)
	mustOK(t, s, "keep <- 'state'")
	for _, code := range []string{"while (TRUE) {}", "Sys.sleep(60)", "slow(60)", "repeat x <- runif(10)"} {
		t.Run(code, func(t *testing.T) {
			start := time.Now()
			res, err := s.Execute(context.Background(), code)
			took := time.Since(start)
			if !errors.Is(err, securer.ErrTimeout) || res.Verdict != securer.VerdictTimeout {
				t.Fatalf("verdict %s err %v", res.Verdict, err)
			}
			if took < 2*time.Second || took > 4500*time.Millisecond {
				t.Errorf("timeout took %s, want about 2s", took)
			}
			// Interrupted, not killed: state survives.
			res = mustOK(t, s, "keep")
			if res.Value.Go() != "state" {
				t.Errorf("state lost after timeout: %#v", res.Value.Go())
			}
		})
	}
	t.Run("stopped process", func(t *testing.T) {
		// R as the box's pid 1 ignores SIGSTOP from inside: stop it from
		// the host, as a hung process would look.
		pid := hostPidOf(s)
		go func() {
			time.Sleep(300 * time.Millisecond)
			_ = syscall.Kill(pid, syscall.SIGSTOP)
		}()
		start := time.Now()
		res := execute(t, s, "Sys.sleep(60)")
		if res.Verdict != securer.VerdictTimeout || time.Since(start) > 8*time.Second {
			t.Fatalf("verdict %s after %s", res.Verdict, time.Since(start))
		}
		if !strings.Contains(res.Detail, "killed") {
			t.Errorf("detail %q should say the container was killed", res.Detail)
		}
		// Restarted on next use: fresh state, but working.
		res = mustOK(t, s, "exists('keep')")
		if res.Value.Go() != false {
			t.Errorf("after a kill the session should be fresh")
		}
	})
	t.Run("context deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		res, err := s.Execute(ctx, "Sys.sleep(30)")
		if !errors.Is(err, securer.ErrTimeout) || res.Verdict != securer.VerdictTimeout {
			t.Fatalf("verdict %s err %v", res.Verdict, err)
		}
		mustOK(t, s, "1")
	})
}

func TestBusy(t *testing.T) {
	s := newSession(t, baseConfig())
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		close(started)
		_, err := s.Execute(context.Background(), "Sys.sleep(1)")
		done <- err
	}()
	<-started
	time.Sleep(200 * time.Millisecond)
	if _, err := s.Execute(context.Background(), "1"); !errors.Is(err, securer.ErrBusy) {
		t.Errorf("second concurrent Execute: %v, want ErrBusy", err)
	}
	if err := <-done; err != nil {
		t.Errorf("first Execute: %v", err)
	}
}

func TestMemoryLimit(t *testing.T) {
	cfg := baseConfig()
	cfg.Limits.MemoryBytes = 256 << 20
	cfg.Limits.TmpBytes = 32 << 20
	s := newSession(t, cfg)
	res, err := s.Execute(context.Background(), oomCode)
	if !errors.Is(err, securer.ErrOutOfMemory) || res.Verdict != securer.VerdictOutOfMemory {
		t.Fatalf("verdict %s err %v detail %q", res.Verdict, err, res.Detail)
	}
	if res.Accounting.OOMKills < 1 || res.Accounting.PeakMemoryBytes < 200<<20 {
		t.Errorf("accounting %+v", res.Accounting)
	}
	mustOK(t, s, "1 + 1") // restarted
}

func TestPidsLimit(t *testing.T) {
	cfg := baseConfig()
	cfg.Limits.Pids = 8
	s := newSession(t, cfg)
	res := mustOK(t, s, `
		pids <- list()
		for (i in 1:20) {
			p <- tryCatch(parallel::mcparallel(Sys.sleep(5)), error = function(e) NULL)
			if (is.null(p)) break
			pids[[length(pids) + 1]] <- p
		}
		tools::pskill(vapply(pids, function(p) p$pid, 1L), tools::SIGKILL)
		as.numeric(length(pids))`)
	n, _ := res.Value.Go().(float64)
	if n < 1 || n > 7 { // R itself is one of the 8
		t.Errorf("forked %v children under pids.max 8", res.Value.Go())
	}
}

func TestNoNetwork(t *testing.T) {
	port, accepts := loopbackListener(t)
	s := newSession(t, baseConfig())
	for _, code := range []string{
		fmt.Sprintf(`readLines(url("http://127.0.0.1:%d"))`, port),
		fmt.Sprintf(`socketConnection("127.0.0.1", %d, timeout = 2)`, port),
		`socketConnection("1.1.1.1", 53, timeout = 2)`,
		`readLines(url("http://example.com"))`,
	} {
		res := execute(t, s, code)
		if res.Verdict != securer.VerdictError {
			t.Errorf("%s: verdict %s, want an R error", code, res.Verdict)
		}
	}
	res := mustOK(t, s, `utils::nsl("example.com")`)
	if res.Value.Type() != rvalue.TypeNull {
		t.Errorf("nsl resolved: %#v", res.Value.Go())
	}
	res = mustOK(t, s, `l <- readLines("/proc/net/dev"); sub(":.*", "", trimws(l[-(1:2)]))`)
	if got := res.Value.Go(); got != "lo" {
		t.Errorf("interfaces: %#v", got)
	}
	if n := accepts.Load(); n != 0 {
		t.Errorf("host listener accepted %d connections", n)
	}
}

func TestFilesystem(t *testing.T) {
	s := newSession(t, baseConfig())
	for _, path := range []string{
		"/etc/evil", `file.path(R.home(), "evil")`, "/usr/evil", "/evil",
		"/proc/sys/kernel/core_pattern", "/run/securer/sock/evil", "/run/securer/runtime/main.R",
	} {
		expr := path
		if !strings.Contains(path, "(") {
			expr = strconv.Quote(path)
		}
		code := fmt.Sprintf(`p <- %s; before <- if (file.exists(p)) readLines(p) else NULL
			r <- tryCatch(suppressWarnings(writeLines("pwned", p)), error = function(e) "refused")
			after <- if (file.exists(p)) readLines(p) else NULL
			identical(r, "refused") && identical(before, after)`, expr)
		res := mustOK(t, s, code)
		if res.Value.Go() != true {
			t.Errorf("writing %s was not refused", path)
		}
	}
	res := mustOK(t, s, `writeLines("ok", "/tmp/ok"); readLines("/tmp/ok")`)
	if res.Value.Go() != "ok" {
		t.Errorf("/tmp not writable: %#v", res.Value.Go())
	}
	res = mustOK(t, s, `grep(" /tmp ", readLines("/proc/self/mountinfo"), value = TRUE)`)
	line, _ := res.Value.Go().(string)
	for _, opt := range []string{"nosuid", "nodev", "noexec", "size=", "nr_inodes="} {
		if !strings.Contains(line, opt) {
			t.Errorf("/tmp mount lacks %s: %q", opt, line)
		}
	}
}

func TestNoHostEnvironment(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", "canary-7d1e3f")
	s := newSession(t, baseConfig())
	res := mustOK(t, s, `paste(names(Sys.getenv()), Sys.getenv(), collapse = "\n")`)
	env := res.Value.Go().(string)
	if strings.Contains(env, "canary-7d1e3f") || strings.Contains(env, "OPENAI") {
		t.Errorf("host environment leaked: %s", env)
	}
	res = mustOK(t, s, `x <- readBin("/proc/1/environ", "raw", 1e5); rawToChar(x[x != 0])`)
	if strings.Contains(fmt.Sprint(res.Value.Go()), "canary") {
		t.Errorf("canary in /proc/1/environ")
	}
	res = mustOK(t, s, `all(Sys.getenv(c("R_LIBS", "R_LIBS_USER", "R_PROFILE_USER", "R_ENVIRON_USER")) == "") &&
		all(startsWith(.libPaths(), "/usr/"))`)
	if res.Value.Go() != true {
		t.Errorf("user library variables set or a library path outside /usr")
	}
}

// TestCleanup: nothing is left after Close, after R is killed, or after the
// host process itself dies (the reaper removes it at the next start).
func TestCleanup(t *testing.T) {
	t.Run("close", func(t *testing.T) {
		s, err := testHost.NewSession(context.Background(), baseConfig())
		if err != nil {
			t.Fatal(err)
		}
		id := s.ID()
		s.Close()
		assertGone(t, id)
	})
	t.Run("R killed", func(t *testing.T) {
		s := newSession(t, baseConfig())
		id := s.ID()
		pid := hostPidOf(s)
		go func() {
			time.Sleep(300 * time.Millisecond)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}()
		res := execute(t, s, "Sys.sleep(30)")
		if res.Verdict != securer.VerdictKilled || !strings.Contains(res.Exit, "killed") {
			t.Fatalf("verdict %s exit %q", res.Verdict, res.Exit)
		}
		assertGone(t, id)
		mustOK(t, s, "1")
		res = execute(t, s, `quit(save = "no", status = 3)`)
		if res.Verdict != securer.VerdictKilled || res.Exit != "exit status 3" {
			t.Errorf("quit(): verdict %s exit %q", res.Verdict, res.Exit)
		}
		mustOK(t, s, "1")
	})
	t.Run("host crash", func(t *testing.T) {
		id, pid := crashAChild(t, crashChildEnv+"=1")
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("the orphaned R (pid %d) should outlive its host process until reaped: %v", pid, err)
		}
		if _, err := os.Stat(filepath.Join(stateDir, "sessions", id)); err != nil {
			t.Fatalf("orphan state missing before reaping: %v", err)
		}
		reaped, err := testHost.Reap(context.Background())
		if err != nil || !contains(reaped.Sessions, id) {
			t.Fatalf("Reap: %v %v", reaped, err)
		}
		assertGone(t, id)
		if alive(pid) {
			t.Errorf("orphaned R pid %d still alive after reaping", pid)
		}
	})
}

const crashChildEnv = "SECURER_IT_CRASH_CHILD"

// crashAChild runs this test binary as a child with env set, reads the
// session id and R pid it reports, and kills it with SIGKILL.
func crashAChild(t *testing.T, env string) (id string, pid int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env, runIDEnv+"="+runID)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("crash child: %v", err)
	}
	if _, err := fmt.Sscan(line, &id, &pid); err != nil {
		t.Fatalf("crash child said %q", line)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	return id, pid
}

// childSession starts a session in a crash child and runs R once (which
// is R's pid as R sees it), exiting the child on any error.
func childSession(cfg securer.Config) (*securer.Session, any) {
	s, err := testHost.NewSession(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	res, err := s.Execute(context.Background(), "Sys.getpid()")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return s, res.Value.Go()
}

// crashChild starts a session, reports it, and waits to be killed.
func crashChild() {
	s, _ := childSession(baseConfig())
	fmt.Printf("%s %d\n", s.ID(), hostPidOf(s))
	select {}
}

// hostPidOf is the host pid of the session's R process.
func hostPidOf(s *securer.Session) int {
	b, err := os.ReadFile(filepath.Join(stateDir, "containers", s.ID(), "state.json"))
	if err != nil {
		return 0
	}
	i := strings.Index(string(b), `"init_process_pid":`)
	if i < 0 {
		return 0
	}
	rest := string(b[i+len(`"init_process_pid":`):])
	initPid, _ := strconv.Atoi(strings.TrimSpace(rest[:strings.IndexAny(rest, ",}")]))
	// The box's init is tini; R is its child.
	kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", initPid, initPid))
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(string(kids)) {
		pid, _ := strconv.Atoi(f)
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "R" {
			return pid
		}
	}
	return 0
}

// alive: the process exists and is not a zombie (an orphan's zombie waits
// for the host's init to collect it).
func alive(pid int) bool {
	for i := 0; i < 100; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		if f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:])); len(f) > 0 && f[0] == "Z" {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func assertGone(t *testing.T, id string) {
	t.Helper()
	for _, p := range []string{filepath.Join(stateDir, "sessions", id), filepath.Join(stateDir, "containers", id)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still exists", p)
		}
	}
	for _, ctl := range []string{"memory", "pids", "cpu"} {
		for _, p := range []string{filepath.Join("/sys/fs/cgroup", ctl, cgroupParent, id), filepath.Join("/sys/fs/cgroup", cgroupParent, id)} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("cgroup %s still exists", p)
			}
		}
	}
	if m := mountsMatching(id); len(m) > 0 {
		t.Errorf("mounts remain: %v", m)
	}
	ents, _ := os.ReadDir(uidRegistry)
	for _, e := range ents {
		if target, _ := os.Readlink(filepath.Join(uidRegistry, e.Name())); filepath.Base(target) == id {
			t.Errorf("host uid range %s still claimed by %s", e.Name(), id)
		}
	}
}

// TestTotalLimits: the parent cgroup caps all sessions together.
func TestTotalLimits(t *testing.T) {
	h := testHost
	h.TotalLimits = securer.TotalLimits{MemoryBytes: 3 << 30, Pids: 500}
	newHostSession(t, h, baseConfig())
	files := map[string]string{
		"/sys/fs/cgroup/memory" + cgroupParent + "/memory.limit_in_bytes": strconv.Itoa(3 << 30),
		"/sys/fs/cgroup/pids" + cgroupParent + "/pids.max":                "500",
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil { // v2 host
		files = map[string]string{
			"/sys/fs/cgroup" + cgroupParent + "/memory.max": strconv.Itoa(3 << 30),
			"/sys/fs/cgroup" + cgroupParent + "/pids.max":   "500",
		}
	}
	for f, want := range files {
		b, err := os.ReadFile(f)
		if err != nil || strings.TrimSpace(string(b)) != want {
			t.Errorf("%s = %q, %v; want %s", f, b, err, want)
		}
	}
}

// TestHostileStateDirs: unusable state directories are refused with a clear
// error, and nothing is created through them.
func TestHostileStateDirs(t *testing.T) {
	t.Run("socket path too long", func(t *testing.T) {
		// A host R connects by the socket's path, which the kernel caps
		// at 107 bytes: refused.
		cfg, h := baseConfig(), testHost
		cfg.UnsafeNoSandbox = true
		h.StateDir = stateDir + "/" + strings.Repeat("x", 90)
		defer os.RemoveAll(h.StateDir)
		s, err := h.NewSession(context.Background(), cfg)
		if err == nil {
			s.Close()
		}
		if !errors.Is(err, securer.ErrInvalidConfig) || !strings.Contains(err.Error(), "socket path") {
			t.Fatalf("err %v", err)
		}
		if ents, _ := os.ReadDir(filepath.Join(h.StateDir, "sessions")); len(ents) != 0 {
			t.Errorf("left %d session dirs", len(ents))
		}
	})
	t.Run("long state dir, sandboxed", func(t *testing.T) {
		// The host binds the socket through a descriptor of its dir and
		// the box's R connects by a short name of its own: no limit.
		cfg, h := baseConfig(), testHost
		h.StateDir = stateDir + "/" + strings.Repeat("y", 90)
		defer os.RemoveAll(h.StateDir)
		s := newHostSession(t, h, cfg)
		if res := mustOK(t, s, "1 + 1"); res.Value.Go() != 2.0 {
			t.Errorf("1 + 1 = %v", res.Value.Go())
		}
		s.Close()
		if ents, _ := os.ReadDir(filepath.Join(h.StateDir, "sessions")); len(ents) != 0 {
			t.Errorf("left %d session dirs", len(ents))
		}
	})
	t.Run("symlinked state dir", func(t *testing.T) {
		target := t.TempDir()
		link := stateDir + "-link"
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(link)
		cfg, h := baseConfig(), testHost
		h.StateDir = link
		_, err := h.NewSession(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Fatalf("err %v", err)
		}
		if ents, _ := os.ReadDir(target); len(ents) != 0 {
			t.Errorf("created %d entries through the symlink", len(ents))
		}
	})
	t.Run("state dir owned by someone else", func(t *testing.T) {
		dir := stateDir + "-foreign"
		if err := os.Mkdir(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		cfg, h := baseConfig(), testHost
		h.StateDir = dir
		if _, err := h.NewSession(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("world-writable state dir", func(t *testing.T) {
		dir := stateDir + "-loose"
		if err := os.Mkdir(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		cfg, h := baseConfig(), testHost
		h.StateDir = dir
		if _, err := h.NewSession(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "writable by others") {
			t.Fatalf("err %v", err)
		}
		if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o777 {
			t.Errorf("mode changed to %s", fi.Mode().Perm())
		}
	})
	t.Run("missing rootfs", func(t *testing.T) {
		cfg, h := baseConfig(), testHost
		h.RootFSDir = t.TempDir()
		_, err := h.NewSession(context.Background(), cfg)
		if !errors.Is(err, securer.ErrSandboxUnavailable) || !strings.Contains(err.Error(), "rootfs build") {
			t.Fatalf("err %v", err)
		}
	})
}

// TestBigValues: a large last value never breaks the session.
func TestBigValues(t *testing.T) {
	s := newSession(t, baseConfig())
	mustOK(t, s, "keep <- 'state'")
	res := mustOK(t, s, "x <- 1:3e6") // invisible: not sent
	if res.Value.Type() != rvalue.TypeNull {
		t.Errorf("invisible big value sent as %s", res.Value.Type())
	}
	res = mustOK(t, s, "1:3e6") // visible, over the frame limit
	if res.Value.Type() != rvalue.TypeUnsupported || !strings.Contains(res.Value.Repr(), "too large") {
		t.Errorf("over-size value: %s %q", res.Value.Type(), res.Value.Repr())
	}
	if !strings.Contains(res.Stdout[:100], "[1]") || len(res.Printed) > 70000 {
		t.Errorf("stdout %.20q, printed %d bytes", res.Stdout, len(res.Printed))
	}
	if res := mustOK(t, s, "c(exists('x'), keep == 'state')"); res.Value.Go() == nil {
		t.Error("state lost")
	}
}

// TestTimeoutWhileSendingResult: a timeout that lands while R encodes its
// result still interrupts (state kept) rather than killing R.
func TestTimeoutWhileSendingResult(t *testing.T) {
	cfg := baseConfig()
	cfg.Timeout = 300 * time.Millisecond
	cfg.InterruptGrace = 5 * time.Second
	s := newSession(t, cfg)
	mustOK(t, s, "keep <- 'state'")
	res := execute(t, s, "x <- rnorm(1.2e6); x")
	if res.Verdict != securer.VerdictTimeout || strings.Contains(res.Detail, "killed") {
		t.Fatalf("verdict %s detail %q", res.Verdict, res.Detail)
	}
	if res := mustOK(t, s, "keep"); res.Value.Go() != "state" {
		t.Errorf("state lost: %v", res.Value.Go())
	}
}

// TestUnsolicitedFrames: frames R sends between executions are a protocol
// error for the next Execute, which does not run its code.
func TestUnsolicitedFrames(t *testing.T) {
	cfg := baseConfig()
	cfg.Tools = seedTools(nil)
	s := newSession(t, cfg)
	// The first execution (id 1) forges its own result, then keeps
	// talking after the host thinks it is over.
	res := mustOK(t, s, `.rt <- get("rt", environment(body(add)[[1]]))
		.rt$send('{"type":"result","id":1,"value":{"type":"NULL"},"visible":false,"printed":"","warnings":[],"messages":[],"error":null,"interrupted":false}')
		for (i in 1:50) .rt$send('{"type":"hello","protocol":1,"pid":1,"r_version":"x"}')
		Sys.sleep(0.5)`)
	_ = res
	time.Sleep(time.Second)
	res, err := s.Execute(context.Background(), "cat('ran')")
	if res == nil || !errors.Is(err, securer.ErrProtocol) || res.Verdict != securer.VerdictProtocolError || strings.Contains(res.Stdout, "ran") {
		t.Fatalf("verdict %s err %v stdout %q", res.Verdict, err, res.Stdout)
	}
	if res := mustOK(t, s, "1+1"); res.Value.Go() != 2.0 {
		t.Errorf("after restart: %v", res.Value.Go())
	}
}

// TestExecuteWith: per-execution timeout and output writers.
func TestExecuteWith(t *testing.T) {
	var sessionOut lockedBuffer
	cfg := baseConfig()
	cfg.Output.Stdout = &sessionOut
	s := newSession(t, cfg)
	var mine, mineErr lockedBuffer
	res, err := s.ExecuteWith(context.Background(), `cat("to mine\n"); message("err")`, securer.ExecOptions{Stdout: &mine, Stderr: &mineErr})
	if err != nil || mine.String() != "to mine\n" || !strings.Contains(mineErr.String(), "err") || sessionOut.String() != "" {
		t.Errorf("per-execution writers: %v; mine %q, stderr %q, session's %q", err, mine.String(), mineErr.String(), sessionOut.String())
	}
	if res.Stdout != "to mine\n" {
		t.Errorf("the result lost the output: %q", res.Stdout)
	}
	mustOK(t, s, `cat("to the session\n")`)
	if sessionOut.String() != "to the session\n" {
		t.Errorf("the session's writer after an override: %q", sessionOut.String())
	}
	start := time.Now()
	_, err = s.ExecuteWith(context.Background(), "Sys.sleep(10)", securer.ExecOptions{Timeout: 500 * time.Millisecond})
	if !errors.Is(err, securer.ErrTimeout) || time.Since(start) > 3*time.Second {
		t.Errorf("per-execution timeout: %v after %s", err, time.Since(start))
	}
	res, err = s.ExecuteWith(context.Background(), "x <- 1; x", securer.ExecOptions{Fresh: true})
	if err != nil || res.Value.Go() != 1.0 {
		t.Errorf("fresh through ExecuteWith: %v %v", err, res.Value.Go())
	}
	if res := execute(t, s, `exists("x")`); res.Value.Go() != false {
		t.Errorf("a fresh execution left x behind")
	}
}

// hostUIDOf is the real uid of a host process.
func hostUIDOf(t *testing.T, pid int) uint32 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(v)
			uid, err := strconv.ParseUint(f[0], 10, 32)
			if err != nil {
				t.Fatal(err)
			}
			return uint32(uid)
		}
	}
	t.Fatalf("no Uid line for pid %d", pid)
	return 0
}

// TestUIDRanges: every live box has a host uid range of its own, freed
// when it closes.
func TestUIDRanges(t *testing.T) {
	const base, size = 100000, 65536
	seen := map[uint32]bool{}
	var sessions []*securer.Session
	for range 4 {
		s := newSession(t, baseConfig())
		sessions = append(sessions, s)
		var inside, host, n uint32
		m := mustOK(t, s, `readLines("/proc/self/uid_map")`).Value.Go().(string)
		if _, err := fmt.Sscan(m, &inside, &host, &n); err != nil || inside != 0 || n != size || host < base || (host-base)%size != 0 {
			t.Fatalf("uid_map %q", m)
		}
		if seen[host] {
			t.Errorf("two live boxes share the host uid range from %d", host)
		}
		seen[host] = true
		if got := hostUIDOf(t, hostPidOf(s)); got != host+1000 {
			t.Errorf("R runs as host uid %d, want %d (uid 1000 of its range)", got, host+1000)
		}
	}
	// Another state dir (another executor) draws from the same registry.
	other := testHost
	other.StateDir = stateDir + "-other"
	t.Cleanup(func() { os.RemoveAll(other.StateDir) })
	s := newHostSession(t, other, baseConfig())
	var host uint32
	m := mustOK(t, s, `readLines("/proc/self/uid_map")`).Value.Go().(string)
	if _, err := fmt.Sscan(m, new(uint32), &host); err != nil || seen[host] {
		t.Errorf("a box of another state dir got uid_map %q, shared with a live box", m)
	}
	s.Close()
	for _, s := range sessions {
		id := s.ID()
		s.Close()
		assertGone(t, id)
	}

	// A claim left by a crashed session whose box is gone is freed by the
	// next Reap; a claim that is not a session's is left alone.
	stale := filepath.Join(uidRegistry, "1023")
	foreign := filepath.Join(uidRegistry, "not-a-slot")
	if err := errors.Join(os.Symlink(filepath.Join(stateDir, "sessions", "securer-00000000deadbeef"), stale),
		os.Symlink("/elsewhere", foreign)); err != nil {
		t.Fatalf("plant claims (slot 1023 in use?): %v", err)
	}
	defer os.Remove(foreign)
	if _, err := testHost.Reap(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale claim survived Reap: %v", err)
		os.Remove(stale)
	}
	if _, err := os.Lstat(foreign); err != nil {
		t.Errorf("Reap removed an entry that is not a claim: %v", err)
	}
}
