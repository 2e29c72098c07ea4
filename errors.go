package securer

import (
	"errors"
	"strings"

	"github.com/securer-runc/securer-runc/bridge"
)

// Errors Execute and NewSession return, usable with errors.Is.
var (
	ErrInvalidConfig = errors.New("invalid configuration")
	ErrTimeout       = errors.New("execution timed out")
	ErrCanceled      = errors.New("execution canceled")
	ErrOutOfMemory   = errors.New("out of memory")
	ErrKilled        = errors.New("R process died")
	ErrRError        = errors.New("R error")
	ErrToolFailed    = errors.New("tool failed")
	ErrProtocol      = bridge.ErrProtocol
	// ErrLimit: the execution hit a budget (tool calls, output).
	ErrLimit = errors.New("execution limit reached")
	// ErrRejected: the code was refused before it ran (too long, a veto of
	// Config.PreExecute, the session's MaxExecutions used up).
	ErrRejected      = errors.New("execution rejected")
	ErrSessionClosed = errors.New("session closed")
	// ErrBusy: a Session runs one Execute at a time; a second concurrent
	// caller gets ErrBusy at once rather than waiting.
	ErrBusy = errors.New("session busy: another Execute is running")
	// ErrNeedsSandbox: the operation is refused on an unsandboxed session
	// (Config.UnsafeNoSandbox), for example a fresh execution, whose
	// clean-up would run on the host.
	ErrNeedsSandbox = errors.New("not available without the sandbox")
	// ErrSandboxUnavailable: the host cannot give the isolation asked for.
	ErrSandboxUnavailable = errors.New("sandbox unavailable")
	// ErrFileRefused: a file operation was refused (a bad name, a link or
	// a non-regular file, over a limit, no such file).
	ErrFileRefused = errors.New("file refused")
)

// RError is an R condition that ended an execution. errors.Is(err,
// ErrRError) holds for it, and errors.Is(err, ErrToolFailed) too when a tool
// call's error went uncaught.
type RError struct {
	Message string   `json:"message"`
	Call    string   `json:"call,omitempty"`
	Class   []string `json:"class"`
	// Traceback is the code's calls when the error was signalled,
	// outermost first (at most the 50 innermost, each deparsed on one
	// line and clipped to 500 characters); empty for errors outside any
	// call of the code (a parse error) and for a C stack overflow, where
	// R has no room left to record it.
	Traceback []string `json:"traceback,omitempty"`
}

func (e *RError) Error() string {
	if e.Call != "" {
		return "Error in " + e.Call + " : " + e.Message
	}
	return "Error: " + e.Message
}

// Is lets errors.Is match ErrRError and, for tool errors, ErrToolFailed.
func (e *RError) Is(target error) bool {
	switch target {
	case ErrRError:
		return true
	case ErrToolFailed:
		for _, c := range e.Class {
			if c == "securer_tool_error" {
				return true
			}
		}
	}
	return false
}

// IsParseError reports whether the code did not parse (nothing ran).
func (e *RError) IsParseError() bool {
	for _, c := range e.Class {
		if strings.EqualFold(c, "securer_parse_error") {
			return true
		}
	}
	return false
}
