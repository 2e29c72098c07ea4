package integration

import (
	"context"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// What an outside review of the warm boxes found (issue 14): a fresh
// execution must leave the next one nothing, even when it hides files
// from the sweep or writes to the pipe its warm R reads.

// TestFreshSweepUnreadableDirs: directories made unreadable or
// unwritable (mode 000, 333) do not keep their files from the sweep, in
// /tmp, the work dir, R's temp dir and /dev/shm, nor does a work dir of
// mode 000 break the executions after it; the box is swept, not retired.
func TestFreshSweepUnreadableDirs(t *testing.T) {
	s := newSession(t, baseConfig())
	id := s.ID()
	res := fresh(t, s, `
		mk <- function(d, mode) { dir.create(d); writeLines("SECRET", file.path(d, "s.txt")); Sys.chmod(d, mode) }
		mk("/tmp/hide", "000")
		dir.create("/tmp/nest"); mk("/tmp/nest/deeper", "000"); Sys.chmod("/tmp/nest", "000")
		mk("/tmp/work/h2", "333")
		mk("/dev/shm/h3", "000")
		mk(file.path(tempdir(), "h4"), "000")
		writeLines("x", "/tmp/work/f"); Sys.chmod("/tmp/work", "000")
		# System V objects of mode 000 (ipcrm --all skipped them).
		system("ipcmk -M 4096 -p 0000 >/dev/null; ipcmk -S 2 -p 0000 >/dev/null; ipcmk -Q -p 0000 >/dev/null")
		# R's temp dir: its mode and times, or a file or link at its path.
		Sys.chmod(tempdir(), "2757", use_umask = FALSE)
		"hidden"`)
	if res.Verdict != securer.VerdictOK {
		t.Fatalf("hiding execution: %s %+v", res.Verdict, res.Error)
	}
	res = fresh(t, s, `list(
		sysv = sum(vapply(c("shm", "sem", "msg"), function(k) length(readLines(file.path("/proc/sysvipc", k))) - 1L, 1L)),
		rtmp_mode = format(file.info(tempdir())$mode),
		tmp = length(list.files("/tmp", all.files = TRUE, no.. = TRUE)),
		work = length(list.files(getwd(), all.files = TRUE, no.. = TRUE)),
		shm = length(list.files("/dev/shm", all.files = TRUE, no.. = TRUE)),
		rtmp = length(list.files(tempdir(), all.files = TRUE, no.. = TRUE)))`)
	if res.Verdict != securer.VerdictOK {
		t.Fatalf("the next execution: %s %+v", res.Verdict, res.Error)
	}
	// /tmp holds R's temp dir and the work dir, nothing else.
	want := map[string]any{"sysv": 0, "rtmp_mode": "700", "tmp": 2, "work": 0, "shm": 0, "rtmp": 0}
	got := res.Value.Go().(map[string]any)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %v entries after the sweep, want %v (all %v)", k, got[k], v, got)
		}
	}
	if s.ID() != id {
		t.Errorf("the box was replaced (%s, then %s): the sweep should have cleaned it", id, s.ID())
	}
}

// TestFreshCopyCannotChangeWarmR: what a copy sends on the pipe to its
// warm R is never unserialized there: a namespace reference sent by the
// code does not load that package into the warm R (and so into every
// later copy).
func TestFreshCopyCannotChangeWarmR(t *testing.T) {
	cfg := baseConfig()
	var audit lockedBuffer
	cfg.Audit = slog.New(slog.NewJSONHandler(&audit, nil))
	s := newSession(t, cfg)
	res := fresh(t, s, `parallel:::sendMaster(list(asNamespace("MASS"), asNamespace("splines"))); "sent"`)
	if res.Verdict != securer.VerdictOK {
		t.Fatalf("sending execution: %s %+v", res.Verdict, res.Error)
	}
	res = fresh(t, s, `c("MASS", "splines") %in% loadedNamespaces()`)
	if res.Verdict != securer.VerdictOK {
		t.Fatalf("the next execution: %s %+v", res.Verdict, res.Error)
	}
	if got := res.Value.Go(); !reflect.DeepEqual(got, []bool{false, false}) {
		t.Errorf("loaded in the next copy: %v, want none", got)
	}
	// The warm R knew that each copy reported: it sent no "ended without
	// a result" of its own, which the host would drop as a stale frame.
	if strings.Contains(audit.String(), "stale_frames_dropped") {
		t.Errorf("frames dropped after copies that reported: %s", audit.String())
	}
}

// TestFreshStdinIsEmpty: code reading stdin in a fresh execution reads
// end of file at once (it waited for its timeout on a pipe the warm R
// held open).
func TestFreshStdinIsEmpty(t *testing.T) {
	s := newSession(t, baseConfig())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	res, err := s.ExecuteWith(ctx, `c(length(readLines(file("stdin"))), length(scan(file("stdin"), quiet = TRUE)))`,
		securer.ExecOptions{Fresh: true, Timeout: 20 * time.Second})
	if res == nil || res.Verdict != securer.VerdictOK {
		t.Fatalf("reading stdin: %v %v", res, err)
	}
	if got := res.Value.Go(); !reflect.DeepEqual(got, []int{0, 0}) {
		t.Errorf("stdin held %v, want nothing", got)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("reading stdin took %s: it waited instead of reading end of file", d)
	}
}

// TestFreshSweepRTempPath: what the code puts at the path of R's temp
// dir (a file holding data, a link) is gone for the next execution, whose
// temp dir works.
func TestFreshSweepRTempPath(t *testing.T) {
	s := newSession(t, baseConfig())
	id := s.ID()
	for _, plant := range []string{
		`td <- tempdir(); unlink(td, recursive = TRUE); writeLines("SECRET", td)`,
		`td <- tempdir(); unlink(td, recursive = TRUE); file.symlink("/dev/mqueue/.//./", td)`,
	} {
		if res := fresh(t, s, plant+`; "planted"`); res.Verdict != securer.VerdictOK {
			t.Fatalf("%s: %s %+v", plant, res.Verdict, res.Error)
		}
		res := fresh(t, s, `writeLines("x", f <- tempfile()); list(
			read = readLines(f),
			link = nzchar(Sys.readlink(tempdir())),
			tmp = sort(list.files("/tmp", all.files = TRUE, no.. = TRUE)),
			secret = any(grepl("SECRET", unlist(lapply(list.files("/tmp", full.names = TRUE), function(p) if (!dir.exists(p)) readLines(p))))))`)
		if res.Verdict != securer.VerdictOK {
			t.Fatalf("after %s: %s %+v", plant, res.Verdict, res.Error)
		}
		got := res.Value.Go().(map[string]any)
		if got["read"] != "x" || got["link"] != false || got["secret"] != false || len(got["tmp"].([]string)) != 2 {
			t.Errorf("after %s: %v", plant, got)
		}
	}
	if s.ID() != id {
		t.Errorf("the box was replaced: the sweep should have cleaned it")
	}
}
