// Package admin serves the operator's HTTP endpoints of the session
// service (serve --admin-listen): /healthz (the process is alive),
// /readyz (it takes new work) and /metrics, and probes them for the
// health command. It knows nothing of the service: readiness is a func,
// metrics a handler.
package admin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Gate is what /readyz reports: not ready, with a reason, until Open
// gives it the server's own readiness check (which then decides).
type Gate struct {
	mu     sync.Mutex
	reason string
	check  func() error
}

// NewGate is a gate that is not ready for reason.
func NewGate(reason string) *Gate { return &Gate{reason: reason} }

// Open makes check decide readiness from now on.
func (g *Gate) Open(check func() error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.check = check
}

// Close makes the gate not ready for reason again, for good.
func (g *Gate) Close(reason string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.check, g.reason = nil, reason
}

// Ready is nil when ready, else why not.
func (g *Gate) Ready() error {
	g.mu.Lock()
	check, reason := g.check, g.reason
	g.mu.Unlock()
	if check == nil {
		return errors.New(reason)
	}
	return check()
}

// Handler serves /healthz, /readyz (200 "ready", or 503 with the reason
// on one line) and, when metrics is not nil, /metrics.
func Handler(ready func() error, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := ready(); err != nil {
			// The reason may say "not ready" already (the service's does).
			reply(w, http.StatusServiceUnavailable, "not ready: "+strings.TrimPrefix(oneLine(err.Error()), "not ready: "))
			return
		}
		reply(w, http.StatusOK, "ready")
	})
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	return mux
}

func reply(w http.ResponseWriter, code int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, text)
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// Serve serves h on ln until ctx ends; it closes ln. Slow or idle
// clients are cut off by timeouts: the endpoints answer at once.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		case <-done:
		}
	}()
	err := srv.Serve(ln)
	close(done)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ErrNotReady is what Probe's errors wrap when the server answered with
// a failure status.
var ErrNotReady = errors.New("not ready")

// Probe asks the admin endpoint at addr (HOST:PORT, tcp:HOST:PORT or
// unix:PATH) for path (/readyz, /healthz): nil on 200, else an error
// with the server's one-line reason (wrapping ErrNotReady), or why it
// could not be asked.
func Probe(ctx context.Context, addr, path string) error {
	network, address := "tcp", strings.TrimPrefix(addr, "tcp:")
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, address = "unix", p
	}
	if address == "" {
		return fmt.Errorf("admin address %q: want HOST:PORT or unix:PATH", addr)
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, address)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://admin"+path, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		// The URL is made up: say what was asked, and the cause.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return fmt.Errorf("%s %s: %w", addr, path, err)
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(io.LimitReader(resp.Body, 4<<10)).ReadString('\n')
	line = strings.TrimSpace(line)
	if resp.StatusCode != http.StatusOK {
		if line == "" {
			line = resp.Status
		}
		return fmt.Errorf("%w: %s (HTTP %d)", ErrNotReady, strings.TrimPrefix(line, "not ready: "), resp.StatusCode)
	}
	return nil
}
