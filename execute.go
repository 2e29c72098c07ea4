package securer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"time"

	"golang.org/x/sys/unix"

	"securer-runc/bridge"
	"securer-runc/cgroup"
	"securer-runc/rvalue"
)

type toolOutcome struct {
	id    uint64
	value *rvalue.Value
	err   error
}

// Execute runs code in the session, top-level expression by expression as
// Rscript does, and returns when R has finished or the timeout has ended
// it. The error is nil exactly when the verdict is VerdictOK; otherwise it
// wraps ErrRError (an *RError), ErrTimeout, ErrCanceled, ErrOutOfMemory,
// ErrKilled or ErrProtocol, and the Result still says what happened.
func (s *Session) Execute(ctx context.Context, code string) (*Result, error) {
	if !s.busy.CompareAndSwap(false, true) {
		return nil, ErrBusy
	}
	defer s.busy.Store(false)
	inst, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	s.nextID++
	return s.run(ctx, inst, s.nextID, code)
}

// usage reads the container's accounting; zero if the cgroup is gone.
func (inst *instance) usage() cgroup.Usage {
	u, _ := cgroup.ReadUsage(inst.cgroupPaths)
	return u
}

func (s *Session) run(ctx context.Context, inst *instance, id uint64, code string) (*Result, error) {
	started := time.Now()
	res := &Result{Value: rvalue.Null()}
	outCap := newCapture(s.cfg.MaxOutputBytes, s.cfg.Stdout)
	errCap := newCapture(s.cfg.MaxOutputBytes, s.cfg.Stderr)
	inst.stdout.setSink(outCap)
	inst.stderr.setSink(errCap)
	before := inst.usage()

	timeout := time.NewTimer(s.cfg.Timeout)
	defer timeout.Stop()
	var grace <-chan time.Time
	toolCtx, cancelTools := context.WithCancel(ctx)
	defer cancelTools()
	toolDone := make(chan toolOutcome, 1)
	var toolRunning bool
	var callID uint64
	var endErr error

	finish := func(v Verdict, err error) (*Result, error) {
		res.Verdict, endErr = v, err
		return res, err
	}
	// interrupt asks R to stop; the container is killed if it does not
	// answer within the grace period.
	interrupt := func() {
		cancelTools()
		if grace == nil {
			_ = inst.box.Signal(unix.SIGINT)
			grace = time.After(s.cfg.InterruptGrace)
		}
	}
	var stopVerdict Verdict
	var stopErr error

	defer func() {
		inst.stdout.setSink(nil)
		inst.stderr.setSink(nil)
		res.Stdout, res.StdoutElided = outCap.text()
		res.Stderr, res.StderrElided = errCap.text()
		res.Accounting.StdoutBytes, res.Accounting.StderrBytes = outCap.total, errCap.total
		res.Accounting.Wall = time.Since(started)
		s.account(inst, res, before)
		if inst.dead.Load() {
			s.destroy(inst)
		}
		_ = endErr
	}()

	// Nothing may arrive between executions: a frame waiting now was sent
	// by code of an earlier execution (a background process, or R code
	// writing to the bridge itself).
	select {
	case f := <-inst.frames:
		inst.dead.Store(true)
		err := fmt.Errorf("%w: R sent a frame between executions (%T); the session restarts, this code did not run", ErrProtocol, f.msg)
		if f.err != nil {
			err = fmt.Errorf("%w: between executions: %w; the session restarts, this code did not run", ErrProtocol, f.err)
		}
		res.Detail = err.Error()
		return finish(VerdictProtocolError, err)
	default:
	}
	if err := s.send(inst, bridge.Execute{Type: "execute", ID: id, Code: code}); err != nil {
		inst.dead.Store(true)
		return s.died(inst, res, err, toolRunning)
	}
	for {
		select {
		case f, ok := <-inst.frames:
			if !ok || f.err != nil {
				if ok && errors.Is(f.err, bridge.ErrProtocol) {
					inst.dead.Store(true)
					res.Detail = f.err.Error()
					return finish(VerdictProtocolError, f.err)
				}
				// The connection ended: R died or closed it.
				inst.dead.Store(true)
				return s.died(inst, res, f.err, toolRunning)
			}
			switch m := f.msg.(type) {
			case *bridge.ToolCall:
				if grace != nil {
					// Sent before R saw the interrupt: refuse, keep going.
					_ = s.send(inst, bridge.ToolResult{Type: "tool_result", ID: m.ID, Error: "execution interrupted"})
					continue
				}
				if toolRunning {
					inst.dead.Store(true)
					err := fmt.Errorf("%w: tool call %d while another is running", ErrProtocol, m.ID)
					res.Detail = err.Error()
					return finish(VerdictProtocolError, err)
				}
				res.Accounting.ToolCalls++
				callID = m.ID
				spec, err := bridge.Validate(s.tools, m)
				if err != nil {
					s.log.Info("tool call refused", "tool", truncated(m.Tool), "err", err)
					if err := s.send(inst, bridge.ToolResult{Type: "tool_result", ID: m.ID, Error: err.Error()}); err != nil {
						inst.dead.Store(true)
						return s.died(inst, res, err, toolRunning)
					}
					continue
				}
				toolRunning = true
				go s.runTool(toolCtx, s.byName[spec.Name], m, toolDone)
			case *bridge.Result:
				if m.ID != id {
					inst.dead.Store(true)
					err := fmt.Errorf("%w: result for execution %d, expected %d", ErrProtocol, m.ID, id)
					res.Detail = err.Error()
					return finish(VerdictProtocolError, err)
				}
				// Everything R printed before reporting is in the pipes.
				inst.stdout.drain()
				inst.stderr.drain()
				res.Value, res.Visible, res.Printed = m.Value, m.Visible, m.Printed
				res.Warnings, res.Messages = nonNil(m.Warnings), nonNil(m.Messages)
				if stopVerdict != "" {
					res.Detail = "R was interrupted at the time limit; the session keeps its state"
					return finish(stopVerdict, stopErr)
				}
				if m.Interrupted {
					// SIGINT from elsewhere than the timeout: treat as error.
					res.Error = &RError{Message: "interrupted", Class: []string{"interrupt", "condition"}}
					return finish(VerdictError, res.Error)
				}
				if m.Error != nil {
					res.Error = &RError{Message: m.Error.Message, Class: m.Error.Class}
					if m.Error.Call != nil {
						res.Error.Call = *m.Error.Call
					}
					return finish(VerdictError, res.Error)
				}
				return finish(VerdictOK, nil)
			default:
				inst.dead.Store(true)
				err := fmt.Errorf("%w: unexpected %T during execution", ErrProtocol, m)
				res.Detail = err.Error()
				return finish(VerdictProtocolError, err)
			}
		case out := <-toolDone:
			toolRunning = false
			if grace != nil || out.id != callID {
				continue // R was interrupted: the late answer is dropped
			}
			msg := bridge.ToolResult{Type: "tool_result", ID: out.id, Value: out.value}
			if out.err != nil {
				msg.Value, msg.Error = nil, truncate(out.err.Error(), DefaultToolErrorBytes)
			}
			if err := s.send(inst, msg); err != nil {
				inst.dead.Store(true)
				return s.died(inst, res, err, toolRunning)
			}
		case <-inst.box.Done():
			inst.dead.Store(true)
			return s.died(inst, res, nil, toolRunning)
		case <-timeout.C:
			stopVerdict, stopErr = VerdictTimeout, fmt.Errorf("%w after %s", ErrTimeout, s.cfg.Timeout)
			interrupt()
		case <-ctx.Done():
			if stopVerdict == "" {
				stopVerdict, stopErr = VerdictCanceled, fmt.Errorf("%w: %w", ErrCanceled, ctx.Err())
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					stopVerdict, stopErr = VerdictTimeout, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
				}
			}
			interrupt()
			ctx = context.Background() // stop selecting on it; grace decides now
		case <-grace:
			// R did not come back: kill it, report, restart on next use.
			inst.dead.Store(true)
			_ = inst.box.Signal(unix.SIGKILL)
			<-inst.box.Done()
			res.Exit = inst.box.ExitStatus().String()
			res.Detail = "R did not respond to the interrupt within " + s.cfg.InterruptGrace.String() + "; the container was killed and the session restarts on next use"
			return finish(stopVerdict, stopErr)
		}
	}
}

// died classifies the end of R during an execution.
func (s *Session) died(inst *instance, res *Result, cause error, inTool bool) (*Result, error) {
	select {
	case <-inst.box.Done():
	case <-time.After(2 * time.Second):
		_ = inst.box.Signal(unix.SIGKILL)
		<-inst.box.Done()
	}
	inst.stdout.drain()
	inst.stderr.drain()
	exit := inst.box.ExitStatus()
	res.Exit = exit.String()
	if n := inst.usage().OOMKills; n > 0 {
		res.Accounting.OOMKills = n
		res.Verdict = VerdictOutOfMemory
		res.Detail = fmt.Sprintf("the memory limit (%d bytes) was reached and the kernel killed R", s.cfg.Limits.MemoryBytes)
		return res, fmt.Errorf("%w: R was killed at the %d-byte memory limit", ErrOutOfMemory, s.cfg.Limits.MemoryBytes)
	}
	res.Verdict = VerdictKilled
	if s.isClosed() {
		res.Detail = "the session was closed during the execution"
		return res, fmt.Errorf("%w: during the execution", ErrSessionClosed)
	}
	during := "during the execution"
	if inTool {
		during = "during a tool call (its result was dropped)"
	}
	res.Detail = "R crashed " + during + " (" + exit.String() + "); the session restarts on next use"
	if cause != nil && !errors.Is(cause, io.EOF) {
		res.Detail += ": " + cause.Error()
	}
	return res, fmt.Errorf("%w: %s", ErrKilled, exit)
}

// account fills in the cgroup's figures; the container must still exist.
func (s *Session) account(inst *instance, res *Result, before cgroup.Usage) {
	u := inst.usage()
	res.Accounting.CPUUser = time.Duration(u.CPUUserNanos - min(before.CPUUserNanos, u.CPUUserNanos))
	res.Accounting.CPUSystem = time.Duration(u.CPUSystemNanos - min(before.CPUSystemNanos, u.CPUSystemNanos))
	res.Accounting.PeakMemoryBytes = u.PeakMemoryBytes
	res.Accounting.OOMKills = max(res.Accounting.OOMKills, u.OOMKills)
}

func (s *Session) runTool(ctx context.Context, t Tool, call *bridge.ToolCall, done chan<- toolOutcome) {
	out := toolOutcome{id: call.ID}
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("tool panicked", "tool", t.Name, "panic", p, "stack", string(debug.Stack()))
			out = toolOutcome{id: call.ID, err: fmt.Errorf("tool %q failed (panic)", t.Name)}
		}
		done <- out
	}()
	v, err := t.Handler(ctx, call.Args)
	if err != nil {
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
	if len(b) > s.cfg.MaxFrameBytes {
		out.err = fmt.Errorf("tool %q returned %d bytes, over the %d-byte limit", t.Name, len(b), s.cfg.MaxFrameBytes)
		return
	}
	out.value = &val
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "... (truncated)"
}

func truncated(s string) string { return truncate(s, 64) }
