package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeTools writes a one-tool tools file running argv and returns its path.
func writeTools(t *testing.T, name string, argv ...string) string {
	t.Helper()
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = strconv.Quote(a)
	}
	body := `{"tools": [{"name": "` + name + `", "args": {}, "command": [` + strings.Join(quoted, ", ") + `]}]}`
	p := filepath.Join(t.TempDir(), "tools.json")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// pidsWithArg lists the processes whose command line holds marker.
func pidsWithArg(marker string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), marker) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Review item: a tool command that left a background child behind made R
// fail with "exec: WaitDelay expired before I/O complete", and the child
// kept running on the host after run exited. The tool's process group is
// now killed when the command ends: the call succeeds, nothing survives.
func TestCLIToolBackgroundChildKilled(t *testing.T) {
	const marker = "313.7"
	t.Cleanup(func() {
		for _, pid := range pidsWithArg(marker) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	p := writeTools(t, "spawn", "sh", "-c", "(sleep "+marker+" &); echo 41")
	r := runCLI(t, "", "run", "--tools", p, "-e", `cat("got", spawn() + 1, "\n")`)
	if r.code != 0 || !strings.Contains(r.stdout, "got 42") {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 0 and the tool's answer", r.code, r.stdout, r.stderr)
	}
	// The kill is synchronous, but a killed process may take a moment to
	// leave /proc on a loaded machine: a generous bound, not a timing check.
	deadline := time.Now().Add(5 * time.Second)
	for len(pidsWithArg(marker)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if left := pidsWithArg(marker); len(left) > 0 {
		t.Errorf("tool's background child still running after run exited: pids %v", left)
	}
}

// Review item: 200 MB of tool stdout took run to 1.1 GB RSS and 100 MB of
// stderr to 375 MB, because the size-capped buffer was bypassed. stdout is
// now read with a bound (over it: an R error naming it) and only the first
// 4 KiB of stderr is kept.
func TestCLIToolOutputBounded(t *testing.T) {
	const rssBound = 200 << 20 // bytes; run's baseline is well under this
	for _, tc := range []struct {
		name, script, want string
	}{
		{"stdout", "head -c 200000000 /dev/zero | tr '\\0' 1", "tool output over"},
		{"stderr", "head -c 100000000 /dev/zero | tr '\\0' e >&2; exit 1", "eeee"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeTools(t, "flood", "sh", "-c", tc.script)
			bin := cli(t)
			argv := []string{"run", "--rootfs", rootfsDir, "--state", stateDir, "--cgroup-parent", cgroupParent,
				"--tools", p, "-e", `tryCatch(flood(), error = function(e) cat("ERR:", nchar(conditionMessage(e)), substr(conditionMessage(e), 1, 200), "\n"))`}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // hang guard
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, argv...)
			var out, errb strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				t.Fatalf("run: %v, stderr %q", err, errb.String())
			}
			if !strings.Contains(out.String(), "ERR:") || !strings.Contains(out.String(), tc.want) {
				t.Errorf("stdout %.400q, stderr %.400q; want an R error holding %q", out.String(), errb.String(), tc.want)
			}
			// The error R sees is short: at most the first 4 KiB of stderr.
			var n int
			if f := strings.Fields(out.String()); len(f) > 1 {
				n, _ = strconv.Atoi(f[1])
			}
			if n <= 0 || n > 5<<10 {
				t.Errorf("R error message is %d characters, want 1..%d", n, 5<<10)
			}
			ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			if !ok {
				t.Fatal("no rusage")
			}
			if peak := ru.Maxrss << 10; peak > rssBound {
				t.Errorf("run's peak RSS %d MiB, want at most %d MiB", peak>>20, rssBound>>20)
			} else {
				t.Logf("run's peak RSS %d MiB", peak>>20)
			}
		})
	}
}

// Review item: --fsize 1e19 (and other overflowing sizes) became a
// file-size rlimit of 2^63, under which every write in the box failed
// silently; --output-limit 0.5, NaN, Inf and 1e30 silently meant no
// limit. They are usage errors naming the flag; no box starts.
func TestCLISizeFlagsRefused(t *testing.T) {
	for _, tc := range [][2]string{
		{"--fsize", "1e19"}, {"--fsize", "9223372036854775807"}, {"--fsize", "99999999999999999999"},
		{"--fsize", "NaN"}, {"--fsize", "Inf"}, {"--memory", "1e30"}, {"--tmp", "-Inf"},
		{"--output-limit", "0.5"}, {"--output-limit", "NaN"}, {"--output-limit", "Inf"}, {"--output-limit", "1e30"},
	} {
		r := runCLI(t, "", "run", tc[0], tc[1], "-e", `writeLines("x", f <- tempfile()); cat(file.size(f))`)
		if r.code != 2 || !strings.Contains(r.stderr, tc[0]) {
			t.Errorf("%s %s: exit %d, stdout %q, stderr %q; want exit 2 naming the flag", tc[0], tc[1], r.code, r.stdout, r.stderr)
		}
	}
}
