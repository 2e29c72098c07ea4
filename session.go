package securer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/securer-runc/securer-runc/bridge"
	"github.com/securer-runc/securer-runc/internal/statedir"
	"github.com/securer-runc/securer-runc/rootfs"
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

	// eng starts R and looks at its process: the host's (NewSession) or
	// a test's fake.
	eng engine
	// busy admits one Execute (or Restart) at a time.
	busy   gate
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

// newSession is Host.NewSession on eng.
func newSession(ctx context.Context, h Host, cfg Config, eng engine) (*Session, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var err error
	if cfg.host, err = h.withDefaults(!cfg.UnsafeNoSandbox); err != nil {
		return nil, err
	}
	if err := eng.prepare(ctx, cfg); err != nil {
		return nil, err
	}
	s := &Session{
		cfg:    cfg,
		eng:    eng,
		rootfs: rootfs.RootfsPath(cfg.host.RootFSDir),
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
	s.runtime = filepath.Join(cfg.host.StateDir, statedir.RuntimeDir, bridge.RuntimeDigest())
	if err := statedir.MkdirPrivate(s.runtime, statedir.RuntimeMode); err != nil {
		return nil, err
	}
	if err := bridge.WriteRuntime(s.runtime); err != nil {
		return nil, fmt.Errorf("write R runtime: %w", err)
	}
	inst, err := s.start(ctx)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			// The caller's context ended the start: that is the cause, not
			// the host (the failure it caused would say "sandbox
			// unavailable" or "R did not connect").
			return nil, fmt.Errorf("%w (%v)", endedContextError(ctxErr, "while the session started"), err)
		}
		return nil, err
	}
	s.inst = inst
	return s, nil
}

// Sandboxed reports whether the session's R runs in the sandbox (false
// only with Config.UnsafeNoSandbox).
func (s *Session) Sandboxed() bool { return !s.cfg.UnsafeNoSandbox }

// Execute runs code in a one-shot session on the default Host: start,
// execute, close.
func Execute(ctx context.Context, cfg Config, code string) (*Result, error) {
	return Host{}.Execute(ctx, cfg, code)
}

// Execute runs code in a one-shot session on h: start, execute, close.
func (h Host) Execute(ctx context.Context, cfg Config, code string) (*Result, error) {
	s, err := h.NewSession(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Execute(ctx, code)
}

// Close ends the session and removes everything it made. Safe to call more
// than once; a running Execute ends with ErrSessionClosed. An error means
// something could not be removed (the reaper retries at the next start).
func (s *Session) Close() error {
	s.mu.Lock()
	inst := s.inst
	s.inst, s.closed = nil, true
	s.mu.Unlock()
	if inst == nil {
		return nil
	}
	err := s.destroy(inst)
	// A clean-up under way ends with the box: wait, so that nothing of
	// the session outlives Close.
	if c := inst.cleaned.Load(); c != nil {
		<-*c
	}
	return err
}

// ready waits for the clean-up after the session's last fresh execution
// and checks that it can serve the next one: R alive and as it started.
// It fails with ctx's end, or when the session is closed or its R must
// be replaced.
func (s *Session) ready(ctx context.Context) error {
	s.mu.Lock()
	inst, closed := s.inst, s.closed
	s.mu.Unlock()
	if closed || inst == nil {
		return ErrSessionClosed
	}
	if err := inst.awaitClean(ctx); err != nil {
		return err
	}
	if inst.dead.Load() {
		return errors.New(inst.deathReason())
	}
	select {
	case <-inst.run.Done():
		return errors.New(inst.deathReason())
	default:
	}
	return s.settle(inst)
}

// cleaning reports whether the clean-up after the session's last fresh
// execution is still under way.
func (s *Session) cleaning() bool {
	s.mu.Lock()
	inst := s.inst
	s.mu.Unlock()
	return inst != nil && inst.cleanPending()
}

func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Restart replaces R with a fresh one: all state is lost.
func (s *Session) Restart(ctx context.Context) error {
	if !s.busy.enter() {
		return ErrBusy
	}
	defer s.busy.leave()
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

// Pid is the current R's process id as R reports it, inside the box
// (0 once the session is closed). It changes on restart.
func (s *Session) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inst == nil {
		return 0
	}
	return s.inst.boxPid
}

// Sandbox kinds (Session.SandboxKind).
const (
	SandboxContainer         = "container"           // a container in its own user namespace
	SandboxContainerNoUserNS = "container-no-userns" // Host.UnsafeNoUserNamespace
	SandboxNone              = "none"                // Config.UnsafeNoSandbox: R on the host
)

// SandboxKind names how the session's R is isolated: SandboxContainer,
// SandboxContainerNoUserNS or SandboxNone.
func (s *Session) SandboxKind() string { return s.cfg.host.SandboxKind(s.cfg) }

// SandboxKind names how sessions of cfg on h are isolated (as
// Session.SandboxKind).
func (h Host) SandboxKind(cfg Config) string {
	switch {
	case cfg.UnsafeNoSandbox:
		return SandboxNone
	case h.UnsafeNoUserNamespace:
		return SandboxContainerNoUserNS
	}
	return SandboxContainer
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
	if inst != nil {
		if err := inst.awaitClean(ctx); err != nil {
			return nil, err
		}
	}
	if inst != nil && !inst.dead.Load() {
		select {
		case <-inst.run.Done():
		default:
			if err := s.settle(inst); err == nil {
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
