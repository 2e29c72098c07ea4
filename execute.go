package securer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/securer-runc/securer-runc/rvalue"
)

// Execute runs code in the session, top-level expression by expression as
// Rscript does, and returns when R has finished or the timeout has ended
// it. The error is nil exactly when the verdict is VerdictOK. When the
// code ran, the Result says what happened and the error wraps ErrRError
// (an *RError), ErrTimeout, ErrCanceled, ErrOutOfMemory, ErrKilled,
// ErrLimit (a budget: tool calls, output) or ErrProtocol. When nothing
// ran, the Result is nil and the error wraps ErrBusy (another Execute or
// a Restart is running), ErrSessionClosed, ErrRejected (the code was
// refused: too long, a veto, MaxExecutions), ErrNeedsSandbox, or
// ErrTimeout/ErrCanceled (ctx had already ended).
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
	// is written, in place of Config.Output.Stdout and Stderr.
	Stdout, Stderr io.Writer
	// Plots, when set, replaces Config.Plots for this execution (its zero
	// members still take the session's).
	Plots *Plots
	// Inputs are written to the work dir before the code runs (see
	// CheckFiles for the limits); CollectOutputs returns the regular
	// files the code made or changed there in Result.Files.
	Inputs         []File
	CollectOutputs bool
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
	if err := ctx.Err(); err != nil {
		// Nothing runs on a context that has already ended.
		return nil, endedContextError(err, "before the code ran; nothing ran")
	}
	if opts.Fresh && s.cfg.UnsafeNoSandbox {
		// The sweep after a fresh execution kills every process it can see
		// and empties the temp dirs: on the host, that would be the host's.
		return nil, fmt.Errorf("%w: fresh executions need the sandbox; use Restart for a clean R", ErrNeedsSandbox)
	}
	if opts.Plots != nil {
		if err := opts.Plots.validate(); err != nil {
			return nil, err
		}
	}
	if err := CheckFiles(opts.Inputs); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRejected, err)
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
		opts.Stdout = s.cfg.Output.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = s.cfg.Output.Stderr
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

// endedContextError is ErrTimeout or ErrCanceled, whichever the context's
// end was, wrapping it too.
func endedContextError(err error, when string) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w %s: %w", ErrTimeout, when, err)
	}
	return fmt.Errorf("%w %s: %w", ErrCanceled, when, err)
}
