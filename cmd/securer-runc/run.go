package main

import (
	"context"
	stdjson "encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

func cmdRun(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	// SIGTERM is caught from the start: one that arrives while the flags
	// are read or the box starts still drains, and never kills the process
	// with a box half made.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	defer signal.Stop(sigs)
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	code := fs.String("e", "", "R code to run (else a FILE argument, or stdin when FILE is - or absent)")
	sandbox := addSandboxFlags(fs, "wall-clock limit for the code", "")
	asJSON := fs.Bool("json", false, "print the structured result (verdict, value, output, accounting) as JSON on stdout")
	toolsPath := fs.String("tools", "", "JSON file of host tools implemented as commands")
	maxToolCalls := fs.Int("max-tool-calls", securer.DefaultMaxToolCalls, "most tool calls the code may make")
	outputLimit := fs.String("output-limit", defaultOutputLimit, "end the run after this much stdout or stderr (e.g. 100M; 0 or none: no limit)")
	preload := fs.String("preload", "", "R packages to attach before the code runs, comma separated")
	var inputs inputFlags
	fs.Var(&inputs, "input", "put FILE in the code's work dir before it runs, as NAME if given (FILE[=NAME], repeatable; 4 MiB each, 16 and 6 MiB in all)")
	outputDir := fs.String("output-dir", "", "write the files the code made or changed in its work dir to DIR (an existing dir; links are not followed, files not replaced)")
	termGrace := fs.Duration("term-grace", 10*time.Second, "on SIGTERM, how long the running code may still take before it is stopped")
	plotFl := addPlotFlags(fs)
	daemon := addDaemonFlags(fs)
	logs := addLogFlags(fs, slog.LevelWarn, "warn")
	setUsage(fs, "securer-runc run [flags] [-e CODE | FILE | -]    (a file named help: ./help)")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	logger, err := logs.logger(stderr)
	if err != nil {
		return fail(stderr, exitUsage, err)
	}
	src, err := readCode(*code, fs.Args(), stdin)
	if err != nil {
		fmt.Fprintf(stderr, "securer-runc run: %v\n", err)
		return exitUsage
	}
	opts := securer.ExecOptions{CollectOutputs: *outputDir != ""}
	if opts.Inputs, err = readInputs(inputs); err != nil {
		return fail(stderr, exitUsage, err)
	}
	if *outputDir != "" {
		if st, err := os.Stat(*outputDir); err != nil || !st.IsDir() {
			return fail(stderr, exitUsage, fmt.Errorf("--output-dir %s: not an existing directory", *outputDir))
		}
	}
	host, cfg, auditCloser, err := sandbox.config(stderr, logger)
	if err != nil {
		return fail(stderr, exitUsage, err)
	}
	if codeFromArgs(*code, fs.Args()) && !cfg.UnsafeNoSandbox {
		cfg.Stdin = codeStdin(stdin)
	}
	defer auditCloser.Close()
	if cfg.Plots, err = plotFl.plots(); err != nil {
		return fail(stderr, exitUsage, err)
	}
	cfg.MaxToolCalls = *maxToolCalls
	if cfg.Output.LimitBytes, err = parseLimit(*outputLimit); err != nil {
		return fail(stderr, exitUsage, fmt.Errorf("--output-limit: %w", err))
	}
	if *preload != "" {
		cfg.Preload = strings.Split(*preload, ",")
	}
	if *toolsPath != "" {
		if cfg.Tools, err = loadTools(*toolsPath); err != nil {
			return fail(stderr, exitUsage, err)
		}
	}
	// Output nobody reads (`run ... | head` after head left) ends the run.
	ctx, cancelRun := context.WithCancelCause(ctx)
	defer cancelRun(nil)
	if !*asJSON {
		cfg.Output.Stdout = &cancelOnWriteError{w: stdout, cancel: cancelRun}
		cfg.Output.Stderr = stderr
	}
	// The executor should outlive its boxes when memory runs out: the boxes
	// have the highest OOM score, the executor a low one.
	if err := securer.ProtectFromOOM(); err != nil {
		logger.Debug("could not lower the executor's OOM score", "err", err)
	}
	ctx, stopDrain := drainOnSIGTERM(ctx, sigs, *termGrace, logger)
	defer stopDrain()
	var res *securer.Result
	ran := false
	if addr, explicit := daemon.target(); addr != "" {
		timeoutSet := false
		fs.Visit(func(f *flag.Flag) { timeoutSet = timeoutSet || f.Name == "timeout" })
		// A piped stdin would reach the code in a box here, not through a
		// daemon: an automatic run keeps it so by staying here; --connect
		// asked for the daemon, whose code gets no stdin.
		stdinUsed := cfg.Stdin != nil && !isCharDevice(stdin)
		if stdinUsed && explicit {
			logger.Debug("--connect: the code's stdin is not passed to the daemon")
		}
		why := whyLocal(fs, stdinUsed && !explicit)
		switch {
		case why != "" && explicit:
			return fail(stderr, exitUsage, fmt.Errorf("--connect: a daemon cannot honour %s; leave out --connect to start a box here", why))
		case why != "":
			logger.Debug("not using the daemon: a box of its own is needed", "addr", addr, "for", why)
		default:
			res, err = runThroughDaemon(ctx, addr, *daemon.tokenFile, fs, cfg, src, opts, timeoutSet, logger)
			switch {
			case res != nil:
				ran, err = true, verdictError(res)
			case explicit && errors.Is(err, errNothingRan):
				return fail(stderr, daemonExit(err), err)
			case !errors.Is(err, errNothingRan):
				// The connection broke while the code may have been
				// running: running it again here could run it twice.
				return fail(stderr, exitSandbox, fmt.Errorf("the daemon at %s: %w", addr, err))
			default:
				logger.Debug("not using the daemon: starting a box here", "addr", addr, "err", err)
			}
		}
	}
	if !ran {
		res, err = executeOnce(ctx, host, cfg, src, opts)
	}
	if res == nil && ctx.Err() != nil {
		// Cancelled (SIGINT, or SIGTERM and its grace) before the code ran:
		// the box was torn down as it started; that is a cancellation, not
		// a sandbox failure.
		return fail(stderr, exitCancelled, fmt.Errorf("canceled while the sandbox was starting: %v", context.Cause(ctx)))
	}
	if res == nil {
		code := exitSandbox
		if errors.Is(err, securer.ErrInvalidConfig) || errors.Is(err, securer.ErrRejected) {
			code = exitUsage
		}
		return fail(stderr, code, err)
	}
	if errors.Is(context.Cause(ctx), errStdoutClosed) {
		return fail(stderr, exitCancelled, fmt.Errorf("%s: %w", res.Verdict, context.Cause(ctx)))
	}
	if plotFl.dir != "" {
		if _, perr := writePlots(plotFl.dir, res.Displays); perr != nil {
			fmt.Fprintf(stderr, "securer-runc: --plots-dir: %v\n", perr)
			if res.Verdict == securer.VerdictOK {
				return exitUsage // the directory's fault, not the code's
			}
		}
	} else if len(res.Displays) > 0 && !*asJSON {
		fmt.Fprintf(stderr, "securer-runc: %d plot(s) not saved: use --plots-dir DIR (or --json)\n", len(res.Displays))
	}
	if res.DisplaysDropped > 0 && !*asJSON {
		fmt.Fprintf(stderr, "securer-runc: %d plot(s) dropped (at most 20 per run, 2 MiB each, 4 MiB together)\n", res.DisplaysDropped)
	}
	if *asJSON {
		b, jerr := stdjson.MarshalIndent(res, "", "  ")
		if jerr != nil {
			return fail(stderr, exitSandbox, jerr)
		}
		if _, werr := fmt.Fprintf(stdout, "%s\n", b); werr != nil {
			// The result was lost: never report success for it.
			return fail(stderr, exitCancelled, fmt.Errorf("the JSON result could not be written: %w: %v", errStdoutClosed, werr))
		}
	} else if err != nil && res.Verdict != securer.VerdictError {
		// R already printed its own error; the others are ours to say.
		fmt.Fprintf(stderr, "securer-runc: %s: %v\n", res.Verdict, err)
		if res.Detail != "" {
			fmt.Fprintf(stderr, "securer-runc: %s\n", res.Detail)
		}
		if res.Verdict == securer.VerdictOutputLimit {
			fmt.Fprintf(stderr, "securer-runc: the output limit is %d bytes per stream; raise it with --output-limit (0 lifts it)\n", cfg.Output.LimitBytes)
		}
	}
	if *outputDir != "" {
		if werr := writeOutputs(*outputDir, res.Files); werr != nil {
			fmt.Fprintf(stderr, "securer-runc: %v\n", werr)
			if res.Verdict == securer.VerdictOK {
				return exitSandbox
			}
		}
		if res.FilesDropped > 0 {
			fmt.Fprintf(stderr, "securer-runc: %d files the code wrote were not collected (links, bad names, or over the limits: %d files, %d bytes)\n",
				res.FilesDropped, securer.MaxRequestFiles, securer.MaxRequestBytes)
		}
	}
	return exitCode(res.Verdict)
}

// executeOnce runs code in a one-shot session: start, execute, close.
func executeOnce(ctx context.Context, h securer.Host, cfg securer.Config, code string, opts securer.ExecOptions) (*securer.Result, error) {
	s, err := h.NewSession(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.ExecuteWith(ctx, code, opts)
}

// codeFromArgs reports whether the code comes from -e or a FILE, leaving
// stdin to the code.
func codeFromArgs(code string, rest []string) bool {
	return code != "" || (len(rest) == 1 && rest[0] != "-")
}

var errStdoutClosed = errors.New("stdout is gone (its reader went away, or it is closed)")

// cancelOnWriteError passes writes through and cancels the run once one
// fails: output nobody can receive is not worth computing.
type cancelOnWriteError struct {
	w      io.Writer
	cancel context.CancelCauseFunc
}

func (c *cancelOnWriteError) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err != nil {
		c.cancel(fmt.Errorf("stopped: %w: %v", errStdoutClosed, err))
	}
	return n, err
}

// drainOnSIGTERM returns a context that SIGTERM ends only after grace: an
// orchestrator's stop lets the running code finish (and the box be torn
// down) instead of killing it mid-way.
func drainOnSIGTERM(ctx context.Context, sigs <-chan os.Signal, grace time.Duration, logger *slog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
		case <-done:
			return
		}
		logger.Warn("SIGTERM: letting the running code finish", "grace", grace)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel(fmt.Errorf("SIGTERM and the %s grace period ended", grace))
		case <-done:
		}
	}()
	return ctx, func() {
		close(done)
		cancel(nil)
	}
}

func exitCode(v securer.Verdict) int {
	switch v {
	case securer.VerdictOK:
		return exitOK
	case securer.VerdictError:
		return exitRError
	case securer.VerdictTimeout:
		return exitTimeout
	case securer.VerdictOutOfMemory:
		return exitOOM
	case securer.VerdictCanceled:
		return exitCancelled
	case securer.VerdictProtocolError:
		return exitProtocol
	case securer.VerdictToolCallLimit, securer.VerdictOutputLimit:
		return exitLimit
	}
	return exitKilled
}

func readCode(code string, rest []string, stdin io.Reader) (string, error) {
	switch {
	case code != "" && len(rest) > 0:
		return "", errors.New("give code with -e or as a FILE, not both")
	case code != "":
		return code, nil
	case len(rest) > 1:
		return "", fmt.Errorf("one FILE at most, got %d", len(rest))
	case len(rest) == 1 && rest[0] != "-":
		b, err := os.ReadFile(rest[0])
		return string(b), err
	}
	b, err := io.ReadAll(io.LimitReader(stdin, 64<<20))
	return string(b), err
}

// defaultOutputLimit bounds what one run streams to stdout and to stderr:
// a runaway loop of cat() would otherwise fill the disk or the terminal.
const defaultOutputLimit = "10M"

// parseLimit reads an --output-limit: a size, or 0/none for no limit.
func parseLimit(s string) (int64, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "0", "none", "unlimited":
		return 0, nil
	}
	return parseBytes(s)
}

// maxSizeBytes bounds every size flag: a file-size rlimit of 2^63 or more
// reads as a negative offset in the kernel (every write fails), and no
// memory or output size near it means anything.
const maxSizeBytes = securer.MaxFileSizeBytes

// parseBytes reads "512M", "1G", "1.5K", "65536" (binary multiples): a
// whole, positive number of bytes of at most maxSizeBytes. NaN, Inf and
// sizes that overflow are errors, never a wrapped value.
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	num, mult := s, int64(1)
	if n := len(s); n > 0 {
		switch strings.ToUpper(s[n-1:]) {
		case "K":
			mult, num = 1<<10, s[:n-1]
		case "M":
			mult, num = 1<<20, s[:n-1]
		case "G":
			mult, num = 1<<30, s[:n-1]
		}
	}
	notPositive := fmt.Errorf("not a positive size: %q (examples: 512M, 1G)", s)
	over := fmt.Errorf("size %q is over the maximum %d bytes", s, int64(maxSizeBytes))
	// Whole numbers exactly: a float64 rounds them past 2^53.
	n, err := strconv.ParseInt(num, 10, 64)
	switch {
	case err == nil && n <= 0:
		return 0, notPositive
	case err == nil && n > maxSizeBytes/mult:
		return 0, over
	case err == nil:
		return n * mult, nil
	case errors.Is(err, strconv.ErrRange):
		if strings.HasPrefix(num, "-") {
			return 0, notPositive
		}
		return 0, over
	}
	v, err := strconv.ParseFloat(num, 64)
	switch {
	case errors.Is(err, strconv.ErrRange) && v > 0: // 1e400
		return 0, over
	case err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v <= 0:
		return 0, notPositive
	}
	b := v * float64(mult)
	switch {
	case b >= maxSizeBytes: // float64(maxSizeBytes) rounds to 2^62
		return 0, over
	case b != math.Trunc(b):
		return 0, fmt.Errorf("size %q is not a whole number of bytes", s)
	}
	return int64(b), nil
}
