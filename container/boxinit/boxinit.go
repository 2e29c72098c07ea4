// Package boxinit turns this process into a box's init as early as Go
// allows: from its own package initializer, which runs as soon as
// libcontainer's packages are initialized and before those of the rest of
// the program. libcontainer re-executes the host binary for each new box,
// and the host binary's other packages (metrics, HTTP, JSON schemas,
// protobuf...) have nothing to do in a box's init: initializing them there
// cost several milliseconds of every start.
//
// The container package imports it, so every program that can start a box
// has it; container.MaybeInit stays the documented hook (and the fallback
// should this one ever not apply).
package boxinit

import (
	"os"
	"os/signal"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// Arg is the argv[1] libcontainer re-executes the host binary with to set
// up a box from inside.
const Arg = "init"

// initPipeEnv is set by libcontainer in its init's environment only; the
// nsenter package's constructor keys on the same variable, so a program
// run as "prog init" by a user is not taken for a box's init.
const initPipeEnv = "_LIBCONTAINER_INITPIPE"

func init() {
	if IsInit() {
		Run()
	}
}

// IsInit reports whether this process was started by libcontainer as a
// box's init.
func IsInit() bool {
	return len(os.Args) > 1 && os.Args[1] == Arg && os.Getenv(initPipeEnv) != ""
}

// Run sets the box's init up and execs its process; it never returns.
func Run() {
	// A write past RLIMIT_FSIZE must fail with EFBIG, not kill R with
	// SIGXFSZ (losing the session): an ignored signal stays ignored
	// across exec, through tini, into R.
	signal.Ignore(unix.SIGXFSZ)
	libcontainer.Init()
}
