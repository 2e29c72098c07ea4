package integration

import (
	"strings"
	"testing"

	securer "github.com/securer-runc/securer-runc"
)

// Review of issue 13: value, plots and collected files fill the result
// frame's room; what is kept beside them (printed text, warnings,
// messages) must still fit, so that a legitimate execution never breaks
// the session with an oversized frame.
func TestReviewResultFrameFits(t *testing.T) {
	cfg := baseConfig()
	cfg.MaxFrameBytes = 300 << 10 // the value, plots and files get 150 KiB
	s := newSession(t, cfg)
	for _, tc := range []struct{ name, code string }{
		{"messages beside a collected file", `writeBin(as.raw(rep(1:255, 400)), "f.bin"); for (i in 1:40) message(strrep("m", 8000)); 1`},
		{"warnings beside a collected file", `writeBin(as.raw(rep(1:255, 400)), "f.bin"); for (i in 1:40) warning(strrep("w", 8000)); 1`},
		{"an error after long warnings and messages", `for (i in 1:100) { warning(strrep("w", 9000)); message(strrep("m", 9000)) }; stop(strrep("e", 9000))`},
		{"escaped printed text beside a value", `x <- strrep("\001", 60000); writeBin(as.raw(rep(1:255, 400)), "f.bin"); cat(x); invisible(paste(rep("v", 100000), collapse = ""))`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := executeWith(t, s, tc.code, securer.ExecOptions{CollectOutputs: true})
			if res.Verdict != securer.VerdictOK && (res.Verdict != securer.VerdictError || res.Error == nil || !strings.HasPrefix(res.Error.Message, "eee")) {
				t.Fatalf("verdict %s, error %v, detail %q", res.Verdict, res.Error, res.Detail)
			}
			// The session's R is the same one afterwards: not replaced.
			if r := mustOK(t, s, `exists("x") || TRUE`); r.Verdict != securer.VerdictOK {
				t.Fatalf("after: %s", r.Verdict)
			}
			t.Logf("files %d dropped %d, warnings %d, messages %d", len(res.Files), res.FilesDropped, len(res.Warnings), len(res.Messages))
		})
	}
}

// A PNG the code writes into the plot dir itself, of another size than
// the pages are drawn at, is dropped by R (the host refuses such a page:
// its header could claim a huge image), not a broken session.
func TestReviewForgedPlotSize(t *testing.T) {
	s := newSession(t, baseConfig())
	res := executeWith(t, s, `plot(1); png(f <- tempfile(fileext = ".png"), width = 300, height = 300); plot(2); invisible(dev.off())
		file.copy(f, file.path(tempdir(), "securer-plots", "d00009-001.png")); 1`, securer.ExecOptions{})
	if res.Verdict != securer.VerdictOK || len(res.Displays) != 1 || res.DisplaysDropped != 1 {
		t.Fatalf("verdict %s (%q, %v), %d displays, %d dropped; want ok, 1 and 1", res.Verdict, res.Detail, res.Error, len(res.Displays), res.DisplaysDropped)
	}
}
