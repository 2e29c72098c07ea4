package integration

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// mergeHost is testHost with page merging asked for.
func mergeHost() securer.Host {
	h := testHost
	h.UnsafeMergePages = true
	return h
}

// mergeableMaps counts the mappings of pid the kernel would merge (the
// "mg" flag in smaps' VmFlags).
func mergeableMaps(t testing.TB, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatalf("smaps of %d: %v", pid, err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmFlags:") && strings.Contains(line+" ", " mg ") {
			n++
		}
	}
	return n
}

// boxR is the pid of the R process of session s (not tini, not a copy:
// the oldest R).
func boxR(t testing.TB, s *securer.Session) int {
	t.Helper()
	for _, pid := range cgroupProcsOf(t, s.ID()) {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) == "R" {
			return pid
		}
	}
	t.Fatalf("no R in session %s", s.ID())
	return 0
}

// waitMergeable waits until pid has (want) or has no (!want) mergeable
// mapping, for up to 10 s.
func waitMergeable(t testing.TB, pid int, want bool) int {
	t.Helper()
	var n int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if n = mergeableMaps(t, pid); (n > 0) == want {
			return n
		}
	}
	t.Fatalf("R %d: %d mergeable mappings after 10 s (want any: %v)", pid, n, want)
	return n
}

// inBox is R code printing what the box's R sees of merging: its
// personality and how many of its mappings are mergeable.
const inBox = `p <- .C("securer_personality", p = 0L, PACKAGE = "securer-mem")$p; s <- readLines("/proc/self/smaps"); ` +
	`cat(sprintf("%08x", p), sum(grepl("^VmFlags:.* mg( |$)", s)), "\n")`

// TestMergePagesOff: by default a box runs with address randomization,
// its R offers nothing for merging, and code cannot mark its own memory
// with the runtime's helper either.
func TestMergePagesOff(t *testing.T) {
	s := newSession(t, baseConfig())
	time.Sleep(idleSettle)
	if n := mergeableMaps(t, boxR(t, s)); n != 0 {
		t.Fatalf("an idle R without UnsafeMergePages has %d mergeable mappings", n)
	}
	res, err := s.Execute(context.Background(), inBox+`; r <- .C("securer_merge", on = 1L, count = 0L, err = 0L, PACKAGE = "securer-mem"); cat(r$count, r$err, "\n")`)
	if err != nil {
		t.Fatal(err)
	}
	if res.Stdout != "00000000 0 \n0 1 \n" {
		t.Fatalf("personality, mergeable maps, then code marking its memory: got %q, want %q (personality 0, nothing mergeable, marking refused with EPERM)", res.Stdout, "00000000 0 \n0 1 \n")
	}
}

// TestMergePagesPool: with UnsafeMergePages, a pool's warm R offers its
// start-up memory once idle and keeps it offered across fresh
// executions, while each execution's copy has taken its pages back before
// the code runs; bytes a copy sends its warm R make that R take its
// memory back for good.
func TestMergePagesPool(t *testing.T) {
	ctx := context.Background()
	p, err := mergeHost().NewPool(ctx, baseConfig(), 1, securer.ResetFresh)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	s, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(s)
	warm := boxR(t, s)
	marked := waitMergeable(t, warm, true)
	t.Logf("the idle warm R offers %d mappings", marked)

	for i := 0; i < 2; i++ {
		res, err := s.ExecuteFresh(ctx, inBox)
		if err != nil {
			t.Fatal(err)
		}
		if res.Stdout != "00040000 0 \n" {
			t.Fatalf("execution %d: the copy saw %q, want personality 00040000 (no ASLR) and no mergeable mapping", i, res.Stdout)
		}
		time.Sleep(idleSettle)
		if n := mergeableMaps(t, warm); n == 0 {
			t.Fatalf("after fresh execution %d the warm R took its memory back; it should stay offered", i)
		}
	}

	// A copy writing to its warm R's pipe: those bytes are in the warm R.
	if _, err := s.ExecuteFresh(ctx, `parallel:::sendMaster("chosen by the code")`); err != nil {
		t.Fatal(err)
	}
	waitMergeable(t, warm, false)
	time.Sleep(idleSettle)
	if n := mergeableMaps(t, warm); n != 0 {
		t.Fatalf("the warm R offered %d mappings again after holding a copy's bytes", n)
	}
	res, err := s.ExecuteFresh(ctx, "1+1")
	if err != nil || res.Stdout != "[1] 2\n" {
		t.Fatalf("after: %v %+v", err, res)
	}
}

// TestMergePagesSession: a session's R offers its start-up memory while
// idle, takes it back before its first code runs, and never offers it
// again.
func TestMergePagesSession(t *testing.T) {
	s := newHostSession(t, mergeHost(), baseConfig())
	r := boxR(t, s)
	waitMergeable(t, r, true)
	res, err := s.Execute(context.Background(), inBox)
	if err != nil {
		t.Fatal(err)
	}
	if res.Stdout != "00040000 0 \n" {
		t.Fatalf("code saw %q, want personality 00040000 and no mergeable mapping", res.Stdout)
	}
	time.Sleep(idleSettle)
	if n := mergeableMaps(t, r); n != 0 {
		t.Fatalf("an R that ran code offered %d mappings again", n)
	}
}
