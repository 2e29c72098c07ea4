package securer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/securer-runc/securer-runc/bridge"
	"github.com/securer-runc/securer-runc/cgroup"
	"github.com/securer-runc/securer-runc/internal/capture"
	"github.com/securer-runc/securer-runc/rvalue"
)

// Execute runs code in the session, top-level expression by expression as
// Rscript does, and returns when R has finished or the timeout has ended
// it. The error is nil exactly when the verdict is VerdictOK; otherwise it
// wraps ErrRError (an *RError), ErrTimeout, ErrCanceled, ErrOutOfMemory,
// ErrKilled, ErrProtocol or ErrSessionClosed, and the Result still says
// what happened.
func (s *Session) Execute(ctx context.Context, code string) (*Result, error) {
	return s.ExecuteWith(ctx, code, ExecOptions{})
}

// ExecOptions adjusts one execution.
type ExecOptions struct {
	// Fresh runs the code in a fresh R state, as ExecuteFresh does.
	Fresh bool
	// Timeout, when positive, replaces Config.Timeout for this execution.
	Timeout time.Duration
	// Stdout and Stderr, when set, receive this execution's output as it
	// is written, in place of Config.Stdout and Config.Stderr.
	Stdout, Stderr io.Writer
}

// ExecuteWith runs code as Execute (or ExecuteFresh) does, adjusted by opts.
func (s *Session) ExecuteWith(ctx context.Context, code string, opts ExecOptions) (*Result, error) {
	return s.execute(ctx, code, opts)
}

// ExecuteFresh runs code like Execute, but in a fresh R state: a forked
// copy of the session's warm R, with the packages it loaded at start
// (Config.Preload) and whatever plain Executes of this session left in it
// (a session used only for fresh executions has nothing else; pools run
// only fresh ones). Nothing the code does persists:
// variables, options, environment variables, attached packages, files in
// /tmp and /dev/shm, background processes. It costs a fork, not an R
// start-up. At the timeout the copy is killed and the session stays warm.
func (s *Session) ExecuteFresh(ctx context.Context, code string) (*Result, error) {
	return s.execute(ctx, code, ExecOptions{Fresh: true})
}

func (s *Session) execute(ctx context.Context, code string, opts ExecOptions) (*Result, error) {
	if !s.busy.enter() {
		return nil, ErrBusy
	}
	defer s.busy.leave()
	if opts.Fresh && s.cfg.UnsafeNoSandbox {
		// The sweep after a fresh execution kills every process it can see
		// and empties the temp dirs: on the host, that would be the host's.
		return nil, fmt.Errorf("%w: fresh executions need the sandbox; use Restart for a clean R", ErrNeedsSandbox)
	}
	if err := s.admit(ctx, code); err != nil {
		return nil, err
	}
	inst, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	s.nextID++
	if opts.Timeout <= 0 {
		opts.Timeout = s.cfg.Timeout
	}
	if opts.Stdout == nil {
		opts.Stdout = s.cfg.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = s.cfg.Stderr
	}
	e := &execution{s: s, inst: inst, id: s.nextID, fresh: opts.Fresh, opts: opts, res: &Result{Value: rvalue.Null()}}
	if !opts.Fresh {
		// A fresh execution never sees the warm state: the news waits for
		// one that would have.
		if why := s.takeLostState(); why != "" {
			e.res.StateLost, e.res.StateLostReason = true, why
		}
	}
	return e.run(ctx, code)
}

// admit refuses code before it runs: too long, vetoed, or over the
// session's executions.
func (s *Session) admit(ctx context.Context, code string) error {
	var err error
	switch {
	case len(code) > s.cfg.MaxCodeBytes:
		err = fmt.Errorf("%w: code is %d bytes, over the %d-byte limit", ErrRejected, len(code), s.cfg.MaxCodeBytes)
	case s.exhausted():
		err = fmt.Errorf("%w: the session has served its %d executions", ErrRejected, s.cfg.MaxExecutions)
	case s.cfg.PreExecute != nil:
		if veto := s.cfg.PreExecute(ctx, code); veto != nil {
			err = fmt.Errorf("%w: vetoed: %w", ErrRejected, veto)
		}
	}
	if err != nil {
		s.audit("execute_rejected", "session", s.ID(), "code_bytes", len(code), "reason", err.Error())
		return err
	}
	s.executions.Add(1)
	return nil
}

// exhausted reports whether the session has served its MaxExecutions.
func (s *Session) exhausted() bool {
	return s.cfg.MaxExecutions > 0 && s.executions.Load() >= int64(s.cfg.MaxExecutions)
}

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

type toolOutcome struct {
	id    uint64
	value *rvalue.Value
	err   error
}

func (e *execution) run(ctx context.Context, code string) (*Result, error) {
	s, inst := e.s, e.inst
	started := time.Now()
	outCap := capture.New(s.cfg.MaxOutputBytes, e.opts.Stdout, s.cfg.OutputLimit)
	errCap := capture.New(s.cfg.MaxOutputBytes, e.opts.Stderr, s.cfg.OutputLimit)
	inst.stdout.SetSink(outCap)
	inst.stderr.SetSink(errCap)
	e.before = inst.run.Usage()
	toolCtx, cancelTool := context.WithCancel(ctx)
	defer cancelTool()
	e.cancelTool = cancelTool
	e.toolDone = make(chan toolOutcome, 1)
	sum := sha256.Sum256([]byte(code))
	s.audit("execute_start", "session", inst.id, "execution", e.id, "fresh", e.fresh,
		"code_bytes", len(code), "code_sha256", hex.EncodeToString(sum[:]))
	defer func() {
		a := e.res.Accounting
		s.audit("execute_end", "session", inst.id, "execution", e.id, "verdict", string(e.res.Verdict),
			"wall_ms", a.Wall.Milliseconds(), "cpu_user_ms", a.CPUUser.Milliseconds(), "cpu_system_ms", a.CPUSystem.Milliseconds(),
			"peak_memory_bytes", a.PeakMemoryBytes, "oom_kills", a.OOMKills, "tool_calls", a.ToolCalls,
			"stdout_bytes", a.StdoutBytes, "stderr_bytes", a.StderrBytes, "detail", e.res.Detail)
	}()
	defer func() {
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
			inst.sweeping = e.id // the warm R sweeps; the next use waits for it
		default:
			inst.killStrays(s.log)
		}
	}()

	// Nothing may arrive between executions: a frame waiting now was sent
	// by code of an earlier execution (a background process, or R code
	// writing to the bridge itself).
	select {
	case f := <-inst.frames:
		cause := fmt.Sprintf("%T", f.msg)
		if f.err != nil {
			cause = f.err.Error()
		}
		return e.violation(fmt.Errorf("%w: R sent a frame between executions (%s); this code did not run and the session restarts", ErrProtocol, cause))
	default:
	}
	stale := inst.interrupted
	inst.interrupted = false
	msg := bridge.Execute{Type: "execute", ID: e.id, Code: code, StaleInterrupt: stale}
	if e.fresh {
		// The code goes to the forked copy alone, once it asks (Forked).
		msg.Code, msg.Fresh, e.code = "", true, code
	}
	if err := s.send(inst, msg); err != nil {
		return e.died(err)
	}

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
			e.interrupt(VerdictOutputLimit, fmt.Errorf("%w: more than %d bytes of stdout", ErrLimit, s.cfg.OutputLimit))
		case <-errOver:
			errOver = nil
			e.interrupt(VerdictOutputLimit, fmt.Errorf("%w: more than %d bytes of stderr", ErrLimit, s.cfg.OutputLimit))
		case <-e.grace:
			// R did not come back: kill it, report, restart on next use.
			inst.markDead("R did not respond to an interrupt (" + e.stopErr.Error() + ") and was killed")
			_ = inst.run.Signal(unix.SIGKILL)
			<-inst.run.Done()
			e.res.Exit = inst.run.ExitStatus().String()
			e.res.Detail = "R did not respond to the interrupt within " + s.cfg.InterruptGrace.String() +
				"; the container was killed and the session restarts on next use"
			return e.finish(e.stopVerdict, e.stopErr)
		}
	}
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
			s.audit("tool_call", "session", e.inst.id, "execution", e.id, "call", m.ID,
				"tool", truncate(m.Tool, 64), "args", summarizeArgs(m.Args), "refused", errString(verr))
			if verr != nil {
				s.log.Info("tool call refused", "tool", truncate(m.Tool, 64), "err", verr)
				err = s.send(e.inst, bridge.ToolResult{Type: "tool_result", ID: m.ID, Error: verr.Error()})
				break
			}
			e.toolRunning = true
			go s.runTool(toolCtx, s.byName[spec.Name], m, e.toolDone)
		}
		if err != nil {
			res, err = e.died(err)
			return res, err, true
		}
		return nil, nil, false
	case *bridge.Forked:
		if !e.fresh || e.sent || m.ID != e.id {
			res, err = e.violation(fmt.Errorf("%w: unexpected forked %d", ErrProtocol, m.ID))
			return res, err, true
		}
		e.sent = true
		if err = s.send(e.inst, bridge.Code{Type: "code", ID: e.id, Code: e.code}); err != nil {
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

func (e *execution) onResult(m *bridge.Result) (*Result, error) {
	// Everything R printed before reporting is in the pipes.
	e.inst.stdout.Drain()
	e.inst.stderr.Drain()
	res := e.res
	res.Value, res.Visible, res.Printed = m.Value, m.Visible, m.Printed
	res.Warnings, res.Messages = nonNil(m.Warnings), nonNil(m.Messages)
	res.WarningsDropped = m.WarningsDropped
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
	case m.Interrupted:
		// A SIGINT not sent by us (none should reach R): an R error.
		res.Error = &RError{Message: "interrupted", Class: []string{"interrupt", "condition"}}
		return e.finish(VerdictError, res.Error)
	case m.Error != nil:
		res.Error = &RError{Message: m.Error.Message, Class: m.Error.Class}
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
	e.s.audit("tool_result", "session", e.inst.id, "execution", e.id, "call", out.id, "error", errString(out.err))
	msg := bridge.ToolResult{Type: "tool_result", ID: out.id, Value: out.value}
	if out.err != nil {
		msg.Value, msg.Error = nil, truncate(out.err.Error(), DefaultToolErrorBytes)
	}
	// A result R could not take in one frame becomes an error R can
	// handle, rather than a frame that breaks the session.
	frame, err := bridge.Encode(msg)
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

func (s *Session) runTool(ctx context.Context, t Tool, call *bridge.ToolCall, done chan<- toolOutcome) {
	out := toolOutcome{id: call.ID}
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("tool panicked", "tool", t.Name, "panic", p, "stack", string(debug.Stack()))
			out = toolOutcome{id: call.ID, err: fmt.Errorf("tool %q failed (panic)", t.Name)}
		}
		done <- out // buffered: one tool runs at a time
	}()
	if t.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.Timeout)
		defer cancel()
	}
	v, err := t.Handler(ctx, call.Args)
	if err != nil {
		if t.Timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("tool %q timed out after %s", t.Name, t.Timeout)
		}
		out.err = err
		return
	}
	val, err := rvalue.FromGo(v)
	if err != nil {
		out.err = fmt.Errorf("tool %q returned a value R cannot take: %w", t.Name, err)
		return
	}
	b, err := val.MarshalJSON()
	if err != nil {
		out.err = fmt.Errorf("tool %q returned an unencodable value: %w", t.Name, err)
		return
	}
	if len(b) > s.cfg.MaxFrameBytes-1024 {
		out.err = fmt.Errorf("tool %q returned %d bytes, over the %d-byte frame limit", t.Name, len(b), s.cfg.MaxFrameBytes)
		return
	}
	out.value = &val
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return truncate(err.Error(), 1024)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// truncate shortens s to at most n bytes on a character boundary, with
// invalid UTF-8 replaced: the result always encodes.
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "... (truncated)"
}
