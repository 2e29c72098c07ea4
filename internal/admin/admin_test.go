package admin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeServer stands for the service's state: draining, full or fine.
type fakeServer struct{ state atomic.Value }

func (f *fakeServer) ready() error {
	if s, _ := f.state.Load().(string); s != "" {
		return errors.New(s)
	}
	return nil
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

func TestHandler(t *testing.T) {
	srv := &fakeServer{}
	gate := NewGate("starting: checking the host")
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "securer_sessions 0\n") })
	h := Handler(gate.Ready, metrics)
	steps := []struct {
		name      string
		do        func()
		readyCode int
		readyBody string
	}{
		{"starting", func() {}, 503, "not ready: starting: checking the host\n"},
		{"open", func() { gate.Open(srv.ready) }, 200, "ready\n"},
		{"full", func() { srv.state.Store("not ready: at capacity: 64 of 64 sessions") }, 503, "not ready: at capacity: 64 of 64 sessions\n"},
		{"room again", func() { srv.state.Store("") }, 200, "ready\n"},
		{"draining", func() { srv.state.Store("draining\nsecond line") }, 503, "not ready: draining\n"},
		{"closed", func() { srv.state.Store(""); gate.Close("stopped") }, 503, "not ready: stopped\n"},
	}
	for _, s := range steps {
		s.do()
		code, body := get(t, h, "/readyz")
		if code != s.readyCode || body != s.readyBody {
			t.Errorf("%s: /readyz %d %q, want %d with %q", s.name, code, body, s.readyCode, s.readyBody)
		}
		// Alive whatever readiness says.
		if code, body := get(t, h, "/healthz"); code != 200 || body != "ok\n" {
			t.Errorf("%s: /healthz %d %q", s.name, code, body)
		}
	}
	if code, body := get(t, h, "/metrics"); code != 200 || body != "securer_sessions 0\n" {
		t.Errorf("/metrics %d %q", code, body)
	}
	if code, _ := get(t, h, "/nothing"); code != 404 {
		t.Errorf("/nothing: %d, want 404", code)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/readyz", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz: %d, want 405", rec.Code)
	}
}

// TestProbe: the health command's probe over TCP and a Unix socket: nil
// when ready, the server's reason when not, and why it could not ask.
func TestProbe(t *testing.T) {
	srv := &fakeServer{}
	gate := NewGate("starting")
	gate.Open(srv.ready)
	h := Handler(gate.Ready, nil)
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "admin.sock")
	unix, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- Serve(ctx, tcp, h) }()
	go func() { done <- Serve(ctx, unix, h) }()
	defer func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
	}()
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	for _, addr := range []string{tcp.Addr().String(), "tcp:" + tcp.Addr().String(), "unix:" + sock} {
		srv.state.Store("")
		if err := Probe(pctx, addr, "/readyz"); err != nil {
			t.Errorf("%s ready: %v", addr, err)
		}
		srv.state.Store("draining (shutting down)")
		err := Probe(pctx, addr, "/readyz")
		if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "draining (shutting down)") || strings.Contains(err.Error(), "not ready: not ready") {
			t.Errorf("%s draining: %v", addr, err)
		}
		if err := Probe(pctx, addr, "/healthz"); err != nil {
			t.Errorf("%s alive while draining: %v", addr, err)
		}
	}
	err = Probe(pctx, "unix:"+filepath.Join(t.TempDir(), "none.sock"), "/healthz")
	if err == nil || errors.Is(err, ErrNotReady) {
		t.Errorf("nobody listening: %v", err)
	}
	if err := Probe(pctx, "unix:", "/healthz"); err == nil {
		t.Error("an empty address was accepted")
	}
}
