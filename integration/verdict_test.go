package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	securer "securer-runc"
)

// TestVerdictAccounting triggers every verdict and checks that the
// accounting fits what happened.
func TestVerdictAccounting(t *testing.T) {
	cfg := baseConfig()
	cfg.Tools = seedTools(nil)
	cfg.Timeout = 2 * time.Second
	cfg.Limits.MemoryBytes = 256 << 20
	cfg.Limits.TmpBytes = 32 << 20
	cfg.MaxToolCalls = 20
	cfg.OutputLimit = 256 << 10
	s := newSession(t, cfg)
	const busy = `s <- 0; for (i in 1:3e6) s <- s + i`
	cases := []struct {
		verdict securer.Verdict
		code    string
		cancel  time.Duration // cancel the context after this long
		check   func(t *testing.T, a securer.Accounting, res *securer.Result)
	}{
		{securer.VerdictOK, busy + "; p <- parallel::mcparallel(Sys.sleep(1)); add(1, 2); cat('done\\n')", 0, func(t *testing.T, a securer.Accounting, res *securer.Result) {
			if a.CPUUser < 20*time.Millisecond || a.Wall < a.CPUUser/2 || a.ToolCalls != 1 || a.StdoutBytes != int64(len("[1] 3\ndone\n")) || a.PeakPids < 3 {
				t.Errorf("ok: %+v", a)
			}
		}},
		{securer.VerdictError, `stop("x")`, 0, func(t *testing.T, a securer.Accounting, res *securer.Result) {
			if res.Error == nil || a.StderrBytes == 0 || a.Wall <= 0 {
				t.Errorf("error: %+v %+v", a, res.Error)
			}
		}},
		{securer.VerdictTimeout, "while (TRUE) {}", 0, func(t *testing.T, a securer.Accounting, res *securer.Result) {
			if a.Wall < 2*time.Second || a.Wall > 4*time.Second || a.CPUUser < time.Second {
				t.Errorf("timeout: wall %s cpu %s", a.Wall, a.CPUUser)
			}
		}},
		{securer.VerdictCanceled, "Sys.sleep(30)", 300 * time.Millisecond, func(t *testing.T, a securer.Accounting, res *securer.Result) {
			if a.Wall < 300*time.Millisecond || a.Wall > 2*time.Second || a.CPUUser > 100*time.Millisecond {
				t.Errorf("canceled: wall %s cpu %s", a.Wall, a.CPUUser)
			}
		}},
		{securer.VerdictToolCallLimit, "for (i in 1:100) add(i, 1)", 0, func(t *testing.T, a securer.Accounting, res *securer.Result) {
			if a.ToolCalls != 20 {
				t.Errorf("tool_call_limit: %d calls", a.ToolCalls)
			}
		}},
		{securer.VerdictOutputLimit, `repeat cat(strrep("y", 1000), "\n")`, 0, func(t *testing.T, a securer.Accounting, res *securer.Result) {
			if a.StdoutBytes < 256<<10 || a.StdoutBytes > 16<<20 {
				t.Errorf("output_limit: %d bytes", a.StdoutBytes)
			}
		}},
		{securer.VerdictOutOfMemory, "x <- numeric(1e9); x[] <- 1", 0, func(t *testing.T, a securer.Accounting, res *securer.Result) {
			if a.OOMKills < 1 || a.PeakMemoryBytes < 230<<20 || a.PeakMemoryBytes > 256<<20 {
				t.Errorf("oom: %+v", a)
			}
		}},
		{securer.VerdictKilled, `quit(save = "no", status = 5)`, 0, func(t *testing.T, a securer.Accounting, res *securer.Result) {
			if res.Exit != "exit status 5" {
				t.Errorf("killed: exit %q", res.Exit)
			}
		}},
		{securer.VerdictProtocolError, `.rt <- get("rt", environment(body(add)[[4]][[1]])); .rt$send('{"type":"result","id":999}'); Sys.sleep(5)`, 0, func(t *testing.T, a securer.Accounting, res *securer.Result) {
			if res.Detail == "" || a.Wall > 3*time.Second {
				t.Errorf("protocol_error: detail %q wall %s", res.Detail, a.Wall)
			}
		}},
	}
	for _, c := range cases {
		t.Run(string(c.verdict), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if c.cancel > 0 {
				time.AfterFunc(c.cancel, cancel)
			}
			res, err := s.Execute(ctx, c.code)
			if res == nil || res.Verdict != c.verdict {
				t.Fatalf("verdict %v, want %s (err %v)", res, c.verdict, err)
			}
			if (err == nil) != (c.verdict == securer.VerdictOK) {
				t.Errorf("error %v for verdict %s", err, c.verdict)
			}
			if c.verdict == securer.VerdictCanceled && !errors.Is(err, securer.ErrCanceled) {
				t.Errorf("canceled: %v", err)
			}
			c.check(t, res.Accounting, res)
		})
	}
}
