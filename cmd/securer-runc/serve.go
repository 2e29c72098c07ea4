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
	"path/filepath"
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

// cmdServe runs the session service: the flags become the server's
// options (checked, with the host), then it serves until its stdio
// client leaves or a signal drains it.
func cmdServe(args []string, stderr io.Writer) int {
	f := newServeFlags(stderr)
	if err := f.fs.Parse(args); err != nil {
		return exitUsage
	}
	if f.stdio == (f.listen != "") {
		fmt.Fprintln(stderr, "securer-runc serve: give exactly one of --stdio and --listen unix:PATH or tcp:HOST:PORT")
		return exitUsage
	}
	if f.stdio {
		// The parent's stderr (a terminal, an R console's log): no
		// record per execution unless asked.
		f.logs.def = slog.LevelWarn
	}
	logger, err := f.logs.logger(stderr)
	if err != nil {
		return fail(stderr, exitUsage, err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	// The admin endpoints come first: alive (and not ready) while the
	// host is checked and leftovers reaped.
	adm, err := startAdmin(ctx, f.adminListen, logger)
	if err != nil {
		return failCode(stderr, err)
	}
	defer adm.stop()
	if adm.metrics != nil {
		f.opts.Observer = adm.metrics
	}
	opts, auditCloser, err := f.options(stderr, logger)
	if err != nil {
		return failCode(stderr, err)
	}
	defer auditCloser.Close()
	srv := service.New(opts)
	// Warm boxes are up before the server counts as ready: a one-shot
	// right after readiness finds one.
	if err := srv.StartWarm(ctx); err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
		return fail(stderr, exitSandbox, err)
	}
	adm.serving(srv)
	d := drainOnSignal(srv, f.termGrace, stop, logger)
	defer d.stopWatching()
	if err := f.serve(ctx, srv, stderr, logger); err != nil {
		return failCode(stderr, err)
	}
	d.finish(srv, logger)
	return exitOK
}

// serveFlags is serve's command line.
type serveFlags struct {
	fs                               *flag.FlagSet
	stdio                            bool
	listen, tokenFile                string
	sockMode, sockGroup              string
	sandbox                          *sandboxFlags
	maxSessions                      int
	termGrace                        time.Duration
	maxMessage, maxQueued, maxOutput string
	adminListen                      string
	logs                             *logFlags
	// opts holds the server options set by flags of their own.
	opts service.Options
}

func newServeFlags(stderr io.Writer) *serveFlags {
	f := &serveFlags{fs: flag.NewFlagSet("serve", flag.ContinueOnError)}
	fs := f.fs
	fs.SetOutput(stderr)
	fs.BoolVar(&f.stdio, "stdio", false, "serve one client on stdin/stdout (for a parent process that spawns the server)")
	fs.StringVar(&f.listen, "listen", "", "serve clients on a socket: unix:PATH, or tcp:HOST:PORT (needs --token-file)")
	fs.StringVar(&f.tokenFile, "token-file", "", "clients must first send this file's token (auth); required with tcp:, optional with unix:")
	fs.StringVar(&f.sockMode, "socket-mode", "0660", "file mode of the Unix socket")
	fs.StringVar(&f.sockGroup, "socket-group", "", "group (name or id) owning the Unix socket; its members may connect")
	f.sandbox = addSandboxFlags(fs, "default wall-clock limit per execution", ", per session: the default and the most a client may ask")
	fs.IntVar(&f.maxSessions, "max-sessions", 64, "most live sessions across all clients (pool members included)")
	fs.IntVar(&f.opts.Warm, "warm", 0, "keep this many boxes ready (the defaults, no tools) for one-shot executions and plain sessions; they count toward --max-sessions")
	fs.DurationVar(&f.termGrace, "term-grace", 30*time.Second, "on SIGTERM, how long running executions may still take")
	opts := &f.opts
	fs.IntVar(&opts.MaxClients, "max-clients", 64, "most clients connected at once")
	fs.IntVar(&opts.MaxSessionsPerClient, "max-sessions-per-client", 16, "most live sessions of one client connection (pool members included)")
	fs.DurationVar(&opts.IdleTimeout, "idle-timeout", 10*time.Minute, "close a client connection that sent nothing for this long while nothing of it ran")
	fs.StringVar(&f.maxMessage, "max-message-bytes", "16M", "largest message a client may send")
	fs.StringVar(&f.maxQueued, "max-queued-bytes", "8M", "most bytes of one client's requests being served or queued")
	fs.IntVar(&opts.MaxStarts, "max-starts", 4, "most sandboxes starting at once; further creates wait for a slot")
	fs.DurationVar(&opts.StartWait, "start-wait", 20*time.Second, "how long a create waits for a start slot before it gets busy (with a retry hint)")
	fs.IntVar(&opts.MaxUnauthenticated, "max-unauthenticated", 2048, "most connections still authenticating (with a token); at the cap the oldest is closed")
	fs.DurationVar(&opts.Ceilings.Timeout, "max-timeout", time.Hour, "most a client may ask as an execution's timeout")
	fs.IntVar(&opts.Ceilings.MaxToolCalls, "max-tool-calls", securer.DefaultMaxToolCalls, "most tool calls per execution a client may ask")
	fs.IntVar(&opts.Ceilings.MaxExecutions, "max-executions", 0, "most executions per session (0: no cap); also the default")
	fs.StringVar(&f.maxOutput, "max-output", "0", "most output bytes per execution (0: no cap); also the default")
	fs.StringVar(&f.adminListen, "admin-listen", "", "serve /healthz, /readyz and /metrics over HTTP on HOST:PORT or unix:PATH")
	f.logs = addLogFlags(fs, slog.LevelInfo, "info; warn with --stdio, whose stderr is its parent's")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: securer-runc serve --stdio | --listen unix:PATH | --listen tcp:HOST:PORT --token-file FILE [flags]")
		fs.PrintDefaults()
	}
	return f
}

// exitError is a failure with the exit code it calls for.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

// failCode reports err and returns its exit code (exitSandbox unless it
// says otherwise).
func failCode(stderr io.Writer, err error) int {
	code := exitSandbox
	if e, ok := errors.AsType[*exitError](err); ok {
		code = e.code
	}
	return fail(stderr, code, err)
}

// boxCapacity is --max-sessions capped at the boxes the IDs of this
// process's user namespace hold (ids, or err, from securer.BoxIDLayout;
// 27 in a pod with hostUsers: false), so that the server refuses the
// sessions past them as over capacity, and its readiness says so, rather
// than failing each start. Too few IDs for one box: it cannot sandbox.
func boxCapacity(maxSessions int, ids securer.BoxIDs, err error, logger *slog.Logger) (int, error) {
	if err != nil {
		return 0, fmt.Errorf("this host cannot sandbox: %w; securer-runc doctor tells more", err)
	}
	if ids.Boxes < maxSessions {
		logger.Warn("this user namespace has IDs for fewer boxes than --max-sessions: serving at most that many sessions",
			"max_sessions", maxSessions, "boxes", ids.Boxes, "namespace_ids", ids.Available, "ids_per_box", ids.Size)
		return ids.Boxes, nil
	}
	return maxSessions, nil
}

// options checks the flags and the host and turns them into the
// server's options; the returned closer ends the audit log. It also
// prepares the process: OOM score, leftovers of a dead server, the
// memory limit.
func (f *serveFlags) options(stderr io.Writer, logger *slog.Logger) (service.Options, io.Closer, error) {
	opts := f.opts
	token := ""
	if f.tokenFile != "" {
		var err error
		if token, err = readToken(f.tokenFile); err != nil {
			return opts, nil, exitWith(exitUsage, err)
		}
	}
	if strings.HasPrefix(f.listen, "tcp:") && token == "" {
		return opts, nil, exitWith(exitUsage, errors.New("--listen tcp: needs --token-file: anyone who can reach the port could run code otherwise"))
	}
	host, base, auditCloser, err := f.sandbox.config(stderr, logger)
	if err != nil {
		return opts, nil, exitWith(exitUsage, err)
	}
	refuse := func(code int, err error) (service.Options, io.Closer, error) {
		auditCloser.Close()
		return opts, nil, exitWith(code, err)
	}
	if base.UnsafeNoSandbox && !f.stdio {
		// Every client of a socket would get R on the host as this
		// server's user; only a parent that spawns its own server may.
		return refuse(exitUsage, errors.New("--unsafe-no-sandbox is only allowed with --stdio"))
	}
	// Refuse to serve at all on a host that cannot sandbox: a client
	// would only learn it at its first session.
	for _, c := range host.Check() {
		if !c.OK && !base.UnsafeNoSandbox {
			return refuse(exitSandbox, fmt.Errorf("this host cannot sandbox: %s: %s (fix: %s); securer-runc doctor tells more", c.Name, c.Detail, c.Fix))
		}
	}
	maxSessions := f.maxSessions
	if !base.UnsafeNoSandbox && !host.UnsafeNoUserNamespace {
		ids, err := securer.BoxIDLayout()
		maxSessions, err = boxCapacity(maxSessions, ids, err, logger)
		if err != nil {
			return refuse(exitSandbox, err)
		}
	}
	if err := securer.ProtectFromOOM(); err != nil {
		logger.Debug("could not lower the server's OOM score", "err", err)
	}
	if err := f.sizes(&opts); err != nil {
		return refuse(exitUsage, err)
	}
	if !base.UnsafeNoSandbox {
		// Leftovers of a server that died (kill -9, a crash) go now, not
		// at the first new session.
		reapLeftovers(host, logger, opts.Observer)
	}
	if opts.Warm < 0 || opts.Warm > maxSessions {
		return opts, nil, exitWith(exitUsage, fmt.Errorf("--warm %d: want 0 to --max-sessions (%d)", opts.Warm, maxSessions))
	}
	if opts.Warm > 0 && base.UnsafeNoSandbox {
		return opts, nil, exitWith(exitUsage, errors.New("--warm needs the sandbox: warm boxes serve one-shots by fresh executions"))
	}
	opts.Host, opts.Base, opts.MaxSessions, opts.Version, opts.Logger, opts.Token = host, base, maxSessions, version, logger, token
	// The memory clients can make the server hold is bounded by its
	// flags; as a soft limit it also makes the runtime give memory back
	// once a burst is over.
	ceiling := opts.MemoryCeiling()
	debug.SetMemoryLimit(ceiling)
	logger.Info("memory ceiling", "bytes", ceiling)
	return opts, auditCloser, nil
}

// sizes sets the options given as sizes (8M).
func (f *serveFlags) sizes(opts *service.Options) error {
	for _, s := range []struct {
		name string
		in   string
		set  func(int64)
	}{
		{"--max-message-bytes", f.maxMessage, func(n int64) { opts.MaxMessageBytes = int(n) }},
		{"--max-queued-bytes", f.maxQueued, func(n int64) { opts.MaxQueuedBytes = n }},
		{"--max-output", f.maxOutput, func(n int64) { opts.Ceilings.OutputLimit = n }},
	} {
		n, err := int64(0), error(nil)
		if s.in != "0" {
			n, err = parseBytes(s.in)
		}
		if err != nil || n < 0 || (n == 0 && s.name != "--max-output") || n > 1<<40 {
			return fmt.Errorf("%s %q: want a size such as 8M", s.name, s.in)
		}
		s.set(n)
	}
	return nil
}

// serve serves clients on the transport the flags name until the client
// (stdio) leaves or ctx ends.
func (f *serveFlags) serve(ctx context.Context, srv *service.Server, stderr io.Writer, logger *slog.Logger) error {
	if f.stdio {
		// The process's own stdin and stdout: this mode is for a parent.
		rw, err := openStdio()
		if err != nil {
			return exitWith(exitSandbox, err)
		}
		err = srv.ServeConn(ctx, rw)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, context.Canceled) {
			logger.Warn("client ended", "err", err)
		}
		return nil
	}
	ln, cleanup, err := f.listener(stderr, logger)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := srv.Serve(ctx, ln); err != nil {
		return exitWith(exitSandbox, err)
	}
	return nil
}

// listener makes the --listen socket; cleanup removes a Unix socket's
// file.
func (f *serveFlags) listener(stderr io.Writer, logger *slog.Logger) (ln net.Listener, cleanup func(), err error) {
	if tcpAddr, ok := strings.CutPrefix(f.listen, "tcp:"); ok {
		ln, err := net.Listen("tcp", tcpAddr)
		if err != nil {
			return nil, nil, exitWith(exitSandbox, fmt.Errorf("--listen: %w", err))
		}
		if ap, err := netip.ParseAddrPort(ln.Addr().String()); err != nil || !ap.Addr().IsLoopback() {
			fmt.Fprintf(stderr, "securer-runc: WARNING: %s is not a loopback address: the protocol is plain text (token, code, results); keep it on a private network or put TLS in front\n", ln.Addr())
		}
		logger.Info("serving", "tcp", ln.Addr().String())
		fmt.Fprintf(stderr, "securer-runc: serving on tcp:%s\n", ln.Addr())
		return ln, func() {}, nil
	}
	path, ok := strings.CutPrefix(f.listen, "unix:")
	if !ok || path == "" {
		return nil, nil, exitWith(exitUsage, fmt.Errorf("--listen %q: want unix:PATH or tcp:HOST:PORT", f.listen))
	}
	mode, err := strconv.ParseUint(f.sockMode, 8, 32)
	if err != nil {
		return nil, nil, exitWith(exitUsage, fmt.Errorf("--socket-mode %q: %w", f.sockMode, err))
	}
	// The default socket (/run/securer-runc/serve.sock) is in a dir of its
	// own, which a host without the systemd unit may lack: made
	// traversable only, as the unit's RuntimeDirectoryMode.
	if dir := filepath.Dir(path); dir != "" {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			err := os.Mkdir(dir, 0o711)
			if err == nil {
				// Mkdir's mode passes through the umask (077 on hardened
				// hosts would lock out --socket-group users): set it.
				err = os.Chmod(dir, 0o711)
			}
			if err != nil && !errors.Is(err, os.ErrExist) {
				return nil, nil, exitWith(exitSandbox, fmt.Errorf("--listen: the socket's dir: %w", err))
			}
		}
	}
	gid := -1
	if f.sockGroup != "" {
		if gid, err = lookupGroup(f.sockGroup); err != nil {
			return nil, nil, exitWith(exitUsage, err)
		}
	}
	if ln, err = service.ListenUnix(path, os.FileMode(mode), gid); err != nil {
		return nil, nil, exitWith(exitSandbox, err)
	}
	warnSocketMode(logger, path, os.FileMode(mode), f.tokenFile != "")
	logger.Info("serving", "socket", path, "mode", f.sockMode, "group", f.sockGroup)
	fmt.Fprintf(stderr, "securer-runc: serving on %s\n", path)
	return ln, func() { os.Remove(path) }, nil
}

// warnSocketMode warns when the socket's mode lets every local user
// connect (any permission bit for others): without a token each could run
// code in the server's sandboxes.
func warnSocketMode(logger *slog.Logger, path string, mode os.FileMode, token bool) bool {
	if mode.Perm()&0o007 == 0 {
		return false
	}
	msg := "--socket-mode lets every local user connect and run code in the server's sandboxes; use 0660 with --socket-group, or --token-file"
	if token {
		msg = "--socket-mode lets every local user connect (each still needs the token); 0660 with --socket-group keeps others out"
	}
	logger.Warn(msg, "socket", path, "mode", fmt.Sprintf("%04o", mode.Perm()))
	return true
}

// drain ends the server on SIGTERM (after --term-grace) or SIGINT (at
// once); a second signal cuts the grace short.
type drain struct {
	sigs     chan os.Signal
	drained  chan error
	signaled atomic.Bool
}

// drainOnSignal starts watching for the signals; stop is called once the
// drain has ended, to end serving.
func drainOnSignal(srv *service.Server, termGrace time.Duration, stop func(), logger *slog.Logger) *drain {
	d := &drain{sigs: make(chan os.Signal, 2), drained: make(chan error, 1)}
	signal.Notify(d.sigs, syscall.SIGTERM, os.Interrupt)
	go func() {
		sig := <-d.sigs
		d.signaled.Store(true)
		grace := termGrace
		if sig == os.Interrupt {
			grace = 0
		}
		logger.Warn("shutting down: no new work; running executions may finish", "signal", sig.String(), "grace", grace)
		sctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		// A second signal (Ctrl-C during a drain) ends the grace at once.
		go func() {
			select {
			case <-d.sigs:
				logger.Warn("second signal: stopping running executions now")
				cancel()
			case <-sctx.Done():
			}
		}()
		d.drained <- srv.Shutdown(sctx)
		stop()
	}()
	return d
}

func (d *drain) stopWatching() { signal.Stop(d.sigs) }

// finish runs once serving has ended: a drain under way (the stdio
// client may have ended first) is let finish closing everything;
// otherwise the client (stdio) went away and what it left is closed.
func (d *drain) finish(srv *service.Server, logger *slog.Logger) {
	if d.signaled.Load() {
		if err := <-d.drained; err != nil {
			logger.Warn("shutdown cut executions short", "err", err)
		}
		return
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_ = srv.Shutdown(sctx)
	cancel()
}

// reapLeftovers removes what sessions of dead servers left under the
// state dir and cgroup parent (as securer-runc reap does); live sessions
// of other servers are left alone.
func reapLeftovers(host securer.Host, logger *slog.Logger, obs service.Observer) {
	stateDir := host.StateDir
	if stateDir == "" {
		stateDir = securer.DefaultStateDir
	}
	if _, err := os.Stat(stateDir); err != nil {
		return // nothing ever ran here
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reaped, err := host.Reap(ctx)
	if err != nil {
		logger.Warn("reaping leftovers at start-up", "err", err)
	}
	if n := len(reaped.Sessions) + len(reaped.Cgroups); n > 0 {
		if obs != nil {
			obs.Reaped(len(reaped.Sessions), len(reaped.Cgroups))
		}
		logger.Warn("removed leftovers of a server that died", "sessions", len(reaped.Sessions), "cgroups", len(reaped.Cgroups))
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
