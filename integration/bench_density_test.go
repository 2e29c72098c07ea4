package integration

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// idleSettle is how long an idle box is left before it is measured: the
// runtime gives back freed memory after a second idle (transport.R,
// trim_after_ms).
const idleSettle = 2 * time.Second

// boxMemory is one idle session's memory, by where it goes (KiB).
type boxMemory struct {
	pss, rss         float64 // all the box's processes
	heap, anon, file float64 // R's PSS: its malloc heap, other anonymous maps, file-backed maps
	tini             float64 // tini's PSS
	pageTables       float64 // VmPTE of the box's processes
	cgroup, kernel   float64 // the cgroup's charge, and its kernel part
}

// measureBox reads the memory of session id's processes from /proc and
// its cgroup.
func measureBox(b *testing.B, id string) boxMemory {
	var m boxMemory
	for _, pid := range cgroupProcsOf(b, id) {
		m.pss += smapsKB(pid, "Pss:")
		m.rss += smapsKB(pid, "Rss:")
		m.pageTables += fileKB(fmt.Sprintf("/proc/%d/status", pid), "VmPTE:")
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) == "tini" {
			m.tini += smapsKB(pid, "Pss:")
			continue
		}
		heap, anon, file := smapsByKind(pid)
		m.heap, m.anon, m.file = m.heap+heap, m.anon+anon, m.file+file
	}
	m.cgroup, m.kernel = cgroupMemoryKB(id)
	return m
}

// smapsByKind splits a process's PSS into its malloc heap, other
// anonymous mappings (stack included) and file-backed mappings.
func smapsByKind(pid int) (heap, anon, file float64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, 0, 0
	}
	defer f.Close()
	kind := &anon
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if strings.Contains(fields[0], "-") && len(fields) >= 5 { // a mapping's header line
			switch {
			case len(fields) >= 6 && fields[5] == "[heap]":
				kind = &heap
			case len(fields) >= 6 && strings.HasPrefix(fields[5], "/"):
				kind = &file
			default:
				kind = &anon
			}
			continue
		}
		if fields[0] == "Pss:" && len(fields) >= 2 {
			v, _ := strconv.ParseFloat(fields[1], 64)
			*kind += v
		}
	}
	return heap, anon, file
}

// cgroupMemoryKB is the box's cgroup charge and its kernel part (v1:
// memory.kmem.usage_in_bytes; v2: memory.stat's kernel).
func cgroupMemoryKB(id string) (charge, kernel float64) {
	v1 := filepath.Join("/sys/fs/cgroup/memory", cgroupParent, id)
	if usage, err := os.ReadFile(filepath.Join(v1, "memory.usage_in_bytes")); err == nil {
		charge, _ = strconv.ParseFloat(strings.TrimSpace(string(usage)), 64)
		kmem, _ := os.ReadFile(filepath.Join(v1, "memory.kmem.usage_in_bytes"))
		kernel, _ = strconv.ParseFloat(strings.TrimSpace(string(kmem)), 64)
		return charge / 1024, kernel / 1024
	}
	v2 := filepath.Join("/sys/fs/cgroup", cgroupParent, id)
	usage, _ := os.ReadFile(filepath.Join(v2, "memory.current"))
	charge, _ = strconv.ParseFloat(strings.TrimSpace(string(usage)), 64)
	return charge / 1024, fileKB(filepath.Join(v2, "memory.stat"), "kernel") / 1024
}

// bareRIdlePSS starts R on the host as bare Rscript runs (the same
// default packages the box loads, nothing of the runtime) and measures it
// idle: the yardstick for a session's memory.
func bareRIdlePSS(b *testing.B) float64 {
	cmd := exec.Command("Rscript", "--vanilla", "-e", "invisible(1+1); Sys.sleep(30)")
	if err := cmd.Start(); err != nil {
		b.Fatalf("bare R: %v", err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}()
	time.Sleep(idleSettle)
	// Rscript execs R's shell script, which execs R: the pid is R's.
	return smapsKB(cmd.Process.Pid, "Pss:")
}

func mib(kb float64) float64 { return kb / 1024 }

// BenchmarkIdleMemory: memory of 16 idle sessions, broken down, against an
// idle bare R on the host measured in the same run; and how many would
// fit in the host's available memory at that PSS.
func BenchmarkIdleMemory(b *testing.B) {
	const n = 16
	sessions := startIdle(b, n, nil)
	defer closeAll(sessions)
	time.Sleep(idleSettle)
	var all []boxMemory
	for _, s := range sessions {
		all = append(all, measureBox(b, s.ID()))
	}
	med := func(get func(boxMemory) float64) float64 {
		var xs []float64
		for _, m := range all {
			xs = append(xs, get(m))
		}
		return medianF(xs)
	}
	bare := mib(bareRIdlePSS(b))
	pss := mib(med(func(m boxMemory) float64 { return m.pss }))
	b.ReportMetric(bare, "bare_R_PSS_MiB")
	b.ReportMetric(pss, "PSS_MiB/session")
	b.ReportMetric(pss/bare, "PSS/bare_R")
	b.ReportMetric(mib(med(func(m boxMemory) float64 { return m.rss })), "RSS_MiB/session")
	b.ReportMetric(mib(med(func(m boxMemory) float64 { return m.heap })), "R_heap_MiB")
	b.ReportMetric(mib(med(func(m boxMemory) float64 { return m.anon })), "R_other_anon_MiB")
	b.ReportMetric(mib(med(func(m boxMemory) float64 { return m.file })), "R_files_MiB")
	b.ReportMetric(mib(med(func(m boxMemory) float64 { return m.tini })), "tini_MiB")
	b.ReportMetric(med(func(m boxMemory) float64 { return m.pageTables }), "page_tables_KiB")
	b.ReportMetric(mib(med(func(m boxMemory) float64 { return m.cgroup })), "cgroup_MiB/session")
	b.ReportMetric(mib(med(func(m boxMemory) float64 { return m.kernel })), "cgroup_kernel_MiB")
	b.ReportMetric(meminfoKB("MemAvailable:")/1024/pss, "sessions_that_fit")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkDensity starts idle sessions one after another up to
// SECURER_DENSITY_N (default 300) and, at each checkpoint, reports the
// per-session PSS, the host memory used per session (MemTotal -
// MemAvailable, against the count before any was started) and the start
// latency of the sessions started since the last checkpoint. It stops
// early, saying so, when the host's available memory falls below 2 GiB.
func BenchmarkDensity(b *testing.B) {
	target := 300
	if v, err := strconv.Atoi(os.Getenv("SECURER_DENSITY_N")); err == nil && v > 0 {
		target = v
	}
	var checkpoints []int
	for _, c := range []int{10, 50, 100, 200, 300, 500, 750, 1000} {
		if c < target {
			checkpoints = append(checkpoints, c)
		}
	}
	checkpoints = append(checkpoints, target)
	used := func() float64 { return meminfoKB("MemTotal:") - meminfoKB("MemAvailable:") }
	bare := mib(bareRIdlePSS(b))
	base := used()
	var sessions []*securer.Session
	defer func() { closeAll(sessions) }()
	b.Logf("bare R idle PSS %.1f MiB", bare)
	b.Logf("%8s %14s %14s %12s %12s", "sessions", "PSS MiB/sess", "host MiB/sess", "start p50 ms", "start p95 ms")
	var lastPSS, lastHost, lastStart float64
	reached := 0
	for _, c := range checkpoints {
		var starts []time.Duration
		for len(sessions) < c {
			if meminfoKB("MemAvailable:") < 2<<20 {
				b.Logf("stopped at %d sessions: under 2 GiB available", len(sessions))
				break
			}
			t0 := time.Now()
			s, err := testHost.NewSession(context.Background(), baseConfig())
			if err != nil {
				b.Fatalf("session %d: %v", len(sessions)+1, err)
			}
			starts = append(starts, time.Since(t0))
			sessions = append(sessions, s)
		}
		if len(starts) == 0 {
			break
		}
		time.Sleep(idleSettle)
		var pss []float64
		for _, s := range sessions {
			var p float64
			for _, pid := range cgroupProcsOf(b, s.ID()) {
				p += smapsKB(pid, "Pss:")
			}
			pss = append(pss, p)
		}
		reached = len(sessions)
		lastPSS, lastHost = mib(medianF(pss)), mib(used()-base)/float64(reached)
		lastStart = ms(median(starts))
		b.Logf("%8d %14.1f %14.1f %12.0f %12.0f", reached, lastPSS, lastHost, lastStart, ms(pctD(starts, 95)))
	}
	b.ReportMetric(float64(reached), "sessions")
	b.ReportMetric(lastPSS, "PSS_MiB/session")
	b.ReportMetric(lastPSS/bare, "PSS/bare_R")
	b.ReportMetric(lastHost, "host_MiB/session")
	b.ReportMetric(lastStart, "start_p50_ms_last_step")
	b.ReportMetric(meminfoKB("MemTotal:")/1024/lastHost, "sessions_per_host_RAM")
	b.ReportMetric(0, "ns/op")
}

func startIdle(b *testing.B, n int, cfg *securer.Config) []*securer.Session {
	c := baseConfig()
	if cfg != nil {
		c = *cfg
	}
	var sessions []*securer.Session
	for i := 0; i < n; i++ {
		s, err := testHost.NewSession(context.Background(), c)
		if err != nil {
			closeAll(sessions)
			b.Fatal(err)
		}
		if _, err := s.Execute(context.Background(), "1+1"); err != nil {
			closeAll(sessions)
			b.Fatal(err)
		}
		sessions = append(sessions, s)
	}
	return sessions
}

func closeAll(sessions []*securer.Session) {
	for _, s := range sessions {
		s.Close()
	}
}
