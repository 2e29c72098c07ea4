package integration

// Adversarial cases from /work/shared/ADVERSARIAL.md, one subtest per case
// ID, each asserting the R-visible outcome of the catalogue and the
// host-side checks that apply:
//
//	H1 canaries (an OPENAI_API_KEY in the executor's environment, a file
//	   in /root) appear in no Result field, tool argument or log line;
//	H2 the executor binary, the R binary and the runtime files mounted
//	   into the box hash the same before and after (and the whole rootfs
//	   still matches its sealed digest after the write and escape cases);
//	H3 a listener on the host's 127.0.0.1 sees no connection;
//	H4 after each Test function nothing of the run is left (state dirs,
//	   cgroups, mounts) and goroutines and fds are back at baseline;
//	H5 a separate session answers 1+1 within 5 s during and after the
//	   nasty cases.
//
// The kernel-surface cases (K01-K15) and a second connection to the bridge
// (T19) use the probe helper: see probe_test.go. L03 and the other operator
// faults are in faults_test.go.
//
// T04, T06 and T13 send raw frames from R without probe(): the tool
// functions close over the runtime's environment, so R code can reach the
// bridge connection (environment(body(add)[[1]])$rt) and write anything to
// the socket, which is exactly what a hostile R can do.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/bridge"
	"github.com/securer-runc/securer-runc/cgroup"
	"github.com/securer-runc/securer-runc/rootfs"
	"github.com/securer-runc/securer-runc/rvalue"
)

// advHarness holds the host-side instruments of one Test function.
type advHarness struct {
	envCanary  string // value of OPENAI_API_KEY in the executor
	fileCanary string // content of canaryPath
	canaryPath string

	calls    atomic.Int64 // successful add() handler runs
	toolArgs lockedBuffer // every argument any tool handler saw
	log      lockedBuffer // the executor's log

	waitStarted  chan struct{}
	waitCanceled chan struct{}

	port    int
	accepts atomic.Int64

	neighbour *securer.Session

	hashes     map[string]string
	goroutines int
	fds        int
}

// newAdvHarness plants the canaries, opens the H3 listener, records the
// H2 hashes and the H4 baseline, and registers the checks that run when
// the Test function ends (after its sessions are closed).
func newAdvHarness(t *testing.T, verifyRootfs bool) *advHarness {
	t.Helper()
	h := &advHarness{
		envCanary:    "canary-env-" + randHex(8),
		fileCanary:   "canary-file-" + randHex(8),
		waitStarted:  make(chan struct{}, 16),
		waitCanceled: make(chan struct{}, 16),
	}
	t.Setenv("OPENAI_API_KEY", h.envCanary)
	h.canaryPath = "/root/securer-canary-" + randHex(6)
	if err := os.WriteFile(h.canaryPath, []byte(h.fileCanary+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Warm up once so that one-time start-up state (the runtime dir,
	// global goroutines of the container library) is not counted as a leak.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if res, err := testHost.Execute(ctx, h.config(), "1"); err != nil {
		t.Fatalf("warm-up session: %v %+v", err, res)
	}
	h.hashes = h2Hashes(t)
	h.goroutines = runtime.NumGoroutine()
	h.fds = countFDs()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.port = ln.Addr().(*net.TCPAddr).Port
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.accepts.Add(1)
			c.Close()
		}
	}()

	t.Cleanup(func() {
		ln.Close()
		<-acceptDone
		os.Remove(h.canaryPath)
		// H3
		if n := h.accepts.Load(); n != 0 {
			t.Errorf("H3: the host listener on 127.0.0.1:%d accepted %d connections", h.port, n)
		}
		// H1 over everything the tools and the log saw.
		for _, c := range []string{h.envCanary, h.fileCanary} {
			if strings.Contains(h.toolArgs.String(), c) {
				t.Errorf("H1: canary %q reached a tool argument", c)
			}
			if strings.Contains(h.log.String(), c) {
				t.Errorf("H1: canary %q reached the executor's log", c)
			}
		}
		// H2
		after := h2Hashes(t)
		for f, sum := range h.hashes {
			if after[f] != sum {
				t.Errorf("H2: %s changed (sha256 %s -> %s)", f, sum, after[f])
			}
		}
		if verifyRootfs {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if _, err := rootfs.Verify(ctx, rootfsDir); err != nil {
				t.Errorf("H2: the rootfs no longer matches its sealed digest: %v", err)
			}
		}
		// H4
		if left := leftovers(); len(left) > 0 {
			t.Errorf("H4: left behind:\n  %s", strings.Join(left, "\n  "))
		}
		var g, f int
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			g, f = runtime.NumGoroutine(), countFDs()
			if (g <= h.goroutines && f <= h.fds) || time.Now().After(deadline) {
				break
			}
		}
		if g > h.goroutines {
			buf := make([]byte, 1<<20)
			t.Errorf("H4: %d goroutines, baseline %d:\n%s", g, h.goroutines, buf[:runtime.Stack(buf, true)])
		}
		if f > h.fds {
			t.Errorf("H4: %d open fds, baseline %d", f, h.fds)
		}
	})
	return h
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func countFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

func sha256File(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "error: " + err.Error()
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "error: " + err.Error()
	}
	return hex.EncodeToString(h.Sum(nil))
}

// h2Hashes: the executor (this test binary), the R binary of the rootfs and
// every runtime file bind-mounted into the boxes.
func h2Hashes(t *testing.T) map[string]string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	files := []string{exe, filepath.Join(rootfs.RootfsPath(rootfsDir), "usr/lib/R/bin/exec/R")}
	_ = filepath.WalkDir(filepath.Join(stateDir, "runtime"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	out := map[string]string{}
	for _, f := range files {
		out[f] = sha256File(f)
	}
	return out
}

// config: small limits and short time-outs, recording tools, logging to
// h.log.
func (h *advHarness) config() securer.Config {
	cfg := baseConfig()
	cfg.Timeout = 4 * time.Second
	cfg.InterruptGrace = time.Second
	cfg.Limits = securer.Limits{MemoryBytes: 256 << 20, Pids: 32, CPUs: 1, TmpBytes: 16 << 20}
	cfg.Logger = slog.New(slog.NewTextHandler(&h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tools := seedTools(&h.calls)
	tools = append(tools, securer.Tool{
		Name: "wait", Description: "Sleep, reporting start and cancellation",
		Args: []securer.Arg{{Name: "seconds", Type: "numeric"}},
		Handler: func(ctx context.Context, args map[string]securer.Value) (any, error) {
			h.waitStarted <- struct{}{}
			d, _ := args["seconds"].Go().(float64)
			select {
			case <-time.After(time.Duration(d * float64(time.Second))):
				return "done", nil
			case <-ctx.Done():
				h.waitCanceled <- struct{}{}
				return nil, ctx.Err()
			}
		},
	})
	for i := range tools {
		inner := tools[i].Handler
		tools[i].Handler = func(ctx context.Context, args map[string]securer.Value) (any, error) {
			for k, v := range args {
				fmt.Fprintf(&h.toolArgs, "%s=%s\n", k, valueText(v))
			}
			return inner(ctx, args)
		}
	}
	cfg.Tools = tools
	return cfg
}

// valueText renders a value for canary scanning (raw vectors as bytes).
func valueText(v securer.Value) string {
	if b, ok := v.Go().([]byte); ok {
		return string(b)
	}
	j, _ := v.MarshalJSON()
	return fmt.Sprint(v.Go()) + " " + string(j)
}

// clean is H1 for one result.
func (h *advHarness) clean(t *testing.T, res *securer.Result) {
	t.Helper()
	if res == nil {
		return
	}
	fields := map[string]string{
		"Stdout": res.Stdout, "Stderr": res.Stderr, "Printed": res.Printed,
		"Value": valueText(res.Value), "Detail": res.Detail, "Exit": res.Exit,
		"Warnings": strings.Join(res.Warnings, "\n"), "Messages": strings.Join(res.Messages, "\n"),
	}
	if res.Error != nil {
		fields["Error"] = res.Error.Error()
	}
	for name, text := range fields {
		for _, c := range []string{h.envCanary, h.fileCanary} {
			if strings.Contains(text, c) {
				t.Errorf("H1: canary %q appears in Result.%s", c, name)
			}
		}
	}
}

func (h *advHarness) run(t *testing.T, s *securer.Session, code string) *securer.Result {
	t.Helper()
	res := execute(t, s, code)
	h.clean(t, res)
	return res
}

func (h *advHarness) ok(t *testing.T, s *securer.Session, code string) *securer.Result {
	t.Helper()
	res := mustOK(t, s, code)
	h.clean(t, res)
	return res
}

// withNeighbour starts the H5 session, owned by the Test function.
func (h *advHarness) withNeighbour(t *testing.T) {
	t.Helper()
	h.neighbour = newSession(t, h.config())
	h.responsive(t, "before")
}

// responsive is H5: the neighbour answers 1+1 within 5 s.
func (h *advHarness) responsive(t *testing.T, when string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	res, err := h.neighbour.Execute(ctx, "1+1")
	if err != nil || res.Value.Go() != 2.0 {
		var v any
		if res != nil {
			v = res.Value.Go()
		}
		t.Errorf("H5 %s: the neighbour session did not answer 1+1 within 5 s (took %s): %v, value %v", when, time.Since(start), err, v)
	}
}

// during runs code on s while checking H5 after probeAfter, then again
// once code has ended.
func (h *advHarness) during(t *testing.T, s *securer.Session, code string, probeAfter time.Duration) (*securer.Result, time.Duration, error) {
	t.Helper()
	return h.duringWith(t, s, code, probeAfter, securer.ExecOptions{})
}

// duringWith is during with options for the execution (a timeout that
// does not depend on the machine's speed, for one).
func (h *advHarness) duringWith(t *testing.T, s *securer.Session, code string, probeAfter time.Duration, opts securer.ExecOptions) (*securer.Result, time.Duration, error) {
	t.Helper()
	type out struct {
		res  *securer.Result
		err  error
		took time.Duration
	}
	done := make(chan out, 1)
	go func() {
		start := time.Now()
		res, err := s.ExecuteWith(context.Background(), code, opts)
		done <- out{res, err, time.Since(start)}
	}()
	time.Sleep(probeAfter)
	h.responsive(t, "during "+code)
	var o out
	select {
	case o = <-done:
	case <-time.After(90 * time.Second):
		t.Fatalf("%s did not end within 90 s", code)
	}
	if o.res == nil {
		t.Fatalf("%s: no result: %v", code, o.err)
	}
	h.clean(t, o.res)
	h.responsive(t, "after "+code)
	return o.res, o.took, o.err
}

// num is a numeric (double or integer) scalar result; NaN otherwise.
func num(v securer.Value) float64 {
	switch x := v.Go().(type) {
	case float64:
		return x
	case int:
		return float64(x)
	}
	return math.NaN()
}

// running: pid exists and is not a zombie (one look, unlike alive).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// strs is a character result as a Go slice (NA as "NA").
func strs(v securer.Value) []string {
	switch x := v.Go().(type) {
	case string:
		return []string{x}
	case []string:
		return x
	case []any:
		out := make([]string, len(x))
		for i, e := range x {
			if e == nil {
				out[i] = "NA"
			} else {
				out[i] = fmt.Sprint(e)
			}
		}
		return out
	}
	return nil
}

// cgroupFile is the path of a session leaf's file, named by its cgroup v1
// controller and file name; on a v2 host, the one unified directory and
// the v2 file that holds the same value.
func cgroupFile(ctl, id, name string) string {
	if cgroup.DetectMode() == cgroup.Unified {
		if v2, ok := cgroupV2Files[name]; ok {
			name = v2
		}
		return filepath.Join(cgroup.Root, cgroupParent, id, name)
	}
	return filepath.Join(cgroup.Root, ctl, cgroupParent, id, name)
}

// cgroupV2Files maps the v1 files tests read to their v2 equivalents.
var cgroupV2Files = map[string]string{
	"memory.limit_in_bytes": "memory.max",
	"memory.usage_in_bytes": "memory.current",
	"cpu.cfs_quota_us":      "cpu.max",
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return strings.TrimSpace(string(b))
}

// cgroupProcs lists the host pids in a session's cgroup.
func cgroupProcs(t *testing.T, id string) []int {
	t.Helper()
	var pids []int
	for _, f := range strings.Fields(readTrim(t, cgroupFile("pids", id, "cgroup.procs"))) {
		n, _ := strconv.Atoi(f)
		pids = append(pids, n)
	}
	return pids
}

// closeAndCheck closes s and asserts that none of pids survives and that
// nothing of the session is left (H4).
func closeAndCheck(t *testing.T, s *securer.Session, id string, pids []int) {
	t.Helper()
	s.Close()
	assertGone(t, id)
	for _, p := range pids {
		if alive(p) {
			t.Errorf("host pid %d of session %s outlived it", p, id)
		}
	}
}

// allowedEnv: the spec's environment plus what R's own start-up script
// (/usr/lib/R/bin/R, etc/Renviron of the image) sets. Nothing comes from
// the host.
var allowedEnv = map[string]bool{
	"PATH": true, "HOME": true, "TMPDIR": true, "LANG": true, "TZ": true, "R_LIBS_USER": true, "R_ENABLE_JIT": true,
	"EDITOR": true, "LD_LIBRARY_PATH": true, "LN_S": true, "MAKE": true, "PAGER": true, "PWD": true,
	"SED": true, "SHLVL": true, "TAR": true,
	"R_ARCH": true, "R_BROWSER": true, "R_BZIPCMD": true, "R_DEFAULT_PACKAGES": true, "R_DOC_DIR": true,
	"R_ENVIRON": true, "R_ENVIRON_USER": true, "R_GZIPCMD": true, "R_HOME": true, "R_INCLUDE_DIR": true,
	"R_LIBS_SITE": true, "R_PAPERSIZE": true, "R_PAPERSIZE_USER": true, "R_PDFVIEWER": true,
	"R_PLATFORM": true, "R_PRINTCMD": true, "R_PROFILE": true, "R_PROFILE_USER": true, "R_RD4PDF": true,
	"R_SESSION_TMPDIR": true, "R_SHARE_DIR": true, "R_STRIP_SHARED_LIB": true, "R_STRIP_STATIC_LIB": true,
	"R_SYSTEM_ABI": true, "R_TEXI2DVICMD": true, "R_UNZIPCMD": true, "R_ZIPCMD": true,
}

// rtPrelude gives R code the runtime's own bridge (as hostile code can
// get it): tool(name) calls any tool name, rawcall(frame) sends a raw
// tool_call frame (%s stands for the id) and returns the host's answer.
const rtPrelude = `
.rt <- get("rt", environment(body(add)[[1]]))
tool <- function(name) .rt$call_tool(name, .rt$q(name), character(), logical(), list())
rawcall <- function(frame) {
  .rt$next_id <- .rt$next_id + 1
  id <- .rt$next_id
  .rt$send(sprintf(frame, sprintf("%d", as.integer(id))))
  repeat {
    m <- .rt$receive()
    if (identical(m$type, "tool_result") && identical(as.numeric(m$id), as.numeric(id))) return(m)
  }
}
enc <- function(x) .rt$.securer_encode(x)
invisible(NULL)
`

// sendRaw makes R write frame (plus a newline) to the bridge and wait; the
// host must end the execution with a protocol error and restart R.
func (h *advHarness) sendRaw(t *testing.T, s *securer.Session, frame, wantDetail string) {
	t.Helper()
	h.ok(t, s, rtPrelude)
	code := ".rt$send(r\"---(" + frame + ")---\"); Sys.sleep(30)"
	start := time.Now()
	res, err := s.Execute(context.Background(), code)
	if res == nil {
		t.Fatalf("frame %s: no result: %v", frame, err)
	}
	h.clean(t, res)
	if res.Verdict != securer.VerdictProtocolError || !errors.Is(err, securer.ErrProtocol) {
		t.Errorf("frame %s: verdict %s err %v detail %q, want protocol_error", frame, res.Verdict, err, res.Detail)
	}
	if !strings.Contains(res.Detail, wantDetail) {
		t.Errorf("frame %s: detail %q does not mention %q", frame, res.Detail, wantDetail)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("frame %s: the protocol error took %s", frame, took)
	}
	// The session restarts on next use.
	if v := h.ok(t, s, "1+1").Value.Go(); v != 2.0 {
		t.Errorf("after frame %s: 1+1 = %v", frame, v)
	}
}

// ---------------------------------------------------------------------------

func TestAdversarialNetwork(t *testing.T) {
	h := newAdvHarness(t, false)
	s := newSession(t, h.config())
	wantErr := func(t *testing.T, code string, within time.Duration) *securer.Result {
		t.Helper()
		start := time.Now()
		res := h.run(t, s, code)
		if res.Verdict != securer.VerdictError {
			t.Errorf("%s: verdict %s (value %v), want an R error", code, res.Verdict, res.Value.Go())
		}
		if took := time.Since(start); took > within {
			t.Errorf("%s: took %s, want under %s", code, took, within)
		}
		return res
	}
	cases := []struct {
		id  string
		run func(t *testing.T)
	}{
		{"N01", func(t *testing.T) {
			wantErr(t, `readLines(url("http://example.com"))`, 3*time.Second)
		}},
		{"N02", func(t *testing.T) {
			// R does not show errno; ENETUNREACH shows as a failure at once
			// (not after the 2 s connect timeout) with no route in the box.
			res := wantErr(t, `socketConnection("1.1.1.1", 53, timeout = 2)`, 3*time.Second)
			if res.Accounting.Wall > time.Second {
				t.Errorf("connect took %s: not refused locally", res.Accounting.Wall)
			}
			res = h.ok(t, s, `length(readLines("/proc/net/route")) - 1`)
			if num(res.Value) != 0 {
				t.Errorf("the box has %v routes", res.Value.Go())
			}
		}},
		{"N03", func(t *testing.T) {
			res := h.ok(t, s, `f <- tempfile()
				r <- tryCatch(suppressWarnings(download.file("https://cloud.r-project.org", f, method = "libcurl", quiet = TRUE)),
					error = function(e) "error")
				c(r = as.character(r), bytes = as.character(if (file.exists(f)) file.size(f) else 0))`)
			got := strs(res.Value)
			if len(got) != 2 || got[0] != "error" || got[1] != "0" {
				t.Errorf("download.file: %q, want an error and no bytes written", got)
			}
		}},
		{"N05", func(t *testing.T) {
			// The box's lo is its own: nothing listens there, so the connect
			// is refused at once.
			res := wantErr(t, fmt.Sprintf(`socketConnection("127.0.0.1", %d, timeout = 2)`, h.port), 3*time.Second)
			if res.Accounting.Wall > time.Second {
				t.Errorf("connect took %s: not refused", res.Accounting.Wall)
			}
			wantErr(t, fmt.Sprintf(`readLines(url("http://127.0.0.1:%d"))`, h.port), 3*time.Second)
			if n := h.accepts.Load(); n != 0 {
				t.Errorf("host listener accepted %d connections", n)
			}
		}},
		{"N06", func(t *testing.T) {
			res := h.ok(t, s, `utils::nsl("example.com")`)
			if res.Value.Type() != rvalue.TypeNull {
				t.Errorf("nsl resolved: %#v", res.Value.Go())
			}
		}},
		{"N09", func(t *testing.T) {
			// There is no /sys in the box at all (by design), so
			// /sys/class/net lists nothing.
			res := h.ok(t, s, `length(list.files("/sys/class/net"))`)
			if num(res.Value) != 0 {
				t.Errorf("/sys/class/net lists %v entries", res.Value.Go())
			}
			res = h.ok(t, s, `l <- readLines("/proc/net/dev"); sub(":.*", "", trimws(l[-(1:2)]))`)
			if got := strs(res.Value); !slices.Equal(got, []string{"lo"}) {
				t.Errorf("interfaces: %q, want only lo", got)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.id, c.run)
	}
}

func TestAdversarialFilesystem(t *testing.T) {
	h := newAdvHarness(t, true)
	cfg := h.config()
	s := newSession(t, cfg)
	root := rootfs.RootfsPath(rootfsDir)
	cases := []struct {
		id  string
		run func(t *testing.T)
	}{
		{"F01", func(t *testing.T) {
			res := h.ok(t, s, `r <- tryCatch(readLines("/etc/shadow"), error = function(e) NULL, warning = function(w) NULL)
				if (is.null(r)) "unreadable" else paste(r, collapse = "\n")`)
			got := res.Value.Go()
			if got != "unreadable" {
				image, _ := os.ReadFile(filepath.Join(root, "etc/shadow"))
				if got != strings.TrimSuffix(string(image), "\n") {
					t.Errorf("/etc/shadow in the box is not the image's: %q", got)
				}
			}
			// The host's files are not there, under any path.
			res = h.ok(t, s, fmt.Sprintf(`p <- c(%q, "/proc/1/root%s", "/host%s")
				c(any(file.exists(p)), length(list.files("/root", all.files = TRUE, no.. = TRUE)) > 0)`,
				h.canaryPath, h.canaryPath, h.canaryPath))
			if v, ok := res.Value.Go().([]bool); !ok || v[0] || v[1] {
				t.Errorf("the host canary file or /root contents are visible: %v", res.Value.Go())
			}
		}},
		{"F03", func(t *testing.T) {
			res := h.ok(t, s, `as.numeric(list.files("/proc", pattern = "^[0-9]+$"))`)
			var pids []float64
			switch v := res.Value.Go().(type) {
			case float64:
				pids = []float64{v}
			case []float64:
				pids = v
			}
			if len(pids) == 0 || int64(len(pids)) > cfg.Limits.Pids || !slices.Contains(pids, 1) {
				t.Errorf("pids visible in the box: %v (pids.max %d)", pids, cfg.Limits.Pids)
			}
			res = h.ok(t, s, `x <- readBin("/proc/1/cmdline", "raw", 4096); x[x == 0] <- as.raw(32); rawToChar(x)`)
			cmd, _ := res.Value.Go().(string)
			// The box's init is tini, running the box's R as its child.
			if !strings.HasPrefix(cmd, "/usr/bin/tini -- /usr/lib/R/bin/exec/R ") || !strings.Contains(cmd, "/run/securer/runtime/boot.R") {
				t.Errorf("/proc/1/cmdline is %q, want tini running the box's R", cmd)
			}
		}},
		{"F04", func(t *testing.T) {
			// R is non-dumpable (its binary is execute-only), so the kernel
			// makes its own /proc/self/environ unreadable to it: refused or
			// allowlisted-only are both safe.
			for _, f := range []string{"/proc/1/environ", "/proc/self/environ"} {
				res := h.ok(t, s, fmt.Sprintf(`x <- tryCatch(suppressWarnings(readBin(%q, "raw", 1e5)), error = function(e) raw(0))
					x[x == 0] <- as.raw(10); rawToChar(x)`, f))
				text, _ := res.Value.Go().(string)
				for _, kv := range strings.Split(strings.TrimSpace(text), "\n") {
					if kv == "" {
						continue // unreadable: nothing leaked
					}
					name, _, _ := strings.Cut(kv, "=")
					if !allowedEnv[name] {
						t.Errorf("%s: %q is not an allowlisted variable", f, kv)
					}
				}
				if strings.Contains(text, "OPENAI") {
					t.Errorf("%s carries the host's OPENAI_API_KEY", f)
				}
			}
		}},
		{"F05", func(t *testing.T) {
			res := h.ok(t, s, `tg <- Sys.readlink(list.files("/proc/self/fd", full.names = TRUE))
				tg <- tg[!is.na(tg) & nzchar(tg)]
				paste(tg, grepl("^(pipe|socket|anon_inode):", tg) | file.exists(tg), dir.exists(tg), sep = "\t")`)
			checkFDTargets(t, "R", strs(res.Value), true)
		}},
		{"F08", func(t *testing.T) {
			// runc masks these by bind-mounting /dev/null over them; R's
			// text-mode file() refuses a device ("not a regular file"),
			// so read them raw. A file the kernel does not have counts as 0.
			res := h.ok(t, s, `sapply(c("/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/kcore"), function(f)
				if (!file.exists(f)) 0 else length(readBin(f, "raw", 1e6)))`)
			if v, ok := res.Value.Go().([]float64); !ok || slices.Max(v) != 0 {
				t.Errorf("masked /proc files have content: %v", res.Value.Go())
			}
			// The catalogue's own code: either 0 lines or refused, never content.
			res = h.run(t, s, `sapply(c("/proc/keys", "/proc/timer_list", "/proc/sched_debug"), function(f) length(readLines(f)))`)
			if res.Verdict == securer.VerdictOK {
				if v, ok := res.Value.Go().([]float64); !ok || slices.Max(v) != 0 {
					t.Errorf("masked /proc files have lines: %v", res.Value.Go())
				}
			} else if res.Verdict != securer.VerdictError {
				t.Errorf("verdict %s", res.Verdict)
			}
		}},
		{"F10", func(t *testing.T) {
			// runc's default /dev: the catalogue's list plus the fd/std*
			// symlinks and the mqueue mount, which give no device access.
			allowed := []string{"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "mqueue", "fd", "stdin", "stdout", "stderr"}
			res := h.ok(t, s, `list.files("/dev", all.files = TRUE, no.. = TRUE)`)
			got := strs(res.Value)
			for _, d := range got {
				if d == "core" {
					// libcontainer links /dev/core to /proc/kcore wherever
					// the kernel has one (stock distribution kernels): fine
					// while /proc/kcore is masked, which reading shows.
					res := h.ok(t, s, `c(Sys.readlink("/dev/core"), length(readBin("/dev/core", "raw", 64)))`)
					if v := strs(res.Value); !slices.Equal(v, []string{"/proc/kcore", "0"}) {
						t.Errorf("/dev/core: link and bytes read %q, want /proc/kcore masked (0 bytes)", v)
					}
					continue
				}
				if !slices.Contains(allowed, d) {
					t.Errorf("/dev/%s is present", d)
				}
			}
			if !slices.Contains(got, "null") || !slices.Contains(got, "urandom") {
				t.Errorf("/dev lacks null/urandom: %q", got)
			}
			res = h.ok(t, s, `any(file.exists(c("/dev/mem", "/dev/kmem", "/dev/kmsg", "/dev/port", "/dev/sda", "/dev/vda", "/dev/nvidia0", "/dev/nvidiactl", "/dev/fuse", "/dev/net/tun", "/dev/console")))`)
			if res.Value.Go() != false {
				t.Errorf("a dangerous device node exists in /dev")
			}
		}},
		{"F12", func(t *testing.T) {
			res := h.ok(t, s, `readLines("/proc/self/status")`)
			st := map[string]string{}
			for _, l := range strs(res.Value) {
				k, v, _ := strings.Cut(l, ":")
				st[k] = strings.TrimSpace(v)
			}
			for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
				if st[k] != "0000000000000000" {
					t.Errorf("%s = %q, want 0", k, st[k])
				}
			}
			if st["NoNewPrivs"] != "1" || st["Seccomp"] != "2" {
				t.Errorf("NoNewPrivs %q Seccomp %q", st["NoNewPrivs"], st["Seccomp"])
			}
			if uid := strings.Fields(st["Uid"]); len(uid) == 0 || slices.Contains(uid, "0") {
				t.Errorf("Uid %q includes root", st["Uid"])
			}
			// On the host, the box's uid maps to an unprivileged uid.
			hs := readTrim(t, fmt.Sprintf("/proc/%d/status", hostPidOf(s)))
			for _, l := range strings.Split(hs, "\n") {
				if strings.HasPrefix(l, "Uid:") {
					for _, f := range strings.Fields(l)[1:] {
						if n, _ := strconv.Atoi(f); n < 1000 {
							t.Errorf("R runs as host uid %d", n)
						}
					}
				}
			}
		}},
		{"F13", func(t *testing.T) {
			kinds := []string{"mnt", "pid", "net", "ipc", "uts", "cgroup", "user"}
			res := h.ok(t, s, `Sys.readlink(paste0("/proc/self/ns/", c("mnt", "pid", "net", "ipc", "uts", "cgroup", "user")))`)
			got := strs(res.Value)
			if len(got) != len(kinds) {
				t.Fatalf("ns links: %q", got)
			}
			for i, k := range kinds {
				host, err := os.Readlink("/proc/self/ns/" + k)
				if err != nil {
					t.Fatal(err)
				}
				if got[i] == host || !strings.HasPrefix(got[i], k+":[") {
					t.Errorf("%s namespace: box %q, host %q", k, got[i], host)
				}
			}
		}},
		{"W01", func(t *testing.T) {
			res := h.ok(t, s, `f <- function(expr) tryCatch({expr; "written"}, error = function(e) conditionMessage(e), warning = function(w) conditionMessage(w))
				c(f(writeLines("x", "/etc/evil")), f(file.create(file.path(R.home(), "evil"))), f(writeLines("x", "/usr/bin/evil")))`)
			for _, m := range strs(res.Value) {
				if !strings.Contains(m, "Read-only file system") {
					t.Errorf("write: %q, want EROFS", m)
				}
			}
			for _, p := range []string{"etc/evil", "usr/lib/R/evil", "usr/bin/evil"} {
				if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
					t.Errorf("%s was created in the rootfs", p)
				}
			}
		}},
		{"W02", func(t *testing.T) {
			// utils:: passes the runtime's install.packages (which refuses
			// at once): R's own must fail at the walls.
			res := h.run(t, s, `utils::install.packages("praise", lib = .libPaths()[1], repos = "https://cloud.r-project.org")`)
			if res.Verdict != securer.VerdictError {
				t.Errorf("install.packages into the site library: verdict %s, want an error", res.Verdict)
			}
			// Into a writable place: no network, so nothing to install.
			res = h.ok(t, s, `dir.create("/tmp/lib")
				suppressWarnings(tryCatch(utils::install.packages("praise", lib = "/tmp/lib", repos = "https://cloud.r-project.org"), error = function(e) NULL))
				c(length(list.files("/tmp/lib")), requireNamespace("praise", quietly = TRUE, lib.loc = c("/tmp/lib", .libPaths())))`)
			if got := fmt.Sprint(res.Value.Go()); got != "[0 0]" {
				t.Errorf("praise got installed: %s", got)
			}
			for _, lib := range []string{"usr/local/lib/R/site-library", "usr/lib/R/site-library", "usr/lib/R/library"} {
				if _, err := os.Stat(filepath.Join(root, lib, "praise")); err == nil {
					t.Errorf("praise appeared in %s", lib)
				}
			}
		}},
		{"W03", func(t *testing.T) {
			before := readTrim(t, "/proc/sys/kernel/core_pattern")
			res := h.ok(t, s, `tryCatch({writeLines("|/tmp/x", "/proc/sys/kernel/core_pattern"); "written"}, error = function(e) conditionMessage(e), warning = function(w) conditionMessage(w))`)
			if m, _ := res.Value.Go().(string); !strings.Contains(m, "Read-only file system") {
				t.Errorf("core_pattern write: %q, want EROFS", m)
			}
			if after := readTrim(t, "/proc/sys/kernel/core_pattern"); after != before {
				t.Errorf("host core_pattern changed: %q -> %q", before, after)
			}
		}},
		{"W05", func(t *testing.T) {
			id := s.ID()
			files := []string{cgroupFile("memory", id, "memory.limit_in_bytes"), cgroupFile("pids", id, "pids.max"), cgroupFile("cpu", id, "cpu.cfs_quota_us"), cgroupFile("pids", id, "cgroup.procs")}
			before := map[string]string{}
			for _, f := range files {
				before[f] = readTrim(t, f)
			}
			res := h.ok(t, s, `f <- function(expr) tryCatch({expr; "written"}, error = function(e) conditionMessage(e), warning = function(w) conditionMessage(w))
				c(f(writeLines("max", "/sys/fs/cgroup/memory.max")), f(writeLines("1", "/sys/fs/cgroup/cgroup.procs")),
				  f(writeLines("-1", "/sys/fs/cgroup/memory/memory.limit_in_bytes")), f(writeLines("max", "/sys/fs/cgroup/pids/pids.max")))`)
			for _, m := range strs(res.Value) {
				if !strings.Contains(m, "No such file or directory") && !strings.Contains(m, "Read-only file system") {
					t.Errorf("cgroup write: %q, want ENOENT/EROFS", m)
				}
			}
			for _, f := range files {
				if after := readTrim(t, f); after != before[f] {
					t.Errorf("host %s changed: %q -> %q", f, before[f], after)
				}
			}
		}},
		{"W07", func(t *testing.T) {
			// The host unlinks the socket once R has connected, so inside
			// the box the path is gone and its directory is a read-only
			// mount: nothing to remove, replace or loosen.
			sockDir := filepath.Join(stateDir, "sessions", s.ID(), "sock")
			snapshot := func() string {
				st, err := os.Lstat(sockDir)
				if err != nil {
					return err.Error()
				}
				ents, _ := os.ReadDir(sockDir)
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				return fmt.Sprint(st.Mode(), st.Sys().(*syscall.Stat_t).Ino, names)
			}
			before := snapshot()
			res := h.ok(t, s, `SOCK <- "/run/securer/sock/bridge.sock"
				f <- function(expr) tryCatch(expr, error = function(e) conditionMessage(e), warning = function(w) conditionMessage(w))
				c(f(file.remove(SOCK)), f(file.rename(SOCK, "/tmp/s")), as.character(f(Sys.chmod(SOCK, "777"))),
				  f(file.symlink("/etc/passwd", SOCK)), as.character(unlink("/run/securer/sock", recursive = TRUE, force = TRUE)))`)
			got := strs(res.Value)
			if len(got) != 5 || !strings.Contains(got[0], "Read-only") || !strings.Contains(got[1], "cross-device") && !strings.Contains(got[1], "Read-only") ||
				got[2] != "FALSE" || !strings.Contains(got[3], "Read-only") || got[4] != "1" {
				t.Errorf("socket tampering: %q, want EROFS/EXDEV/failure", got)
			}
			if after := snapshot(); after != before {
				t.Errorf("host socket dir changed: %s -> %s", before, after)
			}
			if v := h.ok(t, s, "add(1, 1)").Value.Go(); v != 2.0 {
				t.Errorf("the socket no longer works: add(1, 1) = %v", v)
			}
		}},
		{"W08", func(t *testing.T) {
			res := h.ok(t, s, `writeLines("ok", "/tmp/ok"); readLines("/tmp/ok")`)
			if res.Value.Go() != "ok" {
				t.Errorf("/tmp not writable: %#v", res.Value.Go())
			}
			res = h.ok(t, s, `grep(" /tmp ", readLines("/proc/self/mountinfo"), value = TRUE)`)
			line, _ := res.Value.Go().(string)
			fields := strings.Fields(line)
			if len(fields) < 6 || !strings.Contains(line, " - tmpfs ") {
				t.Fatalf("/tmp mount: %q", line)
			}
			for _, opt := range []string{"nosuid", "nodev", "noexec"} {
				if !slices.Contains(strings.Split(fields[5], ","), opt) {
					t.Errorf("/tmp mount lacks %s: %q", opt, line)
				}
			}
			for _, opt := range []string{"size=", "nr_inodes="} {
				if !strings.Contains(line, opt) {
					t.Errorf("/tmp mount lacks %s: %q", opt, line)
				}
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.id, c.run)
	}
}

// checkFDTargets: every fd target is a pipe, socket, anonymous inode or a
// path that exists inside the box (a leaked host fd reads as a host path
// that does not resolve inside), names no host state, and at most one is a
// socket (the box's own bridge).
func checkFDTargets(t *testing.T, who string, lines []string, noDirs bool) {
	t.Helper()
	if len(lines) == 0 {
		t.Fatalf("%s: no fds listed", who)
	}
	sockets := 0
	for _, l := range lines {
		f := strings.Split(l, "\t")
		target := f[0]
		if len(f) > 1 && f[1] != "TRUE" {
			t.Errorf("%s: fd points outside the box: %q", who, target)
		}
		if noDirs && len(f) > 2 && f[2] == "TRUE" {
			t.Errorf("%s: holds a directory fd: %q", who, target)
		}
		for _, host := range []string{stateDir, rootfsDir, "securer-it-", "/root"} {
			if strings.Contains(target, host) {
				t.Errorf("%s: fd names host path %q", who, target)
			}
		}
		if strings.HasPrefix(target, "socket:") {
			sockets++
		}
	}
	if sockets > 1 {
		t.Errorf("%s: %d sockets open, want only the bridge: %q", who, sockets, lines)
	}
}

func TestAdversarialProcess(t *testing.T) {
	h := newAdvHarness(t, false)
	cfg := h.config()
	s := newSession(t, cfg)
	cases := []struct {
		id  string
		run func(t *testing.T)
	}{
		{"P01", func(t *testing.T) {
			if v := num(h.ok(t, s, `system("id; cat /proc/self/status")`).Value); v != 0 {
				t.Errorf("system() status %v", v)
			}
			res := h.ok(t, s, `system("id -u; grep -E '^(CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status", intern = TRUE)`)
			got := strs(res.Value)
			want := []string{"1000", "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"}
			if !slices.Equal(got, want) {
				t.Errorf("shell child: %q, want %q", got, want)
			}
		}},
		{"P03", func(t *testing.T) {
			host, _ := os.Hostname()
			res := h.ok(t, s, `readLines(pipe("hostname"))`)
			if got := res.Value.Go(); got == host || got != "sandbox" {
				t.Errorf("hostname in the box %q (host %q)", got, host)
			}
		}},
		{"P05", func(t *testing.T) {
			// Background processes do not outlive the execution that
			// started them: only R is left in the cgroup afterwards.
			s := newSession(t, cfg)
			id := s.ID()
			res := h.ok(t, s, `p <- parallel::mcparallel(repeat Sys.sleep(1)); p$pid`)
			child := int(number(res.Value))
			// Left: tini (the box's init) and R.
			if pids := cgroupProcs(t, id); len(pids) != 2 || slices.Contains(pids, child) {
				t.Errorf("after the execute the cgroup holds %v (mcparallel child %d), want only init and R", pids, child)
			}
			h.ok(t, s, "1+1")
			closeAndCheck(t, s, id, cgroupProcs(t, id))
		}},
		{"P06", func(t *testing.T) {
			s := newSession(t, cfg)
			id := s.ID()
			// Counts the box's live processes named sleep (the image has no
			// pgrep). A killed one may linger a moment as a zombie until
			// tini reaps it: dead, so not counted.
			const sleeps = `sum(vapply(list.files("/proc", pattern = "^[0-9]+$", full.names = TRUE), function(d) {
				st <- tryCatch(readLines(file.path(d, "status"), n = 3L), error = function(e) character())
				any(st == "Name:\tsleep") && !any(startsWith(st, "State:\tZ"))
			}, NA))`
			// Waits for the daemon to show, up to 3 s of the 4 s timeout (an
			// emulated guest under load took more than 0.3 s to start it).
			res := h.ok(t, s, `system("setsid sh -c 'sleep 1d' &"); n <- 0; for (i in 1:30) { n <- `+sleeps+`; if (n >= 1) break; Sys.sleep(0.1) }; n`)
			if number(res.Value) != 1 {
				t.Fatalf("the daemonised sleep did not start (%v running)", res.Value.Go())
			}
			if pids := cgroupProcs(t, id); len(pids) != 2 {
				t.Errorf("after the execute the cgroup holds %v, want only init and R", pids)
			}
			if res = h.ok(t, s, sleeps); number(res.Value) != 0 {
				t.Errorf("the daemon is visible in the next execute")
			}
			closeAndCheck(t, s, id, cgroupProcs(t, id))
		}},
	}
	for _, c := range cases {
		t.Run(c.id, c.run)
	}
}

// heapPeak runs f while sampling the Go heap; it returns the peak growth
// over the heap before f.
func heapPeak(f func()) uint64 {
	runtime.GC()
	return peakGrowth(f, heapInuse, 5*time.Millisecond)
}

func heapInuse() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// peakGrowth runs f while sampling sample every interval; it returns the
// peak growth over the value before f.
func peakGrowth(f func(), sample func() uint64, every time.Duration) uint64 {
	base := sample()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			if v := sample(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
		}
	})
	f()
	close(stop)
	wg.Wait()
	if peak.Load() < base {
		return 0
	}
	return peak.Load() - base
}

func vmRSS() uint64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// rssPeak runs f while sampling the process's RSS; it returns the peak
// growth over the RSS before f.
func rssPeak(f func()) uint64 { return peakGrowth(f, vmRSS, 2*time.Millisecond) }

func TestAdversarialResources(t *testing.T) {
	h := newAdvHarness(t, false)
	h.withNeighbour(t)
	cases := []struct {
		id  string
		run func(t *testing.T)
	}{
		{"R01", func(t *testing.T) {
			cfg := h.config()
			cfg.Limits.Pids = 16
			s := newSession(t, cfg)
			id := s.ID()
			res, _, _ := h.during(t, s, `repeat parallel::mcparallel(repeat NULL)`, 1500*time.Millisecond)
			// Forking stops at pids.max with EAGAIN, long before the wall
			// timeout would end it.
			if res.Verdict != securer.VerdictTimeout && (res.Verdict != securer.VerdictError || !strings.Contains(res.Error.Message, "unable to fork")) {
				t.Errorf("verdict %s error %v, want EAGAIN from fork or a timeout", res.Verdict, res.Error)
			}
			pids := cgroupProcs(t, id)
			if int64(len(pids)) > cfg.Limits.Pids {
				t.Errorf("%d processes in a cgroup with pids.max %d", len(pids), cfg.Limits.Pids)
			}
			// The spinning children are still there: H5 with them running.
			h.responsive(t, "with the fork bomb's children spinning")
			closeAndCheck(t, s, id, pids)
		}},
		{"R03", func(t *testing.T) {
			cfg := h.config()
			s := newSession(t, cfg)
			res, _, err := h.during(t, s, oomCode, 500*time.Millisecond)
			if res.Verdict != securer.VerdictOutOfMemory || !errors.Is(err, securer.ErrOutOfMemory) || res.Accounting.OOMKills < 1 {
				t.Errorf("verdict %s err %v oom_kills %d, want oom", res.Verdict, err, res.Accounting.OOMKills)
			}
			if v := h.ok(t, s, "1+1").Value.Go(); v != 2.0 {
				t.Errorf("after OOM 1+1 = %v", v)
			}
		}},
		{"R06", func(t *testing.T) {
			cfg := h.config()
			cfg.Timeout = 3 * time.Second
			cfg.Limits.CPUs = 0.5
			s := newSession(t, cfg)
			h.ok(t, s, "keep <- 1")
			res, took, err := h.during(t, s, `while (TRUE) {}`, 1500*time.Millisecond)
			if res.Verdict != securer.VerdictTimeout || !errors.Is(err, securer.ErrTimeout) {
				t.Errorf("verdict %s err %v", res.Verdict, err)
			}
			// The engine's bound: R answers the interrupt, or is killed at
			// the grace. On a quiet host it ends within 0.5 s of the
			// timeout; a loaded one may take R longer to answer.
			t.Logf("ended %s after the %s timeout", took-cfg.Timeout, cfg.Timeout)
			if took < cfg.Timeout || took > cfg.Timeout+cfg.InterruptGrace+500*time.Millisecond {
				t.Errorf("ended after %s, want %s + the %s grace + 0.5 s", took, cfg.Timeout, cfg.InterruptGrace)
			}
			cpu := res.Accounting.CPUUser + res.Accounting.CPUSystem
			if limit := time.Duration(float64(res.Accounting.Wall)*cfg.Limits.CPUs*1.2) + 100*time.Millisecond; cpu > limit {
				t.Errorf("used %s CPU in %s wall under a %.1f CPU limit", cpu, res.Accounting.Wall, cfg.Limits.CPUs)
			}
			h.ok(t, s, "stopifnot(keep == 1)")
		}},
		{"R07", func(t *testing.T) {
			cfg := h.config()
			cfg.Timeout = 2 * time.Second
			s := newSession(t, cfg)
			start := time.Now()
			res := h.run(t, s, `Sys.sleep(1e6)`)
			took := time.Since(start)
			if res.Verdict != securer.VerdictTimeout {
				t.Errorf("verdict %s", res.Verdict)
			}
			// The engine's bound: R answers the interrupt, or is killed at
			// the grace. On a quiet host it ends within 0.5 s of the
			// timeout; a loaded one may take R longer to answer.
			t.Logf("ended %s after the %s timeout", took-cfg.Timeout, cfg.Timeout)
			if took < cfg.Timeout || took > cfg.Timeout+cfg.InterruptGrace+500*time.Millisecond {
				t.Errorf("ended after %s, want %s + the %s grace + 0.5 s", took, cfg.Timeout, cfg.InterruptGrace)
			}
		}},
		{"R08", func(t *testing.T) {
			cfg := h.config()
			cfg.Timeout = 3 * time.Second
			s := newSession(t, cfg)
			id := s.ID()
			usage := func() int64 {
				n, _ := strconv.ParseInt(readTrim(t, cgroupFile("memory", id, "memory.usage_in_bytes")), 10, 64)
				return n
			}
			before := usage()
			// Not about the clock: a loaded host took over the session's 3 s.
			res, err := s.ExecuteWith(context.Background(), `con <- file("/tmp/big", "wb"); for (i in 1:40) writeBin(raw(2^20), con); try(close(con)); file.size("/tmp/big")`,
				securer.ExecOptions{Timeout: 60 * time.Second})
			if res == nil || res.Verdict != securer.VerdictOK {
				t.Fatalf("filling /tmp: %+v (%v)", res, err)
			}
			h.clean(t, res)
			size, _ := res.Value.Go().(float64)
			if size > float64(cfg.Limits.TmpBytes) || size < float64(cfg.Limits.TmpBytes)/2 {
				t.Errorf("/tmp/big is %v bytes with a %d-byte /tmp", size, cfg.Limits.TmpBytes)
			}
			if grew := usage() - before; grew < int64(size)*3/4 {
				t.Errorf("the session's memory grew by %d bytes for %v bytes in /tmp: tmpfs not charged", grew, size)
			}
			// The catalogue's endless loop: ends at the wall timeout, the
			// file never grows past the tmpfs.
			pid := hostPidOf(s)
			var maxSize atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					if st, err := os.Stat(fmt.Sprintf("/proc/%d/root/tmp/big2", pid)); err == nil && st.Size() > maxSize.Load() {
						maxSize.Store(st.Size())
					}
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			})
			start := time.Now()
			res = h.run(t, s, `unlink("/tmp/big"); con <- file("/tmp/big2", "wb"); repeat writeBin(raw(2^20), con)`)
			close(stop)
			wg.Wait()
			if res.Verdict != securer.VerdictTimeout {
				t.Errorf("verdict %s", res.Verdict)
			}
			if took := time.Since(start); took > cfg.Timeout+cfg.InterruptGrace+time.Second {
				t.Errorf("took %s", took)
			}
			if n := maxSize.Load(); n > cfg.Limits.TmpBytes || n == 0 {
				t.Errorf("/tmp/big2 reached %d bytes (tmpfs %d)", n, cfg.Limits.TmpBytes)
			}
			h.ok(t, s, "1+1")
		}},
		{"R10", func(t *testing.T) {
			cfg := h.config()
			cfg.Timeout = 3 * time.Second
			cfg.Output.KeepBytes = 64 << 10
			s := newSession(t, cfg)
			var res *securer.Result
			grew := heapPeak(func() {
				res, _, _ = h.during(t, s, `repeat cat(strrep("x", 1e6))`, 1500*time.Millisecond)
			})
			if res.Verdict != securer.VerdictTimeout {
				t.Errorf("verdict %s", res.Verdict)
			}
			if res.Accounting.StdoutBytes < 10<<20 || res.StdoutElided <= 0 {
				t.Errorf("stdout %d bytes, elided %d: the flood did not happen", res.Accounting.StdoutBytes, res.StdoutElided)
			}
			marker := fmt.Sprintf("\n[... %d bytes elided ...]\n", res.StdoutElided)
			if !strings.Contains(res.Stdout, marker) || len(res.Stdout) > cfg.Output.KeepBytes+len(marker) {
				t.Errorf("kept %d bytes of stdout (cap %d), marker present: %v", len(res.Stdout), cfg.Output.KeepBytes, strings.Contains(res.Stdout, marker))
			}
			if grew > 32<<20 {
				t.Errorf("the host heap grew by %d bytes during the flood", grew)
			}
		}},
		{"R13", func(t *testing.T) {
			cfg := h.config()
			s := newSession(t, cfg)
			if v := h.ok(t, s, `grep("core file", readLines("/proc/self/limits"), value = TRUE)`).Value.Go(); !strings.Contains(fmt.Sprint(v), " 0 ") {
				t.Errorf("RLIMIT_CORE: %v", v)
			}
			for _, code := range []string{`f <- function() f(); f()`, `eval(parse(text = strrep("(", 1e6)))`} {
				res := h.run(t, s, code)
				switch res.Verdict {
				case securer.VerdictError:
				case securer.VerdictKilled:
					if !strings.Contains(res.Exit, "segmentation") {
						t.Errorf("%s: exit %q", code, res.Exit)
					}
				default:
					t.Errorf("%s: verdict %s, want an R error or SIGSEGV", code, res.Verdict)
				}
			}
			if v := h.ok(t, s, `length(list.files(c("/tmp", "/"), pattern = "^core", all.files = TRUE))`).Value; num(v) != 0 {
				t.Errorf("core files: %v", v)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.id, c.run)
	}
}

func TestAdversarialToolChannel(t *testing.T) {
	h := newAdvHarness(t, false)
	h.withNeighbour(t)
	cfg := h.config()
	s := newSession(t, cfg)
	// unchanged asserts that the add handler did not run during f.
	unchanged := func(t *testing.T, f func()) {
		t.Helper()
		before := h.calls.Load()
		f()
		if n := h.calls.Load() - before; n != 0 {
			t.Errorf("the add handler ran %d times for refused calls", n)
		}
	}
	cases := []struct {
		id  string
		run func(t *testing.T)
	}{
		{"T01", func(t *testing.T) {
			cfg := h.config()
			cfg.Limits.MemoryBytes = 1 << 30
			cfg.Timeout = 30 * time.Second
			s := newSession(t, cfg)
			h.ok(t, s, "keep <- 'state'")
			// Honest code: R itself refuses to send an over-size call, with
			// an R error, and the session keeps its state.
			res, err := s.Execute(context.Background(), `echo(strrep("a", 1e8))`)
			h.clean(t, res)
			if res.Verdict != securer.VerdictError || !errors.Is(err, securer.ErrRError) || !strings.Contains(res.Error.Message, "too large to send") {
				t.Errorf("verdict %s err %v, want an R error saying the arguments are too large", res.Verdict, err)
			}
			if v := h.ok(t, s, "keep").Value.Go(); v != "state" {
				t.Errorf("state lost after a refused over-size call: %v", v)
			}
			// Hostile code writes the 100 MB frame itself: the host refuses
			// it at the cap, before buffering it whole.
			h.ok(t, s, rtPrelude)
			var grew uint64
			rss := rssPeak(func() {
				grew = heapPeak(func() {
					res, err = s.Execute(context.Background(), `.rt$send(paste0('{"type":"tool_call","id":1,"tool":"echo","args":{"x":{"type":"character","value":["', strrep("a", 1e8), '"]}}}')); Sys.sleep(30)`)
				})
			})
			h.clean(t, res)
			if res.Verdict != securer.VerdictProtocolError || !errors.Is(err, securer.ErrProtocol) || !strings.Contains(res.Detail, "too large") {
				t.Errorf("verdict %s err %v detail %q, want a protocol error for the frame size", res.Verdict, err, res.Detail)
			}
			// The catalogue bounds the RSS delta by 2 x cap. RSS also moves
			// with unrelated pages (stacks, GC metadata, scavenging), so the
			// bound is asserted on the Go heap, where frame bytes live, and
			// the RSS is logged.
			limit := uint64(2 * bridge.DefaultMaxFrame)
			t.Logf("100 MB frame, %d-byte cap: host heap +%d bytes, RSS +%d bytes", bridge.DefaultMaxFrame, grew, rss)
			if grew >= limit {
				t.Errorf("the executor's heap grew by %d bytes (RSS by %d) reading a 100 MB frame: over 2 x the %d-byte cap", grew, rss, limit/2)
			}
			if strings.Contains(h.toolArgs.String(), "aaaaaaaa") {
				t.Errorf("echo ran with the over-size argument")
			}
			h.ok(t, s, "1+1")
		}},
		{"T04", func(t *testing.T) {
			for _, f := range []string{`[1,2]`, `"x"`, `null`, `1e999`, `{}`, ``, `{"type":"tool_call","id":-1,"tool":"add","args":{}}`,
				`{"type":"tool_call","id":1,"tool":"add","args":{},"extra":1}`, `{"type":["tool_call"]}`} {
				unchanged(t, func() { h.sendRaw(t, s, f, "") })
			}
		}},
		{"T06", func(t *testing.T) {
			for _, f := range []string{
				`{"type":"tool_call","id":1,"tool":"add","tool":"shell","args":{}}`,
				`{"type":"tool_call","type":"result","id":1,"tool":"add","args":{}}`,
				`{"type":"tool_call","id":1,"tool":"add","args":{"a":{"type":"double","value":[1]},"a":{"type":"double","value":[2]},"b":{"type":"double","value":[3]}}}`,
			} {
				unchanged(t, func() { h.sendRaw(t, s, f, "duplicate") })
			}
		}},
		{"T07", func(t *testing.T) {
			unchanged(t, func() {
				h.ok(t, s, rtPrelude)
				res := h.ok(t, s, `names <- c("system", "../../bin/sh", "ADD", "\u0430dd", "add ", " add", "add\t", "", "securer:tools", "Add")
					vapply(names, function(n) tryCatch({tool(n); "ACCEPTED"}, error = function(e) conditionMessage(e)), "", USE.NAMES = FALSE)`)
				for _, m := range strs(res.Value) {
					if !strings.Contains(m, "unknown tool") {
						t.Errorf("tool call by a wrong name: %q, want unknown tool", m)
					}
				}
				res = h.ok(t, s, `vapply(c(r"({"type":"tool_call","id":%s,"tool":"add\u0000x","args":{}})",
					r"({"type":"tool_call","id":%s,"tool":"add\u0000","args":{}})",
					r"({"type":"tool_call","id":%s,"tool":"\u0430dd","args":{}})"), function(f) rawcall(f)$error, "")`)
				for _, m := range strs(res.Value) {
					if !strings.Contains(m, "unknown tool") {
						t.Errorf("raw tool call by a wrong name: %q, want unknown tool", m)
					}
				}
			})
		}},
		{"T08", func(t *testing.T) {
			unchanged(t, func() {
				h.ok(t, s, rtPrelude)
				res := h.ok(t, s, `f <- function(expr) tryCatch({expr; "ACCEPTED"}, error = function(e) conditionMessage(e))
					c(f(add(a = "1", b = list(1, 2))), f(add(a = NA, b = 1)), f(add(1)), f(add(1, 2, evil = 3)),
					  rawcall(sprintf(r"({"type":"tool_call","id":%%s,"tool":"add","args":{"a":%s,"b":%s,"evil":%s}})", enc(1), enc(1), enc(1)))$error,
					  rawcall(sprintf(r"({"type":"tool_call","id":%%s,"tool":"add","args":{"a":%s,"b":%s}})", enc("1"), enc(1)))$error,
					  rawcall(sprintf(r"({"type":"tool_call","id":%%s,"tool":"add","args":{"a":%s}})", enc(1)))$error)`)
				want := []string{`argument 'a' must be numeric`, `argument 'a' must be numeric`, `argument "b" is missing`, `unused argument`,
					`has no argument "evil"`, `argument 'a' must be numeric`, `argument "b" is missing`}
				got := strs(res.Value)
				if len(got) != len(want) {
					t.Fatalf("got %q", got)
				}
				for i := range want {
					if !strings.Contains(got[i], want[i]) {
						t.Errorf("call %d: %q, want %q", i+1, got[i], want[i])
					}
				}
			})
		}},
		{"T10", func(t *testing.T) {
			// 2000 calls finish, the host stays responsive, and an endless
			// loop of calls is stopped at MaxToolCalls with the session
			// still answering.
			before := h.calls.Load()
			res, took, _ := h.duringWith(t, s, `for (i in 1:2000) add(1, 1); "done"`, 300*time.Millisecond, securer.ExecOptions{Timeout: 80 * time.Second})
			if res.Verdict != securer.VerdictOK || h.calls.Load()-before != 2000 {
				t.Errorf("2000 calls: verdict %s, %d handler runs, took %s", res.Verdict, h.calls.Load()-before, took)
			}
			var ru0, ru1 syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			// The limit must end it, not the clock: a loaded machine makes
			// fewer than 10,000 calls in the session's 4 s.
			res, took, _ = h.duringWith(t, s, `repeat add(1, 1)`, 1500*time.Millisecond, securer.ExecOptions{Timeout: 80 * time.Second})
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			// Stopped at MaxToolCalls (default 10,000) before the timeout.
			if res.Verdict != securer.VerdictToolCallLimit || res.Accounting.ToolCalls != securer.DefaultMaxToolCalls {
				t.Errorf("repeat add(1, 1): verdict %s after %d calls", res.Verdict, res.Accounting.ToolCalls)
			}
			hostCPU := time.Duration(ru1.Utime.Nano() - ru0.Utime.Nano() + ru1.Stime.Nano() - ru0.Stime.Nano())
			t.Logf("repeat add(1, 1): %d calls in %s, executor CPU %s", res.Accounting.ToolCalls, took, hostCPU)
			if hostCPU > took {
				t.Errorf("the executor used %s CPU in %s serving tool calls", hostCPU, took)
			}
			if v := h.ok(t, s, "add(2, 3)").Value.Go(); v != 5.0 {
				t.Errorf("after the call flood add(2, 3) = %v", v)
			}
		}},
		{"T11", func(t *testing.T) {
			res := h.ok(t, s, `res <- parallel::mclapply(1:8, function(i) add(i, 1), mc.cores = 8)
				vapply(seq_along(res), function(i) { r <- res[[i]]
					if (inherits(r, "try-error")) paste("error:", attr(r, "condition")$message)
					else if (identical(r, i + 1)) "own" else paste("WRONG", paste(format(r), collapse = " ")) }, "")`)
			for i, m := range strs(res.Value) {
				if m != "own" && !(strings.HasPrefix(m, "error:") && strings.Contains(m, "forked process")) {
					t.Errorf("forked caller %d got %q", i+1, m)
				}
			}
			// Children bypassing the runtime's check and writing frames on
			// the shared socket themselves: each gets its own answer, none,
			// or the session fails with a protocol error, never another's.
			h.ok(t, s, rtPrelude)
			res = h.run(t, s, `res <- parallel::mclapply(1:8, function(i) {
					id <- 1000 + i
					.rt$send(sprintf(r"({"type":"tool_call","id":%d,"tool":"add","args":{"a":%s,"b":%s}})", as.integer(id), enc(as.numeric(i)), enc(1)))
					deadline <- Sys.time() + 1.5
					while (Sys.time() < deadline) {
						if (processx::poll(list(.rt$con), 100)[[1]] != "ready") next
						for (l in processx::conn_read_lines(.rt$con)) {
							m <- tryCatch(jsonlite::fromJSON(l, simplifyVector = FALSE), error = function(e) NULL)
							if (identical(m$type, "tool_result") && identical(as.numeric(m$id), id)) {
								if (!is.null(m$error)) return(paste("error:", m$error))
								v <- .rt$.securer_decode(m$value)
								return(if (identical(v, i + 1)) "own" else paste("WRONG", format(v)))
							}
						}
					}
					"noanswer"
				}, mc.cores = 8)
				# A forked process that writes to the bridge is ended (only the
				# R running the execution may talk to the host): mclapply
				# then has no result for it.
				vapply(res, function(r) if (is.null(r) || inherits(r, "try-error")) "child ended" else r, "")`)
			switch res.Verdict {
			case securer.VerdictOK:
				for i, m := range strs(res.Value) {
					if strings.HasPrefix(m, "WRONG") {
						t.Errorf("raw forked caller %d got another's answer: %q", i+1, m)
					}
				}
			case securer.VerdictProtocolError, securer.VerdictTimeout:
			default:
				t.Errorf("raw forked callers: verdict %s error %v", res.Verdict, res.Error)
			}
			if v := h.ok(t, s, "add(2, 3)").Value.Go(); v != 5.0 {
				t.Errorf("after forked callers add(2, 3) = %v", v)
			}
		}},
		{"T13", func(t *testing.T) {
			for _, f := range []string{
				`{"type":"tool_result","id":1,"value":{"type":"double","value":[1]}}`,
				`{"type":"auth_ok"}`,
				`{"type":"init","tools":[{"name":"shell","args":[]}]}`,
				`{"type":"execute","id":1,"code":"system('id')"}`,
				`{"type":"hello","protocol":1,"pid":1,"r_version":"9.9"}`,
				`{"type":"result","id":424242,"value":{"type":"NULL"},"visible":false,"printed":"","warnings":[],"messages":[],"error":null,"interrupted":false}`,
			} {
				unchanged(t, func() { h.sendRaw(t, s, f, "") })
			}
			// Host state unchanged: the tool set is still exactly the declared one.
			h.ok(t, s, rtPrelude)
			res := h.ok(t, s, `c(rawcall(r"({"type":"tool_call","id":%s,"tool":"shell","args":{}})")$error, as.character(add(2, 3)))`)
			if got := strs(res.Value); len(got) != 2 || !strings.Contains(got[0], "unknown tool") || got[1] != "5" {
				t.Errorf("after forged frames: %q", got)
			}
		}},
		{"T15", func(t *testing.T) {
			res := h.run(t, s, `echo(rawToChar(as.raw(c(0x66, 0xff))))`)
			if res.Verdict != securer.VerdictError && res.Verdict != securer.VerdictProtocolError {
				t.Errorf("invalid UTF-8 through echo: verdict %s value %q", res.Verdict, valueText(res.Value))
			}
			if strings.Contains(h.toolArgs.String(), "f\xff") {
				t.Errorf("echo received invalid UTF-8")
			}
			// Past R's own check, straight onto the socket: the host's
			// strict decoder refuses it.
			h.ok(t, s, rtPrelude)
			res, err := s.Execute(context.Background(), `f <- sprintf(r"({"type":"tool_call","id":99,"tool":"echo","args":{"x":%s}})", enc("fZ"))
				b <- charToRaw(paste0(f, "\n")); b[b == charToRaw("Z")] <- as.raw(0xff)
				processx::conn_write(.rt$con, b); Sys.sleep(30)`)
			h.clean(t, res)
			if res.Verdict != securer.VerdictProtocolError || !errors.Is(err, securer.ErrProtocol) {
				t.Errorf("raw invalid UTF-8 frame: verdict %s detail %q", res.Verdict, res.Detail)
			}
			if strings.Contains(h.toolArgs.String(), "f\xff") {
				t.Errorf("echo received invalid UTF-8")
			}
			// Log forging through a tool name.
			h.ok(t, s, rtPrelude)
			res = h.ok(t, s, `tryCatch(tool("a\nFAKE LOG LINE level=ERROR msg=forged"), error = function(e) conditionMessage(e))`)
			if m, _ := res.Value.Go().(string); !strings.Contains(m, "unknown tool") {
				t.Errorf("tool with a newline in its name: %q", m)
			}
			log := h.log.String()
			if !strings.Contains(log, "tool call refused") {
				t.Errorf("the refusal was not logged: %s", log)
			}
			for _, l := range strings.Split(log, "\n") {
				if strings.HasPrefix(l, "FAKE LOG LINE") {
					t.Errorf("forged log line: %q", l)
				}
			}
		}},
		{"T03", func(t *testing.T) {
			// A frame cut short, then the newline: a decode error.
			unchanged(t, func() { h.sendRaw(t, s, `{"type":"tool_call","tool":`, "") })
			// Cut short with no newline, then silence: the frame deadline.
			cfg := h.config()
			cfg.FrameTimeout = time.Second
			s := newSession(t, cfg)
			h.ok(t, s, rtPrelude)
			start := time.Now()
			res, err := s.Execute(context.Background(), `.rt$write_raw(charToRaw('{"type":"tool_call","tool":')); Sys.sleep(30)`)
			h.clean(t, res)
			if res.Verdict != securer.VerdictProtocolError || !errors.Is(err, securer.ErrProtocol) || !strings.Contains(res.Detail, "longer than") {
				t.Errorf("unfinished frame: verdict %s detail %q, want a protocol error for the frame deadline", res.Verdict, res.Detail)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("unfinished frame ended after %s, frame timeout 1 s", took)
			}
			if v := h.ok(t, s, "1+1").Value.Go(); v != 2.0 {
				t.Errorf("after the unfinished frame: %v", v)
			}
		}},
		{"T18", func(t *testing.T) {
			// One byte a second of an otherwise valid call: the host ends
			// the session at the per-frame deadline, not when the frame
			// would have finished (about 100 s later).
			cfg := h.config()
			cfg.FrameTimeout = 2 * time.Second
			cfg.Timeout = 60 * time.Second
			s := newSession(t, cfg)
			h.ok(t, s, rtPrelude)
			unchanged(t, func() {
				res, took, err := h.during(t, s, `f <- r"({"type":"tool_call","id":1,"tool":"add","args":{"a":{"type":"double","value":[1]},"b":{"type":"double","value":[2]}}})"
					for (ch in strsplit(paste0(f, "
"), "")[[1]]) { .rt$write_raw(charToRaw(ch)); Sys.sleep(1) }
					Sys.sleep(30)`, 1500*time.Millisecond)
				if res.Verdict != securer.VerdictProtocolError || !errors.Is(err, securer.ErrProtocol) || !strings.Contains(res.Detail, "longer than") {
					t.Errorf("slowloris: verdict %s detail %q, want a protocol error for the frame deadline", res.Verdict, res.Detail)
				}
				if took > 5*time.Second {
					t.Errorf("slowloris ended after %s, frame timeout 2 s", took)
				}
			})
			if v := h.ok(t, s, "add(1, 2)").Value.Go(); v != 3.0 {
				t.Errorf("after the slowloris: add(1, 2) = %v", v)
			}
		}},
		{"T20 newline flood", func(t *testing.T) {
			// Ten million empty frames: the first is already a violation.
			h.ok(t, s, rtPrelude)
			var res *securer.Result
			var err error
			rss := rssPeak(func() {
				res, err = s.Execute(context.Background(), `.rt$write_raw(as.raw(rep(10L, 1e7))); Sys.sleep(30)`)
			})
			h.clean(t, res)
			if res.Verdict != securer.VerdictProtocolError || !errors.Is(err, securer.ErrProtocol) {
				t.Errorf("newline flood: verdict %s detail %q, want protocol_error", res.Verdict, res.Detail)
			}
			t.Logf("newline flood: host RSS +%d bytes", rss)
			if rss > 64<<20 {
				t.Errorf("host RSS grew by %d bytes for a newline flood", rss)
			}
			h.ok(t, s, "1+1")
		}},
		{"T21 frames racing from forks", func(t *testing.T) {
			// Eight forks each write half a frame at once: the host sees
			// interleaved garbage and ends the session; no call runs.
			h.ok(t, s, rtPrelude)
			unchanged(t, func() {
				res := h.run(t, s, `f <- r"({"type":"tool_call","id":7,"tool":"add","args":{"a":{"type":"double","value":[1]},"b":{"type":"double","value":[2]}}})"
					half <- charToRaw(substr(f, 1, 60))
					jobs <- lapply(1:8, function(i) parallel::mcparallel({ for (k in 1:50) .rt$write_raw(half); NULL }))
					parallel::mccollect(jobs); Sys.sleep(30)`)
				if res.Verdict != securer.VerdictProtocolError {
					t.Errorf("interleaved half frames: verdict %s detail %q, want protocol_error", res.Verdict, res.Detail)
				}
			})
			h.ok(t, s, "1+1")
		}},
	}
	for _, c := range cases {
		t.Run(c.id, c.run)
	}
}

func TestAdversarialEscape(t *testing.T) {
	h := newAdvHarness(t, true)
	h.withNeighbour(t)
	cfg := h.config()
	s := newSession(t, cfg)
	cases := []struct {
		id  string
		run func(t *testing.T)
	}{
		{"E01", func(t *testing.T) {
			res := h.ok(t, s, `f <- function(p, m) tryCatch({close(file(p, m)); "opened"}, error = function(e) conditionMessage(e), warning = function(w) conditionMessage(w))
				c(f("/proc/self/exe", "r+b"), f("/proc/1/exe", "wb"), f("/proc/self/exe", "ab"), f("/usr/lib/R/bin/exec/R", "r+b"))`)
			for _, m := range strs(res.Value) {
				if !strings.Contains(m, "Permission denied") && !strings.Contains(m, "Read-only file system") && !strings.Contains(m, "Text file busy") {
					t.Errorf("opening R's binary for writing: %q", m)
				}
			}
			res = h.ok(t, s, `system("echo x >> /proc/1/exe; echo x >> /proc/self/exe; echo x > /usr/lib/R/bin/exec/R", ignore.stderr = TRUE)`)
			if num(res.Value) == 0 {
				t.Errorf("a shell could write to the R binary")
			}
			// H2 (hashes of the executor and R) is checked when the test ends.
		}},
		{"E02", func(t *testing.T) {
			s := newSession(t, cfg) // fresh: no fds from earlier cases
			res := h.ok(t, s, `fds <- list.files("/proc/self/fd", full.names = TRUE)
				wd <- vapply(fds, function(f) tryCatch({ old <- setwd(f); on.exit(setwd(old)); getwd() }, error = function(e) NA_character_), "")
				wd[!is.na(wd)]`)
			for _, d := range strs(res.Value) {
				t.Errorf("setwd into an fd succeeded: %q", d)
			}
			res = h.ok(t, s, `tg <- Sys.readlink(list.files("/proc/1/fd", full.names = TRUE))
				tg <- tg[!is.na(tg) & nzchar(tg)]
				paste(tg, grepl("^(pipe|socket|anon_inode):", tg) | file.exists(tg), sep = "\t")`)
			checkFDTargets(t, "R (/proc/1/fd)", strs(res.Value), false)
			res = h.ok(t, s, `tg <- system("for f in /proc/self/fd/*; do readlink $f; done", intern = TRUE)
				paste(tg, grepl("^(pipe|socket|anon_inode):", tg) | file.exists(tg), sep = "\t")`)
			checkFDTargets(t, "shell child", strs(res.Value), false)
			res = h.ok(t, s, `Sys.readlink(c("/proc/1/cwd", "/proc/1/root"))`)
			if got := strs(res.Value); !slices.Equal(got, []string{"/tmp", "/"}) {
				t.Errorf("cwd/root of R: %q", got)
			}
		}},
		{"E07", func(t *testing.T) {
			// A host process with the same host uid as the box's R.
			boxUID := hostUIDOf(t, hostPidOf(s))
			canary := exec.Command("sleep", "60")
			canary.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: boxUID, Gid: boxUID}}
			if err := canary.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = canary.Process.Kill(); _ = canary.Wait() }()
			nbPid, myPid := hostPidOf(h.neighbour), hostPidOf(s)
			// The catalogue's code (R's pskill skips pids <= 0, so -1 does
			// nothing) and host pids by number must reach nothing outside.
			h.ok(t, s, fmt.Sprintf(`p <- parallel::mcparallel(Sys.sleep(60)); Sys.sleep(0.3)
				tools::pskill(-1, tools::SIGKILL); tools::pskill(1, tools::SIGKILL)
				tools::pskill(c(%d, %d, %d), tools::SIGKILL)`, canary.Process.Pid, os.Getpid(), nbPid))
			if hostPidOf(s) != myPid || !running(myPid) {
				t.Errorf("the box's R was killed by pskill of host pids")
			}
			// A real kill(-1, SIGKILL) from a shell child reaches every
			// process of the box but its init, R included: the execution
			// ends as killed and the session restarts; nothing outside dies.
			res, _ := s.Execute(context.Background(), `system("kill -9 -1"); Sys.sleep(5)`)
			h.clean(t, res)
			if res.Verdict != securer.VerdictKilled {
				t.Errorf("kill(-1) inside: verdict %s, want killed", res.Verdict)
			}
			if !running(canary.Process.Pid) {
				t.Errorf("the host canary process (uid %d) died", boxUID)
			}
			if hostPidOf(h.neighbour) != nbPid || !running(nbPid) {
				t.Errorf("the neighbour's R was killed")
			}
			h.responsive(t, "after kill(-1)")
			h.ok(t, s, "1+1")
		}},
		{"E10", func(t *testing.T) {
			// The catalogue's list.files("/", recursive = TRUE) follows
			// symlinks and /proc/*/root round and round until the time-out;
			// find walks the tree once without following links. The host
			// unlinks the box's own socket once R has connected, so no
			// socket may be visible at all.
			res := h.ok(t, s, `suppressWarnings(system("find / -path /proc -prune -o -type s -print 2>/dev/null", intern = TRUE))`)
			for _, p := range strs(res.Value) {
				if p != "/run/securer/sock/bridge.sock" {
					t.Errorf("socket visible in the box: %q", p)
				}
			}
			res = h.ok(t, s, `x <- suppressWarnings(system("find / -path /proc -prune -o -name '*sock*' -print 2>/dev/null", intern = TRUE))
				x[!startsWith(x, "/usr/")]`)
			for _, p := range strs(res.Value) {
				if p != "/run/securer/sock" && p != "/run/securer/sock/bridge.sock" {
					t.Errorf("socket-like name outside the image: %q", p)
				}
			}
			other := filepath.Join(stateDir, "sessions", h.neighbour.ID(), "sock", "bridge.sock")
			res = h.ok(t, s, fmt.Sprintf(`vapply(c(%q, "/run/securer-runc/sessions/x/sock/bridge.sock"), function(p)
				tryCatch({processx::conn_connect_unix_socket(p); "connected"}, error = function(e) conditionMessage(e)), "", USE.NAMES = FALSE)`, other))
			for _, m := range strs(res.Value) {
				if !strings.Contains(m, "No such file") {
					t.Errorf("connecting to another session's socket: %q, want ENOENT", m)
				}
			}
			h.responsive(t, "after E10")
		}},
	}
	for _, c := range cases {
		t.Run(c.id, c.run)
	}
}

func TestAdversarialEnvironment(t *testing.T) {
	h := newAdvHarness(t, false)
	cfg := h.config()
	s := newSession(t, cfg)
	cases := []struct {
		id  string
		run func(t *testing.T)
	}{
		{"V01", func(t *testing.T) {
			res := h.ok(t, s, `names(Sys.getenv())`)
			for _, n := range strs(res.Value) {
				if !allowedEnv[n] {
					t.Errorf("variable %q is not on the allowlist", n)
				}
			}
			res = h.ok(t, s, `paste(names(Sys.getenv()), Sys.getenv(), sep = "=", collapse = "\n")`)
			if strings.Contains(fmt.Sprint(res.Value.Go()), "OPENAI") {
				t.Errorf("OPENAI_API_KEY reached the box")
			}
		}},
		{"V03", func(t *testing.T) {
			res := h.ok(t, s, `c(Sys.getenv(c("R_LIBS", "R_LIBS_USER", "R_PROFILE_USER", "R_ENVIRON_USER")), .libPaths())`)
			got := strs(res.Value)
			if len(got) < 5 || !slices.Equal(got[:4], []string{"", "", "", ""}) {
				t.Errorf("user library/profile variables: %q", got)
			}
			for _, p := range got[4:] {
				if !strings.HasPrefix(p, "/usr/") {
					t.Errorf("library path %q outside the image", p)
				}
			}
			if v := h.ok(t, s, `all(file.access(.libPaths(), 2) != 0)`).Value.Go(); v != true {
				t.Errorf("a library path is writable")
			}
		}},
		{"V04", func(t *testing.T) {
			h.ok(t, s, `writeLines("Sys.setenv(PWNED = 'yes'); system('touch /tmp/pwned')", "/tmp/.Rprofile")
				writeLines("PWNED=yes", "/tmp/.Renviron")`)
			check := func(s *securer.Session, how string) {
				res := h.ok(t, s, `c(file.exists(c("/tmp/.Rprofile", "/tmp/.Renviron", "/tmp/pwned")), nzchar(Sys.getenv("PWNED")))`)
				if fmt.Sprint(res.Value.Go()) != "[false false false false]" {
					t.Errorf("%s: profile files or their effect survive: %v", how, res.Value.Go())
				}
			}
			if err := s.Restart(context.Background()); err != nil {
				t.Fatal(err)
			}
			check(s, "after Restart")
			check(newSession(t, cfg), "new session")
		}},
	}
	for _, c := range cases {
		t.Run(c.id, c.run)
	}
}

func TestAdversarialLifecycle(t *testing.T) {
	h := newAdvHarness(t, false)
	cfg := h.config()
	drain := func() {
		for len(h.waitStarted) > 0 {
			<-h.waitStarted
		}
		for len(h.waitCanceled) > 0 {
			<-h.waitCanceled
		}
	}
	canceled := func(t *testing.T) {
		t.Helper()
		select {
		case <-h.waitCanceled:
		case <-time.After(2 * time.Second):
			t.Errorf("the tool's context was not cancelled")
		}
	}
	cases := []struct {
		id  string
		run func(t *testing.T)
	}{
		{"L01", func(t *testing.T) {
			cfg := cfg
			cfg.Timeout = 2 * time.Second
			s := newSession(t, cfg)
			drain()
			g0 := runtime.NumGoroutine()
			start := time.Now()
			res, err := s.Execute(context.Background(), `x <- "kept"; wait(30)`)
			took := time.Since(start)
			h.clean(t, res)
			if res.Verdict != securer.VerdictTimeout || !errors.Is(err, securer.ErrTimeout) {
				t.Errorf("verdict %s err %v", res.Verdict, err)
			}
			if took > cfg.Timeout+500*time.Millisecond {
				t.Errorf("timeout reported after %s", took)
			}
			canceled(t)
			if v := h.ok(t, s, "x").Value.Go(); v != "kept" {
				t.Errorf("after the timeout x = %v", v)
			}
			if v := h.ok(t, s, "add(2, 3)").Value.Go(); v != 5.0 {
				t.Errorf("after the timeout add(2, 3) = %v (a late result leaked in?)", v)
			}
			var g int
			for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if g = runtime.NumGoroutine(); g <= g0 || time.Now().After(deadline) {
					break
				}
			}
			if g > g0 {
				t.Errorf("goroutines %d after the timeout, %d before", g, g0)
			}
		}},
		{"L02", func(t *testing.T) {
			s := newSession(t, cfg)
			id := s.ID()
			drain()
			go func() {
				select {
				case <-h.waitStarted:
					_ = syscall.Kill(hostPidOf(s), syscall.SIGKILL)
				case <-time.After(10 * time.Second):
				}
			}()
			res, err := s.Execute(context.Background(), `wait(5)`)
			h.clean(t, res)
			if res.Verdict != securer.VerdictKilled || !errors.Is(err, securer.ErrKilled) || !strings.Contains(res.Exit, "killed") {
				t.Errorf("verdict %s err %v exit %q", res.Verdict, err, res.Exit)
			}
			if !strings.Contains(res.Detail, "tool call") {
				t.Errorf("detail %q does not say R died during a tool call", res.Detail)
			}
			if res.Accounting.Wall > 2*time.Second {
				t.Errorf("the crash was reported after %s", res.Accounting.Wall)
			}
			canceled(t)
			assertGone(t, id)
			if v := h.ok(t, s, "exists('x')").Value.Go(); v != false {
				t.Errorf("after the crash the session is not fresh")
			}
		}},
		{"L04", func(t *testing.T) {
			s := newSession(t, cfg)
			h.ok(t, s, "n <- 0")
			var wg sync.WaitGroup
			results := make([]*securer.Result, 2)
			errs := make([]error, 2)
			gate := make(chan struct{})
			for i := range 2 {
				wg.Go(func() {
					<-gate
					results[i], errs[i] = s.Execute(context.Background(), `n <- n + 1; Sys.sleep(1); n`)
				})
			}
			close(gate)
			wg.Wait()
			busy, ok := 0, 0
			for i := range 2 {
				switch {
				case errors.Is(errs[i], securer.ErrBusy):
					busy++
				case errs[i] == nil && results[i].Value.Go() == 1.0:
					ok++
					h.clean(t, results[i])
				default:
					t.Errorf("caller %d: %v %+v", i, errs[i], results[i])
				}
			}
			if busy != 1 || ok != 1 {
				t.Errorf("%d busy, %d ran: want one of each", busy, ok)
			}
			if v := h.ok(t, s, "n").Value.Go(); v != 1.0 {
				t.Errorf("n = %v: the calls interleaved", v)
			}
		}},
		{"L06", func(t *testing.T) {
			s := newSession(t, cfg)
			for _, c := range []struct{ code, exit string }{
				{`q("no", status = 3)`, "exit status 3"},
				{`quit(runLast = FALSE)`, "exit status 0"},
				{`cat("a\n"); quit(save = "no", status = 77); cat("b\n")`, "exit status 77"},
			} {
				res, err := s.Execute(context.Background(), c.code)
				h.clean(t, res)
				if res.Verdict != securer.VerdictKilled || !errors.Is(err, securer.ErrKilled) || res.Exit != c.exit {
					t.Errorf("%s: verdict %s err %v exit %q, want %q", c.code, res.Verdict, err, res.Exit, c.exit)
				}
				if v := h.ok(t, s, "1+1").Value.Go(); v != 2.0 {
					t.Errorf("after %s: 1+1 = %v", c.code, v)
				}
			}
		}},
		{"L08", func(t *testing.T) {
			s := newSession(t, cfg)
			id := s.ID()
			drain()
			go func() {
				select {
				case <-h.waitStarted:
					s.Close()
				case <-time.After(10 * time.Second):
				}
			}()
			start := time.Now()
			res, err := s.Execute(context.Background(), `wait(30)`)
			h.clean(t, res)
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("Execute returned %s after the session closed", took)
			}
			if !errors.Is(err, securer.ErrSessionClosed) {
				t.Errorf("Execute during Close: %v, want ErrSessionClosed (as Close documents)", err)
			}
			canceled(t)
			assertGone(t, id)
			if _, err := s.Execute(context.Background(), "1"); !errors.Is(err, securer.ErrSessionClosed) {
				t.Errorf("Execute after Close: %v", err)
			}
			if strings.Contains(h.log.String(), "panic") {
				t.Errorf("log mentions a panic: %s", h.log.String())
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.id, c.run)
	}
}
