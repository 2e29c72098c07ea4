package integration

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/securer-runc/securer-runc/rootfs"
)

// TestIdleTrim: an idle box gives back what its R freed. Code builds and
// drops ~40 MB of small objects; right after, R still holds the pages;
// a second or so idle later (transport.R, trim_after_ms) its heap is back
// near its size at start.
func TestIdleTrim(t *testing.T) {
	if _, err := os.Stat(filepath.Join(rootfs.RootfsPath(rootfsDir), "usr/lib/securer/securer-mem.so")); err != nil {
		t.Fatalf("the rootfs has no memory helper (built without a C compiler?): %v", err)
	}
	s := newSession(t, baseConfig())
	rHeap := func() float64 {
		var heap float64
		for _, pid := range cgroupProcsOf(t, s.ID()) {
			h, _, _ := smapsByKind(pid)
			heap += h
		}
		return heap / 1024
	}
	time.Sleep(idleSettle)
	atStart := rHeap()
	if _, err := s.Execute(context.Background(), `x <- lapply(1:400000, function(i) c(i, i)); rm(x); invisible(gc())`); err != nil {
		t.Fatal(err)
	}
	busy := rHeap()
	deadline := time.Now().Add(10 * time.Second)
	idle := busy
	for time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		if idle = rHeap(); idle < atStart+5 {
			break
		}
	}
	t.Logf("R heap: %.1f MiB idle at start, %.1f MiB after the code, %.1f MiB idle after it", atStart, busy, idle)
	if busy < atStart+20 {
		t.Fatalf("the code did not grow R's heap (%.1f -> %.1f MiB): the test measures nothing", atStart, busy)
	}
	if idle > atStart+5 {
		t.Fatalf("an idle R kept %.1f MiB of heap (%.1f MiB at start): freed memory was not given back", idle, atStart)
	}
	// The session still works after a trim.
	if res, err := s.Execute(context.Background(), "1+1"); err != nil || res.Stdout != "[1] 2\n" {
		t.Fatalf("after the trim: %v %+v", err, res)
	}
}
