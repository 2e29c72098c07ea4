package integration

import (
	"fmt"
	"os"
	"testing"
	"time"

	"sync/atomic"
)

func TestAdvExplore(t *testing.T) {
	cfg := baseConfig()
	cfg.Tools = seedTools(nil)
	cfg.Timeout = 4 * time.Second
	cfg.Limits.MemoryBytes = 256 << 20
	cfg.Limits.TmpBytes = 16 << 20
	cfg.Limits.Pids = 16
	cfg.MaxOutputBytes = 64 << 10
	s := newSession(t, cfg)
	b, _ := os.ReadFile("/tmp/adv/snippets.R")
	var _ atomic.Int64
	for _, code := range splitSnips(string(b)) {
		t0 := time.Now()
		res := execute(t, s, code)
		fmt.Printf("took %s === %s\nverdict=%s value=%#v\nprinted=%q\nstdout=%q\nstderr=%q\nerr=%+v detail=%q exit=%q\n", time.Since(t0), code, res.Verdict, res.Value.Go(), res.Printed, trunc(res.Stdout), trunc(res.Stderr), res.Error, res.Detail, res.Exit)
	}
}

func trunc(s string) string {
	if len(s) > 3000 {
		return s[:3000]
	}
	return s
}

func splitSnips(s string) []string {
	var out []string
	cur := ""
	for _, l := range splitLines(s) {
		if l == "----" {
			out = append(out, cur)
			cur = ""
			continue
		}
		cur += l + "\n"
	}
	if cur != "" {
		out = append(out, cur)
	}
	return out
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
