package securer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/securer-runc/securer-runc/bridge"
	"github.com/securer-runc/securer-runc/internal/capture"
	"github.com/securer-runc/securer-runc/internal/procfs"
	"github.com/securer-runc/securer-runc/internal/runner"
	"github.com/securer-runc/securer-runc/internal/statedir"
	"github.com/securer-runc/securer-runc/internal/uidrange"
)

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
	// boxPid is R's pid as R sees it (in the box), from its hello.
	boxPid int
	// rPidfd pins R's process (-1: none). Interrupts go to R through it
	// directly: a signal forwarded by tini arrives whenever tini next
	// runs, which under load can be after the next execution began.
	rPidfd   int
	rPidfdMu sync.Mutex // destroy may close it while an execution signals
	// interrupted: R was sent a SIGINT that may still be pending.
	interrupted bool
	// cleaned, once set, is closed when the clean-up after the last fresh
	// execution (its processes killed, the box swept, R checked) has
	// ended; a failed one has marked the instance dead. It runs after the
	// result went back, and the next use waits for it (awaitClean).
	cleaned atomic.Pointer[chan struct{}]
	// fingerprint is the warm R as it started (procfs.Fingerprint).
	fingerprint string
	// boxStarted is when the container (or the host's R) had started: the
	// start-up's split between the box and R, for the debug log.
	boxStarted time.Time
	// uidSlot is the host uid range the box holds (-1: none).
	uidSlot int
	// ended says why the instance is dead (the first reason given).
	ended atomic.Pointer[string]
	// startErr keeps R's stderr while it starts (nil once started): a
	// start that fails quotes it, as the cause is in R's words there.
	startErr *capture.Capture
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
	select {
	case <-inst.stop:
		return
	case <-s.busy.idle():
	}
	if inst.markDead("R died between executions (" + inst.run.ExitStatus().String() + ")") {
		return
	}
	s.log.Warn("R died while idle", "id", inst.id, "exit", inst.run.ExitStatus())
	s.audit("session_died", "session", inst.id, "exit", inst.run.ExitStatus())
	s.destroy(inst)
}

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

// destroy tears an instance down completely: processes, cgroup, container
// state, socket, session dir.
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
		t0 := time.Now()
		inst.rPidfdMu.Lock()
		if inst.rPidfd >= 0 {
			// R first, through its pidfd: its exit (freeing its tens of
			// MiB) then runs alongside the init's, instead of starting only
			// once the init has died and the kernel has killed the rest of
			// its PID namespace. Destroy kills everything else and waits.
			_ = unix.PidfdSendSignal(inst.rPidfd, unix.SIGKILL, nil, 0)
			unix.Close(inst.rPidfd)
			inst.rPidfd = -1
		}
		inst.rPidfdMu.Unlock()
		if inst.run != nil {
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
		ctrState := filepath.Join(s.cfg.host.StateDir, statedir.ContainersDir, inst.id)
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

// settle checks that the warm R is as it started. An error means the
// instance must not be used again: the next user would inherit what the
// last one did to it.
func (s *Session) settle(inst *instance) error {
	now, err := s.eng.fingerprint(inst.rPid)
	if err != nil {
		return err
	}
	if now != inst.fingerprint {
		return fmt.Errorf("the warm R's process state changed (was %q, now %q)", firstLine(inst.fingerprint), firstLine(now))
	}
	return nil
}

// awaitClean waits for the clean-up after the last fresh execution. It
// fails only when ctx ends first; the clean-up goes on and the box is
// kept. A failed clean-up shows as a dead instance.
func (inst *instance) awaitClean(ctx context.Context) error {
	c := inst.cleaned.Load()
	if c == nil {
		return nil
	}
	select {
	case <-*c:
		return nil
	default:
	}
	select {
	case <-*c:
		return nil
	case <-ctx.Done():
		return endedContextError(ctx.Err(), "while the box was cleaned after the last fresh execution; nothing ran")
	}
}

// cleanPending reports whether a clean-up after a fresh execution is
// still under way.
func (inst *instance) cleanPending() bool {
	c := inst.cleaned.Load()
	if c == nil {
		return false
	}
	select {
	case <-*c:
		return false
	default:
		return true
	}
}

// sweepWait bounds the wait for the warm R's sweep report.
const sweepWait = 10 * time.Second

// cleanAfterFresh ends what fresh execution id left running (its copy
// included: it holds the bridge's connection and could go on writing
// frames, or read the next execution's), empties the box's writable
// places and IPC objects, then asks the warm R to remake its directories,
// with a token no process of the execution has seen, waits for its report
// and checks R's state. It runs after the result went back
// to the caller; the next use waits for it (awaitClean). A box it cannot
// clean is marked dead and destroyed, never used again.
func (s *Session) cleanAfterFresh(inst *instance, id uint64) {
	done := make(chan struct{})
	inst.cleaned.Store(&done)
	go func() {
		defer close(done)
		if err := s.clean(inst, id); err != nil {
			select {
			case <-inst.stop:
				return // destroyed meanwhile (Close, Restart): not a failure
			default:
			}
			if inst.markDead("the clean-up after a fresh execution failed: " + err.Error()) {
				return // already dead: whoever found it reports it
			}
			s.log.Warn("replacing R: the clean-up after a fresh execution failed", "id", inst.id, "err", err)
			s.audit("session_replaced", "session", inst.id, "reason", err.Error())
			s.destroy(inst)
		}
	}()
}

func (s *Session) clean(inst *instance, id uint64) error {
	if !inst.killStrays(s.log) {
		return errors.New("processes of a fresh execution survived its end")
	}
	if err := s.sweepBox(inst); err != nil {
		return fmt.Errorf("the box could not be swept clean: %w", err)
	}
	token, err := sweepToken()
	if err == nil {
		err = s.send(inst, bridge.Sweep{Type: "sweep", ID: id, Token: token})
	}
	if err != nil {
		return fmt.Errorf("the sweep could not be requested: %w", err)
	}
	// A stopped R would never report its sweep: fail at once.
	if now, err := s.eng.fingerprint(inst.rPid); err != nil || procfs.Stopped(now) {
		return fmt.Errorf("the warm R is stopped or gone (%v)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), sweepWait)
	defer cancel()
	if err := s.awaitSweep(ctx, inst, id, token); err != nil {
		return err
	}
	return s.settle(inst)
}

// sweepBox has the host empty the box after a fresh execution, within
// sweepWait, and stops early when the instance is destroyed meanwhile. It
// sweeps through its own copy of R's pidfd: destroy (which closes and
// signals through the instance's) never waits for a sweep.
func (s *Session) sweepBox(inst *instance) error {
	inst.rPidfdMu.Lock()
	pidfd := -1
	var err error
	if inst.rPidfd >= 0 {
		pidfd, err = unix.FcntlInt(uintptr(inst.rPidfd), unix.F_DUPFD_CLOEXEC, 0)
	}
	inst.rPidfdMu.Unlock()
	if err != nil {
		return fmt.Errorf("duplicate R's pidfd: %w", err)
	}
	if pidfd >= 0 {
		defer unix.Close(pidfd)
	}
	ctx, cancel := context.WithTimeout(context.Background(), sweepWait)
	defer cancel()
	go func() {
		select {
		case <-inst.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return s.eng.sweepBox(ctx, inst.rPid, pidfd)
}

// awaitSweep waits for the warm R's Swept with the token of the sweep the
// host asked for. Frames before it were written by the fresh execution's
// processes (its copy talking on the inherited connection after its
// result, or forging a sweep report) before the host ended them: they
// belong to a finished execution and are dropped, never left to fail or
// answer for the next one. The token was sent only after those processes
// were gone, so none of them can have forged this frame.
func (s *Session) awaitSweep(ctx context.Context, inst *instance, id uint64, token string) error {
	dropped, first := 0, ""
	defer func() {
		if dropped > 0 {
			s.log.Warn("dropped frames of a finished fresh execution", "id", inst.id, "execution", id, "frames", dropped, "first", first)
			s.audit("stale_frames_dropped", "session", inst.id, "execution", id, "frames", dropped, "first", first)
		}
	}()
	for {
		select {
		case f, ok := <-inst.frames:
			if !ok || f.err != nil {
				// The stream itself is broken (an over-long or unfinished
				// frame): nothing after it can be trusted.
				return fmt.Errorf("%w: while waiting for the sweep of execution %d: %v", ErrProtocol, id, f.err)
			}
			if sw, isSwept := f.msg.(*bridge.Swept); isSwept && sw.ID == id && sw.Token == token {
				if sw.Error != "" {
					return fmt.Errorf("the box could not be swept clean: %s", truncate(sw.Error, 256))
				}
				return nil
			}
			if dropped == 0 {
				first = fmt.Sprintf("%T", f.msg)
			}
			dropped++
		case <-inst.run.Done():
			return errors.New("R ended while sweeping")
		case <-inst.stop:
			return errors.New("the box was destroyed while sweeping")
		case <-ctx.Done():
			return fmt.Errorf("R did not finish sweeping: %w", ctx.Err())
		}
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// startupStderrBytes is how much of R's start-up stderr a failed start
// quotes: its first and last halves (R's error first, then a backtrace).
const startupStderrBytes = 2048

// endStartup stops keeping R's start-up stderr and returns what was
// kept, or "" when there was none. Everything R wrote before it exited is in the
// pipe, so the drain in SetSink gets it all.
func (inst *instance) endStartup() string {
	c := inst.startErr
	if c == nil || inst.stderr == nil {
		return ""
	}
	inst.stderr.SetSink(nil)
	inst.startErr = nil
	text, _ := c.Text()
	return strings.TrimSpace(text)
}

// startFailure is err with R's start-up stderr tail added, when R wrote
// any: "R exited" alone does not say why.
func (inst *instance) startFailure(err error) error {
	if tail := inst.endStartup(); tail != "" {
		return fmt.Errorf("%w; R's stderr: %s", err, tail)
	}
	return err
}
