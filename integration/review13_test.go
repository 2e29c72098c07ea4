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
