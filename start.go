package securer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/securer-runc/securer-runc/bridge"
	"github.com/securer-runc/securer-runc/internal/procfs"
	"github.com/securer-runc/securer-runc/internal/statedir"
)

// start starts a new R for the session: its instance dir, R itself (the
// engine's launch), the bridge handshake, and R's process pinned.
func (s *Session) start(parent context.Context) (_ *instance, retErr error) {
	ctx, cancel := context.WithTimeout(parent, s.cfg.StartTimeout)
	defer cancel()
	began := time.Now()
	inst := newInstance(s.cfg.host.StateDir)
	defer func() {
		if retErr == nil {
			return
		}
		s.destroy(inst)
		// StartTimeout, not the caller, ended the start: whatever step it
		// cut short, it is a timeout.
		if parent.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && !errors.Is(retErr, ErrTimeout) {
			retErr = fmt.Errorf("%w: the start took longer than StartTimeout (%s): %w", ErrTimeout, s.cfg.StartTimeout, retErr)
		}
		s.cfg.Hooks.started(time.Since(began), retErr)
	}()
	if err := s.makeInstanceDir(inst); err != nil {
		return nil, err
	}
	if err := s.eng.launch(ctx, s, inst); err != nil {
		return nil, err
	}
	launched := time.Now()
	reader := bridge.NewReader(inst.conn, s.cfg.MaxFrameBytes)
	reader.SetFrameTimeout(s.cfg.FrameTimeout)
	go readFrames(reader, inst.frames, inst.stop)
	hello, err := s.handshake(ctx, inst)
	if err != nil {
		// However it failed (R exited, closed the connection, hung), R's
		// own words on stderr are the likeliest cause.
		return nil, inst.startFailure(err)
	}
	inst.boxPid = hello.Pid
	// Started: from here R's stderr belongs to executions.
	inst.endStartup()
	if err := s.pin(inst); err != nil {
		return nil, err
	}
	s.audit("session_start", "session", inst.id, "r_version", hello.RVersion, "took_ms", time.Since(began).Milliseconds())
	s.cfg.Hooks.started(time.Since(began), nil)
	s.log.Debug("session started", "id", inst.id, "r_version", hello.RVersion,
		"sandboxed", !s.cfg.UnsafeNoSandbox, "launch", launched.Sub(began),
		"box", inst.boxStarted.Sub(began), "r_connect", launched.Sub(inst.boxStarted), "r_ready", time.Since(launched))
	go s.watchIdle(inst)
	return inst, nil
}

// newInstance is an instance not started yet, with a new id.
func newInstance(stateDir string) *instance {
	id := statedir.NewID()
	// frames is unbuffered: the reader holds at most one decoded frame, and
	// R cannot queue work while no Execute is reading.
	return &instance{id: id, dir: filepath.Join(stateDir, statedir.SessionsDir, id),
		frames: make(chan frame), stop: make(chan struct{}), uidSlot: -1, rPidfd: -1}
}

// makeInstanceDir makes the instance's session dir with its owner record.
func (s *Session) makeInstanceDir(inst *instance) error {
	if err := statedir.MkdirPrivate(filepath.Dir(inst.dir), 0o711); err != nil {
		return err
	}
	if err := statedir.Mkdir(inst.dir, statedir.SessionDirMode); err != nil {
		return fmt.Errorf("session dir: %w", err)
	}
	rec, err := procfs.Record(os.Getpid())
	if err != nil {
		return err
	}
	// Written whole or not at all: a concurrent reaper must never see a
	// half-written record and take the session for an orphan.
	return statedir.WriteAtomic(filepath.Join(inst.dir, statedir.OwnerFile), rec)
}

// handshake waits for R's hello, declares the tools and waits for R to
// be ready.
func (s *Session) handshake(ctx context.Context, inst *instance) (*bridge.Hello, error) {
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
		return nil, fmt.Errorf("R exited during start-up (%s)", inst.run.ExitStatus())
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
	if err := s.send(inst, bridge.Init{Type: "init", Tools: decls, MaxFrame: s.cfg.MaxFrameBytes, Preload: s.cfg.Preload,
		MergePages: s.cfg.host.UnsafeMergePages && !s.cfg.UnsafeNoSandbox}); err != nil {
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
	return hello, nil
}

// pin records the warm R as it started (its fingerprint) and pins its
// process for interrupts.
func (s *Session) pin(inst *instance) error {
	var err error
	if inst.fingerprint, err = s.eng.fingerprint(inst.rPid); err != nil {
		return fmt.Errorf("read R's process state: %w", err)
	}
	if inst.rPidfd, err = s.eng.pidfd(inst.rPid); err != nil {
		return fmt.Errorf("pin R's process (pidfd_open): %w", err)
	}
	return nil
}
