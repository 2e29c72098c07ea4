package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/internal/mcpserver"
)

// cmdMCP serves R execution to an MCP client (an agent): on stdio by
// default, or on streamable HTTP with --listen.
func cmdMCP(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mcp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sandbox := addSandboxFlags(fs, "wall-clock limit of one run_r call (the default, and the most a call may ask for)", " (each box)")
	listen := fs.String("listen", "", "serve streamable HTTP on HOST:PORT (default: stdio); a non-loopback HOST needs --token-file")
	tokenFile := fs.String("token-file", "", "with --listen: clients must send Authorization: Bearer TOKEN, TOKEN this file's (mode 0600)")
	toolsPath := fs.String("tools", "", "JSON file of host tools implemented as commands (as run --tools), callable from the R code")
	maxToolCalls := fs.Int("max-tool-calls", securer.DefaultMaxToolCalls, "most tool calls one run_r may make")
	outputLimit := fs.String("output-limit", defaultOutputLimit, "end a run_r call after this much stdout or stderr (0 or none: no limit)")
	preload := fs.String("preload", "", "R packages to attach in every box before code runs, comma separated")
	warm := fs.Int("warm", 1, "boxes kept ready for run_r calls without a session (0: start one per call)")
	maxSessions := fs.Int("max-sessions", 8, "most persistent R sessions open at once (and most boxes started for one-shots beyond the warm ones)")
	idle := fs.Duration("session-idle", 10*time.Minute, "close a persistent R session unused for this long (0: never)")
	inline := fs.Int("inline-output", 20<<10, "bytes of output a result carries before it is cut to head and tail, the whole offered as a resource")
	plotFl := addPlotFlags(fs)
	logs := addLogFlags(fs, slog.LevelWarn, "warn")
	setUsage(fs, "securer-runc mcp [--listen HOST:PORT [--token-file FILE]] [flags]")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return fail(stderr, exitUsage, fmt.Errorf("mcp takes no arguments, got %q", fs.Args()))
	}
	logger, err := logs.logger(stderr)
	if err != nil {
		return fail(stderr, exitUsage, err)
	}
	if plotFl.dir != "" {
		return fail(stderr, exitUsage, errors.New("mcp returns plots as image content: --plots-dir does not apply"))
	}
	host, cfg, auditCloser, err := sandbox.config(stderr, logger)
	if err != nil {
		return fail(stderr, exitUsage, err)
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
	token := ""
	if *tokenFile != "" {
		if *listen == "" {
			return fail(stderr, exitUsage, errors.New("--token-file needs --listen (stdio has no one else to keep out)"))
		}
		if token, err = readToken(*tokenFile); err != nil {
			return fail(stderr, exitUsage, err)
		}
	}
	addr := ""
	if *listen != "" && cfg.UnsafeNoSandbox {
		return fail(stderr, exitUsage, errors.New("--unsafe-no-sandbox is only allowed on stdio: over HTTP, whoever reaches the port would run code on this host"))
	}
	if *listen != "" {
		if addr, err = mcpListenAddr(*listen, token != ""); err != nil {
			return fail(stderr, exitUsage, err)
		}
	}
	if *warm < 0 || *maxSessions < 1 || *idle < 0 || *inline < 1024 {
		return fail(stderr, exitUsage, errors.New("--warm must be 0 or more, --max-sessions 1 or more, --session-idle not negative, --inline-output at least 1024"))
	}
	if err := securer.ProtectFromOOM(); err != nil {
		logger.Debug("could not lower the executor's OOM score", "err", err)
	}
	srv, err := mcpserver.New(ctx, mcpserver.Options{
		Host: host, Config: cfg, Warm: *warm, MaxSessions: *maxSessions, SessionIdle: *idle,
		InlineBytes: *inline, Version: version, Logger: logger,
	})
	if err != nil {
		code := exitSandbox
		if errors.Is(err, securer.ErrInvalidConfig) {
			code = exitUsage
		}
		return fail(stderr, code, err)
	}
	defer func() {
		if err := srv.Close(); err != nil {
			logger.Warn("closing the R boxes", "err", err)
		}
	}()
	if addr == "" {
		if err := srv.RunStdio(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, io.EOF) {
			return fail(stderr, exitProtocol, err)
		}
		return exitOK
	}
	return serveMCPHTTP(ctx, srv.HTTPHandler(token), addr, stderr, logger)
}

// mcpListenAddr checks --listen: HOST:PORT, HOST loopback unless a token
// guards it (anyone who can reach the port could run code otherwise). An
// empty HOST is 127.0.0.1.
func mcpListenAddr(listen string, haveToken bool) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("--listen %q: want HOST:PORT, e.g. 127.0.0.1:8765: %w", listen, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return "", fmt.Errorf("--listen %q: want HOST:PORT with a port number 0..65535, e.g. 127.0.0.1:8765", listen)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	loopback := host == "localhost"
	if a, err := netip.ParseAddr(host); err == nil {
		loopback = a.IsLoopback()
	}
	if !loopback && !haveToken {
		return "", fmt.Errorf("--listen %s is not a loopback address: it needs --token-file, or anyone who can reach the port could run code", listen)
	}
	return net.JoinHostPort(host, port), nil
}

// serveMCPHTTP serves h on addr until ctx ends, then lets requests in
// flight finish for a while.
func serveMCPHTTP(ctx context.Context, h http.Handler, addr string, stderr io.Writer, logger *slog.Logger) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fail(stderr, exitUsage, fmt.Errorf("--listen: %w", err))
	}
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err != nil || !ap.Addr().IsLoopback() {
		fmt.Fprintf(stderr, "securer-runc: WARNING: %s is not a loopback address: HTTP is plain text (token, code, results); keep it on a private network or put TLS in front\n", ln.Addr())
	}
	// Tests and supervisors read the address (a :0 port is picked here).
	fmt.Fprintf(stderr, "securer-runc: mcp listening on http://%s/\n", ln.Addr())
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err := <-done:
		return fail(stderr, exitSandbox, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		logger.Warn("mcp: requests still running at shutdown were cut", "err", err)
	}
	return exitOK
}
