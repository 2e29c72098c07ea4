package securer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/securer-runc/securer-runc/bridge"
	"github.com/securer-runc/securer-runc/cgroup"
	"github.com/securer-runc/securer-runc/container"
	"github.com/securer-runc/securer-runc/internal/boxsweep"
	"github.com/securer-runc/securer-runc/internal/bridgesock"
	"github.com/securer-runc/securer-runc/internal/capture"
	"github.com/securer-runc/securer-runc/internal/procfs"
	"github.com/securer-runc/securer-runc/internal/reaper"
	"github.com/securer-runc/securer-runc/internal/runner"
	"github.com/securer-runc/securer-runc/internal/statedir"
	"github.com/securer-runc/securer-runc/internal/uidrange"
	"github.com/securer-runc/securer-runc/rootfs"
	"github.com/securer-runc/securer-runc/spec"
)

// engine is how a Session reaches the host: it readies the host, starts
// R and looks at R's process. NewSession uses hostEngine; the core's unit
// tests give newSession a fake that runs no R.
type engine interface {
	// prepare checks and readies the host for sessions of cfg (once per
	// Session, before its first start).
	prepare(ctx context.Context, cfg Config) error
	// launch starts R for inst and sets inst's run, conn (the bridge,
	// accepted from R), rPid, stdout and stderr.
	launch(ctx context.Context, s *Session, inst *instance) error
	// fingerprint describes R's process state (procfs.Fingerprint).
	fingerprint(pid int) (string, error)
	// ignoresSIGINT reports whether R ignores SIGINT now.
	ignoresSIGINT(pid int) bool
	// pidfd pins R's process (-1: signal it through its runner).
	pidfd(pid int) (int, error)
	// sweepBox empties the box of R (pid, pinned by pidfd) after a fresh
	// execution, once only init and R are left in it: its writable places
	// and its System V IPC objects (boxsweep.Sweep).
	sweepBox(ctx context.Context, pid, pidfd int) error
}

// hostEngine runs R in a box, or as a host process when unsandboxed.
type hostEngine struct{}

func (hostEngine) fingerprint(pid int) (string, error) { return procfs.Fingerprint(pid) }
func (hostEngine) ignoresSIGINT(pid int) bool          { return procfs.Ignores(pid, unix.SIGINT) }
func (hostEngine) pidfd(pid int) (int, error)          { return unix.PidfdOpen(pid, 0) }
func (hostEngine) sweepBox(ctx context.Context, pid, pidfd int) error {
	return boxsweep.Sweep(ctx, pid, pidfd)
}

func (hostEngine) prepare(ctx context.Context, cfg Config) error {
	if cfg.UnsafeNoSandbox {
		if _, err := exec.LookPath(cfg.HostRscript); err != nil {
			return fmt.Errorf("%w: an unsandboxed session runs this host's R: %w (install R, or set HostRscript)", ErrInvalidConfig, err)
		}
	} else if err := prepareSandbox(cfg); err != nil {
		return err
	}
	if err := statedir.Prepare(cfg.host.StateDir); err != nil {
		if errors.Is(err, statedir.ErrNotPrivate) {
			return fmt.Errorf("%w: Host.StateDir: %w", ErrInvalidConfig, err)
		}
		return err
	}
	reaped, err := reaper.Reap(ctx, cfg.host.StateDir)
	if err != nil {
		cfg.Logger.Warn("reaping leftovers of crashed sessions", "err", err)
	}
	cfg.Hooks.reaped(len(reaped), 0)
	if cfg.UnsafeNoSandbox {
		cfg.Logger.Warn("UNSANDBOXED session: R runs on this host without isolation", "user", os.Geteuid(), "rscript", cfg.HostRscript)
		return nil
	}
	cgroups, err := reaper.Cgroups(cfg.host.StateDir, cfg.host.CgroupParent)
	if err != nil {
		cfg.Logger.Warn("reaping cgroups of crashed sessions", "err", err)
	}
	cfg.Hooks.reaped(0, len(cgroups))
	t := cfg.host.TotalLimits
	if _, err := cgroup.EnsureParent(cfg.host.CgroupParent, cgroup.Limits{MemoryBytes: t.MemoryBytes, Pids: t.Pids, CPUs: t.CPUs}); err != nil {
		return fmt.Errorf("%w: %w", ErrSandboxUnavailable, err)
	}
	return nil
}

// prepareSandbox checks that the program, the host and the rootfs can
// give the sandbox cfg asks for.
func prepareSandbox(cfg Config) error {
	if !container.InitHookRan() {
		return fmt.Errorf("%w: %w: a sandbox starts by running this program again as the box's init", ErrInvalidConfig, ErrInitHookMissing)
	}
	if err := hostProblems(cfg.host.Check()); err != nil {
		return err
	}
	if _, err := rootfs.Check(cfg.host.RootFSDir); err != nil {
		return fmt.Errorf("%w: %w", ErrSandboxUnavailable, err)
	}
	// A tree the box's user cannot get through fails here, naming the
	// path, not later as R (or runc) denied access.
	if err := rootfs.CheckAccess(cfg.host.RootFSDir, !cfg.host.UnsafeNoUserNamespace); err != nil {
		return fmt.Errorf("%w: %w", ErrSandboxUnavailable, err)
	}
	for _, m := range cfg.Mounts {
		if err := m.validate(rootfs.RootfsPath(cfg.host.RootFSDir)); err != nil {
			return err
		}
	}
	return nil
}

// launch starts R: it listens on the session's socket, starts R (a box,
// or a host process) with its output on pipes, and accepts R's one
// connection.
func (hostEngine) launch(ctx context.Context, s *Session, inst *instance) error {
	sockDir := filepath.Join(inst.dir, "sock")
	if err := statedir.Mkdir(sockDir, statedir.SocketDirMode); err != nil {
		return err
	}
	sockPath := filepath.Join(sockDir, statedir.SocketName)
	if s.cfg.UnsafeNoSandbox && len(sockPath) >= 108 {
		// A host R connects by this name (a box's R by its own, short one).
		return fmt.Errorf("%w: socket path %q is %d bytes, over the kernel's 107: use a shorter Host.StateDir", ErrInvalidConfig, sockPath, len(sockPath))
	}
	ln, err := bridgesock.Listen(sockDir, statedir.SocketName)
	if err != nil {
		return err
	}
	// One connection only.
	defer func() {
		ln.Close()
		_ = os.Remove(sockPath)
	}()
	// Only the session's R may connect (acceptFrom checks who did).
	if err := os.Chmod(sockPath, statedir.SocketMode); err != nil {
		return err
	}
	outW, errW, err := inst.outputPipes()
	if err != nil {
		return err
	}
	if s.cfg.UnsafeNoSandbox {
		inst.run, err = s.startHost(inst, sockPath, outW, errW)
	} else {
		inst.run, err = s.startBox(ctx, inst, sockDir, sockPath, outW, errW)
	}
	outW.Close()
	errW.Close()
	if err != nil {
		return err
	}
	inst.boxStarted = time.Now()
	inst.conn, inst.rPid, err = acceptFrom(ctx, ln, inst.run)
	if err != nil {
		return inst.startFailure(err)
	}
	return nil
}

// outputPipes makes the pipes R's stdout and stderr go to, read by inst,
// and returns their write ends for R (the caller closes them).
func (inst *instance) outputPipes() (outW, errW *os.File, err error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, nil, err
	}
	if inst.stdout, err = capture.NewPipe(outR); err != nil {
		outR.Close()
		errR.Close()
		outW.Close()
		errW.Close()
		return nil, nil, err
	}
	if inst.stderr, err = capture.NewPipe(errR); err != nil {
		errR.Close()
		outW.Close()
		errW.Close()
		return nil, nil, err
	}
	inst.startErr = capture.New(startupStderrBytes, nil, 0)
	inst.stderr.SetSink(inst.startErr)
	return outW, errW, nil
}

// startBox starts R in a container (the sandbox).
func (s *Session) startBox(ctx context.Context, inst *instance, sockDir, sockPath string, stdout, stderr *os.File) (runner.Runner, error) {
	hostUID, hostGID := boxUID, boxGID
	var userNS *spec.IDMap
	if !s.cfg.host.UnsafeNoUserNamespace {
		layout, err := uidrange.Detect()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSandboxUnavailable, err)
		}
		slot, err := uidrange.Claim(layout, inst.dir)
		if errors.Is(err, uidrange.ErrExhausted) {
			err = fmt.Errorf("%w: %w", ErrSandboxUnavailable, err)
		}
		if err != nil {
			return nil, err
		}
		inst.uidSlot = slot
		userNS, hostUID, hostGID = boxIDMap(layout, slot)
	}
	if err := os.Chown(sockPath, hostUID, hostGID); err != nil {
		return nil, err
	}
	l := s.cfg.Limits
	procDir := filepath.Join(inst.dir, "proc")
	if err := writeSyntheticProc(procDir, l.MemoryBytes); err != nil {
		return nil, err
	}
	sp, err := spec.Build(spec.Options{
		RootFS: s.rootfs,
		// tini is the box's init: it forwards our signals to R and reaps
		// the orphans background processes leave (R as pid 1 would not).
		Args: append([]string{"/usr/bin/tini", "--"}, boxRCommand(
			spec.RuntimeDir+"/"+bridge.RuntimeEntry, spec.RuntimeDir, spec.SocketDir+"/"+statedir.SocketName)...),
		Env: append([]string{
			"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "TMPDIR=/tmp",
			"LANG=C.UTF-8", "TZ=UTC", "R_LIBS_USER=/nonexistent", "R_ENABLE_JIT=0",
		}, boxREnv...),
		UID: boxUID, GID: boxGID, UserNS: userNS,
		CgroupsPath:   s.cfg.host.CgroupParent + "/" + inst.id,
		MemoryBytes:   l.MemoryBytes,
		Pids:          l.Pids,
		CPUs:          l.CPUs,
		TmpBytes:      l.TmpBytes,
		TmpInodes:     16384,
		ShmBytes:      min(l.TmpBytes, 64<<20),
		NoFile:        l.NoFile,
		FileSizeBytes: l.FileSizeBytes,
		Binds:         s.binds(sockDir),
		ProcDir:       procDir,
		NoASLR:        s.cfg.host.UnsafeMergePages,
	})
	if err != nil {
		return nil, err
	}
	stdio := container.Stdio{Stdout: stdout, Stderr: stderr}
	var stdinW *os.File
	if s.cfg.Stdin != nil {
		// A pipe of the host's making, fed as R reads: never the host's
		// own stdin, which may be a terminal.
		stdinR, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		defer stdinR.Close()
		stdio.Stdin, stdinW = stdinR, w
	}
	box, err := container.Start(ctx, filepath.Join(s.cfg.host.StateDir, statedir.ContainersDir), inst.id, sp, stdio)
	if stdinW != nil {
		if err != nil {
			stdinW.Close()
		} else {
			go feedStdin(stdinW, s.cfg.Stdin, s.log)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSandboxUnavailable, err)
	}
	return runner.NewBox(box), nil
}

// boxRCommand runs the rootfs's R on file with args as Rscript would,
// without Rscript and R's shell script in between: they cost three
// execs and a shell (uname, sed twice) at every start. boxREnv is what
// the two would have set (Debian's R 4.2 layout, which the rootfs
// build fixes; TestBoxREnv compares it with Rscript's).
func boxRCommand(file string, args ...string) []string {
	return append([]string{"/usr/lib/R/bin/exec/R", "--no-echo", "--no-restore", "--vanilla", "--file=" + file, "--args"}, args...)
}

var boxREnv = []string{
	"R_HOME=/usr/lib/R", "R_SHARE_DIR=/usr/share/R/share", "R_INCLUDE_DIR=/usr/share/R/include",
	"R_DOC_DIR=/usr/share/R/doc", "R_ARCH=", "R_ENVIRON=", "R_PROFILE=",
	"LD_LIBRARY_PATH=/usr/lib/R/lib:/usr/lib/" + debianMultiarch[runtime.GOARCH] + ":/usr/lib/jvm/default-java/lib/server",
	"R_DEFAULT_PACKAGES=" + defaultPackages,
}

// debianMultiarch is Debian's library directory name per architecture.
var debianMultiarch = map[string]string{
	"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "ppc64le": "powerpc64le-linux-gnu",
	"s390x": "s390x-linux-gnu", "riscv64": "riscv64-linux-gnu",
}

// boxIDMap is the user namespace mapping of a box holding slot k of l,
// and the IDs its user (boxUID, boxGID) has outside it.
func boxIDMap(l uidrange.Layout, k int) (m *spec.IDMap, hostUID, hostGID int) {
	base := l.Base(k)
	return &spec.IDMap{HostBase: base, Size: l.Size}, int(base) + boxUID, int(base) + boxGID
}

// writeSyntheticProc writes the /proc files the box sees in place of the
// host's (spec.SyntheticProc), readable by the box's user.
func writeSyntheticProc(dir string, memoryBytes int64) error {
	if err := statedir.Mkdir(dir, statedir.ProcDirMode); err != nil {
		return fmt.Errorf("synthetic /proc: %w", err)
	}
	for name, text := range spec.SyntheticProc(memoryBytes, runtime.NumCPU()) {
		if err := statedir.WriteFile(filepath.Join(dir, name), []byte(text), statedir.ProcFileMode); err != nil {
			return fmt.Errorf("synthetic /proc: %w", err)
		}
	}
	return nil
}

// startHost starts R as a plain child process (Config.UnsafeNoSandbox),
// in a temp dir of the session's own, and records its pid so that a
// later Reap can end it if this process dies first.
func (s *Session) startHost(inst *instance, sockPath string, stdout, stderr *os.File) (runner.Runner, error) {
	tmp := filepath.Join(inst.dir, "tmp")
	if err := statedir.Mkdir(tmp, statedir.HostTmpMode); err != nil {
		return nil, err
	}
	r, err := runner.StartHost(s.cfg.HostRscript, []string{"--vanilla", "--default-packages=" + defaultPackages,
		filepath.Join(s.runtime, bridge.RuntimeEntry), s.runtime, sockPath, "host"}, tmp, inst.id, runnerLimits(s.cfg.Limits), stdout, stderr)
	if err != nil {
		return nil, err
	}
	rec, err := procfs.Record(r.Pid())
	if err == nil {
		err = statedir.WriteAtomic(filepath.Join(inst.dir, statedir.HostRFile), rec)
	}
	if err != nil {
		_ = r.Destroy(context.Background())
		return nil, fmt.Errorf("record the host R: %w", err)
	}
	return r, nil
}

// binds lists the box's bind mounts: the runtime, the socket's directory
// and the operator's read-only Mounts.
func (s *Session) binds(sockDir string) []spec.BindMount {
	b := []spec.BindMount{
		{Source: s.runtime, Destination: spec.RuntimeDir, ReadOnly: true},
		{Source: sockDir, Destination: spec.SocketDir, ReadOnly: true},
	}
	for _, m := range s.cfg.Mounts {
		b = append(b, spec.BindMount{Source: m.Source, Destination: m.Destination, ReadOnly: true, Exec: m.Exec})
	}
	return b
}

// acceptFrom accepts R's one connection, checked (bridgesock.Accept) to
// come from a process of run: R.
func acceptFrom(ctx context.Context, ln *net.UnixListener, run runner.Runner) (net.Conn, int, error) {
	conn, pid, err := bridgesock.Accept(ctx, ln, run.Done(), run.Procs)
	switch {
	case errors.Is(err, bridgesock.ErrPeerExited):
		return nil, 0, fmt.Errorf("R exited before connecting (%s)", run.ExitStatus())
	case errors.Is(err, bridgesock.ErrForeignPeer):
		return nil, 0, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return conn, pid, err
}
