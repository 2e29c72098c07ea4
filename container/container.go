// Package container is the libcontainer glue: it creates, starts, signals,
// waits for and destroys one sandbox, and reaps what a crashed host process
// left behind. It knows nothing of R or of the bridge protocol.
package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/opencontainers/cgroups/devices" // registers the device-rule manager
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // runs nsexec before the Go runtime in "init"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/securer-runc/securer-runc/container/boxinit"
	"github.com/securer-runc/securer-runc/spec"
)

// InitArg is the argv[1] libcontainer re-executes the host binary with to
// set up a container from inside.
const InitArg = boxinit.Arg

// MaybeInit turns this process into a container init when it was started as
// one; it never returns in that case. Otherwise it pins the calling (main)
// goroutine to the main thread. Call it from an init function of package
// main, or first thing in TestMain.
//
// The pinning matters: libcontainer enters a new container's mount
// namespace on a locked thread it then abandons. Were that the main thread,
// it would stay in the container's namespace for the life of the process,
// keeping that container's mounts alive and making /proc/self describe it.
//
// A box's init normally never gets here: package boxinit, which this
// package imports, takes over from its own initializer, before the rest
// of the program's packages are initialized.
func MaybeInit() {
	initHookRan.Store(true)
	if len(os.Args) > 1 && os.Args[1] == InitArg {
		boxinit.Run()
	}
	runtime.LockOSThread()
}

// initHookRan records that this process called MaybeInit. It is process
// state by nature: whether the binary's main can turn into a box's init.
var initHookRan atomic.Bool

// InitHookRan reports whether MaybeInit has run in this process. Without
// it a box cannot start: libcontainer re-executes this binary as the
// box's init, and that process would run the program's main instead.
func InitHookRan() bool { return initHookRan.Load() }

// Stdio is where the sandboxed process's standard streams go. Nil streams
// are connected to /dev/null.
type Stdio struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// specconvMu serialises specconv.CreateLibcontainerConfig, which writes to
// package-level device tables when it sets up a user namespace: starts
// from several goroutines would race on them.
var specconvMu sync.Mutex

// personalityNoASLR is PER_LINUX with ADDR_NO_RANDOMIZE, as
// personality(2) takes it.
const personalityNoASLR = 0x0040000

func createConfig(id string, s *specs.Spec) (*configs.Config, error) {
	// specconv applies a personality's domain but ignores (with a warning)
	// its flags: the one flag the spec may carry is applied here, and any
	// other is refused rather than dropped.
	noASLR := false
	if p := s.Linux.Personality; p != nil && len(p.Flags) > 0 {
		if p.Domain != specs.PerLinux || len(p.Flags) != 1 || p.Flags[0] != spec.NoASLRFlag {
			return nil, fmt.Errorf("personality %s %v: only %s with %s is supported", p.Domain, p.Flags, specs.PerLinux, spec.NoASLRFlag)
		}
		noASLR = true
		linux := *s.Linux
		linux.Personality = nil
		own := *s
		own.Linux = &linux
		s = &own
	}
	specconvMu.Lock()
	defer specconvMu.Unlock()
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:   id,
		NoNewKeyring: true,
		Spec:         s,
	})
	if err != nil {
		return nil, err
	}
	if noASLR {
		// libcontainer sets it in the box's init before seccomp and exec;
		// tini, Rscript and R inherit it.
		cfg.Personality = &configs.LinuxPersonality{Domain: personalityNoASLR}
	}
	// The device nodes are specconv's shared tables: give this container
	// its own copies, so that later reads do not race with other starts.
	for i, d := range cfg.Devices {
		own := *d
		cfg.Devices[i] = &own
	}
	return cfg, nil
}

// Box is one running sandbox.
type Box struct {
	c    *libcontainer.Container
	proc *libcontainer.Process

	done     chan struct{}
	exitOnce sync.Once
	state    *os.ProcessState
	waitErr  error

	destroyOnce sync.Once
	destroyErr  error
}

// Start creates the container id under stateRoot from s and starts its
// process. On error nothing of it remains.
func Start(ctx context.Context, stateRoot, id string, s *specs.Spec, stdio Stdio) (_ *Box, retErr error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg, err := createConfig(id, s)
	if err != nil {
		return nil, fmt.Errorf("container config: %w", err)
	}
	rlimits, err := convertRlimits(s.Process.Rlimits)
	if err != nil {
		return nil, err
	}
	c, err := libcontainer.Create(stateRoot, id, cfg)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	defer func() {
		if retErr != nil {
			_ = c.Signal(unix.SIGKILL)
			_ = c.Destroy()
		}
	}()
	// libcontainer makes its state dir 0711 less the umask: the mode it
	// means, whatever the umask.
	if err := os.Chmod(filepath.Join(stateRoot, id), 0o711); err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	nnp := true
	proc := &libcontainer.Process{
		Args:            s.Process.Args,
		Env:             s.Process.Env,
		UID:             int(s.Process.User.UID),
		GID:             int(s.Process.User.GID),
		Cwd:             s.Process.Cwd,
		Stdin:           stdio.Stdin,
		Stdout:          stdio.Stdout,
		Stderr:          stdio.Stderr,
		NoNewPrivileges: &nnp,
		Rlimits:         rlimits,
		Init:            true,
	}
	if err := c.Run(proc); err != nil {
		return nil, fmt.Errorf("start container %s: %w", id, err)
	}
	b := &Box{c: c, proc: proc, done: make(chan struct{})}
	go b.wait()
	return b, nil
}

func (b *Box) wait() {
	st, err := b.proc.Wait()
	b.exitOnce.Do(func() {
		b.state, b.waitErr = st, err
		close(b.done)
	})
}

// ID is the container id.
func (b *Box) ID() string { return b.c.ID() }

// Pid is the host pid of the container's init process.
func (b *Box) Pid() (int, error) { return b.proc.Pid() }

// Done is closed when the container's init process has exited.
func (b *Box) Done() <-chan struct{} { return b.done }

// Exit describes how the init process ended.
type Exit struct {
	Code   int            // exit status, or -1 when killed by a signal
	Signal syscall.Signal // the signal that killed it, or 0
}

func (e Exit) String() string {
	if e.Signal != 0 {
		return "killed by signal " + e.Signal.String()
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

// ExitStatus reports how the process ended; valid once Done is closed.
func (b *Box) ExitStatus() Exit {
	<-b.done
	if b.state == nil {
		return Exit{Code: -1}
	}
	e := Exit{Code: b.state.ExitCode()}
	if ws, ok := b.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		e.Signal = ws.Signal()
	}
	return e
}

// Signal sends sig to the container's init process.
func (b *Box) Signal(sig os.Signal) error {
	select {
	case <-b.done:
		return nil
	default:
	}
	if err := b.c.Signal(sig); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
		return fmt.Errorf("signal %s: %w", sig, err)
	}
	return nil
}

// Freeze stops every process of the container (the cgroup freezer, v1 or
// v2, through libcontainer's manager): none can run, so none can fork,
// until Thaw. A SIGKILL sent meanwhile takes effect at the latest on Thaw.
func (b *Box) Freeze() error {
	if err := b.c.Pause(); err != nil {
		return fmt.Errorf("freeze %s: %w", b.ID(), err)
	}
	return nil
}

// Thaw lets a frozen container run again.
func (b *Box) Thaw() error {
	if err := b.c.Resume(); err != nil {
		return fmt.Errorf("thaw %s: %w", b.ID(), err)
	}
	return nil
}

// CgroupPaths maps each controller to the container's cgroup directory
// (a copy: libcontainer changes its own map on Destroy).
func (b *Box) CgroupPaths() map[string]string {
	st, err := b.c.State()
	if err != nil {
		return nil
	}
	return maps.Clone(st.CgroupPaths)
}

// Destroy kills every process of the container, waits for the init process
// and removes the container's cgroup and state. Safe to call more than once.
func (b *Box) Destroy(ctx context.Context) error {
	b.destroyOnce.Do(func() {
		_ = b.Signal(unix.SIGKILL)
		select {
		case <-b.done:
		case <-ctx.Done():
			b.destroyErr = fmt.Errorf("destroy %s: init did not exit: %w", b.ID(), ctx.Err())
			return
		}
		b.destroyErr = destroyStopped(ctx, b.c)
	})
	return b.destroyErr
}

// destroyStopped removes a container whose init is gone. A pid-namespace
// init's death takes the namespace down asynchronously, so Destroy may see
// "running" for a moment; retry briefly.
func destroyStopped(ctx context.Context, c *libcontainer.Container) error {
	var err error
	for delay := time.Millisecond; ; delay *= 2 {
		if err = c.Destroy(); err == nil {
			return nil
		}
		if delay > 200*time.Millisecond {
			return fmt.Errorf("destroy %s: %w", c.ID(), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("destroy %s: %w (last error: %v)", c.ID(), ctx.Err(), err)
		case <-time.After(delay):
		}
	}
}

var rlimitTypes = map[string]int{
	"RLIMIT_CORE":       unix.RLIMIT_CORE,
	"RLIMIT_NOFILE":     unix.RLIMIT_NOFILE,
	"RLIMIT_FSIZE":      unix.RLIMIT_FSIZE,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_AS":         unix.RLIMIT_AS,
	"RLIMIT_CPU":        unix.RLIMIT_CPU,
	"RLIMIT_STACK":      unix.RLIMIT_STACK,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
}

// convertRlimits turns the spec's rlimits into libcontainer's, capped at
// this process's own hard limits: the box cannot raise them (root in a
// user namespace has no CAP_SYS_RESOURCE over the host), and asking would
// fail the start.
func convertRlimits(rs []specs.POSIXRlimit) ([]configs.Rlimit, error) {
	out := make([]configs.Rlimit, 0, len(rs))
	for _, r := range rs {
		t, ok := rlimitTypes[r.Type]
		if !ok {
			return nil, fmt.Errorf("unsupported rlimit %q", r.Type)
		}
		hard, soft := r.Hard, r.Soft
		var own unix.Rlimit
		if err := unix.Getrlimit(t, &own); err == nil {
			hard, soft = min(hard, own.Max), min(soft, own.Max)
		}
		out = append(out, configs.Rlimit{Type: t, Hard: hard, Soft: soft})
	}
	return out, nil
}
