package service

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	securer "securer-runc"
	"securer-runc/bridge"
	"securer-runc/rvalue"
)

// conn is one client: its sessions, pools and executions.
type conn struct {
	srv *Server
	rw  io.ReadWriteCloser

	wmu  sync.Mutex // one event at a time on the wire
	dead bool       // a write failed: the client is gone

	ctx    context.Context // ends when the client goes
	cancel context.CancelFunc

	mu       sync.Mutex
	sessions map[string]*securer.Session
	pools    map[string]*clientPool
	execs    map[string]*execution
	next     int
	work     sync.WaitGroup // requests being served
	inflight chan struct{}  // a token per request being served
}

type clientPool struct {
	pool *securer.Pool
	size int
}

// execution is one running execute request: how to cancel it and the
// tool calls waiting for the client's answer.
type execution struct {
	id     string
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	calls    map[string]chan toolAnswer
	nextCall int
}

type toolAnswer struct {
	value any
	err   error
}

func newConn(ctx context.Context, s *Server, rw io.ReadWriteCloser) *conn {
	c := &conn{srv: s, rw: rw, sessions: map[string]*securer.Session{},
		pools: map[string]*clientPool{}, execs: map[string]*execution{},
		inflight: make(chan struct{}, maxInFlight)}
	c.ctx, c.cancel = context.WithCancel(ctx)
	return c
}

// maxInFlight caps one client's requests being served at once (each may
// hold up to MaxRequestBytes of code while it waits for a session).
const maxInFlight = 32

func (c *conn) serve() error {
	defer c.cleanup()
	c.send(helloEvent{Type: "hello", Protocol: ProtocolVersion, Server: "securer-runc " + c.srv.opts.Version, ArgTypes: bridge.ArgTypes(),
		Sandboxed: !c.srv.opts.Base.UnsafeNoSandbox, AuthRequired: c.srv.opts.Token != ""})
	r := bridge.NewReader(c.rw, MaxRequestBytes)
	lines := make(chan []byte)
	readErr := make(chan error, 1)
	authed := make(chan struct{})
	needAuth := c.srv.opts.Token != ""
	if needAuth {
		// A stranger's first line is small, and nothing more is read
		// from it until it has authenticated.
		r.SetMaxFrame(authFrameBytes)
	}
	go func() {
		for first := needAuth; ; first = false {
			b, err := r.ReadFrame()
			if err != nil {
				readErr <- err
				return
			}
			line := append([]byte(nil), b...)
			select {
			case lines <- line:
			case <-c.ctx.Done():
				readErr <- c.ctx.Err()
				return
			}
			if first {
				select {
				case <-authed:
					r.SetMaxFrame(MaxRequestBytes)
				case <-c.ctx.Done():
					readErr <- c.ctx.Err()
					return
				}
			}
		}
	}()
	if needAuth {
		id, err := c.authenticate(lines, readErr)
		if err != nil {
			c.srv.authDone()
			return err
		}
		if err := c.srv.authenticated(c); err != nil {
			c.sendError(id, err)
			return err
		}
		c.send(okEvent{Type: "ok", ID: id})
		close(authed)
	}
	for {
		select {
		case line := <-lines:
			c.handle(line)
		case err := <-readErr:
			if errors.Is(err, bridge.ErrFrameTooLarge) || errors.Is(err, bridge.ErrProtocol) {
				c.sendError("", fmt.Errorf("%w: %v; closing the connection", errBadRequest, err))
			}
			return err
		case <-c.ctx.Done():
			return c.ctx.Err()
		}
	}
}

// authFailDelay slows down guessing: a failed attempt costs a connection
// and this long.
const authFailDelay = time.Second

// authFrameBytes caps a connection's first line where a token is needed.
const authFrameBytes = 4 << 10

// authenticate takes the client's first request, which must be auth with
// the server's token, and returns its id; anything else ends the
// connection.
func (c *conn) authenticate(lines <-chan []byte, readErr <-chan error) (string, error) {
	timer := time.NewTimer(c.srv.opts.AuthTimeout)
	defer timer.Stop()
	var fail error
	id := ""
	select {
	case line := <-lines:
		req, err := decodeRequest(line)
		switch {
		case err != nil || req.Op != "auth":
			fail = fmt.Errorf("%w: the first request must be auth with the server's token", errUnauthorized)
		case !tokenMatches(req.Token, c.srv.opts.Token):
			id, fail = req.ID, fmt.Errorf("%w: wrong token", errUnauthorized)
		default:
			return req.ID, nil
		}
	case err := <-readErr:
		if !errors.Is(err, bridge.ErrFrameTooLarge) && !errors.Is(err, bridge.ErrProtocol) {
			return "", err // gone
		}
		fail = fmt.Errorf("%w: the first request must be auth with the server's token (%v)", errUnauthorized, err)
	case <-timer.C:
		fail = fmt.Errorf("%w: no auth within %s", errUnauthorized, c.srv.opts.AuthTimeout)
	case <-c.ctx.Done():
		return "", c.ctx.Err()
	}
	c.srv.logRefusal(fail)
	select {
	case <-time.After(authFailDelay):
	case <-c.ctx.Done():
	}
	c.sendError(id, fail)
	return "", fail
}

// tokenMatches compares in constant time, lengths included (through
// hashes), so that timing tells nothing about the token.
func tokenMatches(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// cleanup runs when the client is gone: cancel what runs, close what it
// made, wait for the request goroutines.
func (c *conn) cleanup() {
	c.cancel()
	c.rw.Close()
	c.closeAll()
	c.work.Wait()
}

// shutdown is the server's drain reaching this client: close its sessions
// (ending executions still running) and its connection.
func (c *conn) shutdown() {
	c.closeAll()
	c.cancel()
	c.rw.Close()
}

// drain stops this client's pools from handing out sessions and lets what
// runs on them finish until ctx ends.
func (c *conn) drain(ctx context.Context) {
	c.mu.Lock()
	pools := make([]*clientPool, 0, len(c.pools))
	for _, p := range c.pools {
		pools = append(pools, p)
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range pools {
		wg.Go(func() { _ = p.pool.Shutdown(ctx) })
	}
	wg.Wait()
}

func (c *conn) closeAll() {
	c.mu.Lock()
	sessions, pools := c.sessions, c.pools
	c.sessions, c.pools = map[string]*securer.Session{}, map[string]*clientPool{}
	for _, e := range c.execs {
		e.cancel()
	}
	c.mu.Unlock()
	for _, s := range sessions {
		s.Close()
		c.srv.release(1)
	}
	for _, p := range pools {
		p.pool.Close()
		c.srv.release(p.size)
	}
}

// send writes one event; a client that stopped reading is its own loss,
// noticed by the reader.
func (c *conn) send(ev any) {
	b, err := json.Marshal(ev)
	if err != nil {
		c.srv.log.Error("encode event", "err", err)
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.dead {
		return
	}
	// A client that stops reading must not hold executions (and their
	// containers) forever: past the deadline it counts as gone.
	if d, ok := c.rw.(interface{ SetWriteDeadline(time.Time) error }); ok {
		_ = d.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout))
	}
	if _, err := c.rw.Write(append(b, '\n')); err != nil {
		c.dead = true
		c.srv.log.Warn("client not reading; dropping it", "err", err)
		c.cancel()
		c.rw.Close()
	}
}

func (c *conn) sendError(id string, err error) {
	c.send(errorEvent{Type: "error", ID: id, Error: errorBody{Code: errCode(err), Message: err.Error()}})
}

func (c *conn) name(prefix string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	return prefix + strconv.Itoa(c.next)
}

func (c *conn) handle(line []byte) {
	req, err := decodeRequest(line)
	if err != nil {
		// Tag the error with the request's id when it has a readable one.
		var head struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(line, &head)
		c.sendError(head.ID, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	if req.ID == "" && req.Op != "tool_result" {
		c.sendError("", fmt.Errorf("%w: every request needs an id", errBadRequest))
		return
	}
	switch req.Op {
	case "tool_result":
		// Answered inline: never waits.
		if err := c.toolResult(req); err != nil {
			c.sendError(req.ID, err)
		}
		return
	case "cancel":
		c.mu.Lock()
		e := c.execs[req.Target]
		c.mu.Unlock()
		if e == nil {
			c.sendError(req.ID, fmt.Errorf("%w: no running execution %q", errNotFound, req.Target))
			return
		}
		e.cancel()
		c.send(okEvent{Type: "ok", ID: req.ID})
		return
	case "ping":
		c.send(okEvent{Type: "pong", ID: req.ID})
		return
	case "auth":
		// Only reached once authenticated, or on a server without a token.
		c.send(okEvent{Type: "ok", ID: req.ID})
		return
	}
	run, err := c.prepare(req)
	if err != nil {
		c.sendError(req.ID, err)
		return
	}
	select {
	case c.inflight <- struct{}{}:
	default:
		if e := c.unregister(req); e != nil {
			e.cancel()
		}
		c.sendError(req.ID, fmt.Errorf("%w: %d requests of this connection are already being served", errTooMany, maxInFlight))
		return
	}
	// Each request runs on its own: an execution waiting on R must not
	// hold up the tool answers it needs.
	c.work.Add(1)
	go func() {
		defer c.work.Done()
		defer func() { <-c.inflight }()
		defer func() {
			// A bug serving one request must not take the server, and
			// every other client's sandboxes, down with it.
			if r := recover(); r != nil {
				c.srv.log.Error("panic serving a request", "op", req.Op, "panic", r, "stack", string(debug.Stack()))
				c.sendError(req.ID, fmt.Errorf("internal error serving %s", req.Op))
			}
		}()
		if err := run(req); err != nil {
			c.sendError(req.ID, err)
		}
	}()
}

// prepare picks the handler of a request that runs on its own goroutine.
// An execution is checked and registered here, before the next line is
// read, so that a cancel on that line finds it.
func (c *conn) prepare(req *request) (func(*request) error, error) {
	if req.Op != "execute" {
		run := map[string]func(*request) error{
			"create_session":  c.createSession,
			"close_session":   c.closeSession,
			"restart_session": c.restartSession,
			"create_pool":     c.createPool,
			"pool_status":     c.poolStatus,
			"close_pool":      c.closePool,
		}[req.Op]
		if run == nil {
			return nil, fmt.Errorf("%w: unknown op %q", errBadRequest, req.Op)
		}
		return run, nil
	}
	// Code over the server's ceiling is refused before it is queued:
	// waiting requests must not hold much memory.
	if len(req.Code) > c.srv.opts.Base.MaxCodeBytes {
		return nil, fmt.Errorf("%w: code is %d bytes, over the server's %d", securer.ErrRejected, len(req.Code), c.srv.opts.Base.MaxCodeBytes)
	}
	e, err := c.register(req.ID)
	if err != nil {
		return nil, err
	}
	return func(req *request) error { return c.execute(req, e) }, nil
}

// unregister drops a registered execution that will not run.
func (c *conn) unregister(req *request) *execution {
	if req.Op != "execute" {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.execs[req.ID]
	delete(c.execs, req.ID)
	return e
}

// register books a running execution under its request id.
func (c *conn) register(id string) (*execution, error) {
	ctx, cancel := context.WithCancel(c.ctx)
	e := &execution{id: id, ctx: ctx, cancel: cancel, calls: map[string]chan toolAnswer{}}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.execs[id] != nil {
		cancel()
		return nil, fmt.Errorf("%w: request id %q is already running", errBadRequest, id)
	}
	c.execs[id] = e
	return e, nil
}

// config turns a client's tools and options into a session config within
// the operator's limits.
func (c *conn) config(tools []toolDecl, o *sessionOptions) (securer.Config, error) {
	cfg := c.srv.opts.Base
	cfg.Stdout, cfg.Stderr = nil, nil
	if o != nil {
		max := c.srv.opts.Base.Limits
		pick := func(name string, asked, ceiling int64, into *int64) error {
			if asked < 0 || (ceiling > 0 && asked > ceiling) {
				return fmt.Errorf("%w: %s %d is over the server's %d", securer.ErrInvalidConfig, name, asked, ceiling)
			}
			if asked > 0 {
				*into = asked
			}
			return nil
		}
		if err := errors.Join(
			pick("memory_bytes", o.MemoryBytes, max.MemoryBytes, &cfg.Limits.MemoryBytes),
			pick("pids", o.Pids, max.Pids, &cfg.Limits.Pids),
			pick("tmp_bytes", o.TmpBytes, max.TmpBytes, &cfg.Limits.TmpBytes)); err != nil {
			return cfg, err
		}
		// The operator's file-size limit is the ceiling (it defaults to
		// the operator's /tmp size).
		fsize := int64(cfg.Limits.FileSizeBytes)
		if err := pick("fsize_bytes", o.FsizeBytes, int64(max.FileSizeBytes), &fsize); err != nil {
			return cfg, err
		}
		cfg.Limits.FileSizeBytes = uint64(fsize)
		if o.CPUs < 0 || (max.CPUs > 0 && o.CPUs > max.CPUs) {
			return cfg, fmt.Errorf("%w: cpus %g is over the server's %g", securer.ErrInvalidConfig, o.CPUs, max.CPUs)
		}
		if o.CPUs > 0 {
			cfg.Limits.CPUs = o.CPUs
		}
		d, err := seconds("timeout", o.Timeout)
		if err != nil {
			return cfg, err
		}
		if d > 0 {
			cfg.Timeout = d
		}
		if o.MaxToolCalls > 0 {
			cfg.MaxToolCalls = o.MaxToolCalls
		}
		if o.OutputLimit > 0 {
			cfg.OutputLimit = o.OutputLimit
		}
		if o.MaxExecutions > 0 {
			cfg.MaxExecutions = o.MaxExecutions
		}
		if o.MaxCodeBytes < 0 || o.MaxCodeBytes > c.srv.opts.Base.MaxCodeBytes {
			return cfg, fmt.Errorf("%w: max_code_bytes %d is over the server's %d", securer.ErrInvalidConfig, o.MaxCodeBytes, c.srv.opts.Base.MaxCodeBytes)
		}
		if o.MaxCodeBytes > 0 {
			cfg.MaxCodeBytes = o.MaxCodeBytes
		}
		cfg.Preload = slices.Concat(cfg.Preload, o.Preload)
	}
	cfg.Tools = nil
	for _, d := range tools {
		timeout, err := seconds("tool timeout", d.Timeout)
		if err != nil {
			return cfg, err
		}
		t := securer.Tool{Name: d.Name, Description: d.Description, Timeout: timeout, Handler: c.clientTool(d.Name)}
		for _, a := range d.Args {
			t.Args = append(t.Args, securer.Arg{Name: a.Name, Type: a.Type})
		}
		cfg.Tools = append(cfg.Tools, t)
	}
	return cfg, nil
}

// maxSeconds bounds every duration a client gives (a week).
const maxSeconds = 7 * 24 * 3600

// seconds turns a client's seconds into a duration, refusing what is
// negative or absurdly long (which would overflow).
func seconds(name string, v float64) (time.Duration, error) {
	if v < 0 || v > maxSeconds || v != v {
		return 0, fmt.Errorf("%w: %s must be between 0 and %d seconds, got %g", securer.ErrInvalidConfig, name, maxSeconds, v)
	}
	return time.Duration(v * float64(time.Second)), nil
}

func (c *conn) createSession(req *request) error {
	cfg, err := c.config(req.Tools, req.Options)
	if err != nil {
		return err
	}
	if err := c.srv.reserve(1); err != nil {
		return err
	}
	s, err := securer.NewSession(c.ctx, cfg)
	if err != nil {
		c.srv.release(1)
		return err
	}
	name := c.name("s")
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		s.Close()
		c.srv.release(1)
		return c.ctx.Err()
	}
	c.sessions[name] = s
	c.mu.Unlock()
	c.send(sessionEvent{Type: "session", ID: req.ID, Session: name, Sandboxed: !cfg.UnsafeNoSandbox})
	return nil
}

func (c *conn) session(name string) (*securer.Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[name]
	if s == nil {
		return nil, fmt.Errorf("%w: no session %q on this connection", errNotFound, name)
	}
	return s, nil
}

func (c *conn) closeSession(req *request) error {
	c.mu.Lock()
	s := c.sessions[req.Session]
	delete(c.sessions, req.Session)
	c.mu.Unlock()
	if s == nil {
		return fmt.Errorf("%w: no session %q on this connection", errNotFound, req.Session)
	}
	err := s.Close()
	c.srv.release(1)
	if err != nil {
		return err
	}
	c.send(okEvent{Type: "closed", ID: req.ID})
	return nil
}

func (c *conn) restartSession(req *request) error {
	s, err := c.session(req.Session)
	if err != nil {
		return err
	}
	if c.srv.isDraining() {
		return errDraining
	}
	if err := s.Restart(c.ctx); err != nil {
		return err
	}
	c.send(okEvent{Type: "restarted", ID: req.ID})
	return nil
}

var resets = map[string]securer.ResetPolicy{
	"": securer.ResetFresh, "fresh": securer.ResetFresh, "none": securer.ResetNone, "restart": securer.ResetRestart,
}

func (c *conn) createPool(req *request) error {
	reset, ok := resets[req.Reset]
	if !ok {
		return fmt.Errorf("%w: reset must be fresh, none or restart, not %q", errBadRequest, req.Reset)
	}
	if req.Size < 1 || req.Size > c.srv.opts.MaxSessions {
		return fmt.Errorf("%w: pool size must be between 1 and the server's %d sessions, got %d", errBadRequest, c.srv.opts.MaxSessions, req.Size)
	}
	cfg, err := c.config(req.Tools, req.Options)
	if err != nil {
		return err
	}
	if err := c.srv.reserve(req.Size); err != nil {
		return err
	}
	p, err := securer.NewPool(c.ctx, cfg, req.Size, reset)
	if err != nil {
		c.srv.release(req.Size)
		return err
	}
	name := c.name("p")
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		p.Close()
		c.srv.release(req.Size)
		return c.ctx.Err()
	}
	c.pools[name] = &clientPool{pool: p, size: req.Size}
	c.mu.Unlock()
	st := p.Status()
	c.send(poolEvent{Type: "pool", ID: req.ID, Pool: name, Status: &st})
	return nil
}

func (c *conn) pool(name string) (*clientPool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pools[name]
	if p == nil {
		return nil, fmt.Errorf("%w: no pool %q on this connection", errNotFound, name)
	}
	return p, nil
}

func (c *conn) poolStatus(req *request) error {
	p, err := c.pool(req.Pool)
	if err != nil {
		return err
	}
	st := p.pool.Status()
	c.send(poolEvent{Type: "pool", ID: req.ID, Pool: req.Pool, Status: &st})
	return nil
}

func (c *conn) closePool(req *request) error {
	c.mu.Lock()
	p := c.pools[req.Pool]
	delete(c.pools, req.Pool)
	c.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%w: no pool %q on this connection", errNotFound, req.Pool)
	}
	err := p.pool.Close()
	c.srv.release(p.size)
	if err != nil {
		return err
	}
	c.send(okEvent{Type: "closed", ID: req.ID})
	return nil
}

// execKey carries the execution to the client tools it calls.
type execKey struct{}

func (c *conn) execute(req *request, e *execution) error {
	defer func() {
		e.cancel()
		c.mu.Lock()
		delete(c.execs, req.ID)
		c.mu.Unlock()
	}()
	if (req.Session == "") == (req.Pool == "") {
		return fmt.Errorf("%w: execute needs exactly one of session and pool", errBadRequest)
	}
	timeout, err := seconds("timeout", req.Timeout)
	if err != nil {
		return err
	}
	var s *securer.Session
	var p *clientPool
	if req.Session != "" {
		s, err = c.session(req.Session)
	} else {
		p, err = c.pool(req.Pool)
	}
	if err != nil {
		return err
	}
	if err := c.srv.admitExecution(); err != nil {
		return err
	}
	defer c.srv.executionDone()
	ctx := e.ctx
	ctx = context.WithValue(ctx, execKey{}, e)
	opts := securer.ExecOptions{Fresh: req.Fresh, Timeout: timeout,
		Stdout: &textStream{c: c, id: req.ID, kind: "stdout"}, Stderr: &textStream{c: c, id: req.ID, kind: "stderr"}}
	var res *securer.Result
	if s != nil {
		res, err = s.ExecuteWith(ctx, req.Code, opts)
	} else {
		res, err = p.pool.ExecuteWith(ctx, req.Code, opts)
	}
	opts.Stdout.(*textStream).flush()
	opts.Stderr.(*textStream).flush()
	if res == nil && p != nil {
		switch {
		case errors.Is(err, securer.ErrPoolClosed) && c.srv.isDraining():
			return fmt.Errorf("%w: %w", errDraining, err)
		case errors.Is(err, context.Canceled) && c.ctx.Err() == nil:
			// Cancelled while waiting for a pool session: still a result.
			res = &securer.Result{Verdict: securer.VerdictCanceled, Value: rvalue.Null(),
				Detail: "canceled while waiting for a pool session; nothing ran"}
		}
	}
	if res == nil {
		return err
	}
	plain, perr := res.Value.PlainJSON()
	if perr != nil {
		plain = []byte("null")
	}
	c.send(resultEvent{Type: "result", ID: req.ID, Result: res, ValuePlain: plain})
	return nil
}

// clientTool is a tool the client answers: the call goes out as an event,
// the handler waits for the client's tool_result or the call's end.
func (c *conn) clientTool(name string) securer.ToolFunc {
	return func(ctx context.Context, args map[string]securer.Value) (any, error) {
		e, _ := ctx.Value(execKey{}).(*execution)
		if e == nil {
			return nil, errors.New("tool called outside an execution")
		}
		e.mu.Lock()
		e.nextCall++
		call := e.id + "." + strconv.Itoa(e.nextCall)
		ch := make(chan toolAnswer, 1)
		e.calls[call] = ch
		e.mu.Unlock()
		defer func() {
			e.mu.Lock()
			delete(e.calls, call)
			e.mu.Unlock()
		}()
		plain := make(map[string]json.RawMessage, len(args))
		for k, v := range args {
			b, err := v.PlainJSON()
			if err != nil {
				b = []byte("null")
			}
			plain[k] = b
		}
		c.send(toolCallEvent{Type: "tool_call", ID: e.id, Call: call, Tool: name, Args: args, ArgsPlain: plain})
		select {
		case a := <-ch:
			return a.value, a.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// toolResult hands a client's answer to the waiting tool call.
func (c *conn) toolResult(req *request) error {
	c.mu.Lock()
	var ch chan toolAnswer
	for _, e := range c.execs {
		e.mu.Lock()
		if x, ok := e.calls[req.Call]; ok {
			ch = x
		}
		e.mu.Unlock()
	}
	c.mu.Unlock()
	if ch == nil {
		return fmt.Errorf("%w: no tool call %q is waiting (answered already, or its execution ended)", errNotFound, req.Call)
	}
	var a toolAnswer
	switch {
	case req.Error != nil:
		a.err = errors.New(*req.Error)
	case len(req.Typed) > 0:
		v, err := rvalue.Decode(req.Typed, rvalue.DecodeOptions{})
		if err != nil {
			return fmt.Errorf("%w: typed value: %v", errBadRequest, err)
		}
		a.value = v
	case len(req.Value) > 0:
		a.value = json.RawMessage(req.Value)
	}
	select {
	case ch <- a:
	default:
		return fmt.Errorf("%w: tool call %q was answered already", errBadRequest, req.Call)
	}
	return nil
}

// textStream turns an execution's output into stdout/stderr events,
// never splitting a UTF-8 character between two events.
type textStream struct {
	c       *conn
	id      string
	kind    string
	mu      sync.Mutex
	partial []byte
}

func (t *textStream) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := append(t.partial, p...)
	cut := len(b)
	// Hold back an incomplete character at the end (at most 3 bytes).
	for i := len(b) - 1; i >= 0 && i >= len(b)-3; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				cut = i
			}
			break
		}
	}
	t.partial = append([]byte(nil), b[cut:]...)
	if cut > 0 {
		t.c.send(textEvent{Type: t.kind, ID: t.id, Text: string(b[:cut])})
	}
	return len(p), nil
}

func (t *textStream) flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.partial) > 0 {
		t.c.send(textEvent{Type: t.kind, ID: t.id, Text: string(t.partial)})
		t.partial = nil
	}
}
