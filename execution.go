package securer

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/securer-runc/securer-runc/bridge"
	"github.com/securer-runc/securer-runc/cgroup"
	"github.com/securer-runc/securer-runc/internal/capture"
)

// execution is the state of one Execute: the event loop in run reacts to
// frames from R, the tool's answer, R's death, the deadline and the grace
// period after an interrupt.
type execution struct {
	s      *Session
	inst   *instance
	id     uint64
	fresh  bool
	opts   ExecOptions // with the session's defaults filled in
	code   string      // a fresh execution's code, for the copy when it asks
	sent   bool        // the code went to the copy
	res    *Result
	before cgroup.Usage

	cancelTool  context.CancelFunc
	toolDone    chan toolOutcome
	toolRunning bool
	callID      uint64
	// lastCall is the highest tool call id R has used in this execution:
	// each call must bring a new, higher one (the runtime counts up), so
	// an id already answered or out of turn is a protocol error.
	lastCall uint64

	// Set once R has been interrupted: the verdict to report and the end
	// of the grace period.
	stopVerdict Verdict
	stopErr     error
	grace       <-chan time.Time
}

// toolOutcome is a tool call's answer: the tool_result frame that
// carries its value, encoded once where the tool ran, or the error.
type toolOutcome struct {
	id    uint64
	frame []byte
	err   error
}

// run sends code to R and runs the event loop until the execution ends;
// whatever the ending, output and accounting are collected and the
// instance is left ready (or dead) for the next one.
func (e *execution) run(ctx context.Context, code string) (*Result, error) {
	started := time.Now()
	outCap, errCap := e.captureOutput()
	toolCtx, cancelTool := context.WithCancel(ctx)
	defer cancelTool()
	e.cancelTool = cancelTool
	e.toolDone = make(chan toolOutcome, 1)
	e.auditStart(code)
	defer e.auditEnd()
	defer e.end(started, outCap, errCap)
	if err := e.sendCode(code); err != nil {
		return e.res, err
	}
	return e.loop(ctx, toolCtx, outCap, errCap)
}

// captureOutput points R's output pipes at this execution's captures and
// takes the accounting baseline.
func (e *execution) captureOutput() (outCap, errCap *capture.Capture) {
	cfg := e.s.cfg
	outCap = capture.New(cfg.Output.KeepBytes, e.opts.Stdout, cfg.Output.LimitBytes)
	errCap = capture.New(cfg.Output.KeepBytes, e.opts.Stderr, cfg.Output.LimitBytes)
	e.inst.stdout.SetSink(outCap)
	e.inst.stderr.SetSink(errCap)
	e.before = e.inst.run.Usage()
	return outCap, errCap
}

func (e *execution) auditStart(code string) {
	sum := sha256.Sum256([]byte(code))
	e.s.audit("execute_start", "session", e.inst.id, "execution", e.id, "fresh", e.fresh,
		"code_bytes", len(code), "code_sha256", hex.EncodeToString(sum[:]))
}

func (e *execution) auditEnd() {
	a := e.res.Accounting
	e.s.audit("execute_end", "session", e.inst.id, "execution", e.id, "verdict", string(e.res.Verdict),
		"wall_ms", a.Wall.Milliseconds(), "cpu_user_ms", a.CPUUser.Milliseconds(), "cpu_system_ms", a.CPUSystem.Milliseconds(),
		"peak_memory_bytes", a.PeakMemoryBytes, "oom_kills", a.OOMKills, "tool_calls", a.ToolCalls,
		"stdout_bytes", a.StdoutBytes, "stderr_bytes", a.StderrBytes, "detail", e.res.Detail)
}

// end collects the output and accounting into the result and leaves the
// instance for the next execution: destroyed when dead, cleaned in the
// background after a fresh execution, rid of background processes
// otherwise.
func (e *execution) end(started time.Time, outCap, errCap *capture.Capture) {
	s, inst := e.s, e.inst
	inst.stdout.SetSink(nil)
	inst.stderr.SetSink(nil)
	e.res.Stdout, e.res.StdoutElided = outCap.Text()
	e.res.Stderr, e.res.StderrElided = errCap.Text()
	e.res.Accounting.StdoutBytes, e.res.Accounting.StderrBytes = outCap.Total(), errCap.Total()
	e.res.Accounting.Wall = time.Since(started)
	s.account(inst, e.res, e.before)
	switch {
	case inst.dead.Load():
		s.destroy(inst)
	case e.fresh:
		// After the result: the caller does not wait for the clean-up,
		// the box's next use does.
		s.cleanAfterFresh(inst, e.id)
	default:
		inst.killStrays(s.log)
	}
}

// sweepToken is a new random token for a Sweep.
func sweepToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("sweep token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// sendCode sends the execute message; an error means the execution is
// over (e.res says how).
func (e *execution) sendCode(code string) error {
	inst := e.inst
	// Nothing may arrive between executions: a frame waiting now was sent
	// by code of an earlier execution (a background process, or R code
	// writing to the bridge itself).
	select {
	case f := <-inst.frames:
		cause := fmt.Sprintf("%T", f.msg)
		if f.err != nil {
			cause = f.err.Error()
		}
		_, err := e.violation(fmt.Errorf("%w: R sent a frame between executions (%s); this code did not run and the session restarts", ErrProtocol, cause))
		return err
	default:
	}
	stale := inst.interrupted
	inst.interrupted = false
	msg := bridge.Execute{Type: "execute", ID: e.id, Code: code, StaleInterrupt: stale, Plots: e.plots(),
		Inputs: bridgeFiles(e.opts.Inputs), Collect: e.opts.CollectOutputs}
	if e.fresh {
		// The code goes to the forked copy alone, once it asks (Forked).
		msg.Code, msg.Fresh, e.code = "", true, code
		msg.Inputs, msg.Collect = nil, false
	}
	if err := e.s.send(inst, msg); err != nil {
		_, err = e.died(err)
		return err
	}
	return nil
}

// loop reacts to frames from R, the tool's answer, R's death, the
// deadline, the caller's context, the output limits and the grace period
// after an interrupt, until the execution ends.
func (e *execution) loop(ctx, toolCtx context.Context, outCap, errCap *capture.Capture) (*Result, error) {
	s, inst := e.s, e.inst
	timeout := time.NewTimer(e.opts.Timeout)
	defer timeout.Stop()
	deadline := timeout.C
	done := ctx.Done()
	outOver, errOver := outCap.OverLimit(), errCap.OverLimit()
	for {
		select {
		case f, ok := <-inst.frames:
			if res, err, end := e.onFrame(toolCtx, f, ok); end {
				return res, err
			}
		case out := <-e.toolDone:
			if res, err, end := e.onToolDone(out); end {
				return res, err
			}
		case <-inst.run.Done():
			return e.died(nil)
		case <-deadline:
			deadline = nil
			// A result that arrived with the deadline wins over it.
			select {
			case f, ok := <-inst.frames:
				if res, err, end := e.onFrame(toolCtx, f, ok); end {
					return res, err
				}
			default:
			}
			e.interrupt(VerdictTimeout, fmt.Errorf("%w after %s", ErrTimeout, e.opts.Timeout))
		case <-done:
			done = nil
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				e.interrupt(VerdictTimeout, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err()))
			} else {
				e.interrupt(VerdictCanceled, fmt.Errorf("%w: %w", ErrCanceled, ctx.Err()))
			}
		case <-outOver:
			outOver = nil // fire once
			e.interrupt(VerdictOutputLimit, fmt.Errorf("%w: more than %d bytes of stdout", ErrLimit, s.cfg.Output.LimitBytes))
		case <-errOver:
			errOver = nil
			e.interrupt(VerdictOutputLimit, fmt.Errorf("%w: more than %d bytes of stderr", ErrLimit, s.cfg.Output.LimitBytes))
		case <-e.grace:
			return e.killUnresponsive()
		}
	}
}

// killUnresponsive ends an execution whose R did not come back from an
// interrupt within the grace period: kill it, report, restart on next use.
func (e *execution) killUnresponsive() (*Result, error) {
	inst := e.inst
	inst.markDead("R did not respond to an interrupt (" + e.stopErr.Error() + ") and was killed")
	_ = inst.run.Signal(unix.SIGKILL)
	<-inst.run.Done()
	e.res.Exit = inst.run.ExitStatus().String()
	e.res.Detail = "R did not respond to the interrupt within " + e.s.cfg.InterruptGrace.String() +
		"; the container was killed and the session restarts on next use"
	return e.finish(e.stopVerdict, e.stopErr)
}

func (e *execution) finish(v Verdict, err error) (*Result, error) {
	e.res.Verdict = v
	return e.res, err
}

// violation ends the execution for something R did wrong; R is replaced.
func (e *execution) violation(err error) (*Result, error) {
	e.inst.markDead("R was replaced after a protocol error: " + err.Error())
	e.res.Detail = err.Error()
	return e.finish(VerdictProtocolError, err)
}

// interrupt asks R to stop (the first reason given is the one reported);
// the container is killed if R does not answer within the grace period.
func (e *execution) interrupt(v Verdict, err error) {
	e.cancelTool()
	if e.grace != nil {
		return
	}
	e.stopVerdict, e.stopErr = v, err
	e.s.audit("limit", "session", e.inst.id, "execution", e.id, "verdict", string(v), "reason", err.Error())
	e.grace = time.After(e.s.cfg.InterruptGrace)
	if e.fresh {
		// The forked copy's state is thrown away anyway: kill it, and the
		// warm R reports for it.
		e.inst.killStrays(e.s.log)
		return
	}
	e.inst.interrupted = true
	e.inst.interruptR()
	if e.s.eng.ignoresSIGINT(e.inst.rPid) {
		// R waits in system(), which ignores SIGINT (as the C library's
		// does): the interrupt is lost there. Ending the child would let
		// R's code run on past the deadline; the grace kill ends it.
		return
	}
	// Background processes end with the execution anyway; ending them now
	// leaves R the CPU to answer the interrupt (a fork bomb's spinning
	// children starved it past the grace period on a loaded host).
	e.inst.killStrays(e.s.log)
}

// onFrame handles one frame from R; end reports that the execution is over.
func (e *execution) onFrame(toolCtx context.Context, f frame, ok bool) (res *Result, err error, end bool) {
	s := e.s
	if !ok || f.err != nil {
		if ok && errors.Is(f.err, bridge.ErrProtocol) {
			res, err = e.violation(f.err)
			return res, err, true
		}
		res, err = e.died(f.err) // the connection ended: R died or closed it
		return res, err, true
	}
	switch m := f.msg.(type) {
	case *bridge.ToolCall:
		return e.onToolCall(toolCtx, m)
	case *bridge.Forked:
		if !e.fresh || e.sent || m.ID != e.id {
			res, err = e.violation(fmt.Errorf("%w: unexpected forked %d", ErrProtocol, m.ID))
			return res, err, true
		}
		e.sent = true
		if err = s.send(e.inst, bridge.Code{Type: "code", ID: e.id, Code: e.code,
			Inputs: bridgeFiles(e.opts.Inputs), Collect: e.opts.CollectOutputs}); err != nil {
			res, err = e.died(err)
			return res, err, true
		}
		return nil, nil, false
	case *bridge.Result:
		if m.ID != e.id {
			res, err = e.violation(fmt.Errorf("%w: result for execution %d, expected %d", ErrProtocol, m.ID, e.id))
			return res, err, true
		}
		res, err = e.onResult(m)
		return res, err, true
	}
	res, err = e.violation(fmt.Errorf("%w: unexpected %T during execution", ErrProtocol, f.msg))
	return res, err, true
}

// onToolCall handles R's call of a tool: refused (interrupted, over the
// limit, invalid) or started in the background.
func (e *execution) onToolCall(toolCtx context.Context, m *bridge.ToolCall) (res *Result, err error, end bool) {
	s := e.s
	if m.ID <= e.lastCall {
		res, err = e.violation(fmt.Errorf("%w: tool call id %d after id %d: each call must bring a new, higher id", ErrProtocol, m.ID, e.lastCall))
		return res, err, true
	}
	e.lastCall = m.ID
	switch {
	case e.grace != nil:
		// Sent before R saw the interrupt: refuse, keep going.
		err = s.send(e.inst, bridge.ToolResult{Type: "tool_result", ID: m.ID, Error: "execution interrupted"})
	case e.toolRunning:
		res, err = e.violation(fmt.Errorf("%w: tool call %d while another is running", ErrProtocol, m.ID))
		return res, err, true
	case e.res.Accounting.ToolCalls >= s.cfg.MaxToolCalls:
		err = s.send(e.inst, bridge.ToolResult{Type: "tool_result", ID: m.ID,
			Error: fmt.Sprintf("the execution made %d tool calls, its limit", s.cfg.MaxToolCalls)})
		e.interrupt(VerdictToolCallLimit, fmt.Errorf("%w: %d tool calls", ErrLimit, s.cfg.MaxToolCalls))
	default:
		e.res.Accounting.ToolCalls++
		e.callID = m.ID
		spec, verr := bridge.Validate(s.tools, m)
		if s.auditing() {
			s.audit("tool_call", "session", e.inst.id, "execution", e.id, "call", m.ID,
				"tool", truncate(m.Tool, 64), "args", summarizeArgs(m.Args), "refused", errString(verr))
		}
		if verr != nil {
			s.log.Info("tool call refused", "tool", truncate(m.Tool, 64), "err", verr)
			err = s.send(e.inst, bridge.ToolResult{Type: "tool_result", ID: m.ID, Error: verr.Error()})
			break
		}
		e.toolRunning = true
		// What R printed before the call reaches the caller's writers
		// before the tool runs: a client watching both sees them in R's
		// order. R flushes its output before it writes the frame; the
		// pipes may not have been read yet. Without a writer the output
		// only shows in the result, after every call.
		if e.opts.Stdout != nil {
			e.inst.stdout.Drain()
		}
		if e.opts.Stderr != nil {
			e.inst.stderr.Drain()
		}
		go s.runTool(toolCtx, s.byName[spec.Name], m, e.toolDone)
	}
	if err != nil {
		res, err = e.died(err)
		return res, err, true
	}
	return nil, nil, false
}

func (e *execution) onResult(m *bridge.Result) (*Result, error) {
	// Everything R printed before reporting is in the pipes.
	e.inst.stdout.Drain()
	e.inst.stderr.Drain()
	res := e.res
	res.Value, res.Visible, res.Printed = m.Value, m.Visible, m.Printed
	res.Warnings, res.Messages = nonNil(m.Warnings), nonNil(m.Messages)
	res.WarningsDropped = m.WarningsDropped
	res.PrintedBytes = m.PrintedBytes
	res.Displays, res.DisplaysDropped = toDisplays(m.Displays), int(m.DisplaysDropped)
	if e.opts.CollectOutputs {
		var dropped int64
		res.Files, dropped = checkCollected(m.Files, m.FilesDropped)
		res.FilesDropped = int(dropped)
	}
	switch {
	case e.stopVerdict != "" && e.fresh:
		res.Detail = "the execution's R copy was killed (" + e.stopErr.Error() + "); the session stays warm"
		return e.finish(e.stopVerdict, e.stopErr)
	case e.stopVerdict != "":
		res.Detail = "R was interrupted (" + e.stopErr.Error() + "); the session keeps its state"
		return e.finish(e.stopVerdict, e.stopErr)
	case e.fresh && m.Error != nil && slices.Contains(m.Error.Class, "securer_lost") &&
		e.inst.run.Usage().OOMKills > e.before.OOMKills:
		// The warm R reports a copy that ended without a result; the
		// cgroup's OOM kills during the execution say why.
		res.Detail = fmt.Sprintf("the execution's R copy was killed at the memory limit (%d bytes); the session stays warm", e.s.cfg.Limits.MemoryBytes)
		return e.finish(VerdictOutOfMemory, fmt.Errorf("%w: the execution's R copy was killed at the %d-byte memory limit", ErrOutOfMemory, e.s.cfg.Limits.MemoryBytes))
	case e.fresh && m.Error != nil && slices.Contains(m.Error.Class, "securer_lost"):
		// The copy ended without a result (quit(), a signal): what a
		// session's R dying is, with the box kept warm.
		res.Detail = "the execution's R copy ended without a result (quit(), a crash or a signal); the session stays warm"
		return e.finish(VerdictKilled, fmt.Errorf("%w: the execution's R copy ended without a result", ErrKilled))
	case m.Interrupted:
		// A SIGINT not sent by us (none should reach R): an R error.
		res.Error = &RError{Message: "interrupted", Class: []string{"interrupt", "condition"}}
		return e.finish(VerdictError, res.Error)
	case m.Error != nil:
		res.Error = &RError{Message: m.Error.Message, Class: m.Error.Class, Traceback: m.Error.Traceback}
		if strings.Contains(m.Error.Message, "File too large") {
			// EFBIG from RLIMIT_FSIZE: name the limit, which R cannot know.
			res.Error.Message += fmt.Sprintf(" (the file size limit is %d bytes)", e.s.cfg.Limits.FileSizeBytes)
		}
		if m.Error.Call != nil {
			res.Error.Call = *m.Error.Call
		}
		return e.finish(VerdictError, res.Error)
	}
	return e.finish(VerdictOK, nil)
}

func (e *execution) onToolDone(out toolOutcome) (*Result, error, bool) {
	e.toolRunning = false
	if e.grace != nil || out.id != e.callID {
		return nil, nil, false // R was interrupted: the late answer is dropped
	}
	if e.s.auditing() {
		e.s.audit("tool_result", "session", e.inst.id, "execution", e.id, "call", out.id, "error", errString(out.err))
	}
	frame, err := out.frame, error(nil)
	if out.err != nil {
		frame, err = bridge.Encode(bridge.ToolResult{Type: "tool_result", ID: out.id, Error: truncate(out.err.Error(), DefaultToolErrorBytes)})
	}
	// A result R could not take in one frame becomes an error R can
	// handle, rather than a frame that breaks the session.
	switch {
	case err != nil:
		e.s.log.Error("tool result does not encode", "tool_call", out.id, "err", err)
		frame, err = bridge.Encode(bridge.ToolResult{Type: "tool_result", ID: out.id, Error: "the tool's result could not be encoded"})
	case len(frame) > e.s.cfg.MaxFrameBytes:
		e.s.log.Warn("tool result over the frame limit", "tool_call", out.id, "bytes", len(frame), "limit", e.s.cfg.MaxFrameBytes)
		frame, err = bridge.Encode(bridge.ToolResult{Type: "tool_result", ID: out.id,
			Error: fmt.Sprintf("the tool's result is %d bytes encoded, over the %d-byte limit for one message", len(frame), e.s.cfg.MaxFrameBytes)})
	}
	if err == nil {
		err = e.s.sendFrame(e.inst, frame)
	}
	if err != nil {
		res, err := e.died(err)
		return res, err, true
	}
	return nil, nil, false
}

// died classifies the end of R during an execution.
func (e *execution) died(cause error) (*Result, error) {
	s, inst, res := e.s, e.inst, e.res
	inst.dead.Store(true)
	select {
	case <-inst.run.Done():
	case <-time.After(2 * time.Second):
		_ = inst.run.Signal(unix.SIGKILL)
		<-inst.run.Done()
	}
	inst.stdout.Drain()
	inst.stderr.Drain()
	exit := inst.run.ExitStatus()
	res.Exit = exit.String()
	if n := inst.run.Usage().OOMKills; n > e.before.OOMKills {
		res.Accounting.OOMKills = n - e.before.OOMKills
		res.Detail = fmt.Sprintf("the memory limit (%d bytes) was reached and the kernel killed R", s.cfg.Limits.MemoryBytes)
		inst.markDead(fmt.Sprintf("R was killed at the memory limit (%d bytes)", s.cfg.Limits.MemoryBytes))
		return e.finish(VerdictOutOfMemory, fmt.Errorf("%w: R was killed at the %d-byte memory limit", ErrOutOfMemory, s.cfg.Limits.MemoryBytes))
	}
	if s.isClosed() {
		res.Detail = "the session was closed during the execution"
		return e.finish(VerdictKilled, fmt.Errorf("%w: during the execution", ErrSessionClosed))
	}
	during := "during the execution"
	if e.toolRunning {
		during = "during a tool call (its result was dropped)"
	}
	res.Detail = "R crashed " + during + " (" + exit.String() + "); the session restarts on next use"
	inst.markDead("R died " + during + " (" + exit.String() + ")")
	if cause != nil && !errors.Is(cause, io.EOF) {
		res.Detail += ": " + cause.Error()
	}
	return e.finish(VerdictKilled, fmt.Errorf("%w: %s", ErrKilled, exit))
}

// account fills in the cgroup's figures; the container must still exist.
func (s *Session) account(inst *instance, res *Result, before cgroup.Usage) {
	u := inst.run.Usage()
	res.Accounting.CPUUser = time.Duration(u.CPUUserNanos - min(before.CPUUserNanos, u.CPUUserNanos))
	res.Accounting.CPUSystem = time.Duration(u.CPUSystemNanos - min(before.CPUSystemNanos, u.CPUSystemNanos))
	res.Accounting.PeakMemoryBytes = u.PeakMemoryBytes
	res.Accounting.PeakPids = u.PeakPids
	res.Accounting.OOMKills = max(res.Accounting.OOMKills, u.OOMKills-min(before.OOMKills, u.OOMKills))
}
