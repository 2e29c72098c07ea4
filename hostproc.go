package securer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"securer-runc/cgroup"
	"securer-runc/container"
)

// hostRunner is R as a plain child process of this one (Config.
// UnsafeNoSandbox): no namespaces, no seccomp, no cgroup; only rlimits.
// R leads its own process group, which is what Procs, killStrays and
// Destroy act on: processes that leave the group (setsid) escape them.
type hostRunner struct {
	cmd  *exec.Cmd
	pid  int
	done chan struct{}

	destroyOnce sync.Once
	destroyErr  error
}

// hostEnvKeep are the variables of this process's environment a host R
// inherits (secrets such as API keys in the environment do not cross).
var hostEnvKeep = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "R_LIBS", "R_LIBS_USER", "R_LIBS_SITE"}

// hostEnv is R's environment: the kept variables, TMPDIR in the
// session's own directory, and the JIT off (see the runtime).
func hostEnv(tmpDir string) []string {
	env := []string{"TMPDIR=" + tmpDir, "R_ENABLE_JIT=0"}
	hasLang := false
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "LC_") || slices.Contains(hostEnvKeep, k) {
			env = append(env, kv)
			hasLang = hasLang || k == "LANG"
		}
	}
	if !hasLang {
		env = append(env, "LANG=C.UTF-8")
	}
	return env
}

// hostRlimits are the limits a host R gets: memory as address space,
// open files, file size, no core dumps.
func hostRlimits(l Limits) map[int]uint64 {
	return map[int]uint64{
		unix.RLIMIT_AS:     uint64(l.MemoryBytes),
		unix.RLIMIT_NOFILE: l.NoFile,
		unix.RLIMIT_FSIZE:  l.FileSizeBytes,
		unix.RLIMIT_CORE:   0,
	}
}

// startHostR starts rscript with args in dir. The rlimits are in force
// before this returns, so before R can have read any code.
func startHostR(rscript string, args []string, dir string, limits Limits, stdout, stderr *os.File) (*hostRunner, error) {
	cmd := exec.Command(rscript, args...)
	cmd.Dir = dir
	cmd.Env = hostEnv(dir)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", rscript, err)
	}
	r := &hostRunner{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(r.done)
	}()
	// R goes first when memory runs out, as a box does; it would
	// otherwise inherit this process's (possibly lowered) score.
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", r.pid), []byte("1000"), 0); err != nil {
		_ = r.Destroy(context.Background())
		return nil, fmt.Errorf("raise R's OOM score: %w", err)
	}
	for res, v := range hostRlimits(limits) {
		lim := unix.Rlimit{Cur: v, Max: v}
		if err := unix.Prlimit(r.pid, res, &lim, nil); err != nil {
			_ = r.Destroy(context.Background())
			return nil, fmt.Errorf("set R's resource limits: %w", err)
		}
	}
	return r, nil
}

func (r *hostRunner) Done() <-chan struct{} { return r.done }
func (r *hostRunner) Spared() int           { return 0 }

func (r *hostRunner) ExitStatus() container.Exit {
	<-r.done
	st := r.cmd.ProcessState
	if st == nil {
		return container.Exit{Code: -1}
	}
	e := container.Exit{Code: st.ExitCode()}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		e.Signal = ws.Signal()
	}
	return e
}

func (r *hostRunner) Signal(sig os.Signal) error {
	select {
	case <-r.done:
		return nil
	default:
	}
	if err := r.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", sig, err)
	}
	return nil
}

// Destroy kills R's process group and waits for R.
func (r *hostRunner) Destroy(ctx context.Context) error {
	r.destroyOnce.Do(func() {
		// R leads the group: while R is unreaped, its pid cannot name
		// anyone else's group.
		select {
		case <-r.done:
			r.killGroupMembers()
		default:
			_ = unix.Kill(-r.pid, unix.SIGKILL)
		}
		select {
		case <-r.done:
		case <-ctx.Done():
			r.destroyErr = fmt.Errorf("destroy host R %d: it did not exit: %w", r.pid, ctx.Err())
		}
	})
	return r.destroyErr
}

// killGroupMembers ends what is left of R's group after R: only pids
// found in the group, one by one.
func (r *hostRunner) killGroupMembers() {
	pids, _ := processGroup(r.pid)
	for _, p := range pids {
		_ = unix.Kill(p, unix.SIGKILL)
	}
}

func (r *hostRunner) Procs() ([]int, error) { return processGroup(r.pid) }

// Usage reads R's CPU time (its own and its waited-for children's) and
// its peak resident memory from /proc; there is no OOM or pids account.
func (r *hostRunner) Usage() cgroup.Usage {
	var u cgroup.Usage
	f, err := statFields(r.pid, 15)
	if err != nil {
		return u
	}
	// Fields after the command: 11 utime, 12 stime, 13 cutime, 14 cstime,
	// in clock ticks (USER_HZ, 100 on Linux).
	ticks := func(i int) uint64 { n, _ := strconv.ParseUint(f[i], 10, 64); return n }
	const nanosPerTick = 1e9 / 100
	u.CPUUserNanos = (ticks(11) + ticks(13)) * nanosPerTick
	u.CPUSystemNanos = (ticks(12) + ticks(14)) * nanosPerTick
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				u.PeakMemoryBytes = kb << 10
			}
		}
	}
	return u
}

// Limits reads back the rlimits R runs under.
func (r *hostRunner) Limits() (Limits, error) {
	var l Limits
	for res, dst := range map[int]func(uint64){
		unix.RLIMIT_AS:     func(v uint64) { l.MemoryBytes = int64(min(v, 1<<62)) },
		unix.RLIMIT_NOFILE: func(v uint64) { l.NoFile = v },
		unix.RLIMIT_FSIZE:  func(v uint64) { l.FileSizeBytes = v },
	} {
		var cur unix.Rlimit
		if err := unix.Prlimit(r.pid, res, nil, &cur); err != nil {
			return Limits{}, fmt.Errorf("read R's resource limits: %w", err)
		}
		dst(cur.Cur)
	}
	return l, nil
}

// processGroup lists the processes in group pgid.
func processGroup(pgid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := statFields(pid, 3)
		if err != nil {
			continue // gone meanwhile
		}
		if f[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// defaultHostStateDir is where an unsandboxed session keeps its socket
// and runtime when Config.StateDir is not set: the user's runtime dir
// when it is really theirs (runuser and sudo may pass on another user's),
// else a per-user dir in the temp dir.
func defaultHostStateDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && filepath.IsAbs(d) {
		if err := checkPrivateDir(d); err == nil {
			if _, err := os.Stat(d); err == nil {
				return filepath.Join(d, "securer-runc")
			}
		}
	}
	return filepath.Join(os.TempDir(), "securer-runc-"+strconv.Itoa(os.Geteuid()))
}
