package integration

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// BenchmarkOneShot: the warm pool's one-shot op (Acquire + ExecuteFresh of
// `1+1` until the Result) on a pool of 1 and of 2, the whole cycle
// back-to-back (Acquire + ExecuteFresh + Release, one after the other), and
// sustained fresh executions per second with pools of 2 and 4 (one worker
// per box), each against bare `Rscript -e '1+1'` measured in the same run.
// Run: go test -tags 'seccomp netgo osusergo' -run '^$' -bench OneShot -benchtime 1x ./integration/
func BenchmarkOneShot(b *testing.B) {
	const rounds = 200
	var bare []time.Duration
	for i := 0; i < 11; i++ {
		bare = append(bare, bareRscript(b))
	}
	bareMed := median(bare)
	b.ReportMetric(ms(bareMed), "bare_Rscript_ms")
	for _, size := range []int{1, 2} {
		p := newBenchPool(b, size)
		// The op as a caller that finds a ready box sees it: the pool is
		// idle (every box clean) when it starts.
		op, rel := oneShotOps(b, p, size, rounds, true)
		// Back to back: the next Acquire follows the Release at once.
		cycle, _ := oneShotOps(b, p, size, rounds, false)
		p.Close()
		b.Logf("pool %d: one-shot op p50 %.2f p95 %.2f p99 %.2f ms (%.4fx bare Rscript %.1f ms); Release p50 %.3f ms; back-to-back cycle p50 %.2f p95 %.2f p99 %.2f ms",
			size, ms(pctD(op, 50)), ms(pctD(op, 95)), ms(pctD(op, 99)), float64(pctD(op, 50))/float64(bareMed), ms(bareMed),
			ms(pctD(rel, 50)), ms(pctD(cycle, 50)), ms(pctD(cycle, 95)), ms(pctD(cycle, 99)))
		b.ReportMetric(ms(pctD(op, 50)), fmt.Sprintf("pool%d_op_p50_ms", size))
		b.ReportMetric(ms(pctD(op, 95)), fmt.Sprintf("pool%d_op_p95_ms", size))
		b.ReportMetric(ms(pctD(op, 99)), fmt.Sprintf("pool%d_op_p99_ms", size))
		b.ReportMetric(float64(pctD(op, 50))/float64(bareMed), fmt.Sprintf("pool%d_op/bare", size))
		b.ReportMetric(ms(pctD(cycle, 50)), fmt.Sprintf("pool%d_cycle_p50_ms", size))
	}
	for _, size := range []int{2, 4} {
		p := newBenchPool(b, size)
		const total = 400
		jobs := make(chan struct{}, total)
		for i := 0; i < total; i++ {
			jobs <- struct{}{}
		}
		close(jobs)
		var wg sync.WaitGroup
		start := time.Now()
		for w := 0; w < size; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range jobs {
					if err := poolOneShot(p); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		rate := total / time.Since(start).Seconds()
		p.Close()
		b.Logf("pool %d, %d workers: %.0f fresh executions/s (%.1fx bare Rscript's %.1f/s)", size, size, rate, rate*bareMed.Seconds(), 1/bareMed.Seconds())
		b.ReportMetric(rate, fmt.Sprintf("pool%d_exec/s", size))
	}
	b.ReportMetric(0, "ns/op")
}

func bareRscript(b *testing.B) time.Duration {
	start := time.Now()
	out, err := exec.Command("Rscript", "-e", "1+1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "[1] 2") {
		b.Fatalf("bare Rscript: %v %s", err, out)
	}
	return time.Since(start)
}

func newBenchPool(b *testing.B, size int) *securer.Pool {
	p, err := testHost.NewPool(context.Background(), baseConfig(), size, securer.ResetFresh)
	if err != nil {
		b.Fatal(err)
	}
	// Warm up: the first executions of a box pay for page faults.
	for i := 0; i < 2*size; i++ {
		if err := poolOneShot(p); err != nil {
			b.Fatal(err)
		}
	}
	return p
}

// poolOneShot is the full cycle: Acquire, ExecuteFresh of 1+1, Release.
func poolOneShot(p *securer.Pool) error {
	ctx := context.Background()
	s, err := p.Acquire(ctx)
	if err != nil {
		return err
	}
	defer p.Release(s)
	res, err := s.ExecuteFresh(ctx, "x <- 1+1")
	if err != nil {
		return err
	}
	if res.Verdict != securer.VerdictOK {
		return fmt.Errorf("verdict %s: %s", res.Verdict, res.Detail)
	}
	return nil
}

// oneShotOps times rounds cycles: the op (Acquire + ExecuteFresh until the
// Result) and the Release after it. With settle, each op starts on a pool
// whose boxes are all idle again.
func oneShotOps(b *testing.B, p *securer.Pool, size, rounds int, settle bool) (op, rel []time.Duration) {
	ctx := context.Background()
	for i := 0; i < rounds; i++ {
		if settle {
			waitIdle(b, p, size)
		}
		start := time.Now()
		s, err := p.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		res, err := s.ExecuteFresh(ctx, "x <- 1+1")
		if err != nil || res.Verdict != securer.VerdictOK {
			b.Fatalf("ExecuteFresh: %v %+v", err, res)
		}
		op = append(op, time.Since(start))
		start = time.Now()
		p.Release(s)
		rel = append(rel, time.Since(start))
	}
	return op, rel
}

// waitIdle waits until every box of the pool is idle (clean and ready).
func waitIdle(b *testing.B, p *securer.Pool, size int) {
	deadline := time.Now().Add(30 * time.Second)
	for p.Status().Idle < size {
		if time.Now().After(deadline) {
			b.Fatalf("pool not idle after 30 s: %+v", p.Status())
		}
		time.Sleep(time.Millisecond)
	}
	// Before clean-up moved after Release, an idle box still had its
	// sweep pending: give it the time a caller arriving later would.
	time.Sleep(20 * time.Millisecond)
}

// pctD is the q-th percentile (nearest rank) of ds.
func pctD(ds []time.Duration, q int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*q + 99) / 100
	return s[max(i-1, 0)]
}
