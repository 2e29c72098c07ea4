package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/securer-runc/securer-runc/cgroup"
	"github.com/securer-runc/securer-runc/container"
	"github.com/securer-runc/securer-runc/internal/procfs"
)

// Host is R as a plain child process of this one (Config.UnsafeNoSandbox):
// no namespaces, no seccomp, no cgroup; only rlimits. R leads its own
// process group, which is what Procs, a sweep of strays and Destroy act on: processes that leave the group (setsid) escape them.
//
// R is not reaped until Destroy: while it is an unreaped zombie its pid,
// and so its process group's id, cannot be given to anyone else, which
// makes signalling the group after R's death safe.
type Host struct {
	cmd    *exec.Cmd
	pid    int
	done   chan struct{}
	exit   container.Exit // set before done is closed
	reaped atomic.Bool    // the pid may name another process now

	mu       sync.Mutex
	lastPeak uint64 // peak RSS last read, kept once R is gone

	destroyOnce sync.Once
	destroyErr  error
}

// sessionMarker is the environment variable marking every process of an
// unsandboxed session, so that Reap can tell them from a stranger that
// got a recycled pid or process group id.
const sessionMarker = "SECURER_SESSION"

// hostEnvKeep are the variables of this process's environment a host R
// inherits (secrets such as API keys in the environment do not cross).
var hostEnvKeep = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "R_LIBS", "R_LIBS_USER", "R_LIBS_SITE"}

// hostEnv is R's environment: the kept variables, TMPDIR in the
// session's own directory, the session marker and the JIT off (see the
// runtime).
func hostEnv(tmpDir, id string) []string {
	env := []string{"TMPDIR=" + tmpDir, "R_ENABLE_JIT=0", sessionMarker + "=" + id}
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

// spawner starts host processes from one OS thread that never exits. A
// child's parent-death signal fires when the thread that forked it ends,
// and Go ends a thread whose goroutine exits while locked to it (as
// libcontainer's do): forked from any other thread, R could be killed at
// random.
type spawner struct{ reqs chan spawnReq }

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

var hostSpawner = sync.OnceValue(func() *spawner {
	sp := &spawner{reqs: make(chan spawnReq)}
	go func() {
		runtime.LockOSThread() // for good: this thread must outlive every child
		for req := range sp.reqs {
			req.done <- req.cmd.Start()
		}
	}()
	return sp
})

func (sp *spawner) start(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	sp.reqs <- spawnReq{cmd: cmd, done: done}
	return <-done
}

// StartHost starts rscript with args in dir. R dies with this process
// (parent-death signal), and its rlimits are in force before this
// returns, so before R can have read any code.
func StartHost(rscript string, args []string, dir, id string, limits Limits, stdout, stderr *os.File) (*Host, error) {
	path, err := exec.LookPath(rscript)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", rscript, err)
	}
	// A shell ignores SIGXFSZ and execs R in its place (same pid): an
	// ignored signal stays ignored across exec, so a write past
	// RLIMIT_FSIZE fails in R with EFBIG instead of killing it.
	cmd := exec.Command("/bin/sh", append([]string{"-c", `trap '' XFSZ; exec "$0" "$@"`, path}, args...)...)
	cmd.Dir = dir
	cmd.Env = hostEnv(dir, id)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := hostSpawner().start(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", rscript, err)
	}
	r := &Host{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		r.exit = waitExit(r.pid)
		close(r.done)
	}()
	// R goes first when memory runs out, as a box does; it would
	// otherwise inherit this process's (possibly lowered) score.
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", r.pid), []byte("1000"), 0); err != nil {
		_ = r.Destroy(context.Background())
		return nil, fmt.Errorf("raise R's OOM score: %w", err)
	}
	for res, v := range hostRlimits(limits) {
		// Never above this process's own hard limit, which only a
		// privileged process may raise.
		var own unix.Rlimit
		if err := unix.Getrlimit(res, &own); err == nil && own.Max < v {
			v = own.Max
		}
		lim := unix.Rlimit{Cur: v, Max: v}
		if err := unix.Prlimit(r.pid, res, &lim, nil); err != nil {
			_ = r.Destroy(context.Background())
			return nil, fmt.Errorf("set R's resource limits: %w", err)
		}
	}
	return r, nil
}

// waitExit waits for pid to end without reaping it and returns how it
// ended, read from the zombie's /proc/PID/stat (field 52, exit_code, in
// waitpid's format).
func waitExit(pid int) container.Exit {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	f, err := procfs.StatFields(pid, 50)
	if err != nil {
		return container.Exit{Code: -1}
	}
	code, err := strconv.Atoi(f[49])
	if err != nil {
		return container.Exit{Code: -1}
	}
	ws := syscall.WaitStatus(code)
	if ws.Signaled() {
		return container.Exit{Code: -1, Signal: ws.Signal()}
	}
	return container.Exit{Code: ws.ExitStatus()}
}

func (r *Host) Done() <-chan struct{} { return r.done }
func (r *Host) Spared() int           { return 0 }

// Freeze and Thaw: a host R has no cgroup of its own to freeze.
func (r *Host) Freeze() error { return errors.ErrUnsupported }
func (r *Host) Thaw() error   { return errors.ErrUnsupported }

func (r *Host) ExitStatus() container.Exit {
	<-r.done
	return r.exit
}

func (r *Host) Signal(sig os.Signal) error {
	select {
	case <-r.done:
		return nil
	default:
	}
	// os.Process signals through a pidfd: never a recycled pid.
	if err := r.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", sig, err)
	}
	return nil
}

// Destroy kills R and its process group, waits for R and reaps it.
func (r *Host) Destroy(ctx context.Context) error {
	r.destroyOnce.Do(func() {
		// R is unreaped: the group's id is still R's alone.
		_ = unix.Kill(-r.pid, unix.SIGKILL)
		_ = r.cmd.Process.Kill() // R itself, should it have left its group
		select {
		case <-r.done:
		case <-ctx.Done():
			r.destroyErr = fmt.Errorf("destroy host R %d: it did not exit: %w", r.pid, ctx.Err())
			return
		}
		// Members forked while the first signal went out; the zombie
		// still holds the group's id.
		_ = unix.Kill(-r.pid, unix.SIGKILL)
		r.reaped.Store(true)
		_ = r.cmd.Wait()
	})
	return r.destroyErr
}

func (r *Host) Procs() ([]int, error) {
	if r.reaped.Load() {
		return nil, nil
	}
	return procfs.Group(r.pid)
}

// Usage reads R's CPU time (its own and its waited-for children's) and
// its peak resident memory from /proc; there is no OOM or pids account.
// Once R is gone the peak is the last one read.
func (r *Host) Usage() cgroup.Usage {
	var u cgroup.Usage
	r.mu.Lock()
	defer r.mu.Unlock()
	u.PeakMemoryBytes = r.lastPeak
	if r.reaped.Load() {
		return u
	}
	f, err := procfs.StatFields(r.pid, 15)
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
				u.PeakMemoryBytes = max(u.PeakMemoryBytes, kb<<10)
				r.lastPeak = u.PeakMemoryBytes
			}
		}
	}
	return u
}

// Limits reads back the rlimits R runs under.
func (r *Host) Limits() (Limits, error) {
	if r.reaped.Load() {
		return Limits{}, errors.New("R has ended")
	}
	get := func(res int) (uint64, error) {
		var cur unix.Rlimit
		err := unix.Prlimit(r.pid, res, nil, &cur)
		return cur.Cur, err
	}
	as, errAS := get(unix.RLIMIT_AS)
	nofile, errNoFile := get(unix.RLIMIT_NOFILE)
	fsize, errFSize := get(unix.RLIMIT_FSIZE)
	if err := errors.Join(errAS, errNoFile, errFSize); err != nil {
		return Limits{}, fmt.Errorf("read R's resource limits: %w", err)
	}
	return Limits{MemoryBytes: int64(min(as, 1<<62)), NoFile: nofile, FileSizeBytes: fsize}, nil
}

// KillMarked ends the processes of group pgid that carry session id's
// marker in their environment: what is left of an unsandboxed session
// whose owner died. The marker tells them from strangers that got a
// recycled pid or group id.
func KillMarked(pgid int, id string) {
	marker := []byte(sessionMarker + "=" + id + "\x00")
	for round := 0; round < 5; round++ {
		pids, _ := procfs.Group(pgid)
		killed := 0
		for _, pid := range pids {
			env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
			if err == nil && bytes.Contains(append([]byte{0}, env...), append([]byte{0}, marker...)) {
				if unix.Kill(pid, unix.SIGKILL) == nil {
					killed++
				}
			}
		}
		if killed == 0 {
			return
		}
	}
}

// Pid is R's host pid.
func (r *Host) Pid() int { return r.pid }
