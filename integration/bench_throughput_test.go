package integration

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// cpuSeconds is the CPU time all cores spent busy since boot (/proc/stat).
func cpuSeconds() float64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(strings.SplitN(string(data), "\n", 2)[0])
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		x, _ := strconv.ParseFloat(v, 64)
		busy += x
	}
	return busy / 100
}

// selfCPUSeconds is this process's own CPU time (the engine's share).
func selfCPUSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// BenchmarkFreshThroughput: sustained fresh executions of `x <- 1+1`
// through a Pool, with the CPU each costs (all cores, and this process's
// share), against the same count of plain executions in one live session
// measured in the same run (the engine and R without the fork and the
// sweep).
func BenchmarkFreshThroughput(b *testing.B) {
	const total = 300
	ctx := context.Background()
	run := func(workers int, do func() error) (rate, cpuMs, selfMs float64) {
		jobs := make(chan struct{}, total)
		for i := 0; i < total; i++ {
			jobs <- struct{}{}
		}
		close(jobs)
		var wg sync.WaitGroup
		c0, s0, t0 := cpuSeconds(), selfCPUSeconds(), time.Now()
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range jobs {
					if err := do(); err != nil {
						b.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		el := time.Since(t0).Seconds()
		return total / el, (cpuSeconds() - c0) * 1000 / total, (selfCPUSeconds() - s0) * 1000 / total
	}
	s, err := testHost.NewSession(ctx, baseConfig())
	if err != nil {
		b.Fatal(err)
	}
	plainRate, plainCPU, _ := run(1, func() error { _, err := s.Execute(ctx, "x <- 1+1"); return err })
	s.Close()
	b.Logf("plain executions in one session: %.0f/s, %.2f ms CPU each", plainRate, plainCPU)
	for _, size := range []int{2, 4} {
		p, err := testHost.NewPool(ctx, baseConfig(), size, securer.ResetFresh)
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(idleSettle)
		rate, cpu, self := run(2*size, func() error { _, err := p.Execute(ctx, "x <- 1+1"); return err })
		p.Close()
		b.Logf("pool of %d: %.0f fresh executions/s, %.2f ms CPU each (this process %.2f ms)", size, rate, cpu, self)
		b.ReportMetric(rate, fmt.Sprintf("pool%d_exec/s", size))
		b.ReportMetric(cpu, fmt.Sprintf("pool%d_cpu_ms/exec", size))
		b.ReportMetric(self, fmt.Sprintf("pool%d_engine_cpu_ms/exec", size))
	}
	b.ReportMetric(plainRate, "plain_exec/s")
	b.ReportMetric(plainCPU, "plain_cpu_ms/exec")
	b.ReportMetric(0, "ns/op")
}
