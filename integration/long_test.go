package integration

// Long runs: crash cycles, churn and soak. By default each runs a short
// version inside the normal suite; the full runs are one make target each
// (make crash-cycles, make churn, make soak), with these flags.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

var (
	crashCycles  = flag.Int("crash-cycles", 50, "TestCrashCycles: number of crash cycles")
	churnCycles  = flag.Int("churn-cycles", 50, "TestChurn: create/execute/destroy cycles")
	churnWorkers = flag.Int("churn-workers", 2, "TestChurn: cycles run concurrently")
	churnWarmup  = flag.Int("churn-warmup", 100, "TestChurn: cycles run before the baseline is taken")
	soakFor      = flag.Duration("soak", 20*time.Second, "TestSoak: how long to run")
	soakSessions = flag.Int("soak-sessions", 8, "TestSoak: concurrent sessions")
)

// crashKind is one way a session can end badly, with the outcome that
// counts as handled.
type crashKind struct {
	name string
	run  func(s *securer.Session, started <-chan struct{}) error
}

func wantVerdict(res *securer.Result, err error, ok ...securer.Verdict) error {
	if res == nil {
		return fmt.Errorf("no result: %v", err)
	}
	if !slices.Contains(ok, res.Verdict) {
		return fmt.Errorf("verdict %s (%v, detail %q), want one of %v", res.Verdict, err, res.Detail, ok)
	}
	return nil
}

func killAfter(pid int, wait func()) {
	go func() {
		wait()
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}()
}

func crashKinds() []crashKind {
	ctx := context.Background()
	after := func(d time.Duration) func() { return func() { time.Sleep(d) } }
	// Kinds that are not about the clock run with a timeout a loaded
	// machine cannot reach, so that only their own fault ends them.
	untimed := securer.ExecOptions{Timeout: 2 * time.Minute}
	exec := func(s *securer.Session, code string) (*securer.Result, error) {
		return s.ExecuteWith(ctx, code, untimed)
	}
	return []crashKind{
		{"kill R idle", func(s *securer.Session, _ <-chan struct{}) error {
			id := s.ID()
			if err := syscall.Kill(hostPidOf(s), syscall.SIGKILL); err != nil {
				return err
			}
			for deadline := time.Now().Add(5 * time.Second); s.Alive() || len(leftoversOf(id)) > 0; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					return fmt.Errorf("dead idle session not cleaned within 5 s: %v", leftoversOf(id))
				}
			}
			return nil
		}},
		{"kill R mid-execute", func(s *securer.Session, _ <-chan struct{}) error {
			killAfter(hostPidOf(s), after(100*time.Millisecond))
			res, err := exec(s, "Sys.sleep(10)")
			return wantVerdict(res, err, securer.VerdictKilled)
		}},
		{"kill R mid-tool-call", func(s *securer.Session, started <-chan struct{}) error {
			killAfter(hostPidOf(s), func() { <-started })
			res, err := exec(s, "block(1)")
			return wantVerdict(res, err, securer.VerdictKilled)
		}},
		{"out of memory", func(s *securer.Session, _ <-chan struct{}) error {
			res, err := exec(s, "x <- rep(1, 2^25); y <- rep(2, 2^25)")
			return wantVerdict(res, err, securer.VerdictOutOfMemory, securer.VerdictError)
		}},
		{"timeout", func(s *securer.Session, _ <-chan struct{}) error {
			res, err := s.Execute(ctx, "while (TRUE) {}")
			return wantVerdict(res, err, securer.VerdictTimeout)
		}},
		{"quit", func(s *securer.Session, _ <-chan struct{}) error {
			res, err := exec(s, `quit(save = "no", status = 3)`)
			return wantVerdict(res, err, securer.VerdictKilled)
		}},
		{"segfault", func(s *securer.Session, _ <-chan struct{}) error {
			res, err := exec(s, "tools::pskill(Sys.getpid(), 11L); Sys.sleep(5)")
			return wantVerdict(res, err, securer.VerdictKilled)
		}},
		{"protocol violation", func(s *securer.Session, _ <-chan struct{}) error {
			if res, err := exec(s, strings.ReplaceAll(rtPrelude, "body(add)", "body(block)")); err != nil {
				return fmt.Errorf("prelude: %v %+v", err, res)
			}
			res, err := exec(s, `.rt$send("{not json"); Sys.sleep(5)`)
			return wantVerdict(res, err, securer.VerdictProtocolError)
		}},
		{"close mid-execute", func(s *securer.Session, _ <-chan struct{}) error {
			go func() { time.Sleep(100 * time.Millisecond); s.Close() }()
			res, err := s.Execute(ctx, "Sys.sleep(10)")
			if !errors.Is(err, securer.ErrSessionClosed) {
				return fmt.Errorf("close mid-execute: %v %+v", err, res)
			}
			return nil
		}},
		{"fresh copy killed", func(s *securer.Session, _ <-chan struct{}) error {
			res, err := s.ExecuteWith(ctx, "tools::pskill(Sys.getpid(), tools::SIGKILL); Sys.sleep(5)", securer.ExecOptions{Fresh: true, Timeout: untimed.Timeout})
			return wantVerdict(res, err, securer.VerdictError, securer.VerdictKilled)
		}},
		{"fork bomb", func(s *securer.Session, _ <-chan struct{}) error {
			res, err := s.Execute(ctx, "repeat parallel::mcparallel(Sys.sleep(10))")
			return wantVerdict(res, err, securer.VerdictError, securer.VerdictTimeout)
		}},
	}
}

// leftoversOf filters leftovers() to one session.
func leftoversOf(id string) []string {
	var out []string
	for _, l := range leftovers() {
		if strings.Contains(l, id) {
			out = append(out, l)
		}
	}
	return out
}

// TestCrashCycles: mixed crashes, one fresh session each; after every
// cycle nothing of the run may be left on the host. Every 25th cycle kills
// the executor itself (a child process) and lets the next start reap.
func TestCrashCycles(t *testing.T) {
	started := make(chan struct{}, 1)
	cfg := baseConfig()
	cfg.Timeout = time.Second
	cfg.InterruptGrace = 500 * time.Millisecond
	cfg.Limits = securer.Limits{MemoryBytes: 128 << 20, Pids: 32, CPUs: 1, TmpBytes: 16 << 20}
	cfg.Tools = []securer.Tool{{Name: "block", Args: []securer.Arg{{Name: "s"}},
		Handler: func(ctx context.Context, _ map[string]securer.Value) (any, error) {
			select {
			case started <- struct{}{}:
			default:
			}
			<-ctx.Done()
			return nil, ctx.Err()
		}}}
	kinds := crashKinds()
	counts := map[string]int{}
	begin := time.Now()
	for i := 0; i < *crashCycles; i++ {
		kind := kinds[i%len(kinds)]
		if i%25 == 24 {
			kind = crashKind{name: "kill the executor"}
		}
		if kind.run == nil {
			if err := hostCrashCycle(); err != nil {
				t.Fatalf("cycle %d (%s): %v", i, kind.name, err)
			}
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			s, err := testHost.NewSession(ctx, cfg)
			cancel()
			if err != nil {
				t.Fatalf("cycle %d: NewSession: %v", i, err)
			}
			select {
			case <-started:
			default:
			}
			err = kind.run(s, started)
			s.Close()
			if err != nil {
				t.Fatalf("cycle %d (%s): %v", i, kind.name, err)
			}
		}
		if left := leftovers(); len(left) > 0 {
			t.Fatalf("cycle %d (%s) left behind:\n  %s", i, kind.name, strings.Join(left, "\n  "))
		}
		counts[kind.name]++
		if (i+1)%100 == 0 {
			t.Logf("%d cycles in %s", i+1, time.Since(begin).Round(time.Second))
		}
	}
	t.Logf("crash cycles: %d in %s, zero leftovers after each; by kind: %v", *crashCycles, time.Since(begin).Round(time.Second), counts)
}

// hostCrashCycle: a child executor with a session is killed with -9; the
// next start reaps what it left.
func hostCrashCycle() error {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"=1", runIDEnv+"="+runID)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	buf := make([]byte, 128)
	n, _ := out.Read(buf)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if n == 0 {
		return errors.New("crash child reported nothing")
	}
	_, err = testHost.Reap(context.Background())
	return err
}

// hostHealth: what churn and soak watch for returning to baseline.
type hostHealth struct {
	rssKiB, fds, goroutines, mounts int
	heapObjects                     uint64 // live Go heap objects
}

func readHealth() hostHealth {
	runtime.GC()
	debug.FreeOSMemory()
	h := hostHealth{rssKiB: int(vmRSS() >> 10)}
	h.fds, h.goroutines = countFDs(), runtime.NumGoroutine()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h.heapObjects = ms.HeapObjects
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		h.mounts = strings.Count(string(b), "\n")
	}
	return h
}

// within5 reports whether now is at most 5 % over base (with a floor of
// one unit, for small counts).
func within5(now, base int) bool { return now <= base+max(base/20, 1) }

// TestChurn: create/execute/destroy cycles must leave the executor's RSS,
// fds, goroutines and the mount table back at their baseline (within 5 %).
func TestChurn(t *testing.T) {
	cfg := baseConfig()
	cfg.Tools = seedTools(nil)
	cycle := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		res, err := testHost.Execute(ctx, cfg, "add(1, 2)")
		if err != nil || res.Value.Go() != 3.0 {
			return fmt.Errorf("execute: %v %+v", err, res)
		}
		return nil
	}
	// Warm up, at the run's own concurrency: one-time state (the runtime
	// dir, libraries' globals) and the Go runtime's working size for this
	// load (heap arena, its GC metadata, stack pools) are not leaks.
	var warm sync.WaitGroup
	for range *churnWorkers {
		warm.Go(func() {
			for range *churnWarmup / *churnWorkers {
				if err := cycle(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	warm.Wait()
	if t.Failed() {
		return
	}
	base := readHealth()
	var done, failed atomic.Int64
	var firstErr sync.Once
	var errMsg string
	begin := time.Now()
	work := make(chan int)
	var wg sync.WaitGroup
	for range *churnWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := cycle(); err != nil {
					failed.Add(1)
					firstErr.Do(func() { errMsg = fmt.Sprintf("cycle %d: %v", i, err) })
					continue
				}
				if n := done.Add(1); n%1000 == 0 {
					h := readHealth()
					t.Logf("%d cycles in %s: RSS %d KiB, fds %d, goroutines %d, mounts %d, heap objects %d", n, time.Since(begin).Round(time.Second), h.rssKiB, h.fds, h.goroutines, h.mounts, h.heapObjects)
				}
			}
		}()
	}
	for i := range *churnCycles {
		work <- i
	}
	close(work)
	wg.Wait()
	took := time.Since(begin)
	var end hostHealth
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		end = readHealth()
		if (within5(end.rssKiB, base.rssKiB) && within5(end.fds, base.fds) && within5(end.goroutines, base.goroutines) && end.mounts <= base.mounts) || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("churn: %d cycles (%d workers) in %s, %.1f/s; baseline RSS %d KiB fds %d goroutines %d mounts %d heap objects %d; after RSS %d KiB (%+.1f%%) fds %d goroutines %d mounts %d heap objects %d",
		*churnCycles, *churnWorkers, took.Round(time.Second), float64(*churnCycles)/took.Seconds(),
		base.rssKiB, base.fds, base.goroutines, base.mounts, base.heapObjects,
		end.rssKiB, 100*float64(end.rssKiB-base.rssKiB)/float64(base.rssKiB), end.fds, end.goroutines, end.mounts, end.heapObjects)
	if failed.Load() > 0 {
		t.Errorf("%d of %d cycles failed; first: %s", failed.Load(), *churnCycles, errMsg)
	}
	if !within5(end.rssKiB, base.rssKiB) {
		t.Errorf("RSS %d KiB, baseline %d KiB: over 5 %%", end.rssKiB, base.rssKiB)
	}
	if !within5(end.fds, base.fds) || !within5(end.goroutines, base.goroutines) || end.mounts > base.mounts {
		t.Errorf("not back at baseline: fds %d/%d goroutines %d/%d mounts %d/%d", end.fds, base.fds, end.goroutines, base.goroutines, end.mounts, base.mounts)
	}
	if left := leftovers(); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestSoak: many sessions echo nonces through a tool for a while. No
// result may be lost, crossed between sessions or duplicated. It reports
// the tool round trip as R sees it and how quickly a separate health
// session answers meanwhile.
func TestSoak(t *testing.T) {
	var seen sync.Map // nonce -> session index, filled by the tool
	var dupes, toolCalls atomic.Int64
	cfg := baseConfig()
	cfg.Timeout = 60 * time.Second
	cfg.Limits = securer.Limits{MemoryBytes: 256 << 20, Pids: 32, CPUs: 1, TmpBytes: 16 << 20}
	cfg.Tools = []securer.Tool{{Name: "echo_nonce", Args: []securer.Arg{{Name: "nonce", Type: "character"}},
		Handler: func(_ context.Context, args map[string]securer.Value) (any, error) {
			n, _ := args["nonce"].Go().(string)
			if _, loaded := seen.LoadOrStore(n, true); loaded {
				dupes.Add(1)
			}
			toolCalls.Add(1)
			return n, nil
		}}}
	sessions := make([]*securer.Session, *soakSessions)
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			s, err := testHost.NewSession(ctx, cfg)
			if err != nil {
				t.Errorf("session %d: %v", i, err)
				return
			}
			sessions[i] = s
		}()
	}
	wg.Wait()
	for _, s := range sessions {
		if s != nil {
			defer s.Close()
		}
	}
	if t.Failed() {
		return
	}
	health := newSession(t, baseConfig())

	const callsPerExec = 10
	var execs, lost, crossed atomic.Int64
	var rtMu sync.Mutex
	var roundTrips []float64 // ms, as R measured each call
	stop := time.Now().Add(*soakFor)
	for i, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(stop); n++ {
				nonces := make([]string, callsPerExec)
				for k := range nonces {
					nonces[k] = fmt.Sprintf("s%d-e%d-c%d-%s", i, n, k, randHex(6))
				}
				code := fmt.Sprintf(`n <- c(%s); out <- character(length(n)); ms <- numeric(length(n))
					for (k in seq_along(n)) { t0 <- Sys.time(); out[k] <- echo_nonce(n[k]); ms[k] <- 1000 * as.numeric(Sys.time() - t0, units = "secs") }
					list(out = out, ms = ms)`, `"`+strings.Join(nonces, `","`)+`"`)
				res, err := s.Execute(context.Background(), code)
				if err != nil || res.Verdict != securer.VerdictOK {
					lost.Add(callsPerExec)
					t.Errorf("session %d exec %d: %v", i, n, err)
					continue
				}
				v, _ := res.Value.Go().(map[string]any)
				out := anyStrings(v["out"])
				for k, want := range nonces {
					switch {
					case k >= len(out):
						lost.Add(1)
					case out[k] != want:
						crossed.Add(1)
					}
				}
				if ms, ok := v["ms"].([]float64); ok {
					rtMu.Lock()
					roundTrips = append(roundTrips, ms...)
					rtMu.Unlock()
				}
				execs.Add(1)
				time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
			}
		}()
	}
	// The health probe: a separate session answers 1+1 every 500 ms.
	var healthMs []float64
	for time.Now().Before(stop) {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := health.Execute(ctx, "1+1")
		cancel()
		if err != nil || res.Value.Go() != 2.0 {
			t.Errorf("health probe failed during the soak: %v", err)
		}
		healthMs = append(healthMs, float64(time.Since(start).Microseconds())/1000)
		time.Sleep(500 * time.Millisecond)
	}
	wg.Wait()
	slices.Sort(roundTrips)
	slices.Sort(healthMs)
	t.Logf("soak: %d sessions for %s: %d executions, %d tool calls (%.0f/s); lost %d, crossed %d, duplicated %d; tool round trip p50 %.2f ms p99 %.2f ms; health 1+1 p50 %.1f ms p99 %.1f ms (%d probes)",
		*soakSessions, *soakFor, execs.Load(), toolCalls.Load(), float64(toolCalls.Load())/soakFor.Seconds(),
		lost.Load(), crossed.Load(), dupes.Load(), pct(roundTrips, 50), pct(roundTrips, 99), pct(healthMs, 50), pct(healthMs, 99), len(healthMs))
	if lost.Load()+crossed.Load()+dupes.Load() > 0 {
		t.Errorf("lost %d, crossed %d, duplicated %d", lost.Load(), crossed.Load(), dupes.Load())
	}
	if execs.Load() == 0 {
		t.Error("no execution completed")
	}
}

// anyStrings reads a character vector from Value.Go().
func anyStrings(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []string:
		return x
	}
	return nil
}

func pct(sorted []float64, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, len(sorted)*p/100)]
}
