package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// Issue 10 item 13: 100,000 warnings hit the 30 s timeout (collecting them
// cost quadratic time), stderr listed every one, and the result kept 100
// with no count. Now collection is linear, stderr summarises as Rscript
// does, and the result counts what it dropped.
func TestWarningsFlood(t *testing.T) {
	cfg := baseConfig()
	// A hang guard, not a speed test: before the fix this took minutes.
	cfg.Timeout = 60 * time.Second
	s := newSession(t, cfg)
	res := mustOK(t, s, `for (i in 1:1e5) warning("w", i)`)
	if len(res.Warnings) != 100 || res.Warnings[0] != "w1" || res.Warnings[99] != "w100" || res.WarningsDropped != 99900 {
		t.Errorf("warnings: %d kept (first %q), %d dropped; want 100 kept from w1 to w100, 99900 dropped",
			len(res.Warnings), first(res.Warnings), res.WarningsDropped)
	}
	if want := "There were 50 or more warnings (use warnings() to see the first 50)\n"; res.Stderr != want {
		t.Errorf("stderr %q, want %q", res.Stderr, want)
	}
	t.Logf("100,000 warnings: wall %s", res.Accounting.Wall)

	// Each top-level expression is summarised on its own, as by Rscript;
	// the result's count spans the whole execution.
	res = mustOK(t, s, "f <- function() warning(\"in f\")\nf()\nfor (i in 1:3) warning(\"w\", i)\n"+
		"for (i in 1:12) warning(\"x\")\nfor (i in 1:150) f()")
	want := "Warning message:\nIn f() : in f\n" +
		"Warning messages:\n1: w1 \n2: w2 \n3: w3 \n" +
		"There were 12 warnings (use warnings() to see them)\n" +
		"There were 50 or more warnings (use warnings() to see the first 50)\n"
	if res.Stderr != want {
		t.Errorf("stderr\n%q\nwant\n%q", res.Stderr, want)
	}
	if len(res.Warnings) != 100 || res.WarningsDropped != 1+3+12+150-100 {
		t.Errorf("%d warnings kept, %d dropped; want 100 and %d", len(res.Warnings), res.WarningsDropped, 1+3+12+150-100)
	}
	// warnings() then lists what R kept of the last expression's, as the
	// summary line says.
	if res := mustOK(t, s, `cat(length(warnings()), names(warnings())[1])`); res.Stdout != "50 in f" {
		t.Errorf("warnings() after 150 warnings: %q, want \"50 in f\"", res.Stdout)
	}
	// Under the limit nothing is dropped; options(nwarnings) is honoured.
	res = mustOK(t, s, "options(nwarnings = 5)\nfor (i in 1:8) warning(\"y\", i)")
	if want := "Warning messages:\n1: y1 \n2: y2 \n3: y3 \n4: y4 \n5: y5 \n"; res.Stderr != want || len(res.Warnings) != 8 || res.WarningsDropped != 0 {
		t.Errorf("nwarnings = 5: stderr %q, %d kept, %d dropped", res.Stderr, len(res.Warnings), res.WarningsDropped)
	}
	// An expression that fails still shows its warnings, after the error.
	res = execute(t, s, `{for (i in 1:3) warning("w", i); stop("boom")}`)
	if want := "Error: boom\nIn addition: Warning messages:\n1: w1 \n2: w2 \n3: w3 \n"; res.Verdict != securer.VerdictError || res.Stderr != want {
		t.Errorf("warnings then an error: verdict %s, stderr %q, want %q", res.Verdict, res.Stderr, want)
	}
	// Messages are collected in linear time too (first 100 kept).
	res = mustOK(t, s, `for (i in 1:1e5) message(i)`)
	if len(res.Messages) != 100 || res.Messages[0] != "1\n" {
		t.Errorf("messages: %d kept, first %q", len(res.Messages), first(res.Messages))
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return "<none>"
	}
	return s[0]
}

// BenchmarkWarnings compares collecting n warnings in a session with
// Rscript's own cost on the same machine (run with -bench Warnings).
func BenchmarkWarnings(b *testing.B) {
	cfg := baseConfig()
	cfg.Timeout = 120 * time.Second
	s, err := testHost.NewSession(b.Context(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, n := range []int{1e4, 1e5} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				res, err := s.Execute(b.Context(), fmt.Sprintf(`for (i in 1:%d) warning("w", i)`, n))
				if err != nil || res.WarningsDropped != int64(n-100) {
					b.Fatalf("%v, %d dropped", err, res.WarningsDropped)
				}
			}
		})
	}
}

// TestWarningsHugeMessages: the runtime keeps clipped copies of the
// warnings it collects, so a hundred 10 MB warnings do not hold a
// gigabyte (before: killed at a 512 MiB limit, where Rscript peaks at
// ~140 MB).
func TestWarningsHugeMessages(t *testing.T) {
	cfg := baseConfig()
	cfg.Limits.MemoryBytes = 512 << 20
	cfg.Timeout = 2 * time.Minute
	s := newSession(t, cfg)
	res := mustOK(t, s, `for (i in 1:100) warning(simpleWarning(paste(i, strrep("x", 1e7)))); cat("done\n"); 1`)
	if !strings.Contains(res.Stdout, "done") || len(res.Warnings) != 100 {
		t.Errorf("stdout %q, %d warnings", res.Stdout, len(res.Warnings))
	}
	for _, w := range res.Warnings {
		if len(w) > 16<<10 {
			t.Fatalf("a kept warning is %d bytes", len(w))
		}
	}
}
