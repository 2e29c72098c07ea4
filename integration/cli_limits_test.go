package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// countingWriter counts bytes and keeps none: a run that floods stdout
// must not fill the test's memory while it proves the flood was bounded.
type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// runCLICounting runs `securer-runc run` with this run's state and
// cgroup parent, counting stdout rather than keeping it.
func runCLICounting(t *testing.T, hangGuard time.Duration, args ...string) (stdoutBytes int64, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	argv := append([]string{"run", "--rootfs", rootfsDir, "--state", stateDir, "--cgroup-parent", cgroupParent}, args...)
	cmd := exec.CommandContext(ctx, cli(t), argv...)
	var out countingWriter
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%v still running after %s (hang guard); %d bytes of stdout so far", args, hangGuard, out.n.Load())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return out.n.Load(), errb.String(), code
}

// Issue 10 item 10: with default settings a runaway cat() loop wrote
// 6.1 GB in 30 s. run now stops at a default output limit, exits with the
// budget status and says which limit it hit and how to change it.
func TestCLIDefaultOutputLimit(t *testing.T) {
	const defaultLimit = 10 << 20
	n, stderr, code := runCLICounting(t, 90*time.Second, "-e", `repeat cat(strrep("x", 1e6))`)
	if code != 5 || n > defaultLimit {
		t.Errorf("default settings: exit %d after %d bytes of stdout; want exit 5 and at most %d bytes", code, n, defaultLimit)
	}
	if !strings.Contains(stderr, "output_limit") || !strings.Contains(stderr, "--output-limit") {
		t.Errorf("stderr does not say the output limit was hit and how to raise it: %q", stderr)
	}
	// The limit can be lifted (0 or none) or raised: 12 MB, over the default.
	for _, lift := range []string{"0", "none", "20M"} {
		n, stderr, code := runCLICounting(t, 90*time.Second, "--output-limit", lift, "-e", `for (i in 1:12) cat(strrep("x", 1e6))`)
		if code != 0 || n != 12e6 {
			t.Errorf("--output-limit %s: exit %d, %d bytes of stdout (want 0, 12000000): %q", lift, code, n, stderr)
		}
	}
	// --json says it too.
	r := runCLI(t, "", "run", "--json", "--output-limit", "1M", "-e", `repeat cat(strrep("x", 1e5))`)
	if r.code != 5 || !strings.Contains(r.stdout, `"verdict": "output_limit"`) || !strings.Contains(r.stdout, "bytes of stdout") {
		t.Errorf("--json: exit %d, stdout %.400q", r.code, r.stdout)
	}
	if _, _, code := runCLICounting(t, 30*time.Second, "--output-limit", "-3", "-e", "1"); code != 2 {
		t.Errorf("--output-limit -3: exit %d, want 2", code)
	}
}

// Issue 10 item 16: a tool command got JSON null for Inf and NaN, the same
// as NA. They now arrive as the strings "Inf", "-Inf" and "NaN"; NA stays
// null. The command here fails with its stdin as the error message, which
// R then prints.
func TestCLIToolNonFiniteArgs(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tools.json")
	body := `{"tools": [{"name": "show", "args": {"x": "numeric", "y": "numeric"}, "command": ["sh", "-c", "cat >&2; exit 1"]}]}`
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "", "run", "--tools", p, "-e",
		`tryCatch(show(c(1, Inf, -Inf, NaN, NA), NaN), error = function(e) cat(conditionMessage(e)))`)
	want := `{"x":[1,"Inf","-Inf","NaN",null],"y":"NaN"}`
	if r.code != 0 || !strings.Contains(r.stdout, want) {
		t.Errorf("exit %d, stdout %q (want it to hold %s), stderr %q", r.code, r.stdout, want, r.stderr)
	}
}

// Issue 10 item 9: SIGTERM while the box was starting made run exit 3 (a
// sandbox failure). It is a cancellation: exit 130, and the half-made box
// is gone. The signal is sent once the session's state dir exists, that
// is, in the middle of the start.
func TestCLISIGTERMDuringStart(t *testing.T) {
	sessions := filepath.Join(stateDir, "sessions")
	for _, grace := range []string{"0s", "300ms"} {
		t.Run("grace "+grace, func(t *testing.T) {
			before, _ := os.ReadDir(sessions)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, cli(t), "run", "--rootfs", rootfsDir, "--state", stateDir,
				"--cgroup-parent", cgroupParent, "--term-grace", grace, "-e", "Sys.sleep(30)")
			var errb lockedBuffer
			cmd.Stderr = &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			for {
				if ents, _ := os.ReadDir(sessions); len(ents) > len(before) {
					break
				}
				if ctx.Err() != nil {
					t.Fatal("no session dir appeared")
				}
				time.Sleep(2 * time.Millisecond)
			}
			if err := cmd.Process.Signal(unix.SIGTERM); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			code := -1
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != 130 || !strings.Contains(errb.String(), "cancel") {
				t.Errorf("exit %d (%v), stderr %q; want 130 and a word on the cancellation", code, err, errb.String())
			}
			if left := leftovers(); len(left) > 0 {
				t.Errorf("left behind:\n  %s", strings.Join(left, "\n  "))
			}
		})
	}
}

// A reader of the output that goes away must not kill the process by
// SIGPIPE with a box still running (CI once found an R client killed with
// SIGKILL leaving its session behind: serve --stdio died writing the
// execution's final event to the dead client).
func TestCLIBrokenStdout(t *testing.T) {
	waitExit := func(t *testing.T, cmd *exec.Cmd) (code int, signaled bool) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				ws := ee.Sys().(syscall.WaitStatus)
				return ee.ExitCode(), ws.Signaled()
			}
			return 0, false
		case <-time.After(90 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatal("still running 90 s after its reader left")
			return -1, false
		}
	}
	// startRun starts `run` with this test run's dirs and its stdout on a
	// pipe the test may close.
	startRun := func(t *testing.T, args ...string) (*exec.Cmd, io.ReadCloser, *lockedBuffer) {
		t.Helper()
		cmd := exec.Command(cli(t), append([]string{"run", "--rootfs", rootfsDir, "--state", stateDir,
			"--cgroup-parent", cgroupParent}, args...)...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		errb := &lockedBuffer{}
		cmd.Stderr = errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, out, errb
	}
	t.Run("run piped into a reader that leaves", func(t *testing.T) {
		cmd, out, errb := startRun(t, "--timeout", "300s", "-e", "for (i in 1:1e8) print(i)")
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || !strings.Contains(line, "[1] 1") {
			t.Fatalf("first line %q, %v", line, err)
		}
		out.Close()
		code, signaled := waitExit(t, cmd)
		if signaled || code != 130 || !strings.Contains(errb.String(), "broken pipe") {
			t.Errorf("exit %d (by signal: %v), stderr %q; want 130 and a word on the broken pipe", code, signaled, errb.String())
		}
		if left := leftovers(); len(left) > 0 {
			t.Errorf("left behind:\n  %s", strings.Join(left, "\n  "))
		}
	})
	t.Run("run --json whose reader left before the result", func(t *testing.T) {
		cmd, out, errb := startRun(t, "--json", "-e", "cat('x'); 1")
		out.Close()
		// A lost result must not be reported as success (it exited 0).
		code, signaled := waitExit(t, cmd)
		if signaled || code != 130 || !strings.Contains(errb.String(), "could not be written") {
			t.Errorf("exit %d (by signal: %v), stderr %q; want 130 and a word on the lost result", code, signaled, errb.String())
		}
		if left := leftovers(); len(left) > 0 {
			t.Errorf("left behind:\n  %s", strings.Join(left, "\n  "))
		}
	})
	t.Run("serve --stdio whose client vanishes mid-execution", func(t *testing.T) {
		cmd := exec.Command(cli(t), "serve", "--stdio", "--rootfs", rootfsDir, "--state", stateDir,
			"--cgroup-parent", cgroupParent)
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var errb lockedBuffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(out)
		readType := func(want string) map[string]any {
			t.Helper()
			line, err := r.ReadString('\n')
			var ev map[string]any
			if err != nil || json.Unmarshal([]byte(line), &ev) != nil || ev["type"] != want {
				t.Fatalf("want a %s event, got %q, %v (stderr %q)", want, line, err, errb.String())
			}
			return ev
		}
		readType("hello")
		fmt.Fprintln(in, `{"op":"create_session","id":"s"}`)
		session := readType("session")["session"]
		fmt.Fprintf(in, `{"op":"execute","id":"e","session":%q,"code":"cat('go\n'); Sys.sleep(60)"}`+"\n", session)
		readType("stdout")
		// The client dies: both its ends of the pipes close at once.
		out.Close()
		in.Close()
		code, signaled := waitExit(t, cmd)
		if signaled || code != 0 {
			t.Errorf("serve exit %d (by signal: %v); want 0 after its client left, stderr %q", code, signaled, errb.String())
		}
		if left := leftovers(); len(left) > 0 {
			t.Errorf("left behind:\n  %s", strings.Join(left, "\n  "))
		}
	})
}
