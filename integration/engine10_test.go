package integration

import (
	"context"
	"fmt"
	"log/slog"
	osexec "os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// A write past the file-size limit is an R error (EFBIG); R lives on with
// its state (it used to die of SIGXFSZ).
func TestFileSizeLimitIsAnRError(t *testing.T) {
	cfg := baseConfig()
	cfg.Limits.TmpBytes = 32 << 20
	cfg.Limits.FileSizeBytes = 4 << 20
	s := newSession(t, cfg)
	id := s.ID()
	mustOK(t, s, "kept <- 42")
	res := execute(t, s, `writeLines(strrep("x", 5e6), "/tmp/big.txt")`)
	if res.Verdict != securer.VerdictError || res.Error == nil || !strings.Contains(res.Error.Message, "File too large (the file size limit is 4194304 bytes)") {
		t.Fatalf("verdict %s, error %v, exit %q, detail %q: want an R error naming the file size limit (EFBIG)", res.Verdict, res.Error, res.Exit, res.Detail)
	}
	if got := number(mustOK(t, s, "kept").Value); got != 42 || s.ID() != id {
		t.Fatalf("after the failed write: kept = %v, session %s -> %s: the state was lost", got, id, s.ID())
	}
	if size := number(mustOK(t, s, `file.size("/tmp/big.txt")`).Value); size != 4<<20 {
		t.Errorf("the file is %v bytes, want it cut at the %d-byte limit", size, 4<<20)
	}
}

// The same holds for an unsandboxed R (a plain child process).
func TestFileSizeLimitUnsandboxed(t *testing.T) {
	cfg := hostConfig()
	cfg.Limits.FileSizeBytes = 2 << 20
	s := newSession(t, cfg)
	mustOK(t, s, "kept <- 42")
	res := execute(t, s, `writeLines(strrep("x", 3e6), file.path(tempdir(), "big.txt"))`)
	if res.Verdict != securer.VerdictError || res.Error == nil || !strings.Contains(res.Error.Message, "File too large") {
		t.Fatalf("verdict %s, error %v, exit %q: want an R error (EFBIG)", res.Verdict, res.Error, res.Exit)
	}
	if got := number(mustOK(t, s, "kept").Value); got != 42 {
		t.Fatalf("kept = %v after the failed write", got)
	}
}

// By default the file-size limit follows /tmp: a file larger than the old
// fixed 64 MiB fits in a larger /tmp.
func TestFileSizeLimitFollowsTmp(t *testing.T) {
	cfg := baseConfig()
	cfg.Limits.TmpBytes = 128 << 20
	s := newSession(t, cfg)
	res := mustOK(t, s, `
		con <- file("/tmp/big.bin", "wb")
		chunk <- as.raw(rep(7L, 1024^2))
		for (i in 1:80) writeBin(chunk, con)
		close(con)
		file.size("/tmp/big.bin")`)
	if got := number(res.Value); got != 80<<20 {
		t.Fatalf("wrote %v bytes, want %d", got, 80<<20)
	}
}

// After R dies (an OOM kill, a kill from outside), the next execution runs
// in a new R and its result says so, once; an explicit Restart and fresh
// executions do not consume the news.
func TestStateLostIsReported(t *testing.T) {
	cfg := baseConfig()
	cfg.Limits.MemoryBytes = 256 << 20
	cfg.Limits.TmpBytes = 32 << 20
	s := newSession(t, cfg)
	if res := mustOK(t, s, "kept <- 42"); res.StateLost {
		t.Fatalf("first execution reports lost state: %q", res.StateLostReason)
	}
	if res := execute(t, s, oomCode); res.Verdict != securer.VerdictOutOfMemory {
		t.Fatalf("verdict %s, want oom", res.Verdict)
	}
	ctx, cancel := hangGuard()
	defer cancel()
	fresh, err := s.ExecuteFresh(ctx, "1")
	if err != nil || fresh.StateLost {
		t.Fatalf("fresh execution after the OOM kill: %v, state_lost %v (a fresh execution never sees the warm state)", err, fresh.StateLost)
	}
	res := mustOK(t, s, `exists("kept")`)
	if !res.StateLost || !strings.Contains(res.StateLostReason, "memory limit") {
		t.Fatalf("after an OOM kill: state_lost %v, reason %q; want it reported with the memory limit as the reason", res.StateLost, res.StateLostReason)
	}
	if v, _ := res.Value.Go().(bool); v {
		t.Fatalf("kept survived the OOM kill: the test is wrong")
	}
	if res := mustOK(t, s, "kept <- 1"); res.StateLost {
		t.Fatalf("lost state reported twice: %q", res.StateLostReason)
	}

	// R killed from outside between executions.
	pid := hostPidOf(s)
	if pid == 0 {
		t.Fatal("no R pid")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); s.Alive() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	res = mustOK(t, s, `exists("kept")`)
	if !res.StateLost || !strings.Contains(res.StateLostReason, "between executions") {
		t.Fatalf("after R was killed while idle: state_lost %v, reason %q", res.StateLost, res.StateLostReason)
	}

	// The caller's own Restart is not news.
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if res := mustOK(t, s, "1"); res.StateLost {
		t.Fatalf("an explicit Restart reported as lost state: %q", res.StateLostReason)
	}
}

// hangGuard is a generous deadline for one execution.
func hangGuard() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 120*time.Second)
}

// Issue 10 #9: a fork bomb under a small pids limit is swept after the
// execution without a "survived" warning, and nothing of it is left.
func TestForkBombSweptQuietly(t *testing.T) {
	cfg := baseConfig()
	cfg.Limits.Pids = 16
	var log lockedBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := newSession(t, cfg)
	for i := 0; i < 3; i++ {
		mustOK(t, s, `f <- function() repeat try(parallel::mcparallel(f()), silent = TRUE)
			parallel::mcparallel(f()); Sys.sleep(1); 1`)
		// R sees no live process of the box but init and itself (R's own
		// dead children wait, as zombies, for R to collect them).
		res := mustOK(t, s, `left <- setdiff(list.files("/proc", pattern = "^[0-9]+$"), c("1", Sys.getpid()))
			st <- vapply(left, function(p) tryCatch(paste(readLines(file.path("/proc", p, "stat")), collapse = ""), error = function(e) "gone"), "")
			st[!grepl("^[0-9]+ \\(.*\\) Z ", st) & st != "gone"]`)
		if n := res.Value.Len(); n != 0 {
			t.Fatalf("round %d: %d processes left after the sweep: %v\n%s", i, n, res.Value.Go(), log.String())
		}
	}
	if strings.Contains(log.String(), "survived") {
		t.Fatalf("the sweep logged survivors:\n%s", log.String())
	}
}

// Issue 10 #11, #12 through the service: fsize_bytes is a session option
// under the operator's ceiling; the result event carries state_lost.
func TestServiceFsizeAndStateLost(t *testing.T) {
	base := baseConfig()
	base.Limits.MemoryBytes = 256 << 20
	base.Limits.TmpBytes = 32 << 20
	c, _, _ := startService(t, base, 4)
	if ev := c.request(map[string]any{"op": "create_session", "id": "1", "options": map[string]any{"fsize_bytes": 64 << 20}}); errCodeOf(ev) != "invalid_config" {
		t.Errorf("fsize_bytes over the operator's (its /tmp, 32 MiB): %v", ev)
	}
	sess := c.request(map[string]any{"op": "create_session", "id": "2", "options": map[string]any{"fsize_bytes": 2 << 20}}, "session")["session"].(string)
	exec := func(id, code string) map[string]any {
		ev := c.request(map[string]any{"op": "execute", "id": id, "session": sess, "code": code}, "result")
		r, _ := ev["result"].(map[string]any)
		if r == nil {
			t.Fatalf("%s: %v", code, ev)
		}
		return r
	}
	exec("3", "kept <- 42")
	r := exec("4", `writeLines(strrep("x", 3e6), "/tmp/big.txt")`)
	if msg, _ := r["error"].(map[string]any)["message"].(string); r["verdict"] != "error" || !strings.Contains(msg, "File too large") {
		t.Errorf("write past fsize_bytes: %v", r)
	}
	if r := exec("5", "kept"); r["state_lost"] != false {
		t.Errorf("state_lost after a refused write: %v", r)
	}
	if r := exec("6", oomCode); r["verdict"] != "oom" {
		t.Fatalf("verdict %v, want oom", r["verdict"])
	}
	r = exec("7", `exists("kept")`)
	if r["state_lost"] != true || !strings.Contains(fmt.Sprint(r["state_lost_reason"]), "memory limit") {
		t.Errorf("after the OOM kill: state_lost %v, reason %v", r["state_lost"], r["state_lost_reason"])
	}
}

// The Python client exposes state_lost and warns.
func TestPythonClientStateLost(t *testing.T) {
	py, err := osexec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	script := `
import sys, warnings
sys.path.insert(0, "../clients/python")
from securer_client import Client, StateLostWarning
cmd = [sys.argv[1], "serve", "--stdio", "--state", sys.argv[2], "--cgroup-parent", sys.argv[3], "--memory", "256M", "--tmp", "16M"]
with Client.spawn(cmd) as c:
    s = c.create_session()
    print("first", s.execute("kept <- 1")["state_lost"])
    print("oom", s.execute(sys.argv[4])["verdict"])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = s.execute('exists("kept")')
    print("lost", r["state_lost"], r["value_plain"], [type(x.message).__name__ for x in w])
`
	out, err := osexec.Command(py, "-c", script, cli(t), stateDir, cgroupParent, oomCode).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "first False\n") || !strings.Contains(string(out), "oom oom\n") ||
		!strings.Contains(string(out), "lost True False ['StateLostWarning']\n") {
		t.Errorf("python client: %v\n%s", err, out)
	}
	if left := leftovers(); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestToolsNamedLikeBase: host tools (and user code) named like the base R
// functions the runtime itself uses shadow them for user code only; the
// runtime still works (an outside review: a tool named cat broke every
// execution, paste0 every start).
func TestToolsNamedLikeBase(t *testing.T) {
	cfg := baseConfig()
	for _, name := range []string{"cat", "print", "paste0", "list", "c", "tryCatch", "stop"} {
		cfg.Tools = append(cfg.Tools, securer.Tool{Name: name, Args: []securer.Arg{{Name: "x"}},
			Handler: func(ctx context.Context, args map[string]securer.Value) (any, error) { return "tool " + name, nil }})
	}
	s := newSession(t, cfg)
	if res := mustOK(t, s, "1 + 1"); res.Value.Go() != 2.0 || res.Stdout != "[1] 2\n" {
		t.Errorf("1 + 1: %+v", res)
	}
	if res := mustOK(t, s, "cat(1)"); res.Value.Go() != "tool cat" {
		t.Errorf("cat(1) called %v, want the tool", res.Value.Go())
	}
	res, err := s.Execute(context.Background(), `base::stop("boom")`)
	if res == nil || res.Verdict != securer.VerdictError || !strings.Contains(res.Stderr, "boom") {
		t.Errorf("an R error: %+v, %v", res, err)
	}
	// User code masking them in the global environment harms only itself.
	mustOK(t, s, `cat <- function(...) base::stop("mine"); print <- cat; paste0 <- cat; invisible(NULL)`)
	if res := mustOK(t, s, "x <- 40; x + 2"); res.Value.Go() != 42.0 {
		t.Errorf("after masking in the global environment: %+v", res)
	}
}
