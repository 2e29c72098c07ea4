package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

var pngMagic = []byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}

// pngSize reads a PNG's width and height from its IHDR chunk.
func pngSize(t *testing.T, b []byte) (w, h int) {
	t.Helper()
	if len(b) < 24 || !bytes.Equal(b[:8], pngMagic) || string(b[12:16]) != "IHDR" {
		t.Fatalf("not a PNG with an IHDR first: % x", b[:min(len(b), 24)])
	}
	return int(binary.BigEndian.Uint32(b[16:20])), int(binary.BigEndian.Uint32(b[20:24]))
}

func executeWith(t *testing.T, s *securer.Session, code string, opts securer.ExecOptions) *securer.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	res, err := s.ExecuteWith(ctx, code, opts)
	if res == nil {
		t.Fatalf("ExecuteWith(%q): no result: %v", code, err)
	}
	return res
}

// Issue 13 item 3: the pages code draws come back as displays, without
// the code opening a device, in plain and fresh executions alike.
func TestPlotsPNG(t *testing.T) {
	s := newSession(t, baseConfig())
	for _, tc := range []struct {
		name, code string
		fresh      bool
		pages      int
		dropped    int
	}{
		{"plot", "plot(1:10)", false, 1, 0},
		{"plot and lines on one page", "plot(1:10); lines(1:10, (1:10)^1.2)", false, 1, 0},
		{"grid page", `grid::grid.newpage(); grid::grid.rect(gp = grid::gpar(fill = "steelblue"))`, false, 1, 0},
		{"two pages", "plot(1:10); hist(c(1, 2, 2, 3, 3, 3))", false, 2, 0},
		{"dev.off then plot", "plot(1); dev.off(); plot(2)", false, 2, 0},
		{"25 plots", "for (i in 1:25) plot(i)", false, 20, 5},
		{"after an error", `plot(1:3); stop("late")`, false, 1, 0},
		{"fresh", "plot(1:10)", true, 1, 0},
		{"plot-free", "x <- 1 + 1", false, 0, 0},
		{"forged file in the plot dir", `plot(1); writeBin(charToRaw("not a png"), file.path(tempdir(), "securer-plots", "d00009-001.png"))`, false, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := executeWith(t, s, tc.code, securer.ExecOptions{Fresh: tc.fresh})
			if len(res.Displays) != tc.pages || res.DisplaysDropped != tc.dropped {
				t.Fatalf("%d displays, %d dropped; want %d and %d (verdict %s, stderr %q)",
					len(res.Displays), res.DisplaysDropped, tc.pages, tc.dropped, res.Verdict, res.Stderr)
			}
			seen := map[string]bool{}
			for i, d := range res.Displays {
				png := d.Data["image/png"]
				if len(d.Data) != 1 || png == nil {
					t.Fatalf("display %d: types %v, want image/png alone", i, d.Data)
				}
				if w, h := pngSize(t, png); w != 768 || h != 576 || d.Width != 768 || d.Height != 576 || d.DPI != 96 {
					t.Errorf("display %d: IHDR %dx%d, metadata %dx%d at %d dpi; want 768x576 at 96", i, w, h, d.Width, d.Height, d.DPI)
				}
				if seen[string(png)] {
					t.Errorf("display %d repeats an earlier page", i)
				}
				seen[string(png)] = true
			}
			// Nothing stays open, and plot-free code opened nothing.
			if r := mustOK(t, s, "is.null(dev.list())"); r.Printed != "[1] TRUE" || len(r.Displays) != 0 {
				t.Errorf("after: dev.list() is NULL printed %q, %d displays", r.Printed, len(r.Displays))
			}
		})
	}
}

func TestPlotsOptions(t *testing.T) {
	cfg := baseConfig()
	cfg.Plots = securer.Plots{Width: 400, Height: 300}
	s := newSession(t, cfg)
	// The session's size, the defaults for the rest.
	res := mustOK(t, s, "plot(1:10)")
	if len(res.Displays) != 1 {
		t.Fatalf("%d displays, want 1", len(res.Displays))
	}
	if w, h := pngSize(t, res.Displays[0].Data["image/png"]); w != 400 || h != 300 || res.Displays[0].DPI != 96 {
		t.Errorf("session plots 400x300: got %dx%d at %d dpi", w, h, res.Displays[0].DPI)
	}
	// The execution's format and dpi over the session's.
	res = executeWith(t, s, "plot(1:10)", securer.ExecOptions{Plots: &securer.Plots{Format: securer.PlotSVG, DPI: 72}})
	if len(res.Displays) != 1 {
		t.Fatalf("svg: %d displays, want 1", len(res.Displays))
	}
	d := res.Displays[0]
	svg := string(d.Data["image/svg+xml"])
	if !strings.Contains(svg, "<svg") || d.Width != 400 || d.Height != 300 || d.DPI != 72 {
		t.Errorf("svg display: metadata %dx%d at %d, starts %q", d.Width, d.Height, d.DPI, svg[:min(len(svg), 80)])
	}
	// 400x300 px at 72 dpi: a 400x300 pt page.
	if !strings.Contains(svg, `width="400pt"`) || !strings.Contains(svg, `height="300pt"`) {
		t.Errorf("svg page size: %q", svg[:min(len(svg), 300)])
	}
	// none: not captured, and no device is left open either way.
	res = executeWith(t, s, "plot(1:10); dev.off()", securer.ExecOptions{Plots: &securer.Plots{Format: securer.PlotNone}})
	if res.Verdict != securer.VerdictOK || len(res.Displays) != 0 {
		t.Errorf("format none: verdict %s, %d displays", res.Verdict, len(res.Displays))
	}
	// The code's own device is its own.
	res = mustOK(t, s, `png(file.path(tempdir(), "mine.png")); plot(1); invisible(dev.off()); file.exists(file.path(tempdir(), "mine.png"))`)
	if res.Printed != "[1] TRUE" || len(res.Displays) != 0 {
		t.Errorf("own png device: printed %q, %d displays", res.Printed, len(res.Displays))
	}
	// After a timeout the pages drawn so far still come back.
	res = executeWith(t, s, "plot(1:3); Sys.sleep(60)", securer.ExecOptions{Timeout: 2 * time.Second})
	if res.Verdict != securer.VerdictTimeout || len(res.Displays) != 1 {
		t.Errorf("timeout: verdict %s, %d displays; want timeout and 1", res.Verdict, len(res.Displays))
	}
	if r := mustOK(t, s, "is.null(dev.list())"); r.Printed != "[1] TRUE" {
		t.Errorf("after the timeout: dev.list() is NULL printed %q", r.Printed)
	}
	// Bad options are refused before anything runs.
	for _, p := range []securer.Plots{{Format: "gif"}, {Width: 5000}, {Height: 8}, {DPI: 1000}} {
		if res, err := s.ExecuteWith(context.Background(), "1", securer.ExecOptions{Plots: &p}); res != nil || err == nil {
			t.Errorf("plots %+v: result %v, error %v; want refused", p, res, err)
		}
	}
}

// Plots share the result frame's room with the value, which comes first:
// with a small frame limit, pages past the room are dropped and counted,
// and the result still arrives.
func TestPlotsFrameBudget(t *testing.T) {
	cfg := baseConfig()
	cfg.MaxFrameBytes = 300 << 10 // the value and plots get 150 KiB
	s := newSession(t, cfg)
	res := mustOK(t, s, "set.seed(1); for (i in 1:20) plot(rnorm(200)); 1:10")
	n := len(res.Displays)
	if n == 0 || n == 20 || n+res.DisplaysDropped != 20 {
		t.Fatalf("%d displays, %d dropped; want some of 20 kept, the rest counted", n, res.DisplaysDropped)
	}
	total := 0
	for _, d := range res.Displays {
		total += len(d.Data["image/png"])
	}
	if total*4/3 > 150<<10 || res.Value.Integers()[9] != 10 {
		t.Errorf("%d displays hold %d bytes (over the room?), value %v", n, total, res.Value)
	}
	t.Logf("300 KiB frames: %d of 20 pages kept, %d bytes", n, total)
}

// Issue 13 item 2: the auto-print's size, so that clients can take it off
// the end of stdout exactly, however long it is.
func TestResultPrintedBytes(t *testing.T) {
	s := newSession(t, baseConfig())
	for _, tc := range []struct {
		name, code string
		want       int64 // -1: len(Stdout)
		other      string
	}{
		{"data frame of 20,000 rows", "x <- data.frame(a = 1:20000); x", -1, ""},
		{"output before", `cat("before\n"); 1:3`, int64(len("[1] 1 2 3\n")), "before\n"},
		{"invisible", "x <- 1", 0, ""},
		{"utf-8", `"é"`, int64(len("[1] \"é\"\n")), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := mustOK(t, s, tc.code)
			want := tc.want
			if want < 0 {
				want = int64(len(res.Stdout))
			}
			if res.PrintedBytes != want || res.StdoutElided != 0 {
				t.Fatalf("printed_bytes %d, want %d (stdout %d bytes, elided %d)", res.PrintedBytes, want, len(res.Stdout), res.StdoutElided)
			}
			if other := res.Stdout[:int64(len(res.Stdout))-res.PrintedBytes]; other != tc.other {
				t.Errorf("stdout without the print: %q, want %q", other, tc.other)
			}
		})
	}
	if res := mustOK(t, s, "x <- data.frame(a = 1:20000); x"); res.PrintedBytes < 200000 || len(res.Printed) > 65536+20 {
		t.Errorf("20,000 rows: printed_bytes %d, printed %d chars (clipped to 65,536)", res.PrintedBytes, len(res.Printed))
	}
}

// Issue 13 item 2: an error says where it happened.
func TestErrorTraceback(t *testing.T) {
	s := newSession(t, baseConfig())
	for _, tc := range []struct {
		name, code string
		want       []string
	}{
		{"g calls f", "f <- function(x) stop(\"bad: \", x)\ng <- function() f(1)\ng()", []string{"g()", "f(1)", `stop("bad: ", x)`}},
		{"error in C code in a function named h", `h <- function() log(-1) + sqrt("a"); h()`, []string{"h()"}},
		{"top level", `stop("top")`, []string{`stop("top")`}},
		{"parse error", `1 +`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := execute(t, s, tc.code)
			if res.Verdict != securer.VerdictError || res.Error == nil {
				t.Fatalf("verdict %s, error %v", res.Verdict, res.Error)
			}
			if strings.Join(res.Error.Traceback, "|") != strings.Join(tc.want, "|") {
				t.Errorf("traceback %q, want %q", res.Error.Traceback, tc.want)
			}
		})
	}
	// Runaway recursion stopped by the expression limit still reports,
	// with the innermost calls. (Stopped by the C stack check instead, the
	// handler itself has no stack to run in: that traceback is empty.)
	res := execute(t, s, "options(expressions = 300)\nf <- function(n) f(n + 1)\nf(1)")
	if tb := res.Error.Traceback; res.Verdict != securer.VerdictError || len(tb) != 50 || tb[49] != "f(n + 1)" {
		t.Errorf("infinite recursion: verdict %s, %q, traceback %d calls, last %q", res.Verdict, res.Error.Message, len(tb), tb[max(len(tb)-1, 0):])
	}
	// Deep recursion keeps the 50 innermost calls.
	res = execute(t, s, "r <- function(n) if (n == 0) stop(\"deep\") else r(n - 1)\nr(100)")
	if tb := res.Error.Traceback; len(tb) != 50 || tb[49] != `stop("deep")` || tb[48] != "r(n - 1)" {
		t.Errorf("deep traceback: %d calls, last %q", len(tb), tb[max(len(tb)-2, 0):])
	}
}

// run --plots-dir writes the pages; --json carries them; a taken name is
// an error and stays as it was.
func TestCLIPlots(t *testing.T) {
	dir := t.TempDir()
	r := runCLI(t, "", "run", "--plots-dir", dir, "-e", "plot(1:10); hist(c(1, 2, 2))")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	for _, name := range []string{"plot-001.png", "plot-002.png"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if w, h := pngSize(t, b); w != 768 || h != 576 {
			t.Errorf("%s: %dx%d", name, w, h)
		}
	}
	// Again into the same directory: nothing is overwritten.
	before, _ := os.ReadFile(filepath.Join(dir, "plot-001.png"))
	r = runCLI(t, "", "run", "--plots-dir", dir, "-e", "plot(3:1)")
	after, _ := os.ReadFile(filepath.Join(dir, "plot-001.png"))
	if r.code != 2 || !strings.Contains(r.stderr, "not overwritten") || !bytes.Equal(before, after) {
		t.Errorf("existing plot-001.png: exit %d, stderr %q, file changed %v", r.code, r.stderr, !bytes.Equal(before, after))
	}
	// A missing directory is refused before anything runs.
	r = runCLI(t, "", "run", "--plots-dir", filepath.Join(dir, "missing"), "-e", `cat("ran")`)
	if r.code != 2 || !strings.Contains(r.stderr, "must be an existing directory") || strings.Contains(r.stdout, "ran") {
		t.Errorf("missing dir: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// --json: the displays as MIME bundles, SVG on request.
	r = runCLI(t, "", "run", "--json", "--plot-format", "svg", "--plot-size", "400x300", "--plot-dpi", "72", "-e", "plot(1:10)")
	var res struct {
		Displays []struct {
			Data     map[string][]byte `json:"data"`
			Metadata struct{ Width, Height, DPI int }
		} `json:"displays"`
		PrintedBytes *int64 `json:"printed_bytes"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != 0 {
		t.Fatalf("--json: exit %d, %v: %q", r.code, err, r.stdout)
	}
	if len(res.Displays) != 1 || !strings.Contains(string(res.Displays[0].Data["image/svg+xml"]), "<svg") ||
		res.Displays[0].Metadata.Width != 400 || res.Displays[0].Metadata.DPI != 72 || res.PrintedBytes == nil {
		t.Errorf("--json displays: %+v, printed_bytes %v", res.Displays, res.PrintedBytes)
	}
	// Bad plot flags are usage errors.
	if r := runCLI(t, "", "run", "--plot-format", "gif", "-e", "1"); r.code != 2 {
		t.Errorf("--plot-format gif: exit %d, stderr %q", r.code, r.stderr)
	}
}
