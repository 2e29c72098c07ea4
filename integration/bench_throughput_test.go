package integration

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
	// Why a fresh execution costs what it does on this machine: its page
	// faults (a fork makes every page of the warm R copy-on-write, for it
	// and for the copy), and what one page fault costs here (a first touch
	// of an anonymous page, timed in this process).
	warm, copied, err := faultsPerFresh(ctx, 50)
	if err != nil {
		b.Fatal(err)
	}
	faultUs := pageFaultMicros()
	b.Logf("page faults per fresh execution: the warm R %.0f, a copy %.0f until its code has run; one page fault here: %.1f us (%.1f ms of faults per execution, at least)",
		warm, copied, faultUs, (warm+copied)*faultUs/1000)
	b.ReportMetric(warm, "warm_faults/fresh_exec")
	b.ReportMetric(copied, "copy_faults/fresh_exec")
	b.ReportMetric(faultUs, "us/page_fault")
	b.ReportMetric(plainRate, "plain_exec/s")
	b.ReportMetric(plainCPU, "plain_cpu_ms/exec")
	b.ReportMetric(0, "ns/op")
}

// faultsPerFresh runs n fresh executions of `x <- 1+1` in one session and
// returns the minor page faults per execution of the warm R, and of a
// copy until its code has run (its result and exit fault more), both read
// by a copy from /proc.
func faultsPerFresh(ctx context.Context, n int) (warm, copied float64, err error) {
	s, err := testHost.NewSession(ctx, baseConfig())
	if err != nil {
		return 0, 0, err
	}
	defer s.Close()
	// Fields 4 and 10 of /proc/PID/stat: ppid and minflt (the command
	// name, field 2, holds no space here: "R").
	read := func() (warm, copied float64, err error) {
		res, err := s.ExecuteFresh(ctx, `me <- strsplit(readLines("/proc/self/stat"), " ")[[1]]
			parent <- strsplit(readLines(sprintf("/proc/%s/stat", me[4])), " ")[[1]]
			as.numeric(c(parent[10], me[10]))`)
		if err != nil {
			return 0, 0, err
		}
		v, ok := res.Value.Go().([]float64)
		if !ok || len(v) != 2 {
			return 0, 0, fmt.Errorf("reading the page faults: %v %+v", res.Value.Go(), res.Error)
		}
		return v[0], v[1], nil
	}
	if _, err := s.ExecuteFresh(ctx, "x <- 1+1"); err != nil { // the first is not typical
		return 0, 0, err
	}
	before, _, err := read()
	if err != nil {
		return 0, 0, err
	}
	for i := 0; i < n; i++ {
		if _, err := s.ExecuteFresh(ctx, "x <- 1+1"); err != nil {
			return 0, 0, err
		}
	}
	after, copied, err := read()
	if err != nil {
		return 0, 0, err
	}
	return (after - before) / float64(n+1), copied, nil
}

// pageFaultMicros is what a first touch of an anonymous page costs this
// process, in microseconds (the median of 5 rounds of 4,096 pages).
func pageFaultMicros() float64 {
	const pages = 4096
	var rounds []float64
	for r := 0; r < 5; r++ {
		m, err := unix.Mmap(-1, 0, pages*4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
		if err != nil {
			return 0
		}
		_ = unix.Madvise(m, unix.MADV_NOHUGEPAGE) // a fault per 4 KiB page
		t0 := time.Now()
		for i := 0; i < pages; i++ {
			m[i*4096] = 1
		}
		rounds = append(rounds, float64(time.Since(t0).Nanoseconds())/pages/1000)
		_ = unix.Munmap(m)
	}
	sort.Float64s(rounds)
	return rounds[len(rounds)/2]
}
