package integration

// Hostile review of issue 15 (page merging, seccomp, idle trim, runtime
// loading, sweep).

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// TestReview15SeccompEncodings: madvise(MADV_MERGEABLE), prctl
// (PR_SET_MEMORY_MERGE) and personality(ADDR_NO_RANDOMIZE) disguised
// with high bits, or through the x32 and i386 entry points, stay
// refused in a box without page merging; what glibc needs still works.
func TestReview15SeccompEncodings(t *testing.T) {
	h := newAdvHarness(t, false)
	for _, merge := range []bool{false, true} {
		host := testHost
		host.UnsafeMergePages = merge
		cfg := withProbe(h.config())
		cfg.Timeout = 60 * time.Second
		s, err := host.NewSession(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		h.ok(t, s, probeR)
		refused := []string{"EPERM", "ENOSYS"}
		cases := []probeCase{
			{"getpid", []string{"ok"}},
			{"madvise_dontneed", []string{"ok"}},
			{"madvise_unmergeable", []string{"ok"}},
			{"prctl_get_memory_merge", []string{"ok"}},
			// Other ABIs: the filter kills the calling thread (a Go
			// program's other threads then wait for ever: "killed").
			{"madvise_mergeable_x32", append(refused, "killed")},
			{"madvise_mergeable_i386", append(refused, "killed")},
			{"getpid_i386", append(refused, "killed")},
			{"prctl_memory_merge", refused},
			{"prctl_memory_merge_hi", refused},
			{"personality_noaslr", refused},
			{"personality_hi_query", refused},
			{"personality_hi_noaslr", refused},
		}
		if !merge {
			cases = append(cases, probeCase{"madvise_mergeable", refused},
				probeCase{"madvise_mergeable_hi", refused}, probeCase{"madvise_mergeable_neg", refused})
		} else {
			cases = append(cases, probeCase{"madvise_mergeable", []string{"ok"}})
		}
		t.Run(map[bool]string{false: "default", true: "merge"}[merge], func(t *testing.T) {
			for _, c := range cases {
				res, err := s.Execute(context.Background(), `r <- processx::run("`+probeInBox+`", "`+c.op+`", error_on_status = FALSE, timeout = 5); paste(if (nzchar(trimws(r$stdout))) trimws(r$stdout) else "killed", r$status, r$timeout)`)
				if err != nil {
					t.Fatalf("%s: %v", c.op, err)
				}
				got := fmt.Sprint(res.Value.Go())
				t.Logf("%s: %s", c.op, got)
				if !slices.Contains(c.want, strings.Fields(got)[0]) {
					t.Errorf("%s: %s, want %v", c.op, got, c.want)
				}
			}
		})
		s.Close()
	}
}

var _ = strings.Contains

// vmaHit is where a string was found in a process's memory.
type vmaHit struct {
	lo, hi    uint64
	name      string
	mergeable bool
}

// findInMemory returns the mappings of pid that hold needle (root reads
// /proc/PID/mem), each with whether it is mergeable (VmFlags "mg").
func findInMemory(t testing.TB, pid int, needle string) []vmaHit {
	t.Helper()
	smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatal(err)
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	var hits []vmaHit
	var cur *vmaHit
	var readable bool
	check := func() {
		if cur == nil || !readable {
			return
		}
		buf := make([]byte, cur.hi-cur.lo)
		n, _ := mem.ReadAt(buf, int64(cur.lo))
		if strings.Contains(string(buf[:n]), needle) {
			hits = append(hits, *cur)
		}
	}
	for _, line := range strings.Split(string(smaps), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			var lo, hi uint64
			if _, err := fmt.Sscanf(f[0], "%x-%x", &lo, &hi); err == nil {
				name := ""
				if len(f) >= 6 {
					name = f[5]
				}
				cur = &vmaHit{lo: lo, hi: hi, name: name}
				readable = f[1][0] == 'r'
				continue
			}
		}
		if strings.HasPrefix(line, "VmFlags:") && cur != nil {
			cur.mergeable = strings.Contains(line+" ", " mg ")
			check()
			cur = nil
		}
	}
	return hits
}

// TestReview15StrayToolResultInWarmR: a fresh execution's copy asks for a
// tool and ends without reading the answer. The host's tool_result (the
// code's own bytes, through an echo-like tool) is then read by the warm
// R, which stays pristine: the bytes sit in memory it keeps offering for
// merging (SECURITY.md: "no byte from a fresh copy but the expected
// report"), and every later copy (the next client's, in a pool) starts
// from them. Fails on main.
func TestReview15StrayToolResultInWarmR(t *testing.T) {
	ctx := context.Background()
	cfg := baseConfig()
	cfg.Tools = seedTools(nil)
	p, err := mergeHost().NewPool(ctx, cfg, 1, securer.ResetFresh)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	s, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(s)
	warm := boxR(t, s)
	waitMergeable(t, warm, true)

	marker := "STRAY-" + randHex(8) + "-"
	code := `rt <- environment(body(echo)[[4]][[1]])$rt
x <- strrep("` + marker + `", 2000)
rt$send(paste0('{"type":"tool_call","id":1,"tool":"echo","args":{"x":', rt$.securer_encode(x), '}}'))
rt$wait_readable()   # the answer is in the socket: leave it there
parallel:::mcexit(0L)`
	res, err := s.ExecuteFresh(ctx, code)
	t.Logf("the copy's execution: verdict %s, err %v, detail %q", res.Verdict, err, res.Detail)
	time.Sleep(idleSettle)

	hits := findInMemory(t, warm, marker+marker)
	t.Logf("the warm R %d holds the code's bytes in %d mappings: %+v", warm, len(hits), hits)
	n := mergeableMaps(t, warm)
	offered := 0
	for _, h := range hits {
		if h.mergeable {
			offered++
		}
	}
	if len(hits) == 0 {
		t.Log("the code's bytes are not in the warm R (not reproduced)")
	}
	if len(hits) > 0 && n > 0 {
		t.Errorf("the warm R still offers %d mappings for merging and holds a copy's chosen bytes (%d mappings, %d of them mergeable)", n, len(hits), offered)
	}
}

// TestReview15FinalizerRunsWhileIdle: the idle trim's gc() runs the
// finalizers of a session's earlier code between executions, with
// interrupts suspended and no execution's time limit: code keeps
// computing after its execution has ended (and its stray processes were
// killed), for as long as the session stays idle. Fails on main.
func TestReview15FinalizerRunsWhileIdle(t *testing.T) {
	cfg := baseConfig()
	cfg.Timeout = 5 * time.Second
	s := newSession(t, cfg)
	ctx := context.Background()
	_, err := s.Execute(ctx, `e <- new.env(); reg.finalizer(e, function(e) {
  t0 <- Sys.time(); n <- 0
  while (difftime(Sys.time(), t0, units = "secs") < 8) n <- n + 1
  assign("ran", c(started = as.numeric(t0), spun = n), envir = globalenv())
}); rm(e); invisible(NULL)`)
	if err != nil {
		t.Fatal(err)
	}
	ended := time.Now()
	time.Sleep(12 * time.Second)
	res, err := s.Execute(ctx, `if (exists("ran")) sprintf("%.3f %.0f", ran[["started"]], ran[["spun"]]) else "no"`)
	if err != nil {
		t.Fatalf("the next execution: %v (%s)", err, res.Detail)
	}
	v := fmt.Sprint(res.Value.Go())
	t.Logf("after an execution with a 5 s limit ended at %s: %s", ended.Format("15:04:05.000"), v)
	if v != "no" {
		t.Errorf("user code ran for 8 s between executions (finalizer run by the idle trim): %s", v)
	}
}

// TestReview15SweepHostileNames: a fresh execution leaves files named
// like shell syntax and options, a process named like one, a respawning
// process group and a setsid'd daemon; the next execution sees none.
func TestReview15SweepHostileNames(t *testing.T) {
	ctx := context.Background()
	p, err := testHost.NewPool(ctx, baseConfig(), 1, securer.ResetFresh)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	s, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(s)
	res, err := s.ExecuteFresh(ctx, `for (n in c("$(touch /tmp/PWNED)", "-delete", "a\nb", "; kill -9 1;", "-o -exec sh -c id {} +", "'\"")) {
  try(writeLines("x", file.path("/tmp", n))); try(writeLines("x", file.path(getwd(), n))) }
dir.create("/dev/shm/d/e", recursive = TRUE); writeLines("x", "/dev/shm/d/e/f"); Sys.chmod("/dev/shm/d", "0000")
writeLines("exec -a '$(touch /tmp/PWNED2)' sh -c 'while :; do sleep 1 & wait; done'", "/tmp/spin.sh")
system("sh /tmp/spin.sh >/dev/null 2>&1 &")
system("setsid sh -c 'trap \"\" TERM HUP; while :; do sh -c \"sleep 100\" & sleep 0.05; done' >/dev/null 2>&1 &")
Sys.sleep(0.5); length(list.files("/tmp", all.files = TRUE, no.. = TRUE))`)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("left: %v files in /tmp", res.Value.Go())
	res, err = s.ExecuteFresh(ctx, `ps <- setdiff(list.files("/proc", pattern = "^[0-9]+$"), c("1", Sys.getpid()))
cmds <- vapply(ps, function(p) tryCatch(paste(readLines(file.path("/proc", p, "cmdline"), warn = FALSE), collapse = " "), error = function(e) "?"), "")
c(files = paste(c(list.files("/tmp", all.files = TRUE, no.. = TRUE, recursive = TRUE), list.files("/dev/shm", all.files = TRUE, no.. = TRUE), list.files(getwd(), all.files = TRUE, no.. = TRUE)), collapse = "|"),
  procs = paste(cmds, collapse = "|"))`)
	if err != nil {
		t.Fatal(err)
	}
	v := res.Value.Go()
	t.Logf("the next execution sees: %#v", v)
	if m, ok := v.(map[string]any); ok {
		if m["files"] != "" {
			t.Errorf("files survived the sweep: %q", m["files"])
		}
	}
}
