package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"

	"github.com/securer-runc/securer-runc/internal/admin"
	"github.com/securer-runc/securer-runc/internal/metrics"
	"github.com/securer-runc/securer-runc/service"
)

// adminEndpoints is serve's --admin-listen: health, readiness and
// metrics over HTTP, up from before the host check until the process
// ends (a drain shows as not ready).
type adminEndpoints struct {
	gate    *admin.Gate
	metrics *metrics.Metrics // nil without --admin-listen
	srv     atomic.Pointer[service.Server]
	addr    string // where it listens
	done    chan struct{}
	cancel  context.CancelFunc
}

// startAdmin starts the endpoints on addr (HOST:PORT, tcp:HOST:PORT or
// unix:PATH); with addr empty it serves nothing and its methods do
// nothing.
func startAdmin(ctx context.Context, addr string, logger *slog.Logger) (*adminEndpoints, error) {
	a := &adminEndpoints{gate: admin.NewGate("starting: checking the host and reaping leftovers")}
	if addr == "" {
		return a, nil
	}
	ln, cleanup, err := adminListener(addr)
	if err != nil {
		return nil, err
	}
	a.addr = ln.Addr().String()
	if ln.Addr().Network() == "unix" {
		a.addr = "unix:" + a.addr
	}
	a.metrics = metrics.New(version, a.state)
	ctx, a.cancel = context.WithCancel(ctx)
	a.done = make(chan struct{})
	go func() {
		defer close(a.done)
		defer cleanup()
		if err := admin.Serve(ctx, ln, admin.Handler(a.gate.Ready, a.metrics.Handler())); err != nil {
			logger.Error("admin endpoints stopped", "err", err)
		}
	}()
	logger.Info("admin endpoints", "addr", a.addr, "paths", "/healthz /readyz /metrics")
	return a, nil
}

// serving opens the readiness gate: the host check passed and srv serves.
func (a *adminEndpoints) serving(srv *service.Server) {
	a.srv.Store(srv)
	a.gate.Open(srv.Ready)
}

func (a *adminEndpoints) stop() {
	if a.cancel == nil {
		return
	}
	a.gate.Close("stopped")
	a.cancel()
	<-a.done
}

// state is what the metrics' gauges read at each scrape.
func (a *adminEndpoints) state() metrics.State {
	srv := a.srv.Load()
	if srv == nil {
		return metrics.State{}
	}
	st := srv.Stats()
	return metrics.State{Clients: st.Clients, Authenticating: st.Authenticating, Sessions: st.Sessions, Pools: st.Pools,
		Executions: st.Executions, MaxSessions: st.MaxSessions, MaxClients: st.MaxClients, Ready: a.gate.Ready() == nil,
		WarmIdle: st.WarmIdle, WarmTotal: st.WarmTotal}
}

// adminListener listens on --admin-listen's address; cleanup removes a
// Unix socket's file.
func adminListener(addr string) (net.Listener, func(), error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if path == "" {
			return nil, nil, exitWith(exitUsage, errors.New("--admin-listen unix: needs a path"))
		}
		// Owner and group only: the endpoints change nothing, but the
		// metrics tell what the server does.
		ln, err := service.ListenUnix(path, 0o660, -1)
		if err != nil {
			return nil, nil, exitWith(exitSandbox, fmt.Errorf("--admin-listen: %w", err))
		}
		return ln, func() { _ = os.Remove(path) }, nil
	}
	hostPort := strings.TrimPrefix(addr, "tcp:")
	if _, _, err := net.SplitHostPort(hostPort); err != nil {
		return nil, nil, exitWith(exitUsage, fmt.Errorf("--admin-listen %q: want HOST:PORT or unix:PATH", addr))
	}
	ln, err := net.Listen("tcp", hostPort)
	if err != nil {
		return nil, nil, exitWith(exitSandbox, fmt.Errorf("--admin-listen: %w", err))
	}
	return ln, func() {}, nil
}
