package integration

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// BenchmarkPool: acquire/release of an idle pool, a fresh-state execute
// through the pool, and sustained executions per second from 16 goroutines
// over 8 sessions, without and with a preloaded package.
func BenchmarkPool(b *testing.B) {
	variants := []struct {
		name, code string
		preload    []string
	}{
		{"1+1", "x <- 1+1", nil},
		// splines is a base package the runtime does not load itself.
		{"splines", "x <- dim(splines::bs(1:10, df = 3))", nil},
		{"splines_preloaded", "x <- dim(splines::bs(1:10, df = 3))", []string{"stats", "splines"}},
	}
	for _, v := range variants {
		cfg := baseConfig()
		cfg.Preload = v.preload
		name, code := v.name, v.code
		b.Run(name, func(b *testing.B) {
			p, err := testHost.NewPool(context.Background(), cfg, 8, securer.ResetFresh)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			ctx := context.Background()
			var acq, exec []time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				s, err := p.Acquire(ctx)
				if err != nil {
					b.Fatal(err)
				}
				p.Release(s)
				acq = append(acq, time.Since(start))
				start = time.Now()
				if _, err := p.Execute(ctx, code); err != nil {
					b.Fatal(err)
				}
				exec = append(exec, time.Since(start))
			}
			const total, workers = 400, 16
			var wg sync.WaitGroup
			jobs := make(chan int, total)
			for i := 0; i < total; i++ {
				jobs <- i
			}
			close(jobs)
			start := time.Now()
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range jobs {
						if _, err := p.Execute(ctx, code); err != nil {
							b.Error(err)
						}
					}
				}()
			}
			wg.Wait()
			rate := float64(total) / time.Since(start).Seconds()
			b.ReportMetric(float64(median(acq))/float64(time.Microsecond), "acquire_us")
			b.ReportMetric(ms(median(exec)), "fresh_exec_ms")
			b.ReportMetric(rate, "exec/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func cgroupProcsOf(b testing.TB, id string) []int {
	for _, dir := range []string{filepath.Join("/sys/fs/cgroup/pids", cgroupParent, id), filepath.Join("/sys/fs/cgroup", cgroupParent, id)} {
		data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			continue
		}
		var pids []int
		for _, f := range strings.Fields(string(data)) {
			pid, _ := strconv.Atoi(f)
			pids = append(pids, pid)
		}
		return pids
	}
	b.Fatalf("no cgroup for %s", id)
	return nil
}

func smapsKB(pid int, key string) float64 {
	return fileKB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), key)
}

func meminfoKB(key string) float64 { return fileKB("/proc/meminfo", key) }

func fileKB(path, key string) float64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) >= 2 && fields[0] == key {
			v, _ := strconv.ParseFloat(fields[1], 64)
			return v
		}
	}
	return 0
}

func medianF(xs []float64) float64 {
	ds := make([]time.Duration, len(xs))
	for i, x := range xs {
		ds[i] = time.Duration(x * 1000)
	}
	return float64(median(ds)) / 1000
}
