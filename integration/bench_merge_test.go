package integration

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

func ksmValue(name string) float64 {
	data, err := os.ReadFile("/sys/kernel/mm/ksm/" + name)
	if err != nil {
		return -1
	}
	v, _ := strconv.ParseFloat(strings.TrimSpace(string(data)), 64)
	return v
}

// ksmdSeconds is the CPU time ksmd has used.
func ksmdSeconds() float64 {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		comm, _ := os.ReadFile(d + "/comm")
		if strings.TrimSpace(string(comm)) != "ksmd" {
			continue
		}
		st, _ := os.ReadFile(d + "/stat")
		s := string(st)
		f := strings.Fields(s[strings.LastIndex(s, ")")+2:])
		if len(f) < 13 {
			return -1
		}
		u, _ := strconv.ParseFloat(f[11], 64)
		k, _ := strconv.ParseFloat(f[12], 64)
		return (u + k) / 100 // clock ticks
	}
	return -1
}

// BenchmarkPageMerging: SECURER_MERGE_N (50) idle sessions on a Host with
// UnsafeMergePages, against the same count without it measured first in
// the same run: PSS and host memory per session once KSM has merged what
// it will, how long that took and ksmd's CPU; then a fresh execution's
// latency in a merged box (its copy takes its pages back) against one in
// a box without merging. It needs a host that runs KSM
// (/sys/kernel/mm/ksm/run = 1), which only the operator turns on.
func BenchmarkPageMerging(b *testing.B) {
	if ksmValue("run") != 1 {
		b.Skip("the host does not run KSM (/sys/kernel/mm/ksm/run is not 1): page merging saves nothing here; as root: echo 1 > /sys/kernel/mm/ksm/run (pages_to_scan 1000)")
	}
	n := 50
	if v, err := strconv.Atoi(os.Getenv("SECURER_MERGE_N")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	used := func() float64 { return meminfoKB("MemTotal:") - meminfoKB("MemAvailable:") }
	idle := func(h securer.Host) (pss, host float64, sessions []*securer.Session) {
		base := used()
		for i := 0; i < n; i++ {
			s, err := h.NewSession(ctx, baseConfig())
			if err != nil {
				closeAll(sessions)
				b.Fatal(err)
			}
			sessions = append(sessions, s)
		}
		time.Sleep(idleSettle)
		var xs []float64
		for _, s := range sessions {
			xs = append(xs, measureBox(b, s.ID()).pss)
		}
		return mib(medianF(xs)), mib(used()-base) / float64(n), sessions
	}
	freshMs := func(sessions []*securer.Session) float64 {
		var lat []time.Duration
		for _, s := range sessions[:min(10, len(sessions))] {
			start := time.Now()
			if res, err := s.ExecuteFresh(ctx, "1+1"); err != nil || res.Stdout != "[1] 2\n" {
				b.Fatalf("fresh: %v %+v", err, res)
			}
			lat = append(lat, time.Since(start))
		}
		return ms(median(lat))
	}

	plainPSS, plainHost, plain := idle(testHost)
	plainFresh := freshMs(plain)
	closeAll(plain)
	// The kernel frees an ended box's memory after Close returns: let the
	// host's figure settle before the next count starts from it.
	for prev := used(); ; {
		time.Sleep(time.Second)
		now := used()
		if now > prev-8<<10 { // within 8 MiB of a second ago
			break
		}
		prev = now
	}

	mergedAtStart, _, sessions := idle(mergeHost())
	defer func() { closeAll(sessions) }()
	t0, cpu0, sharing0 := time.Now(), ksmdSeconds(), ksmValue("pages_sharing")
	var last, t90 float64
	type point struct{ t, sharing float64 }
	var series []point
	for stable := 0; stable < 4 && time.Since(t0) < 180*time.Second; {
		time.Sleep(time.Second)
		sh := ksmValue("pages_sharing") - sharing0
		series = append(series, point{time.Since(t0).Seconds(), sh})
		if sh > 0 && sh-last < 0.005*sh {
			stable++
		} else {
			stable = 0
		}
		last = sh
	}
	for _, p := range series {
		if p.sharing >= 0.9*last {
			t90 = p.t
			break
		}
	}
	cpu := ksmdSeconds() - cpu0
	settled := time.Since(t0).Seconds()
	var xs []float64
	for _, s := range sessions {
		xs = append(xs, measureBox(b, s.ID()).pss)
	}
	mergedPSS := mib(medianF(xs))
	// The kernel's own account of what merging saves (pages shared, less
	// its bookkeeping); MemAvailable moves too much with other work here.
	profit := ksmValue("general_profit") / (1 << 20) / float64(n)
	mergedFresh := freshMs(sessions)
	b.Logf("%d idle sessions: PSS %.1f MiB each without merging, %.1f merged (%.1f before KSM got to them); host memory %.1f MiB each without, KSM's profit %.1f MiB each with; "+
		"90%% merged after %.0f s, settled after %.0f s, ksmd %.1f s of CPU; fresh 1+1 %.1f ms merged (its copy unmerges) vs %.1f ms",
		n, plainPSS, mergedPSS, mergedAtStart, plainHost, profit, t90, settled, cpu, mergedFresh, plainFresh)
	b.ReportMetric(plainPSS, "PSS_MiB_plain")
	b.ReportMetric(mergedPSS, "PSS_MiB_merged")
	b.ReportMetric(mergedPSS/plainPSS, "merged/plain")
	b.ReportMetric(plainHost, "host_MiB_plain")
	b.ReportMetric(profit, "ksm_profit_MiB/session")
	b.ReportMetric(t90, "s_to_90pct")
	b.ReportMetric(cpu/settled, "ksmd_cores")
	b.ReportMetric(plainFresh, "fresh_ms_plain")
	b.ReportMetric(mergedFresh, "fresh_ms_merged")
	b.ReportMetric(0, "ns/op")
}
