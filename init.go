package securer

import (
	"errors"

	"github.com/securer-runc/securer-runc/container"
)

// Init must run first thing in every program that starts sandboxed
// sessions: call it at the start of main, or from an init function of
// package main. In a test binary, call it from an init function: by the
// time TestMain runs, the testing package may have moved the main
// goroutine off the main thread, and a box's set-up could then leave the
// main thread in the box's mount namespace.
//
//	func main() {
//		securer.Init()
//		...
//	}
//
// Each box starts by running this program's own binary again as the
// box's init (libcontainer re-executes /proc/self/exe with the argument
// "init"). In that process Init turns into the box's init and never
// returns. In the program itself it returns at once, having pinned the
// calling goroutine to the main thread, so that setting up a box never
// leaves the main thread inside the box's namespaces.
//
// Without it, NewSession refuses a sandboxed session with
// ErrInitHookMissing. Unsandboxed sessions (Config.UnsafeNoSandbox) do
// not need it.
func Init() { container.MaybeInit() }

// ErrInitHookMissing: a sandboxed session was asked for in a program that
// did not call Init. The error wraps ErrInvalidConfig too.
var ErrInitHookMissing = errors.New("securer.Init was not called: call securer.Init() at the start of main (or in an init function of package main)")
