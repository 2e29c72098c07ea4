package integration

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
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
	cfg.Output.LimitBytes = 256 << 10
	s := newSession(t, cfg)
	const busy = `s <- 0; for (i in 1:3e6) s <- s + i`
	cases := []struct {
		verdict securer.Verdict
		code    string
		cancel  time.Duration // cancel the context after this long
		timeout time.Duration // for this case, not the session's 2 s
		check   func(t *testing.T, a securer.Accounting, res *securer.Result)
	}{
		{securer.VerdictOK, busy + "; p <- parallel::mcparallel(Sys.sleep(1)); add(1, 2); cat('done\\n')", 0, 0, func(t *testing.T, a securer.Accounting, res *securer.Result) {
			if a.CPUUser < 20*time.Millisecond || a.Wall < a.CPUUser/2 || a.ToolCalls != 1 || a.StdoutBytes != int64(len("[1] 3\ndone\n")) || a.PeakPids < 3 {
				t.Errorf("ok: %+v", a)
			}
		}},
		{securer.VerdictError, `stop("x")`, 0, 0, func(t *testing.T, a securer.Accounting, res *securer.Result) {
			if res.Error == nil || a.StderrBytes == 0 || a.Wall <= 0 {
				t.Errorf("error: %+v %+v", a, res.Error)
			}
		}},
		{securer.VerdictTimeout, "while (TRUE) {}", 0, 0, func(t *testing.T, a securer.Accounting, res *securer.Result) {
			// It spun until the timeout; how much CPU it got depends on
			// the machine's load.
			if a.Wall < 2*time.Second || a.Wall > 10*time.Second || a.CPUUser < 50*time.Millisecond {
				t.Errorf("timeout: wall %s cpu %s", a.Wall, a.CPUUser)
			}
		}},
		{securer.VerdictCanceled, "Sys.sleep(30)", 300 * time.Millisecond, 0, func(t *testing.T, a securer.Accounting, res *securer.Result) {
			// The cancel fires 300 ms after it is set, just before the
			// execution starts.
			if a.Wall < 200*time.Millisecond || a.Wall > 5*time.Second || a.CPUUser > 100*time.Millisecond {
				t.Errorf("canceled: wall %s cpu %s", a.Wall, a.CPUUser)
			}
		}},
		{securer.VerdictToolCallLimit, "for (i in 1:100) add(i, 1)", 0, 0, func(t *testing.T, a securer.Accounting, res *securer.Result) {
			if a.ToolCalls != 20 {
				t.Errorf("tool_call_limit: %d calls", a.ToolCalls)
			}
		}},
		{securer.VerdictOutputLimit, `repeat cat(strrep("y", 1000), "\n")`, 0, 0, func(t *testing.T, a securer.Accounting, res *securer.Result) {
			if a.StdoutBytes < 256<<10 || a.StdoutBytes > 16<<20 {
				t.Errorf("output_limit: %d bytes", a.StdoutBytes)
			}
		}},
		// Filling 256 MiB takes a loaded machine more than 2 s.
		{securer.VerdictOutOfMemory, oomCode, 0, 60 * time.Second, func(t *testing.T, a securer.Accounting, res *securer.Result) {
			if a.OOMKills < 1 || a.PeakMemoryBytes < 230<<20 || a.PeakMemoryBytes > 256<<20 {
				t.Errorf("oom: %+v", a)
			}
		}},
		{securer.VerdictKilled, `quit(save = "no", status = 5)`, 0, 0, func(t *testing.T, a securer.Accounting, res *securer.Result) {
			if res.Exit != "exit status 5" {
				t.Errorf("killed: exit %q", res.Exit)
			}
		}},
		{securer.VerdictProtocolError, `.rt <- get("rt", environment(body(add)[[1]])); .rt$send('{"type":"result","id":999}'); Sys.sleep(5)`, 0, 0, func(t *testing.T, a securer.Accounting, res *securer.Result) {
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
			res, err := s.ExecuteWith(ctx, c.code, securer.ExecOptions{Timeout: c.timeout})
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

// TestInterruptReachesR: a timeout interrupts R itself, not through the
// box's init. With tini stopped, a forwarded SIGINT would never arrive and
// the session would lose its state at the grace kill; under load, a late
// forwarded SIGINT used to hit the next execution (verdict error
// "interrupted" in place of the next one's own).
func TestInterruptReachesR(t *testing.T) {
	cfg := baseConfig()
	cfg.Timeout = time.Second
	s := newSession(t, cfg)
	mustOK(t, s, "x <- 42")
	id := s.ID()
	initPid := initPidOf(s)
	if initPid <= 0 {
		t.Fatal("no init pid for the session")
	}
	if err := syscall.Kill(initPid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(initPid, syscall.SIGCONT)
		}
	}
	defer resume()
	res, _ := s.Execute(context.Background(), "Sys.sleep(30)")
	if res == nil || res.Verdict != securer.VerdictTimeout {
		t.Fatalf("verdict %v, want timeout", res)
	}
	if !strings.Contains(res.Detail, "keeps its state") {
		t.Errorf("detail %q: R was not interrupted, the box was killed", res.Detail)
	}
	resume()
	for i := range 20 {
		res := mustOK(t, s, "Sys.sleep(0.01); x")
		if s.ID() != id || res.Value.Go() != 42.0 {
			t.Fatalf("execution %d after the interrupt: session %s (was %s), x = %v", i, s.ID(), id, res.Value.Go())
		}
	}
}

// initPidOf is the host pid of the session's container init (tini).
func initPidOf(s *securer.Session) int {
	b, err := os.ReadFile(filepath.Join(stateDir, "containers", s.ID(), "state.json"))
	if err != nil {
		return 0
	}
	var st struct {
		InitProcessPid int `json:"init_process_pid"`
	}
	if json.Unmarshal(b, &st) != nil {
		return 0
	}
	return st.InitProcessPid
}

// TestInterruptDuringSystem: R ignores SIGINT while it waits in system().
// A timeout there must not let the code run on past the deadline (ending
// the child would return R from system() with the interrupt lost): the
// box is killed at the grace, the verdict is timeout, and the next result
// says the state was lost.
func TestInterruptDuringSystem(t *testing.T) {
	var calls atomic.Int64
	cfg := baseConfig()
	cfg.Timeout = 1500 * time.Millisecond
	cfg.InterruptGrace = time.Second
	cfg.Tools = seedTools(&calls)
	s := newSession(t, cfg)
	for _, code := range []string{
		`system("sleep 100"); add(1, 1)`,
		`for (i in 1:100) system("sleep 0.5"); add(1, 1)`,
	} {
		mustOK(t, s, "x <- 42")
		before := calls.Load()
		res, _ := s.Execute(context.Background(), code)
		if res == nil || res.Verdict != securer.VerdictTimeout {
			t.Errorf("%s: %+v, want a timeout", code, res)
			continue
		}
		if n := calls.Load() - before; n != 0 {
			t.Errorf("%s: code after the deadline ran (%d tool calls)", code, n)
		}
		next := mustOK(t, s, "exists('x')")
		if kept := next.Value.Go() == true; kept == next.StateLost {
			t.Errorf("%s: x kept %v, state_lost %v: they must disagree", code, kept, next.StateLost)
		}
	}
}

// TestInterruptWhileForking: a timeout while R forks with mcparallel. A
// child forked with the interrupt pending unwound through its copy of the
// runtime and sent a result of its own, which broke the next, innocent
// execution (protocol_error, state lost). Only the R that runs the
// execution may talk to the host.
func TestInterruptWhileForking(t *testing.T) {
	cfg := baseConfig()
	cfg.Timeout = time.Second
	cfg.Limits.Pids = 64
	s := newSession(t, cfg)
	for i, code := range []string{
		`repeat parallel::mcparallel(repeat {})`,
		`repeat { j <- parallel::mcparallel(Sys.sleep(0.2)) }`,
		`repeat parallel::mcparallel(Sys.sleep(100))`,
	} {
		mustOK(t, s, "x <- 42")
		res, _ := s.Execute(context.Background(), code)
		forkFailed := res != nil && res.Verdict == securer.VerdictError && strings.Contains(res.Error.Message, "unable to fork")
		if res == nil || (res.Verdict != securer.VerdictTimeout && !forkFailed) {
			t.Fatalf("%s: %+v, want a timeout (or fork failing at pids.max)", code, res)
		}
		next, err := s.Execute(context.Background(), "if (exists('x')) x else 'gone'")
		// On a loaded host R may miss the grace and the box is killed:
		// then the next result must say the state was lost. Never a
		// protocol error from a stray frame.
		killed := strings.Contains(res.Detail, "container was killed")
		if next == nil || next.Verdict != securer.VerdictOK || next.StateLost != killed ||
			(!killed && next.Value.Go() != 42.0) {
			t.Fatalf("case %d, after %s (verdict %s, detail %q): the next execution got verdict %v, state_lost %v, detail %q, err %v",
				i, code, res.Verdict, res.Detail, next.Verdict, next.StateLost, next.Detail, err)
		}
	}
}
