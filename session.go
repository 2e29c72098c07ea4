package securer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/securer-runc/securer-runc/bridge"
	"github.com/securer-runc/securer-runc/cgroup"
	"github.com/securer-runc/securer-runc/container"
	"github.com/securer-runc/securer-runc/internal/capture"
	"github.com/securer-runc/securer-runc/internal/procfs"
	"github.com/securer-runc/securer-runc/internal/runner"
	"github.com/securer-runc/securer-runc/internal/statedir"
	"github.com/securer-runc/securer-runc/internal/uidrange"
	"github.com/securer-runc/securer-runc/rootfs"
	"github.com/securer-runc/securer-runc/spec"
)

// Identity of R inside the box (internal/uidrange says where its IDs land
// on the host when a user namespace is used).
const (
	boxUID = 1000
	boxGID = 1000
)

// Session is one sandboxed R process with persistent state. Its methods are
// safe for concurrent use, but only one Execute runs at a time: a second
// concurrent Execute returns ErrBusy.
type Session struct {
	cfg     Config
	rootfs  string
	runtime string
	tools   []bridge.ToolSpec
	byName  map[string]Tool
	log     *slog.Logger
	// removeAll removes a session dir (nil: os.RemoveAll); tests fail it.
	removeAll func(string) error

	busy   atomic.Bool
	mu     sync.Mutex // guards inst and closed
	inst   *instance
	closed bool
	nextID uint64
	// executions counts admitted executions (MaxExecutions).
	executions atomic.Int64
	// lostState, when set, says why the R now running replaced one whose
	// state is gone; the next non-fresh execution reports it (guarded by
	// mu).
	lostState string
}

// instance is one container and its R process.
type instance struct {
	id         string
	dir        string
	run        runner.Runner
	conn       net.Conn
	frames     chan frame
	stop       chan struct{} // closed by destroy: ends the frame reader
	stdout     *capture.Pipe
	stderr     *capture.Pipe
	dead       atomic.Bool // must be replaced before the next Execute
	cleanup    sync.Once
	cleanupErr error
	// rPid is R's host pid (a container's init is tini).
	rPid int
	// rPidfd pins R's process (-1: none). Interrupts go to R through it
	// directly: a signal forwarded by tini arrives whenever tini next
	// runs, which under load can be after the next execution began.
	rPidfd   int
	rPidfdMu sync.Mutex // destroy may close it while an execution signals
	// interrupted: R was sent a SIGINT that may still be pending.
	interrupted bool
	// sweeping is the id of the fresh execution whose sweep the warm R
	// has yet to confirm (0: none).
	sweeping uint64
	// fingerprint is the warm R as it started (procfs.Fingerprint).
	fingerprint string
	// uidSlot is the host uid range the box holds (-1: none).
	uidSlot int
	// ended says why the instance is dead (the first reason given).
	ended atomic.Pointer[string]
}

// markDead records that the instance must be replaced, and why (the
// first reason wins: it is the cause, later ones are consequences). It
// reports whether the instance was already dead.
func (inst *instance) markDead(reason string) (already bool) {
	inst.ended.CompareAndSwap(nil, &reason)
	return inst.dead.Swap(true)
}

// deathReason says why a replaced instance ended.
func (inst *instance) deathReason() string {
	if r := inst.ended.Load(); r != nil {
		return *r
	}
	// Executions mark the deaths they see: an unmarked one came between
	// them.
	select {
	case <-inst.run.Done():
		return "R died between executions (" + inst.run.ExitStatus().String() + ")"
	default:
		return "R was ended"
	}
}

type frame struct {
	msg any
	err error
}

// NewSession starts a sandboxed R. It fails, naming what is missing, when
// the host cannot provide the isolation asked for. With
// Config.UnsafeNoSandbox it starts R without a sandbox instead.
func NewSession(ctx context.Context, cfg Config) (*Session, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.UnsafeNoSandbox {
		if _, err := exec.LookPath(cfg.HostRscript); err != nil {
			return nil, fmt.Errorf("%w: an unsandboxed session runs this host's R: %w (install R, or set HostRscript)", ErrInvalidConfig, err)
		}
	} else if err := prepareSandbox(cfg); err != nil {
		return nil, err
	}
	if err := statedir.Prepare(cfg.StateDir); err != nil {
		return nil, err
	}
	if _, err := Reap(ctx, cfg.StateDir); err != nil {
		cfg.Logger.Warn("reaping leftovers of crashed sessions", "err", err)
	}
	if !cfg.UnsafeNoSandbox {
		if _, err := ReapCgroups(cfg.StateDir, cfg.CgroupParent); err != nil {
			cfg.Logger.Warn("reaping cgroups of crashed sessions", "err", err)
		}
		total := cgroup.Limits{MemoryBytes: cfg.TotalLimits.MemoryBytes, Pids: cfg.TotalLimits.Pids, CPUs: cfg.TotalLimits.CPUs}
		if _, err := cgroup.EnsureParent(cfg.CgroupParent, total); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSandboxUnavailable, err)
		}
	} else {
		cfg.Logger.Warn("UNSANDBOXED session: R runs on this host without isolation", "user", os.Geteuid(), "rscript", cfg.HostRscript)
	}
	s := &Session{
		cfg:    cfg,
		rootfs: rootfs.RootfsPath(cfg.RootFSDir),
		log:    cfg.Logger,
		byName: map[string]Tool{},
	}
	for _, t := range cfg.Tools {
		ts := bridge.ToolSpec{Name: t.Name}
		for _, a := range t.Args {
			ts.Args = append(ts.Args, bridge.ArgSpec{Name: a.Name, Type: a.Type})
		}
		s.tools = append(s.tools, ts)
		s.byName[t.Name] = t
	}
	s.runtime = filepath.Join(cfg.StateDir, statedir.RuntimeDir, bridge.RuntimeDigest())
	if err := statedir.MkdirPrivate(s.runtime, 0o755); err != nil {
		return nil, err
	}
	if err := bridge.WriteRuntime(s.runtime); err != nil {
		return nil, fmt.Errorf("write R runtime: %w", err)
	}
	inst, err := s.start(ctx)
	if err != nil {
		return nil, err
	}
	s.inst = inst
	return s, nil
}

// prepareSandbox checks that the host and the rootfs can give the
// sandbox cfg asks for.
func prepareSandbox(cfg Config) error {
	if err := hostProblems(CheckHost(cfg)); err != nil {
		return err
	}
	if _, err := rootfs.Check(cfg.RootFSDir); err != nil {
		return fmt.Errorf("%w: %w", ErrSandboxUnavailable, err)
	}
	for _, m := range cfg.Mounts {
		if err := m.validate(rootfs.RootfsPath(cfg.RootFSDir)); err != nil {
			return err
		}
	}
	return nil
}

// Sandboxed reports whether the session's R runs in the sandbox (false
// only with Config.UnsafeNoSandbox).
func (s *Session) Sandboxed() bool { return !s.cfg.UnsafeNoSandbox }

// Execute runs code in a one-shot session: start, execute, close.
func Execute(ctx context.Context, cfg Config, code string) (*Result, error) {
	s, err := NewSession(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Execute(ctx, code)
}

func (s *Session) start(ctx context.Context) (_ *instance, retErr error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()
	began := time.Now()
	id := statedir.NewID()
	// frames is unbuffered: the reader holds at most one decoded frame, and
	// R cannot queue work while no Execute is reading.
	inst := &instance{id: id, dir: filepath.Join(s.cfg.StateDir, statedir.SessionsDir, id),
		frames: make(chan frame), stop: make(chan struct{}), uidSlot: -1, rPidfd: -1}
	defer func() {
		if retErr != nil {
			s.destroy(inst)
		}
	}()
	if err := statedir.MkdirPrivate(filepath.Dir(inst.dir), 0o711); err != nil {
		return nil, err
	}
	if err := os.Mkdir(inst.dir, 0o711); err != nil {
		return nil, fmt.Errorf("session dir: %w", err)
	}
	rec, err := procfs.Record(os.Getpid())
	if err != nil {
		return nil, err
	}
	// Written whole or not at all: a concurrent reaper must never see a
	// half-written record and take the session for an orphan.
	if err := statedir.WriteAtomic(filepath.Join(inst.dir, statedir.OwnerFile), rec); err != nil {
		return nil, err
	}
	sockDir := filepath.Join(inst.dir, "sock")
	if err := os.Mkdir(sockDir, 0o711); err != nil {
		return nil, err
	}
	sockPath := filepath.Join(sockDir, statedir.SocketName)
	if s.cfg.UnsafeNoSandbox && len(sockPath) >= 108 {
		// A host R connects by this name (a box's R by its own, short one).
		return nil, fmt.Errorf("%w: socket path %q is %d bytes, over the kernel's 107: use a shorter StateDir", ErrInvalidConfig, sockPath, len(sockPath))
	}
	ln, err := listenQuiet(sockDir, statedir.SocketName)
	if err != nil {
		return nil, err
	}
	// One connection only.
	defer func() {
		ln.Close()
		_ = os.Remove(sockPath)
	}()
	// Only the session's R may connect (acceptFrom checks who did).
	if err := os.Chmod(sockPath, 0o600); err != nil {
		return nil, err
	}

	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	if inst.stdout, err = capture.NewPipe(outR); err != nil {
		outW.Close()
		errW.Close()
		return nil, err
	}
	if inst.stderr, err = capture.NewPipe(errR); err != nil {
		outW.Close()
		errW.Close()
		return nil, err
	}
	runBegin := time.Now()
	if s.cfg.UnsafeNoSandbox {
		inst.run, err = s.startHost(inst, sockPath, outW, errW)
	} else {
		inst.run, err = s.startBox(ctx, inst, sockDir, sockPath, outW, errW)
	}
	outW.Close()
	errW.Close()
	if err != nil {
		return nil, err
	}
	runStarted := time.Now()

	conn, rPid, err := acceptFrom(ctx, ln, inst.run)
	if err != nil {
		return nil, err
	}
	inst.conn, inst.rPid = conn, rPid
	reader := bridge.NewReader(conn, s.cfg.MaxFrameBytes)
	reader.SetFrameTimeout(s.cfg.FrameTimeout)
	go readFrames(reader, inst.frames, inst.stop)

	var hello *bridge.Hello
	select {
	case f := <-inst.frames:
		if f.err != nil {
			return nil, fmt.Errorf("waiting for R's hello: %w", f.err)
		}
		h, ok := f.msg.(*bridge.Hello)
		if !ok || h.Protocol != bridge.ProtocolVersion {
			return nil, fmt.Errorf("%w: expected hello with protocol %d first", ErrProtocol, bridge.ProtocolVersion)
		}
		hello = h
	case <-inst.run.Done():
		return nil, fmt.Errorf("R exited during start-up (%s); its stderr went to the session's stderr", inst.run.ExitStatus())
	case <-ctx.Done():
		return nil, fmt.Errorf("R did not start within %s: %w", s.cfg.StartTimeout, ctx.Err())
	}
	decls := make([]bridge.ToolDecl, 0, len(s.tools))
	for _, t := range s.tools {
		d := bridge.ToolDecl{Name: t.Name, Args: []string{}}
		for _, a := range t.Args {
			d.Args = append(d.Args, a.Name)
		}
		decls = append(decls, d)
	}
	if err := s.send(inst, bridge.Init{Type: "init", Tools: decls, MaxFrame: s.cfg.MaxFrameBytes, Preload: s.cfg.Preload}); err != nil {
		return nil, err
	}
	select {
	case f := <-inst.frames:
		ready, ok := f.msg.(*bridge.Ready)
		switch {
		case f.err != nil:
			return nil, fmt.Errorf("waiting for R to get ready: %w", f.err)
		case !ok:
			return nil, fmt.Errorf("%w: expected ready, got %T", ErrProtocol, f.msg)
		case ready.Error != "":
			return nil, fmt.Errorf("%w: %s", ErrInvalidConfig, ready.Error)
		}
	case <-inst.run.Done():
		return nil, fmt.Errorf("R exited during start-up (%s)", inst.run.ExitStatus())
	case <-ctx.Done():
		return nil, fmt.Errorf("R did not get ready within %s: %w", s.cfg.StartTimeout, ctx.Err())
	}
	if inst.fingerprint, err = procfs.Fingerprint(inst.rPid); err != nil {
		return nil, fmt.Errorf("read R's process state: %w", err)
	}
	if inst.rPidfd, err = unix.PidfdOpen(inst.rPid, 0); err != nil {
		return nil, fmt.Errorf("pin R's process (pidfd_open): %w", err)
	}
	s.audit("session_start", "session", id, "r_version", hello.RVersion, "took_ms", time.Since(began).Milliseconds())
	s.log.Debug("session started", "id", id, "r_version", hello.RVersion,
		"sandboxed", !s.cfg.UnsafeNoSandbox, "setup", runBegin.Sub(began), "start", runStarted.Sub(runBegin), "r_ready", time.Since(runStarted))
	go s.watchIdle(inst)
	return inst, nil
}

// startBox starts R in a container (the sandbox).
func (s *Session) startBox(ctx context.Context, inst *instance, sockDir, sockPath string, stdout, stderr *os.File) (runner.Runner, error) {
	hostUID, hostGID := boxUID, boxGID
	var userNS *spec.IDMap
	if !s.cfg.UnsafeNoUserNamespace {
		slot, err := uidrange.Claim(inst.dir)
		if errors.Is(err, uidrange.ErrExhausted) {
			err = fmt.Errorf("%w: %w", ErrSandboxUnavailable, err)
		}
		if err != nil {
			return nil, err
		}
		inst.uidSlot = slot
		base := uidrange.Base(slot)
		userNS = &spec.IDMap{HostBase: base, Size: uidrange.Size}
		hostUID, hostGID = int(base)+boxUID, int(base)+boxGID
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
		Args: []string{"/usr/bin/tini", "--", "/usr/bin/Rscript", "--vanilla",
			"--default-packages=" + defaultPackages,
			spec.RuntimeDir + "/" + bridge.RuntimeEntry, spec.RuntimeDir, spec.SocketDir + "/" + statedir.SocketName},
		Env: []string{
			"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "TMPDIR=/tmp",
			"LANG=C.UTF-8", "TZ=UTC", "R_LIBS_USER=/nonexistent", "R_ENABLE_JIT=0",
		},
		UID: boxUID, GID: boxGID, UserNS: userNS,
		CgroupsPath:   s.cfg.CgroupParent + "/" + inst.id,
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
	})
	if err != nil {
		return nil, err
	}
	box, err := container.Start(ctx, filepath.Join(s.cfg.StateDir, statedir.ContainersDir), inst.id, sp,
		container.Stdio{Stdout: stdout, Stderr: stderr})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSandboxUnavailable, err)
	}
	return runner.NewBox(box), nil
}

// writeSyntheticProc writes the /proc files the box sees in place of the
// host's (spec.SyntheticProc), readable by the box's user.
func writeSyntheticProc(dir string, memoryBytes int64) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("synthetic /proc: %w", err)
	}
	for name, text := range spec.SyntheticProc(memoryBytes, runtime.NumCPU()) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o444); err != nil {
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
	if err := os.Mkdir(tmp, 0o700); err != nil {
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

// watchIdle removes an instance whose container dies while no execution
// runs (R killed from outside, say), so that nothing of it lingers until
// the next use; that use then starts a fresh R. A running execution sees
// its instance die and handles it itself.
func (s *Session) watchIdle(inst *instance) {
	select {
	case <-inst.stop:
		return
	case <-inst.run.Done():
	}
	// destroy closes stop before it kills the box: a death it caused is
	// not news.
	select {
	case <-inst.stop:
		return
	default:
	}
	// An execution under way sees the death itself; one ending now may
	// not have: wait for it, then clean up whatever nobody claimed. The
	// session is not held meanwhile, so a caller never gets ErrBusy from
	// this; a new execution finds the box dead and replaces it.
	for s.busy.Load() {
		select {
		case <-inst.stop:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	if inst.markDead("R died between executions (" + inst.run.ExitStatus().String() + ")") {
		return
	}
	s.log.Warn("R died while idle", "id", inst.id, "exit", inst.run.ExitStatus())
	s.audit("session_died", "session", inst.id, "exit", inst.run.ExitStatus())
	s.destroy(inst)
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

// acceptFrom accepts the box's one connection and checks, by the kernel's
// peer credentials, that it comes from a process of this container (its
// cgroup), not from anywhere else. It returns that process: R.
func acceptFrom(ctx context.Context, ln *net.UnixListener, run runner.Runner) (net.Conn, int, error) {
	type accepted struct {
		c   *net.UnixConn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.AcceptUnix()
		ch <- accepted{c, err}
	}()
	var a accepted
	// giveUp closes the listener and whatever the accept still returns.
	giveUp := func() {
		_ = ln.Close()
		if a := <-ch; a.c != nil {
			a.c.Close()
		}
	}
	select {
	case a = <-ch:
	case <-run.Done():
		giveUp()
		return nil, 0, fmt.Errorf("R exited before connecting (%s)", run.ExitStatus())
	case <-ctx.Done():
		giveUp()
		return nil, 0, fmt.Errorf("R did not connect: %w", ctx.Err())
	}
	if a.err != nil {
		return nil, 0, fmt.Errorf("accept: %w", a.err)
	}
	raw, err := a.c.SyscallConn()
	if err != nil {
		a.c.Close()
		return nil, 0, err
	}
	var cred *unix.Ucred
	credErr := errors.New("no peer credentials")
	if cerr := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); cerr != nil {
		credErr = cerr
	}
	procs, err := run.Procs()
	if credErr != nil || err != nil || !slices.Contains(procs, int(cred.Pid)) {
		a.c.Close()
		return nil, 0, fmt.Errorf("%w: bridge connection is not from the session's R (peer %+v)", ErrProtocol, cred)
	}
	return a.c, int(cred.Pid), nil
}

// listenQuiet listens on dir/name, bound by a name that says nothing of
// the host: /proc/net/unix shows a socket's bound name to every reader in
// the network namespace of its connections, the box included. The name
// goes through a descriptor of dir (/proc/self/fd/N/name), which reaches
// the same file.
func listenQuiet(dir, name string) (*net.UnixListener, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the socket dir: %w", err)
	}
	defer unix.Close(fd)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: fmt.Sprintf("/proc/self/fd/%d/%s", fd, name), Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", filepath.Join(dir, name), err)
	}
	// The bound name stops working once fd is closed: the caller unlinks
	// the socket by its real path.
	ln.SetUnlinkOnClose(false)
	return ln, nil
}

func readFrames(r *bridge.Reader, out chan<- frame, stop <-chan struct{}) {
	defer close(out)
	for {
		var f frame
		b, err := r.ReadFrame()
		if err == nil {
			f.msg, f.err = bridge.Decode(b)
		} else {
			f.err = err
		}
		select {
		case out <- f:
		case <-stop:
			return
		}
		if f.err != nil {
			return
		}
	}
}

// errEncode marks a host message that could not be encoded: a host-side
// bug or a tool's bad value, never R's fault.
var errEncode = errors.New("encode host message")

func (s *Session) send(inst *instance, msg any) error {
	b, err := bridge.Encode(msg)
	if err != nil {
		return fmt.Errorf("%w: %w", errEncode, err)
	}
	return s.sendFrame(inst, b)
}

// sendFrame writes one encoded message to R.
func (s *Session) sendFrame(inst *instance, b []byte) error {
	_ = inst.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := inst.conn.Write(b); err != nil {
		return fmt.Errorf("send to R: %w", err)
	}
	return nil
}

// destroy tears an instance down completely: processes, cgroup, container
// state, socket, session dir.
// interruptR sends SIGINT to R itself, so that the signal is pending in
// R before this returns and the next execution's stale-interrupt drop
// sees it. Through the container's init it would be forwarded later.
func (inst *instance) interruptR() {
	inst.rPidfdMu.Lock()
	defer inst.rPidfdMu.Unlock()
	if inst.rPidfd >= 0 && unix.PidfdSendSignal(inst.rPidfd, unix.SIGINT, nil, 0) == nil {
		return
	}
	_ = inst.run.Signal(unix.SIGINT)
}

func (s *Session) destroy(inst *instance) error {
	inst.cleanup.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		close(inst.stop)
		if inst.run != nil {
			s.audit("session_end", "session", inst.id)
		}
		if inst.conn != nil {
			inst.conn.Close()
		}
		inst.rPidfdMu.Lock()
		if inst.rPidfd >= 0 {
			unix.Close(inst.rPidfd)
			inst.rPidfd = -1
		}
		inst.rPidfdMu.Unlock()
		if inst.run != nil {
			t0 := time.Now()
			if err := inst.run.Destroy(ctx); err != nil {
				s.log.Error("destroying R", "id", inst.id, "err", err)
				inst.cleanupErr = err
			}
			s.log.Debug("R destroyed", "id", inst.id, "took", time.Since(t0))
		}
		// The uid range is free once no process of the box can hold it:
		// libcontainer removes the container's state only after its
		// cgroup, so while the state is there the claim stays (Reap frees
		// it once both are gone).
		ctrState := filepath.Join(s.cfg.StateDir, statedir.ContainersDir, inst.id)
		if _, err := os.Lstat(ctrState); inst.uidSlot >= 0 && errors.Is(err, os.ErrNotExist) {
			if err := uidrange.Release(inst.uidSlot, inst.dir); err != nil {
				s.log.Error("freeing the host uid range", "slot", inst.uidSlot, "err", err)
			}
		}
		if inst.stdout != nil {
			inst.stdout.Close()
		}
		if inst.stderr != nil {
			inst.stderr.Close()
		}
		if err := s.removeDir(inst.dir); err != nil {
			s.log.Error("removing session dir", "dir", inst.dir, "err", err)
			inst.cleanupErr = errors.Join(inst.cleanupErr, err)
		}
	})
	return inst.cleanupErr
}

// removeDirTries bounds removeDir's attempts (about 3 s in all).
const removeDirTries = 8

// removeDir removes a session dir, retrying a while: removing needs file
// descriptors, and under fd exhaustion (EMFILE/ENFILE, often what made a
// start fail) one attempt fails and left the dir behind until the
// process restarted (its owner record names a live process, so the
// reaper spares it).
func (s *Session) removeDir(dir string) error {
	remove := s.removeAll
	if remove == nil {
		remove = os.RemoveAll
	}
	wait := 10 * time.Millisecond
	var err error
	for range removeDirTries {
		if err = remove(dir); err == nil {
			return nil
		}
		time.Sleep(wait)
		wait = min(2*wait, time.Second)
	}
	return err
}

// Close ends the session and removes everything it made. Safe to call more
// than once; a running Execute ends with ErrSessionClosed. An error means
// something could not be removed (the reaper retries at the next start).
func (s *Session) Close() error {
	s.mu.Lock()
	inst := s.inst
	s.inst, s.closed = nil, true
	s.mu.Unlock()
	if inst != nil {
		return s.destroy(inst)
	}
	return nil
}

func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Restart replaces R with a fresh one: all state is lost.
func (s *Session) Restart(ctx context.Context) error {
	if !s.busy.CompareAndSwap(false, true) {
		return ErrBusy
	}
	defer s.busy.Store(false)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrSessionClosed
	}
	old := s.inst
	s.inst = nil
	s.lostState = "" // the caller asked for a new R: not news
	s.mu.Unlock()
	if old != nil {
		s.destroy(old)
	}
	return s.replace(ctx)
}

func (s *Session) replace(ctx context.Context) error {
	inst, err := s.start(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.mu.Unlock()
		s.destroy(inst)
		s.mu.Lock()
		return ErrSessionClosed
	}
	s.inst = inst
	return nil
}

// ID names the current container (it changes on restart).
func (s *Session) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inst == nil {
		return ""
	}
	return s.inst.id
}

// Alive reports whether the session has a running R.
func (s *Session) Alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inst == nil || s.inst.dead.Load() {
		return false
	}
	select {
	case <-s.inst.run.Done():
		return false
	default:
		return true
	}
}

// current returns the instance to execute in, replacing a dead one.
func (s *Session) current(ctx context.Context) (*instance, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrSessionClosed
	}
	inst := s.inst
	s.mu.Unlock()
	if inst != nil && !inst.dead.Load() {
		select {
		case <-inst.run.Done():
		default:
			if err := inst.settle(ctx); err == nil {
				return inst, nil
			} else {
				s.log.Warn("replacing R", "id", inst.id, "reason", err)
				s.audit("session_replaced", "session", inst.id, "reason", err.Error())
				inst.markDead("R was replaced: " + err.Error())
			}
		}
	}
	if inst != nil {
		reason := inst.deathReason()
		s.destroy(inst)
		s.mu.Lock()
		if s.lostState == "" {
			s.lostState = reason
		}
		s.mu.Unlock()
	}
	if err := s.replace(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inst, nil
}

// takeLostState returns, once, why the session's R was replaced since the
// last execution that reported it ("" when it was not).
func (s *Session) takeLostState() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.lostState
	s.lostState = ""
	return r
}

// killStrays ends every process of the container but init and R: what an
// execution started in the background does not outlive it. Processes forking
// meanwhile are caught by the next round; if they keep outrunning the
// rounds (a fork bomb), the box is frozen, so that nothing can fork, while
// the rest are killed.
func (inst *instance) killStrays(log *slog.Logger) {
	const plainRounds = 5
	for round := 0; round < plainRounds; round++ {
		if inst.killRound(true) == 0 {
			return
		}
	}
	if err := inst.run.Freeze(); err != nil {
		log.Debug("cannot freeze the box for the sweep", "id", inst.id, "err", err)
	} else {
		killed := inst.killRound(false) // frozen: none can exit yet
		if err := inst.run.Thaw(); err != nil {
			// A frozen R would never answer: this instance is done.
			log.Error("thawing the box after the sweep", "id", inst.id, "err", err)
			inst.markDead("the box could not be thawed after killing background processes: " + err.Error())
			return
		}
		log.Debug("background processes kept forking: froze the box and killed them", "id", inst.id, "killed", killed)
	}
	// The killed may take a moment to go; none can fork any more.
	for round := 0; round < 50; round++ {
		if inst.killRound(true) == 0 {
			return
		}
	}
	log.Warn("background processes survived the sweep", "id", inst.id)
}

// killRound sends SIGKILL to every process of the box but init and R, and
// says how many it signalled. With wait, it returns once those have exited
// (or after killExitWait): a killed process leaves only when it next runs,
// which on a loaded host is later than the next look at the box.
func (inst *instance) killRound(wait bool) int {
	spared := inst.run.Spared()
	pids, err := inst.run.Procs()
	if err != nil {
		return 0
	}
	// A pid read from the list may have been reused by the time it is
	// signalled. Pin each one with a pidfd first, then keep only those
	// still listed: a pidfd opened before the second read names a
	// process that was (and a pidfd never stops naming it) the session's
	// own.
	pinned := map[int]int{}
	for _, pid := range pids {
		if pid == spared || pid == inst.rPid {
			continue
		}
		if fd, err := unix.PidfdOpen(pid, 0); err == nil {
			pinned[pid] = fd
		}
	}
	if len(pinned) == 0 {
		return 0
	}
	still, err := inst.run.Procs()
	var killed []int
	for pid, fd := range pinned {
		if err == nil && slices.Contains(still, pid) && unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0) == nil {
			killed = append(killed, fd)
			continue
		}
		unix.Close(fd)
	}
	if wait {
		waitExited(killed, killExitWait)
	}
	for _, fd := range killed {
		unix.Close(fd)
	}
	return len(killed)
}

// killExitWait bounds how long one sweep round waits for the processes it
// killed to exit.
const killExitWait = 2 * time.Second

// waitExited waits until every process behind pidfds has exited (a pidfd
// turns readable then), or limit has passed.
func waitExited(pidfds []int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	pending := make([]unix.PollFd, 0, len(pidfds))
	for _, fd := range pidfds {
		pending = append(pending, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	}
	for len(pending) > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		n, err := unix.Poll(pending, int(left.Milliseconds())+1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		if err == nil && n == 0 {
			return // timed out
		}
		alive := pending[:0]
		for _, p := range pending {
			if p.Revents == 0 {
				alive = append(alive, p)
			}
		}
		pending = alive
	}
}

// settle waits for the sweep after a fresh execution and checks that the
// warm R is as it started. An error means the instance must not be used
// again: the next user would inherit what the last one did to it.
func (inst *instance) settle(ctx context.Context) error {
	if inst.sweeping != 0 {
		// A stopped R would never report its sweep: fail at once.
		if now, err := procfs.Fingerprint(inst.rPid); err != nil || procfs.Stopped(now) {
			return fmt.Errorf("the warm R is stopped or gone (%v)", err)
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		select {
		case f, ok := <-inst.frames:
			sw, isSwept := f.msg.(*bridge.Swept)
			if !ok || f.err != nil || !isSwept || sw.ID != inst.sweeping {
				return fmt.Errorf("%w: expected the sweep of execution %d, got %T %v", ErrProtocol, inst.sweeping, f.msg, f.err)
			}
		case <-inst.run.Done():
			return errors.New("R ended while sweeping")
		case <-ctx.Done():
			return fmt.Errorf("R did not finish sweeping: %w", ctx.Err())
		}
		inst.sweeping = 0
	}
	now, err := procfs.Fingerprint(inst.rPid)
	if err != nil {
		return err
	}
	if now != inst.fingerprint {
		return fmt.Errorf("the warm R's process state changed (was %q, now %q)", firstLine(inst.fingerprint), firstLine(now))
	}
	return nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// EnforcedLimits reads the limits the kernel enforces on the session's
// container now (from its cgroup), for checking that what was asked for
// holds. Unlimited fields are zero.
func (s *Session) EnforcedLimits() (Limits, error) {
	s.mu.Lock()
	inst := s.inst
	s.mu.Unlock()
	if inst == nil {
		return Limits{}, ErrSessionClosed
	}
	l, err := inst.run.Limits()
	if err != nil {
		return Limits{}, fmt.Errorf("read the limits R runs under: %w", err)
	}
	return Limits{MemoryBytes: l.MemoryBytes, Pids: l.Pids, CPUs: l.CPUs, NoFile: l.NoFile, FileSizeBytes: l.FileSizeBytes}, nil
}
