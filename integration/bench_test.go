package integration

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// Benchmarks print medians side by side with a baseline measured in the
// same run: bare R start-up on the host (R -s -e) is the yardstick.
// Run: make bench (or go test -tags seccomp -run '^$' -bench . ./integration/).

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func bareR(b *testing.B) time.Duration {
	start := time.Now()
	out, err := exec.Command("R", "-s", "-e", "1+1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "[1] 2") {
		b.Fatalf("bare R: %v %s", err, out)
	}
	return time.Since(start)
}

// BenchmarkStartup: bare R vs a cold session (start until R is ready) vs a
// one-shot Execute("1+1") (start, run, tear down).
func BenchmarkStartup(b *testing.B) {
	ctx := context.Background()
	var bare, cold, oneShot []time.Duration
	for i := 0; i < b.N; i++ {
		bare = append(bare, bareR(b))

		start := time.Now()
		s, err := testHost.NewSession(ctx, baseConfig())
		if err != nil {
			b.Fatal(err)
		}
		cold = append(cold, time.Since(start))
		s.Close()

		start = time.Now()
		res, err := testHost.Execute(ctx, baseConfig(), "1+1")
		if err != nil || res.Stdout != "[1] 2\n" {
			b.Fatalf("one-shot: %v %+v", err, res)
		}
		oneShot = append(oneShot, time.Since(start))
	}
	b.ReportMetric(ms(median(bare)), "bare_R_ms")
	b.ReportMetric(ms(median(cold)), "cold_session_ms")
	b.ReportMetric(ms(median(oneShot)), "one_shot_ms")
	b.ReportMetric(float64(median(oneShot))/float64(median(bare)), "one_shot/bare")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkUnsandboxed: what the sandbox costs, by the same measures
// without it (Config.UnsafeNoSandbox), against bare R in the same run.
func BenchmarkUnsandboxed(b *testing.B) {
	ctx := context.Background()
	var bare, boxed, host, firstBoxed, firstHost []time.Duration
	first := func(s *securer.Session) time.Duration {
		start := time.Now()
		if res, err := s.Execute(ctx, "1+1"); err != nil || res.Stdout != "[1] 2\n" {
			b.Fatalf("first execution: %v %+v", err, res)
		}
		return time.Since(start)
	}
	for i := 0; i < b.N; i++ {
		bare = append(bare, bareR(b))
		for _, cfg := range []securer.Config{baseConfig(), hostConfig()} {
			start := time.Now()
			s, err := testHost.NewSession(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			took := time.Since(start)
			f := first(s)
			s.Close()
			if cfg.UnsafeNoSandbox {
				host, firstHost = append(host, took), append(firstHost, f)
			} else {
				boxed, firstBoxed = append(boxed, took), append(firstBoxed, f)
			}
		}
	}
	b.ReportMetric(ms(median(bare)), "bare_R_ms")
	b.ReportMetric(ms(median(boxed)), "cold_boxed_ms")
	b.ReportMetric(ms(median(host)), "cold_unsandboxed_ms")
	b.ReportMetric(float64(median(boxed))/float64(median(bare)), "boxed/bare")
	b.ReportMetric(float64(median(host))/float64(median(bare)), "unsandboxed/bare")
	b.ReportMetric(ms(median(firstBoxed)), "first_exec_boxed_ms")
	b.ReportMetric(ms(median(firstHost)), "first_exec_unsandboxed_ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkWarmExecute: Execute("1+1") in a live session.
func BenchmarkWarmExecute(b *testing.B) {
	s, err := testHost.NewSession(context.Background(), baseConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := s.Execute(context.Background(), "1+1"); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.ReportMetric(float64(median(lat))/float64(time.Microsecond), "median_us")
}

// BenchmarkToolCall: 1,000 tool calls timed inside R, with the CPU each
// side spends per call (R's own, and this host process's), which a busy
// machine disturbs less than the wall time.
func BenchmarkToolCall(b *testing.B) {
	cfg := baseConfig()
	cfg.Tools = seedTools(nil)
	s, err := testHost.NewSession(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const calls = 1000
	var per, rCPU, hostCPU []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		before := processCPU(b)
		res, err := s.Execute(context.Background(),
			`t <- system.time(for (i in 1:1000) add(i, 1)); c(t[["elapsed"]], t[["user.self"]] + t[["sys.self"]])`)
		if err != nil {
			b.Fatal(err)
		}
		host := processCPU(b) - before
		secs, ok := res.Value.Go().([]float64)
		if !ok || len(secs) != 2 {
			b.Fatalf("timing: %#v", res.Value.Go())
		}
		per = append(per, time.Duration(secs[0]*float64(time.Second)/calls))
		rCPU = append(rCPU, time.Duration(secs[1]*float64(time.Second)/calls))
		hostCPU = append(hostCPU, host/calls)
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	b.ReportMetric(us(median(per)), "us/tool_call")
	b.ReportMetric(us(median(rCPU)), "R_cpu_us/call")
	b.ReportMetric(us(median(hostCPU)), "host_cpu_us/call")
	b.ReportMetric(0, "ns/op")
}

// processCPU is the CPU time this process has used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkOutput: 10,000 cat() lines streamed to the host.
func BenchmarkOutput(b *testing.B) {
	s, err := testHost.NewSession(context.Background(), baseConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		res, err := s.Execute(context.Background(), `for (i in 1:10000) cat("line", i, "\n")`)
		if err != nil || strings.Count(res.Stdout, "\n") != 10000 {
			b.Fatalf("%v", err)
		}
		lat = append(lat, time.Since(start))
	}
	b.ReportMetric(ms(median(lat)), "ms/10k_lines")
}

// BenchmarkFreshExecute: ExecuteFresh("1+1") (a fork of the warm R per
// execution) beside a warm Execute and bare R start-up, in one run.
func BenchmarkFreshExecute(b *testing.B) {
	s, err := testHost.NewSession(context.Background(), baseConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var freshLat, warmLat, bare []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if res, err := s.ExecuteFresh(context.Background(), "1+1"); err != nil || res.Stdout != "[1] 2\n" {
			b.Fatalf("%v %+v", err, res)
		}
		freshLat = append(freshLat, time.Since(start))
		start = time.Now()
		if _, err := s.Execute(context.Background(), "1+1"); err != nil {
			b.Fatal(err)
		}
		warmLat = append(warmLat, time.Since(start))
		if i < 10 {
			bare = append(bare, bareR(b))
		}
	}
	b.ReportMetric(ms(median(freshLat)), "fresh_ms")
	b.ReportMetric(ms(median(warmLat)), "warm_ms")
	b.ReportMetric(ms(median(bare)), "bare_R_ms")
	b.ReportMetric(float64(median(bare))/float64(median(freshLat)), "bare/fresh")
	b.ReportMetric(0, "ns/op")
}
