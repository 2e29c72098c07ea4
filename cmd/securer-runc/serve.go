package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"os/user"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/service"
)

// stdio is the parent process's end of a --stdio server. Both ends are
// made pollable, so that a parent that stops reading hits the write
// deadline and Close ends a blocked read.
type stdio struct {
	in, out *os.File
}

func openStdio() (stdio, error) {
	for _, fd := range []int{0, 1} {
		if err := syscall.SetNonblock(fd, true); err != nil {
			return stdio{}, fmt.Errorf("--stdio: %w", err)
		}
	}
	return stdio{in: os.NewFile(0, "stdin"), out: os.NewFile(1, "stdout")}, nil
}

func (s stdio) Read(p []byte) (int, error)  { return s.in.Read(p) }
func (s stdio) Write(p []byte) (int, error) { return s.out.Write(p) }
func (s stdio) SetWriteDeadline(t time.Time) error {
	return s.out.SetWriteDeadline(t)
}
func (s stdio) Close() error { return errors.Join(s.in.Close(), s.out.Close()) }

func cmdServe(args []string, stderr io.Writer, logger *slog.Logger) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	useStdio := fs.Bool("stdio", false, "serve one client on stdin/stdout (for a parent process that spawns the server)")
	listen := fs.String("listen", "", "serve clients on a socket: unix:PATH, or tcp:HOST:PORT (needs --token-file)")
	tokenFile := fs.String("token-file", "", "clients must first send this file's token (auth); required with tcp:, optional with unix:")
	sockMode := fs.String("socket-mode", "0660", "file mode of the Unix socket")
	sockGroup := fs.String("socket-group", "", "group (name or id) owning the Unix socket; its members may connect")
	sandbox := addSandboxFlags(fs, "default wall-clock limit per execution", ", per session: the default and the most a client may ask")
	maxSessions := fs.Int("max-sessions", 64, "most live sessions across all clients (pool members included)")
	termGrace := fs.Duration("term-grace", 30*time.Second, "on SIGTERM, how long running executions may still take")
	var opts service.Options
	fs.IntVar(&opts.MaxClients, "max-clients", 64, "most clients connected at once")
	fs.IntVar(&opts.MaxSessionsPerClient, "max-sessions-per-client", 16, "most live sessions of one client connection (pool members included)")
	fs.DurationVar(&opts.IdleTimeout, "idle-timeout", 10*time.Minute, "close a client connection that sent nothing for this long while nothing of it ran")
	maxMessage := fs.String("max-message-bytes", "16M", "largest message a client may send")
	maxQueued := fs.String("max-queued-bytes", "8M", "most bytes of one client's requests being served or queued")
	fs.IntVar(&opts.MaxStarts, "max-starts", 4, "most sandboxes starting at once; further creates wait for a slot")
	fs.DurationVar(&opts.StartWait, "start-wait", 20*time.Second, "how long a create waits for a start slot before it gets busy (with a retry hint)")
	fs.IntVar(&opts.MaxUnauthenticated, "max-unauthenticated", 2048, "most connections still authenticating (with a token); at the cap the oldest is closed")
	fs.DurationVar(&opts.Ceilings.Timeout, "max-timeout", time.Hour, "most a client may ask as an execution's timeout")
	fs.IntVar(&opts.Ceilings.MaxToolCalls, "max-tool-calls", securer.DefaultMaxToolCalls, "most tool calls per execution a client may ask")
	fs.IntVar(&opts.Ceilings.MaxExecutions, "max-executions", 0, "most executions per session (0: no cap); also the default")
	maxOutput := fs.String("max-output", "0", "most output bytes per execution (0: no cap); also the default")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: securer-runc serve --stdio | --listen unix:PATH | --listen tcp:HOST:PORT --token-file FILE [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *useStdio == (*listen != "") {
		fmt.Fprintln(stderr, "securer-runc serve: give exactly one of --stdio and --listen unix:PATH or tcp:HOST:PORT")
		return exitUsage
	}
	token := ""
	if *tokenFile != "" {
		var err error
		if token, err = readToken(*tokenFile); err != nil {
			return fail(stderr, exitUsage, err)
		}
	}
	tcpAddr, isTCP := strings.CutPrefix(*listen, "tcp:")
	if isTCP && token == "" {
		return fail(stderr, exitUsage, errors.New("--listen tcp: needs --token-file: anyone who can reach the port could run code otherwise"))
	}
	base, auditCloser, err := sandbox.config(stderr, logger)
	if err != nil {
		return fail(stderr, exitUsage, err)
	}
	defer auditCloser.Close()
	if base.UnsafeNoSandbox && !*useStdio {
		// Every client of a socket would get R on the host as this
		// server's user; only a parent that spawns its own server may.
		return fail(stderr, exitUsage, errors.New("--unsafe-no-sandbox is only allowed with --stdio"))
	}
	// Refuse to serve at all on a host that cannot sandbox: a client
	// would only learn it at its first session.
	for _, c := range securer.CheckHost(base) {
		if !c.OK && !base.UnsafeNoSandbox {
			return fail(stderr, exitSandbox, fmt.Errorf("this host cannot sandbox: %s: %s (fix: %s); securer-runc doctor tells more", c.Name, c.Detail, c.Fix))
		}
	}
	if err := securer.ProtectFromOOM(); err != nil {
		logger.Debug("could not lower the server's OOM score", "err", err)
	}
	for _, f := range []struct {
		name string
		in   string
		set  func(int64)
	}{
		{"--max-message-bytes", *maxMessage, func(n int64) { opts.MaxMessageBytes = int(n) }},
		{"--max-queued-bytes", *maxQueued, func(n int64) { opts.MaxQueuedBytes = n }},
		{"--max-output", *maxOutput, func(n int64) { opts.Ceilings.OutputLimit = n }},
	} {
		n, err := int64(0), error(nil)
		if f.in != "0" {
			n, err = parseBytes(f.in)
		}
		if err != nil || n < 0 || (n == 0 && f.name != "--max-output") || n > 1<<40 {
			return fail(stderr, exitUsage, fmt.Errorf("%s %q: want a size such as 8M", f.name, f.in))
		}
		f.set(n)
	}
	if !base.UnsafeNoSandbox {
		// Leftovers of a server that died (kill -9, a crash) go now, not
		// at the first new session.
		reapLeftovers(base, logger)
	}
	opts.Base, opts.MaxSessions, opts.Version, opts.Logger, opts.Token = base, *maxSessions, version, logger, token
	// The memory clients can make the server hold is bounded by its
	// flags; as a soft limit it also makes the runtime give memory back
	// once a burst is over.
	ceiling := opts.MemoryCeiling()
	debug.SetMemoryLimit(ceiling)
	logger.Info("memory ceiling", "bytes", ceiling)
	srv := service.New(opts)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sigs)
	drained := make(chan error, 1)
	var signaled atomic.Bool
	go func() {
		sig := <-sigs
		signaled.Store(true)
		grace := *termGrace
		if sig == os.Interrupt {
			grace = 0
		}
		logger.Warn("shutting down: no new work; running executions may finish", "signal", sig.String(), "grace", grace)
		sctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		// A second signal (Ctrl-C during a drain) ends the grace at once.
		go func() {
			select {
			case <-sigs:
				logger.Warn("second signal: stopping running executions now")
				cancel()
			case <-sctx.Done():
			}
		}()
		drained <- srv.Shutdown(sctx)
		stop()
	}()

	if *useStdio {
		// The process's own stdin and stdout: this mode is for a parent.
		rw, err := openStdio()
		if err != nil {
			return fail(stderr, exitSandbox, err)
		}
		err = srv.ServeConn(ctx, rw)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, context.Canceled) {
			logger.Warn("client ended", "err", err)
		}
	} else if isTCP {
		ln, err := net.Listen("tcp", tcpAddr)
		if err != nil {
			return fail(stderr, exitSandbox, fmt.Errorf("--listen: %w", err))
		}
		if ap, err := netip.ParseAddrPort(ln.Addr().String()); err != nil || !ap.Addr().IsLoopback() {
			fmt.Fprintf(stderr, "securer-runc: WARNING: %s is not a loopback address: the protocol is plain text (token, code, results); keep it on a private network or put TLS in front\n", ln.Addr())
		}
		logger.Info("serving", "tcp", ln.Addr().String())
		fmt.Fprintf(stderr, "securer-runc: serving on tcp:%s\n", ln.Addr())
		if err := srv.Serve(ctx, ln); err != nil {
			return fail(stderr, exitSandbox, err)
		}
	} else {
		path, ok := strings.CutPrefix(*listen, "unix:")
		if !ok || path == "" {
			return fail(stderr, exitUsage, fmt.Errorf("--listen %q: want unix:PATH or tcp:HOST:PORT", *listen))
		}
		mode, err := strconv.ParseUint(*sockMode, 8, 32)
		if err != nil {
			return fail(stderr, exitUsage, fmt.Errorf("--socket-mode %q: %w", *sockMode, err))
		}
		gid := -1
		if *sockGroup != "" {
			if gid, err = lookupGroup(*sockGroup); err != nil {
				return fail(stderr, exitUsage, err)
			}
		}
		var ln net.Listener
		if ln, err = service.ListenUnix(path, os.FileMode(mode), gid); err != nil {
			return fail(stderr, exitSandbox, err)
		}
		defer os.Remove(path)
		logger.Info("serving", "socket", path, "mode", *sockMode, "group", *sockGroup)
		fmt.Fprintf(stderr, "securer-runc: serving on %s\n", path)
		if err := srv.Serve(ctx, ln); err != nil {
			return fail(stderr, exitSandbox, err)
		}
	}
	if signaled.Load() {
		// The drain is under way (the stdio client may have ended first):
		// let it finish closing everything.
		if err := <-drained; err != nil {
			logger.Warn("shutdown cut executions short", "err", err)
		}
	} else {
		// The client (stdio) went away: close what it left.
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	return exitOK
}

// reapLeftovers removes what sessions of dead servers left under the
// state dir and cgroup parent (as securer-runc reap does); live sessions
// of other servers are left alone.
func reapLeftovers(cfg securer.Config, logger *slog.Logger) {
	stateDir, parent := cfg.StateDir, cfg.CgroupParent
	if stateDir == "" {
		stateDir = securer.DefaultStateDir
	}
	if parent == "" {
		parent = securer.DefaultCgroupParent
	}
	if _, err := os.Stat(stateDir); err != nil {
		return // nothing ever ran here
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ids, err := securer.Reap(ctx, stateDir)
	if err != nil {
		logger.Warn("reaping leftovers at start-up", "err", err)
	}
	leaves, err := securer.ReapCgroups(stateDir, parent)
	if err != nil {
		logger.Warn("reaping leftover cgroups at start-up", "err", err)
	}
	if len(ids)+len(leaves) > 0 {
		logger.Warn("removed leftovers of a server that died", "sessions", len(ids), "cgroups", len(leaves))
	}
}

// minTokenBytes is the shortest token accepted (128 bits as hex).
const minTokenBytes = 32

// readToken reads a bearer token from a file only its owner can read,
// as ssh does with keys: a token others can read is no secret.
func readToken(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("--token-file %s: mode %s lets others read it; chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if len(token) < minTokenBytes || strings.ContainsAny(token, " \t\r\n") {
		return "", fmt.Errorf("--token-file %s: want one token of at least %d characters on one line (for example: openssl rand -hex 32)", path, minTokenBytes)
	}
	return token, nil
}

func lookupGroup(g string) (int, error) {
	if id, err := strconv.Atoi(g); err == nil {
		return id, nil
	}
	grp, err := user.LookupGroup(g)
	if err != nil {
		return 0, fmt.Errorf("--socket-group: %w", err)
	}
	return strconv.Atoi(grp.Gid)
}
