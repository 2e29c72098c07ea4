package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/internal/oneshot"
)

// run through a daemon: `run --connect ADDR`, or automatically when the
// default daemon socket is there. The daemon runs the code as a one-shot
// (PROTOCOL.md): in a warm box when it has one ready.

// DefaultSocket is where every client looks for the daemon unless
// SECURER_SOCKET says otherwise: the systemd unit's socket, in the
// directory the unit owns (/run itself is read-only to it).
const DefaultSocket = "/run/securer-runc/serve.sock"

// localOnlyFlags are run's flags a daemon cannot honour: the box is the
// daemon's (its rootfs, state, cgroups, isolation and audit log). Given
// one, run starts its box here.
var localOnlyFlags = []string{"rootfs", "state", "cgroup-parent", "unsafe-no-userns", "unsafe-no-sandbox", "rscript",
	"unsafe-allow-old-kernel", "unsafe-merge-pages", "audit"}

// daemonFlags are run's flags about the daemon.
type daemonFlags struct {
	connect, tokenFile *string
	noDaemon           *bool
}

func addDaemonFlags(fs *flag.FlagSet) *daemonFlags {
	return &daemonFlags{
		connect: fs.String("connect", "", "run through the daemon at unix:PATH or tcp:HOST:PORT (securer-runc serve); "+
			"without it, run uses the daemon at $SECURER_SOCKET, else "+DefaultSocket+", when one answers there "+
			"(unless --no-daemon), and starts a box here otherwise. Flags a daemon cannot honour (--"+
			strings.Join(localOnlyFlags, ", --")+", --output-limit 0) start the box here, and so does a piped stdin without --connect (a daemon's code gets no stdin); limits are the daemon's unless given"),
		tokenFile: fs.String("token-file", "", "the daemon's token (a file of mode 0600), for --connect tcp: or a daemon that wants one"),
		noDaemon:  fs.Bool("no-daemon", false, "never use a daemon: start the box here (also SECURER_NO_DAEMON=1)"),
	}
}

// target is the daemon to use and whether the user named it: "" when the
// run is local.
func (d *daemonFlags) target() (addr string, explicit bool) {
	if *d.connect != "" {
		return *d.connect, true
	}
	if *d.noDaemon || os.Getenv("SECURER_NO_DAEMON") == "1" {
		return "", false
	}
	path := os.Getenv("SECURER_SOCKET")
	if path == "" {
		path = DefaultSocket
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
		return "", false
	}
	return "unix:" + path, false
}

// whyLocal names what makes the run need a box of its own, or "".
func whyLocal(fs *flag.FlagSet, stdinUsed bool) string {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var why []string
	for _, name := range localOnlyFlags {
		if set[name] {
			why = append(why, "--"+name)
		}
	}
	if set["output-limit"] && fs.Lookup("output-limit").Value.String() != "" {
		if l, err := parseLimit(fs.Lookup("output-limit").Value.String()); err == nil && l == 0 {
			why = append(why, "--output-limit 0 (no limit: a daemon applies its own)")
		}
	}
	if stdinUsed {
		why = append(why, "stdin for the code (a pipe or file)")
	}
	sort.Strings(why)
	return strings.Join(why, ", ")
}

// daemonOptions are the session options the user gave explicitly; those
// not given are the daemon's (so a plain run matches its warm boxes).
func daemonOptions(fs *flag.FlagSet, cfg securer.Config) map[string]any {
	o := map[string]any{}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "memory":
			o["memory_bytes"] = cfg.Limits.MemoryBytes
		case "pids":
			o["pids"] = cfg.Limits.Pids
		case "cpus":
			o["cpus"] = cfg.Limits.CPUs
		case "tmp":
			o["tmp_bytes"] = cfg.Limits.TmpBytes
		case "fsize":
			o["fsize_bytes"] = cfg.Limits.FileSizeBytes
		case "max-tool-calls":
			o["max_tool_calls"] = cfg.MaxToolCalls
		case "output-limit":
			o["output_limit"] = cfg.Output.LimitBytes
		case "preload":
			o["preload"] = cfg.Preload
		}
	})
	return o
}

// dialTimeout bounds connecting to a daemon and its hello.
const dialTimeout = 10 * time.Second

// errNothingRan marks a daemon failure before the code ran: an automatic
// run may still start a box here.
var errNothingRan = errors.New("the daemon did not run the code")

// runThroughDaemon runs src as a one-shot on the daemon at addr.
func runThroughDaemon(ctx context.Context, addr, tokenFile string, fs *flag.FlagSet, cfg securer.Config, src string,
	opts securer.ExecOptions, timeoutSet bool, logger *slog.Logger) (*securer.Result, error) {
	token := ""
	if tokenFile != "" {
		var err error
		if token, err = readToken(tokenFile); err != nil {
			return nil, fmt.Errorf("%w: %w", errNothingRan, err)
		}
	}
	// A daemon that takes the connection but never greets must not hang
	// the run: connecting and authenticating get a bound of their own.
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	c, err := oneshot.Dial(dctx, addr, token)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNothingRan, err)
	}
	defer c.Close()
	req := oneshot.Request{Code: src, Inputs: opts.Inputs, Collect: opts.CollectOutputs, Tools: cfg.Tools,
		Options: daemonOptions(fs, cfg), Stdout: cfg.Output.Stdout, Stderr: cfg.Output.Stderr}
	if timeoutSet {
		req.Timeout = cfg.Timeout
	}
	p := cfg.Plots
	req.Plots = &oneshot.Plots{Format: p.Format, Width: p.Width, Height: p.Height, DPI: p.DPI}
	res, warm, err := c.Execute(ctx, req)
	if err != nil {
		if errors.Is(err, oneshot.ErrServer) {
			// An error event: the daemon refused or could not start a
			// box; the code did not run.
			return nil, fmt.Errorf("%w: %w", errNothingRan, err)
		}
		return nil, err
	}
	logger.Debug("ran through the daemon", "addr", addr, "warm", warm, "verdict", res.Verdict)
	return res, nil
}

// daemonExit is the exit code of a run the daemon refused.
func daemonExit(err error) int {
	if se, ok := errors.AsType[*oneshot.ServerError](err); ok {
		switch se.Code {
		case "invalid_config", "bad_request", "rejected":
			return exitUsage
		}
	}
	return exitSandbox
}

// verdictError is what a local run's error says, for a result from a
// daemon (which sends the verdict and detail, not the engine's error).
func verdictError(res *securer.Result) error {
	if res.Verdict == securer.VerdictOK {
		return nil
	}
	return fmt.Errorf("the daemon's execution ended: %s", res.Verdict)
}

// isCharDevice reports whether r is a character device (a terminal,
// /dev/null): no input the code would miss through a daemon.
func isCharDevice(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
