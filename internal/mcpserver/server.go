// Package mcpserver serves R execution to MCP clients (agents): a run_r
// tool running code in fresh sandboxed boxes or in persistent R sessions
// named by server-minted handles, plots as images, large output as
// resource links. It uses the engine's Session and Pool directly.
package mcpserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	securer "github.com/securer-runc/securer-runc"
)

// Options configure a Server.
type Options struct {
	Host securer.Host
	// Config is every box's: limits, tools, timeout (the default and the
	// most a call may ask for), plots, output limit.
	Config securer.Config
	// Warm is how many boxes the server keeps ready for one-shots (0:
	// start one per call). Without the sandbox there are none: a fresh
	// execution needs it.
	Warm int
	// MaxSessions bounds the persistent sessions open at once, and the
	// one-shots that run in boxes started for them (beyond the warm ones).
	MaxSessions int
	// SessionIdle closes a persistent session unused for this long (0:
	// never).
	SessionIdle time.Duration
	// InlineBytes is how much text a result carries before it is cut and
	// the whole offered as a resource (default 20 KiB).
	InlineBytes int
	Version     string
	Logger      *slog.Logger
}

// Store bounds for the whole outputs of cut results.
const (
	storeItems = 64
	storeBytes = 64 << 20
	storeTTL   = 30 * time.Minute
	maxValue   = 64 << 10
)

// Server is an MCP server running R. Close it to end every box.
type Server struct {
	host    securer.Host
	cfg     securer.Config
	log     *slog.Logger
	mcp     *mcp.Server
	pool    *securer.Pool
	handles *handles
	shaper  shaper
	cold    chan struct{} // slots for boxes started for one one-shot
	// reqs maps the id the HTTP wrapper gave each request to its context,
	// so that a tool call ends when its caller hangs up (see tieToRequest).
	reqs sync.Map
	stop context.CancelFunc
	bg   sync.WaitGroup
}

// New starts the warm boxes and builds the server.
func New(ctx context.Context, o Options) (*Server, error) {
	if o.MaxSessions < 1 {
		return nil, fmt.Errorf("%w: the session bound must be at least 1, got %d", securer.ErrInvalidConfig, o.MaxSessions)
	}
	if o.Warm < 0 {
		return nil, fmt.Errorf("%w: warm boxes must not be negative, got %d", securer.ErrInvalidConfig, o.Warm)
	}
	if o.InlineBytes <= 0 {
		o.InlineBytes = 20 << 10
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Config.Timeout <= 0 {
		o.Config.Timeout = securer.DefaultTimeout
	}
	if err := securer.ValidateTools(o.Config.Tools); err != nil {
		return nil, err
	}
	s := &Server{
		host: o.Host, cfg: o.Config, log: o.Logger,
		shaper: shaper{inline: o.InlineBytes, maxValue: maxValue, store: newBlobStore(storeItems, storeBytes, storeTTL)},
		cold:   make(chan struct{}, o.MaxSessions),
	}
	s.handles = newHandles(func(ctx context.Context) (rsession, error) {
		return o.Host.NewSession(ctx, s.cfg)
	}, o.MaxSessions, o.SessionIdle)
	if o.Warm > 0 && !o.Config.UnsafeNoSandbox {
		p, err := o.Host.NewPool(ctx, o.Config, o.Warm, securer.ResetFresh)
		if err != nil {
			return nil, fmt.Errorf("starting %d warm box(es): %w", o.Warm, err)
		}
		s.pool = p
	}
	s.mcp = mcp.NewServer(&mcp.Implementation{Name: "securer-runc", Title: "R in a sandbox", Version: o.Version},
		&mcp.ServerOptions{Logger: o.Logger, Instructions: instructions})
	s.register()

	bgCtx, stop := context.WithCancel(context.Background())
	s.stop = stop
	if o.SessionIdle > 0 {
		s.bg.Go(func() { s.sweep(bgCtx, o.SessionIdle) })
	}
	return s, nil
}

const instructions = `Runs R code in a sandbox. run_r without a session is a fresh R each call; ` +
	`new_session gives a handle whose R keeps its state across run_r calls.`

// MCP is the SDK server, for a transport to run.
func (s *Server) MCP() *mcp.Server { return s.mcp }

// RunStdio serves one client on stdin/stdout until it goes or ctx ends.
func (s *Server) RunStdio(ctx context.Context) error {
	return s.RunIO(ctx, os.Stdin, os.Stdout)
}

// RunIO serves one client reading in and writing out (stdio's framing:
// a JSON-RPC message per line) until in ends or ctx does.
func (s *Server) RunIO(ctx context.Context, in io.Reader, out io.Writer) error {
	return s.mcp.Run(ctx, guardedTransport(in, out))
}

// HTTPHandler is the streamable HTTP transport, stateless (no
// Mcp-Session-Id: a session handle is the capability to its R). With a
// token, every request must carry "Authorization: Bearer TOKEN".
func (s *Server) HTTPHandler(token string) http.Handler {
	var h http.Handler = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.mcp },
		// A client that hangs up stops its R (2026-07-28 requests, where
		// the POST is the whole request) rather than letting it run on.
		&mcp.StreamableHTTPOptions{Stateless: true, Logger: s.log, PropagateRequestCancellation: true})
	// A web page the user visits must not drive a server on their
	// loopback: cross-origin browser requests are refused (the SDK also
	// refuses a loopback request whose Host is not, against DNS rebinding).
	h = http.NewCrossOriginProtection().Handler(s.tagRequests(h))
	if token == "" {
		return h
	}
	return bearer(token, h)
}

// requestHeader carries the id tagRequests gives each HTTP request to the
// tool handlers (the SDK passes them the request's header).
const requestHeader = "X-Securer-Runc-Request"

// tagRequests records each HTTP request's context under a fresh id, which
// it puts in the request's header (over any the client sent).
func (s *Server) tagRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := randomID()
		s.reqs.Store(id, r.Context())
		defer s.reqs.Delete(id)
		r.Header.Set(requestHeader, id)
		next.ServeHTTP(w, r)
	})
}

// tieToRequest is ctx, also ended when the HTTP request that carried the
// call ends: a caller that hangs up stops its R. The SDK does so itself
// for 2026-07-28 requests only; an older client's cancellation cannot
// reach a stateless server (it arrives in a request of its own), but its
// hang-up does.
func (s *Server) tieToRequest(ctx context.Context, extra *mcp.RequestExtra) (context.Context, func()) {
	if extra == nil || extra.Header == nil {
		return ctx, func() {}
	}
	v, ok := s.reqs.Load(extra.Header.Get(requestHeader))
	if !ok {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(v.(context.Context), cancel)
	return ctx, func() { stop(); cancel() }
}

// bearer refuses requests without the token, compared in constant time
// through SHA-256 so that its length does not leak either.
func bearer(token string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte("Bearer " + token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="securer-runc"`)
			http.Error(w, "unauthorized: send Authorization: Bearer TOKEN (the server's --token-file)", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Close ends every session and warm box.
func (s *Server) Close() error {
	s.stop()
	s.bg.Wait()
	err := s.handles.closeAll()
	if s.pool != nil {
		err = errors.Join(err, s.pool.Close())
	}
	return err
}

func (s *Server) sweep(ctx context.Context, idle time.Duration) {
	t := time.NewTicker(min(max(idle/4, time.Second), time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.handles.sweep()
		}
	}
}

// RunInput is run_r's input.
type RunInput struct {
	Code    string  `json:"code" jsonschema:"R code to run; the value of the last expression is printed as at the R console"`
	Session string  `json:"session,omitempty" jsonschema:"a handle from new_session to run in that persistent R session; leave out for a fresh R that keeps nothing"`
	Timeout float64 `json:"timeout,omitempty" jsonschema:"seconds the code may run (default and maximum: the server's limit)"`
}

// SessionInput names a session.
type SessionInput struct {
	Session string `json:"session" jsonschema:"the handle new_session returned"`
}

// SessionOutput is new_session's and reset_session's result.
type SessionOutput struct {
	Session string `json:"session" jsonschema:"the handle: pass it as session to run_r, reset_session and close_session"`
}

// CloseOutput is close_session's result.
type CloseOutput struct {
	Closed bool `json:"closed"`
}

func hints(destructive, idempotent bool) *mcp.ToolAnnotations {
	return &mcp.ToolAnnotations{ReadOnlyHint: false, DestructiveHint: &destructive, IdempotentHint: idempotent, OpenWorldHint: new(false)}
}

func (s *Server) register() {
	mcp.AddTool(s.mcp, &mcp.Tool{Name: "run_r", Title: "Run R code", Description: s.runDescription(), Annotations: hints(false, false)}, s.runR)
	mcp.AddTool(s.mcp, &mcp.Tool{Name: "new_session", Title: "New persistent R session",
		Description: fmt.Sprintf("Start a persistent R session and return its handle. run_r calls given the handle share its state "+
			"(variables, attached packages, files in its work dir). It closes when idle for a while, at close_session, or when the server stops. "+
			"At most %d are open at once.", cap(s.cold)),
		Annotations: hints(false, false)}, s.newSession)
	mcp.AddTool(s.mcp, &mcp.Tool{Name: "reset_session", Title: "Reset an R session",
		Description: "Replace the R of a session by a fresh one (all its state is lost); the handle stays valid.",
		Annotations: hints(true, true)}, s.resetSession)
	mcp.AddTool(s.mcp, &mcp.Tool{Name: "close_session", Title: "Close an R session",
		Description: "Close a persistent R session; its handle stops working.",
		Annotations: hints(true, false)}, s.closeSession)
	s.mcp.AddResourceTemplate(&mcp.ResourceTemplate{
		URITemplate: outputURIPrefix + "{id}", Name: "output", Title: "Whole output of a run_r call",
		Description: "the text a run_r result cut, kept for a while (" + storeTTL.String() + ")", MIMEType: "text/plain",
	}, s.readOutput)
}

// runDescription tells the model what run_r does, its limits, and the
// host tools its R code can call.
func (s *Server) runDescription() string {
	var b strings.Builder
	b.WriteString("Run R code in a sandbox (no network; memory, CPU, processes and time limited) and return what it printed " +
		"(stdout, then stderr marked [stderr]), its value (structured, as JSON), the R error with its traceback, and the plots it drew as images. " +
		"Without session, each call runs in a fresh R and nothing is kept; with a session handle from new_session, state persists across calls. " +
		"Long output is cut to its head and tail, with the whole as a resource link.")
	l := s.cfg.Limits
	fmt.Fprintf(&b, " Limits: %s per call", s.cfg.Timeout)
	if l.MemoryBytes > 0 {
		fmt.Fprintf(&b, ", %d MiB memory", l.MemoryBytes>>20)
	}
	b.WriteString(".")
	if len(s.cfg.Tools) > 0 {
		b.WriteString("\n\nThe R code can call these host tools as R functions (arguments by name or in this order; " +
			"a failed call is an R error):")
		for _, t := range s.cfg.Tools {
			args := make([]string, len(t.Args))
			for i, a := range t.Args {
				args[i] = a.Name
				if a.Type != "" {
					args[i] += ": " + a.Type
				}
			}
			fmt.Fprintf(&b, "\n- %s(%s)", t.Name, strings.Join(args, ", "))
			if t.Description != "" {
				b.WriteString(": " + t.Description)
			}
		}
	}
	return b.String()
}

// owner is the client session a handle is bound to: its id where the
// transport has one, else "" (the handle alone is the capability).
func owner(req *mcp.CallToolRequest) string {
	if req == nil || req.Session == nil {
		return ""
	}
	return req.Session.ID()
}

func (s *Server) runR(ctx context.Context, req *mcp.CallToolRequest, in RunInput) (*mcp.CallToolResult, RunOutput, error) {
	if strings.TrimSpace(in.Code) == "" {
		return nil, RunOutput{}, errors.New("code is empty: give the R code to run")
	}
	ctx, done := s.tieToRequest(ctx, req.Extra)
	defer done()
	var opts securer.ExecOptions
	if in.Timeout != 0 {
		if math.IsNaN(in.Timeout) || in.Timeout < 0 || in.Timeout > s.cfg.Timeout.Seconds() {
			return nil, RunOutput{}, fmt.Errorf("timeout %g s: want more than 0 and at most the server's limit of %g s", in.Timeout, s.cfg.Timeout.Seconds())
		}
		opts.Timeout = time.Duration(in.Timeout * float64(time.Second))
	}
	var (
		res  *securer.Result
		err  error
		warm *bool
	)
	if in.Session != "" {
		if uerr := s.handles.use(in.Session, owner(req), func(rs rsession) error {
			res, err = rs.ExecuteWith(ctx, in.Code, opts)
			return nil
		}); uerr != nil {
			return nil, RunOutput{}, explain(uerr)
		}
	} else {
		var w bool
		res, err, w = s.oneShot(ctx, in.Code, opts)
		warm = &w
	}
	if res == nil {
		return nil, RunOutput{}, explain(err)
	}
	result, out := s.shaper.shape(res, err)
	out.Session, out.Warm = in.Session, warm
	return result, out, nil
}

// oneShot runs code in a fresh R: a warm box's fresh copy when one is
// idle, else a box started for it and torn down after. warm says which.
func (s *Server) oneShot(ctx context.Context, code string, opts securer.ExecOptions) (res *securer.Result, err error, warm bool) {
	if s.pool != nil {
		sess, err := s.pool.AcquireWithin(ctx, 0)
		if err == nil {
			defer s.pool.Release(sess)
			opts.Fresh = true
			res, err := sess.ExecuteWith(ctx, code, opts)
			return res, err, true
		}
		if !errors.Is(err, securer.ErrPoolBusy) {
			return nil, err, false
		}
	}
	select {
	case s.cold <- struct{}{}:
		defer func() { <-s.cold }()
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a box: %w", ctx.Err()), false
	}
	sess, err := s.host.NewSession(ctx, s.cfg)
	if err != nil {
		return nil, err, false
	}
	defer sess.Close()
	res, err = sess.ExecuteWith(ctx, code, opts)
	return res, err, false
}

func (s *Server) newSession(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, SessionOutput, error) {
	ctx, done := s.tieToRequest(ctx, req.Extra)
	defer done()
	id, err := s.handles.open(ctx, owner(req))
	if err != nil {
		return nil, SessionOutput{}, explain(err)
	}
	return text("R session " + id + " is ready: pass it as session to run_r."), SessionOutput{Session: id}, nil
}

func (s *Server) resetSession(ctx context.Context, req *mcp.CallToolRequest, in SessionInput) (*mcp.CallToolResult, SessionOutput, error) {
	ctx, done := s.tieToRequest(ctx, req.Extra)
	defer done()
	err := s.handles.use(in.Session, owner(req), func(rs rsession) error { return rs.Restart(ctx) })
	if err != nil {
		return nil, SessionOutput{}, explain(err)
	}
	return text("R session " + in.Session + " now runs a fresh R."), SessionOutput(in), nil
}

func (s *Server) closeSession(_ context.Context, req *mcp.CallToolRequest, in SessionInput) (*mcp.CallToolResult, CloseOutput, error) {
	if err := s.handles.close(in.Session, owner(req)); err != nil {
		if errors.Is(err, ErrNoSession) {
			return nil, CloseOutput{}, explain(err)
		}
		s.log.Warn("closing an R session", "err", err)
	}
	return text("R session " + in.Session + " closed."), CloseOutput{Closed: true}, nil
}

func (s *Server) readOutput(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	uri := req.Params.URI
	t, ok := s.shaper.store.get(uri)
	if !ok {
		return nil, mcp.ResourceNotFoundError(uri)
	}
	return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: uri, MIMEType: "text/plain", Text: t}}}, nil
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}
