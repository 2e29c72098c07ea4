package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	securer "github.com/securer-runc/securer-runc"
)

// Issue 10 #15: the bridge answers only a tool call with a new id; R
// replaying an answered id, or going back to an older one, breaks the
// protocol (it used to answer ids 5, 5, 1 in turn).
func TestAdversarialToolCallIDs(t *testing.T) {
	h := newAdvHarness(t, false)
	s := newSession(t, h.config())
	// fixed(id) sends a tool_call with exactly that id and waits for the
	// answer.
	const fixed = `fixed <- function(id) {
		.rt$send(sprintf(r"({"type":"tool_call","id":%d,"tool":"add","args":{"a":%s,"b":%s}})", as.integer(id), enc(1), enc(2)))
		repeat { m <- .rt$receive(); if (identical(m$type, "tool_result")) return(m$id) }
	}
	base <- as.integer(.rt$next_id) + 5L
	`
	for _, tc := range []struct{ name, calls string }{
		{"replayed id", "fixed(base); fixed(base)"},
		{"older id", "fixed(base); fixed(base - 4L)"},
		{"id zero", "fixed(0L)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.ok(t, s, rtPrelude)
			h.ok(t, s, fixed)
			res, err := s.Execute(context.Background(), tc.calls)
			if res == nil {
				t.Fatalf("no result: %v", err)
			}
			if res.Verdict != securer.VerdictProtocolError || !errors.Is(err, securer.ErrProtocol) || !strings.Contains(res.Detail, "tool call id") {
				t.Fatalf("verdict %s, err %v, detail %q: want a protocol error naming the tool call id", res.Verdict, err, res.Detail)
			}
			// The session restarts and tool calls work again.
			if v := number(h.ok(t, s, "add(2, 3)").Value); v != 5 {
				t.Fatalf("after the protocol error add(2, 3) = %v", v)
			}
		})
	}
	// Ordinary calls, many per execution and across executions, are fine.
	h.ok(t, s, "for (i in 1:20) add(i, 1)")
	if v := number(h.ok(t, s, "add(1, 1)").Value); v != 2 {
		t.Fatalf("add(1, 1) = %v", v)
	}
}

// Issue 10 #9: a NUL in a tool's answer is refused with a clear error; it
// used to reach R silently cut at the NUL ("a\u0000b" arrived as "a").
func TestToolAnswerWithNUL(t *testing.T) {
	cfg := baseConfig()
	cfg.Tools = []securer.Tool{{
		Name: "nul",
		Args: []securer.Arg{{Name: "kind", Type: "character"}},
		Handler: func(_ context.Context, args map[string]securer.Value) (any, error) {
			switch args["kind"].Strings()[0] {
			case "json":
				return json.RawMessage(`{"text":"a\u0000b"}`), nil
			case "name":
				return json.RawMessage(`{"a\u0000b":1}`), nil
			}
			return "a\x00b", nil
		},
	}}
	s := newSession(t, cfg)
	for _, kind := range []string{"json", "name", "string"} {
		res := execute(t, s, `nul("`+kind+`")`)
		if res.Verdict != securer.VerdictError || res.Error == nil || !strings.Contains(res.Error.Message, "NUL") {
			t.Errorf("%s: verdict %s, value %s, error %v: want an R error naming the NUL", kind, res.Verdict, valueText(res.Value), res.Error)
		}
	}
	if v := number(mustOK(t, s, "1 + 1").Value); v != 2 {
		t.Fatalf("session after the refused answers: 1 + 1 = %v", v)
	}
}

// Issue 10 #15: what the box can read of the host. The socket's bound name,
// the host's boot options, boot id, memory, load, uptime and CPU times are
// hidden or synthesised; flock, a lock channel between boxes through the
// files they share, is refused; R still works (cores, processx, forks).
func TestAdversarialHostDetails(t *testing.T) {
	h := newAdvHarness(t, false)
	cfg := h.config()
	a := newSession(t, cfg)
	b := newSession(t, cfg)
	res := h.ok(t, a, `c(
		unix = paste(readLines("/proc/net/unix"), collapse = "\n"),
		cmdline = paste(suppressWarnings(readLines("/proc/cmdline")), collapse = ""),
		boot_id = paste(suppressWarnings(readLines("/proc/sys/kernel/random/boot_id")), collapse = ""),
		loadavg = readLines("/proc/loadavg"),
		uptime = readLines("/proc/uptime"),
		memtotal = grep("^MemTotal:", readLines("/proc/meminfo"), value = TRUE),
		btime = grep("^btime", readLines("/proc/stat"), value = TRUE),
		cores = as.character(parallel::detectCores()),
		processx = processx::run("echo", "hi")$stdout,
		forks = paste(unlist(parallel::mclapply(1:4, function(i) i^2, mc.cores = 2)), collapse = ","),
		flock = paste(system("flock -n /usr/lib/R/lib/libR.so true 2>&1; echo rc=$?", intern = TRUE), collapse = " "))`)
	got := map[string]string{}
	names := res.Value.Names()
	for i, v := range strs(res.Value) {
		got[names[i]] = v
	}
	if strings.Contains(got["unix"], stateDir) || strings.Contains(got["unix"], "/run/") {
		t.Errorf("/proc/net/unix shows host paths:\n%s", got["unix"])
	}
	hostCmdline, _ := os.ReadFile("/proc/cmdline")
	if got["cmdline"] != "" || got["boot_id"] != "" {
		t.Errorf("host boot details visible: cmdline %q (host %q), boot_id %q", got["cmdline"], hostCmdline, got["boot_id"])
	}
	wantMem := fmt.Sprintf("%d kB", cfg.Limits.MemoryBytes>>10)
	for k, want := range map[string]string{"loadavg": "0.00 0.00 0.00 1/1 1", "uptime": "0.00 0.00", "btime": "btime 0",
		"processx": "hi\n", "forks": "1,4,9,16", "cores": strconv.Itoa(runtime.NumCPU())} {
		if got[k] != want {
			t.Errorf("%s = %q, want %q", k, got[k], want)
		}
	}
	if !strings.HasSuffix(got["memtotal"], " "+wantMem) {
		t.Errorf("meminfo %q: want the box's own limit, %s", got["memtotal"], wantMem)
	}
	if !strings.Contains(got["flock"], "No locks available") || strings.Contains(got["flock"], "rc=0") {
		t.Errorf("flock on a shared read-only file: %q, want ENOLCK", got["flock"])
	}

	// No channel: box b starts 15 processes and holds (tries to hold) a
	// lock; box a's view of the load and the lock does not change.
	const look = `c(readLines("/proc/loadavg"), system("flock -n /usr/lib/R/lib/libR.so true 2>&1; echo rc=$?", intern = TRUE))`
	before := strs(h.ok(t, a, look).Value)
	done := make(chan *securer.Result, 1)
	go func() {
		res, _ := b.Execute(context.Background(), `for (i in 1:15) system("sleep 20", wait = FALSE)
			system("flock /usr/lib/R/lib/libR.so sleep 20 >/dev/null 2>&1", wait = FALSE)
			Sys.sleep(0.5); wait(1)`)
		done <- res
	}()
	<-h.waitStarted // b's processes are running
	after := strs(h.ok(t, a, look).Value)
	if res := <-done; res == nil || res.Verdict != securer.VerdictOK {
		t.Fatalf("box b: %+v", res)
	}
	if strings.Join(before, "|") != strings.Join(after, "|") {
		t.Errorf("box a sees box b: before %q, after %q", before, after)
	}
}

// Host-wide /proc counters are channels between boxes (box b's files and
// allocations moved box a's inode-nr, file-nr, vmstat): each is masked,
// so a box reads nothing there, and R still works without them.
func TestAdversarialHostCounters(t *testing.T) {
	h := newAdvHarness(t, false)
	s := newSession(t, h.config())
	paths := []string{
		"/proc/zoneinfo", "/proc/buddyinfo", "/proc/pagetypeinfo", "/proc/softirqs", "/proc/interrupts",
		"/proc/pressure", "/proc/cgroups", "/proc/diskstats", "/proc/partitions", "/proc/swaps",
		"/proc/kallsyms", "/proc/vmstat", "/proc/slabinfo", "/proc/vmallocinfo", "/proc/iomem",
		"/proc/ioports", "/proc/schedstat", "/proc/locks",
		"/proc/sys/fs/inode-nr", "/proc/sys/fs/inode-state", "/proc/sys/fs/file-nr",
		"/proc/sys/fs/dentry-state", "/proc/sys/fs/aio-nr", "/proc/sys/fs/quota", "/proc/fs",
	}
	// A masked file reads as empty, a masked directory lists nothing; a
	// path this kernel lacks is absent. An error (e.g. permission denied)
	// would mean it is the host's file, unmasked.
	code := fmt.Sprintf(`vapply(c(%s), function(p) {
		if (!file.exists(p)) return("absent")
		if (dir.exists(p)) return(paste(list.files(p, all.files = TRUE, no.. = TRUE), collapse = " "))
		tryCatch(paste(suppressWarnings(readLines(p, n = 3)), collapse = "\n"), error = function(e) paste("error:", conditionMessage(e)))
	}, "")`, `"`+strings.Join(paths, `", "`)+`"`)
	got := strs(h.ok(t, s, code).Value)
	if len(got) != len(paths) {
		t.Fatalf("got %d answers for %d paths: %q", len(got), len(paths), got)
	}
	for i, p := range paths {
		_, hostErr := os.Stat(p)
		switch {
		case got[i] == "absent" && hostErr == nil:
			t.Errorf("%s: absent in the box but present on the host", p)
		case got[i] != "" && got[i] != "absent":
			t.Errorf("%s readable in the box: %.200q", p, got[i])
		}
	}

	// What R uses still works.
	res := h.ok(t, s, `c(
		cores = parallel::detectCores() >= 1,
		forks = identical(unlist(parallel::mclapply(1:4, function(i) i^2, mc.cores = 2)), c(1, 4, 9, 16)),
		time = inherits(Sys.time(), "POSIXct"),
		proc = length(proc.time()) >= 3,
		gc = is.matrix(gc()),
		memprof = length(memory.profile()) > 0,
		tempfile = { f <- tempfile(); writeLines("x", f); identical(readLines(f), "x") },
		processx = identical(processx::run("echo", "hi")$stdout, "hi\n"))`)
	names, vals := res.Value.Names(), res.Value.Logicals()
	if len(vals) != 8 {
		t.Fatalf("R checks: %v", res.Value.Go())
	}
	for i, v := range vals {
		if v != 1 {
			t.Errorf("%s fails with the counters masked", names[i])
		}
	}
}
