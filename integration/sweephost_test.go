package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// TestFreshSweepOddEntries: entries of every kind the box's user can make
// in its writable places, with names the host's sweep itself uses for what
// it moves, are gone for the next fresh execution, and the box is kept.
// (From the outside review of the host's sweep.)
func TestFreshSweepOddEntries(t *testing.T) {
	s := newSession(t, baseConfig())
	id := s.ID()
	res := fresh(t, s, `
		for (p in c("/tmp", "/dev/shm")) {
		  for (n in c(".swept-1", ".swept-2", "-rf", "a\nb", strrep("L", 255))) writeLines("x", file.path(p, n))
		  dir.create(file.path(p, ".swept-3", ".swept-4", ".swept-5"), recursive = TRUE)
		  writeLines("x", file.path(p, ".swept-3", ".swept-4", ".swept-5", ".swept-6"))
		  file.link(file.path(p, ".swept-1"), file.path(p, "hl"))
		  file.symlink("/etc", file.path(p, "ln"))
		  system(paste("mkfifo", shQuote(file.path(p, "fifo"))))
		  Sys.chmod(file.path(p, ".swept-3", ".swept-4"), "0000")
		  Sys.chmod(file.path(p, ".swept-3"), "0100")
		}
		system("ipcmk -M 4096 -p 0000 >/dev/null; ipcmk -Q -p 0000 >/dev/null; ipcmk -S 1 -p 0000 >/dev/null")
		length(list.files("/tmp", all.files = TRUE, no.. = TRUE))`)
	if res.Verdict != securer.VerdictOK {
		t.Fatalf("planting: %s %+v", res.Verdict, res.Error)
	}
	res = fresh(t, s, `list(
		tmp = paste(sort(list.files("/tmp", all.files = TRUE, no.. = TRUE)), collapse = "|"),
		rtmp = basename(tempdir()),
		shm = length(list.files("/dev/shm", all.files = TRUE, no.. = TRUE)),
		mqueue = length(list.files("/dev/mqueue", all.files = TRUE, no.. = TRUE)),
		sysv = sum(vapply(c("shm", "sem", "msg"), function(k) length(readLines(file.path("/proc/sysvipc", k))) - 1L, 1L)))`)
	if res.Verdict != securer.VerdictOK {
		t.Fatalf("the next execution: %s %+v", res.Verdict, res.Error)
	}
	got := res.Value.Go().(map[string]any)
	if want := got["rtmp"].(string) + "|work"; got["tmp"] != want {
		t.Errorf("/tmp holds %q, want %q", got["tmp"], want)
	}
	for _, k := range []string{"shm", "mqueue", "sysv"} {
		if got[k] != 0 {
			t.Errorf("%s: %v left", k, got[k])
		}
	}
	if s.ID() != id {
		t.Errorf("the box was replaced: the sweep should have cleaned it")
	}
}

// TestFreshSweepThenClose: a deep tree (as deep as /dev/shm's inode limit
// allows) makes the host's sweep work for a while; Close during that sweep
// still ends the box within its bound and leaves nothing on the host.
// (From the outside review: the sweep held the lock destroy needs.)
func TestFreshSweepThenClose(t *testing.T) {
	cfg := baseConfig()
	cfg.Timeout = 60 * time.Second
	s, err := testHost.NewSession(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	res := fresh(t, s, `dir.create("/dev/shm/top")
		n <- 0
		for (i in seq_len(20000)) {
		  if (!dir.create("/dev/shm/x", showWarnings = FALSE)) break
		  file.rename("/dev/shm/top", "/dev/shm/x/a"); file.rename("/dev/shm/x", "/dev/shm/top"); n <- i
		}
		n`)
	if res.Verdict != securer.VerdictOK {
		t.Fatalf("planting: %s %+v", res.Verdict, res.Error)
	}
	depth, _ := res.Value.Go().(int) // n counts loop steps: an integer
	if depth < 1000 || depth >= 20000 {
		t.Errorf("a chain of %v directories: /dev/shm's inode limit should stop it below 20000", depth)
	}
	t0 := time.Now()
	if err := s.Close(); err != nil && !strings.Contains(err.Error(), "closed") {
		t.Errorf("Close during the sweep: %v", err)
	}
	took := time.Since(t0)
	t.Logf("a chain of %d directories; Close during its sweep took %s", depth, took)
	if took > 12*time.Second {
		t.Errorf("Close during the sweep took %s", took)
	}
	if left := leftovers(); len(left) > 0 {
		t.Errorf("left on the host after Close: %v", left)
	}
}
