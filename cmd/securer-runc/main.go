// Command securer-runc runs untrusted R code in a libcontainer sandbox.
//
//	securer-runc run [flags] [-e CODE | FILE | -]   run R code
//	securer-runc serve --stdio | --listen unix:PATH serve sessions to clients
//	securer-runc mcp [--listen HOST:PORT]           serve R to MCP clients (agents)
//	securer-runc doctor                            check this host
//	securer-runc rootfs build|verify|seal          manage the R rootfs
//	securer-runc reap                              remove crashed sessions' leftovers
//	securer-runc health --admin ADDR | --socket PATH probe a running serve
//	securer-runc version
//	securer-runc help [COMMAND]                    usage (also COMMAND -h, --help or help)
//
// SECURER_DEBUG set to anything non-empty logs debug detail on stderr (as
// --log-level debug does).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	securer "github.com/securer-runc/securer-runc"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit statuses of "run", documented in the README.
const (
	exitOK        = 0
	exitRError    = 1
	exitUsage     = 2
	exitSandbox   = 3
	exitProtocol  = 4
	exitLimit     = 5
	exitTimeout   = 124
	exitOOM       = 137
	exitKilled    = 138
	exitCancelled = 130
)

func init() {
	// libcontainer re-executes this binary as "init" inside each new box.
	securer.Init()
}

func main() {
	// A reader that goes away (an R client killed with SIGKILL, `run | head`)
	// must not kill this process by SIGPIPE while boxes run: with SIGPIPE
	// caught, writes fail with EPIPE and the usual clean-up runs. Caught,
	// not ignored: an ignored SIGPIPE would be inherited by R and by tool
	// commands, a caught one is reset on exec.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	os.Exit(dispatch(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: securer-runc COMMAND [flags]

commands:
  run      run R code in a sandbox (-e CODE, a file, or stdin)
  serve    serve sessions to other programs (--stdio, or --listen unix:PATH)
  mcp      serve R to MCP clients (agents): stdio, or --listen HOST:PORT (HTTP)
  doctor   check that this host can provide the sandbox, and say what to fix
  rootfs   build, verify or seal the read-only R root filesystem
  reap     remove containers, cgroups and state left by crashed processes
  health   probe a running serve (exit 0 when ready): for exec probes
  version  print versions
  help     print this, or with a COMMAND its usage

Run 'securer-runc COMMAND -h' (or --help, or help) for a command's flags.

environment:
  SECURER_DEBUG  when set (non-empty), log debug detail on stderr: session
                 start-up and teardown, background-process sweeps, clients
                 gone; a shortcut for --log-level debug (an explicit
                 --log-level wins). Without either, run and doctor log
                 warnings and errors, serve info too.
  SECURER_SOCKET the daemon socket run (and the clients) use when it
                 answers; default /run/securer-runc/serve.sock.
  SECURER_NO_DAEMON
                 when 1, run never uses a daemon (as --no-daemon).

run, serve, mcp and doctor take --log-format text|json and --log-level
debug|info|warn|error; their log records go to stderr.
`)
}

func dispatch(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	if isHelpWord(args[0]) {
		// help COMMAND [SUB] is COMMAND [SUB] -h.
		if len(args) == 1 || isHelpWord(args[1]) {
			usage(stdout)
			return exitOK
		}
		args = append(args[1:len(args):len(args)], "-h")
	}
	if args[0] == "serve" {
		if wantsHelp(args[1:]) {
			// Its flags' usage, on stdout: asked for, not an error.
			cmdServe([]string{"-h"}, stdout)
			return exitOK
		}
		// serve handles its own signals: SIGTERM drains.
		return cmdServe(args[1:], stderr)
	}
	if args[0] == "run" {
		// run drains on SIGTERM (see cmdRun); Ctrl-C stops at once.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		return cmdRun(ctx, args[1:], stdin, stdout, stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "doctor":
		return cmdDoctor(ctx, args[1:], stdout, stderr)
	case "mcp":
		return cmdMCP(ctx, args[1:], stdout, stderr)
	case "rootfs":
		return cmdRootfs(ctx, args[1:], stdout, stderr)
	case "reap":
		return cmdReap(ctx, args[1:], stdout, stderr)
	case "health":
		return cmdHealth(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-v":
		return cmdVersion(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "securer-runc: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func fail(stderr io.Writer, code int, err error) int {
	fmt.Fprintf(stderr, "securer-runc: %v\n", err)
	return code
}
