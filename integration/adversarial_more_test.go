package integration

// Cases of our own, one or more per category of the catalogue, with the
// same host-side checks (H1-H5) as adversarial_test.go.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

func TestAdversarialMore(t *testing.T) {
	h := newAdvHarness(t, true)
	h.withNeighbour(t)
	cfg := h.config()
	s := newSession(t, cfg)
	cases := []struct {
		id  string
		run func(t *testing.T)
	}{
		{"N10 IPv6 to the host", func(t *testing.T) {
			res := h.run(t, s, fmt.Sprintf(`tryCatch({socketConnection("::1", %d, timeout = 2); "CONNECTED"}, error = function(e) "refused", warning = function(w) "refused")`, h.port))
			if res.Value.Go() != "refused" {
				t.Errorf("IPv6 loopback connect: %v", res.Value.Go())
			}
		}},
		{"N11 no host sockets visible", func(t *testing.T) {
			// The host's listener (and every other host socket) lives in
			// another network namespace: /proc/net shows none of it.
			res := h.ok(t, s, `c(length(readLines("/proc/net/tcp")) - 1, length(readLines("/proc/net/tcp6")) - 1, length(readLines("/proc/net/udp")) - 1)`)
			if fmt.Sprint(res.Value.Go()) != "[0 0 0]" {
				t.Errorf("sockets visible in the box: %v", res.Value.Go())
			}
		}},
		{"F14 every mount R can write is noexec", func(t *testing.T) {
			// Directories R can create files in; device nodes and masked
			// files are single files, where nothing new can be placed.
			res := h.ok(t, s, `mi <- strsplit(readLines("/proc/self/mountinfo"), " ")
				bad <- character()
				for (f in mi) {
				  mp <- f[5]; opts <- f[6]
				  if (dir.exists(mp) && file.access(mp, 2) == 0 && !grepl("noexec", opts)) bad <- c(bad, mp)
				}
				c("checked", bad)`)
			if got := strs(res.Value); len(got) != 1 {
				t.Errorf("writable mounts without noexec: %v", got[1:])
			}
		}},
		{"W09 /dev/shm is capped", func(t *testing.T) {
			res := h.run(t, s, `con <- file("/dev/shm/big", "wb"); n <- 0
				r <- tryCatch({ for (i in 1:200) { writeBin(raw(2^20), con); flush(con); n <- n + 1 }; "UNBOUNDED" }, error = function(e) "stopped", warning = function(w) "stopped")
				close(con); sz <- file.size("/dev/shm/big"); unlink("/dev/shm/big"); list(r, sz)`)
			v, _ := res.Value.Go().([]any)
			if len(v) != 2 || v[0] == "UNBOUNDED" {
				t.Errorf("200 MiB into /dev/shm: %v", res.Value.Go())
			} else if sz, _ := v[1].(float64); sz > 16<<20 {
				t.Errorf("/dev/shm took %v bytes, over the 16 MiB cap", sz)
			}
		}},
		{"W10 no hard links out of the image", func(t *testing.T) {
			res := h.ok(t, s, `file.link("/etc/passwd", "/tmp/passwd")`)
			if res.Value.Go() != false {
				t.Errorf("hard link from the rootfs into /tmp: %v", res.Value.Go())
			}
		}},
		{"P07 LD_PRELOAD from /tmp", func(t *testing.T) {
			res := h.ok(t, s, `file.copy(system.file("libs", "utils.so", package = "utils"), "/tmp/p.so")
				Sys.setenv(LD_PRELOAD = "/tmp/p.so")
				maps <- suppressWarnings(system2("/bin/cat", "/proc/self/maps", stdout = TRUE, stderr = "/tmp/err"))
				Sys.unsetenv("LD_PRELOAD")
				exec <- grepl("/tmp/p.so", maps) & substr(sub("^\\S+ ", "", maps), 3, 3) == "x"
				c(any(exec), any(grepl("cannot be preloaded", readLines("/tmp/err"))))`)
			if fmt.Sprint(res.Value.Go()) != "[false true]" {
				t.Errorf("LD_PRELOAD of a /tmp library (executable mapping, refused by ld.so): %v", res.Value.Go())
			}
		}},
		{"R14 inode exhaustion", func(t *testing.T) {
			res := h.run(t, s, `dir.create("/tmp/i"); n <- 0
				r <- tryCatch({ for (i in 1:30000) { if (!file.create(sprintf("/tmp/i/%d", i), showWarnings = FALSE)) stop("full"); n <- n + 1 }; "UNBOUNDED" }, error = function(e) "stopped")
				unlink("/tmp/i", recursive = TRUE); list(r, n)`)
			v, _ := res.Value.Go().([]any)
			if len(v) != 2 || v[0] != "stopped" {
				t.Errorf("30,000 files in /tmp: %v", res.Value.Go())
			} else if n, _ := v[1].(float64); n > 16384 {
				t.Errorf("%v files created, over the 16384-inode cap", n)
			}
			h.ok(t, s, `writeLines("ok", "/tmp/after"); readLines("/tmp/after")`)
		}},
		{"E11 paths that climb out", func(t *testing.T) {
			res := h.ok(t, s, `file.symlink("/../../../..", "/tmp/up")
				c(identical(sort(list.files("/tmp/up/")), sort(list.files("/"))),
				  identical(sort(list.files("/proc/1/root/")), sort(list.files("/"))),
				  identical(normalizePath("/proc/self/root/../../.."), "/"))`)
			if fmt.Sprint(res.Value.Go()) != "[true true true]" {
				t.Errorf("climbing out of the root: %v", res.Value.Go())
			}
		}},
		{"V05 home and profile", func(t *testing.T) {
			res := h.ok(t, s, `c(path.expand("~"), Sys.getenv("R_PROFILE_USER"), as.character(file.exists("~/.Rprofile")), as.character(length(.libPaths())))`)
			got := strs(res.Value)
			if len(got) != 4 || got[0] != "/tmp" || got[1] != "" || got[2] != "FALSE" {
				t.Errorf("home/profile: %v", got)
			}
		}},
		{"L09 use after close", func(t *testing.T) {
			s2 := newSession(t, cfg)
			s2.Close()
			start := time.Now()
			_, err := s2.Execute(context.Background(), "1")
			if !errors.Is(err, securer.ErrSessionClosed) || time.Since(start) > time.Second {
				t.Errorf("Execute after Close: %v after %s", err, time.Since(start))
			}
			if _, err := s2.ExecuteFresh(context.Background(), "1"); !errors.Is(err, securer.ErrSessionClosed) {
				t.Errorf("ExecuteFresh after Close: %v", err)
			}
		}},
		{"L10 context already done", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			start := time.Now()
			res, err := s.Execute(ctx, "Sys.sleep(10)")
			if err == nil || time.Since(start) > 2*time.Second {
				t.Errorf("canceled context: %v %+v after %s", err, res, time.Since(start))
			}
			if v := h.ok(t, s, "1+1").Value.Go(); v != 2.0 {
				t.Errorf("after a canceled call: %v", v)
			}
		}},
		{"L11 many sessions at once", func(t *testing.T) {
			// Sessions started together get distinct boxes and answers.
			const n = 6
			type out struct {
				id  string
				val any
				err error
			}
			ch := make(chan out, n)
			for i := range n {
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					defer cancel()
					s, err := testHost.NewSession(ctx, cfg)
					if err != nil {
						ch <- out{err: err}
						return
					}
					defer s.Close()
					res, err := s.Execute(ctx, fmt.Sprintf("Sys.getpid(); %d * 10", i))
					if err != nil {
						ch <- out{err: err}
						return
					}
					ch <- out{id: s.ID(), val: res.Value.Go()}
				}()
			}
			ids, vals := map[string]bool{}, map[string]bool{}
			for range n {
				o := <-ch
				if o.err != nil {
					t.Errorf("concurrent session: %v", o.err)
					continue
				}
				ids[o.id], vals[fmt.Sprint(o.val)] = true, true
			}
			if len(ids) != n || len(vals) != n {
				t.Errorf("%d distinct sessions, %d distinct answers, want %d each", len(ids), len(vals), n)
			}
			if strings.Contains(h.log.String(), "level=ERROR") {
				t.Errorf("errors logged: %s", h.log.String())
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.id, c.run)
	}
	h.responsive(t, "after the extra cases")
}
