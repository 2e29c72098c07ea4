package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/securer-runc/securer-runc/internal/metrics"
	"github.com/securer-runc/securer-runc/service"
)

// health runs the health command and returns its exit code and output.
func health(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := dispatch(append([]string{"health", "--timeout", "10s"}, args...), strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestHealthAdmin: serve's admin endpoints (started as serve starts them,
// on a server that needs no sandbox for this) and the health command
// probing them: not ready while starting, ready once serving, not ready
// when full or draining; alive throughout. /metrics shows the state.
func TestHealthAdmin(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:0", "unix:" + filepath.Join(t.TempDir(), "admin.sock")} {
		t.Run(listen, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			adm, err := startAdmin(ctx, listen, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer adm.stop()
			expect := func(step string, live bool, wantCode int, want string) {
				t.Helper()
				args := []string{"--admin", adm.addr}
				if live {
					args = append(args, "--live")
				}
				code, out, errOut := health(t, args...)
				if code != wantCode || !strings.Contains(out+errOut, want) || strings.Count(errOut, "\n") > 1 {
					t.Errorf("%s: health %v: exit %d, stdout %q, stderr %q; want exit %d with %q on one line", step, args, code, out, errOut, wantCode, want)
				}
			}
			expect("starting", false, 1, "not ready: starting")
			expect("starting", true, 0, "alive")
			srv := service.New(service.Options{MaxSessions: 1})
			adm.serving(srv)
			expect("serving", false, 0, "ready")
			metrics := scrape(t, adm.addr)
			for _, want := range []string{"securer_ready 1", "securer_sessions 0", "securer_sessions_max 1", "securer_clients 0"} {
				if !strings.Contains(metrics, want+"\n") {
					t.Errorf("/metrics lacks %q", want)
				}
			}
			if err := srv.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			expect("draining", false, 1, "draining")
			expect("draining", true, 0, "alive")
			if m := scrape(t, adm.addr); !strings.Contains(m, "securer_ready 0\n") {
				t.Errorf("/metrics while draining lacks securer_ready 0")
			}
		})
	}
}

// TestCapacityMetric: the autoscaling gauge of a real server through
// serve's admin endpoints moves with the clients it admits and reads 1
// exactly when /readyz says the server is at capacity.
func TestCapacityMetric(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	adm, err := startAdmin(ctx, "127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.stop()
	srv := service.New(service.Options{MaxSessions: 4, MaxClients: 2})
	adm.serving(srv)
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := service.ListenUnix(sock, 0o600, -1)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	defer func() { cancel(); <-done }()

	used := func() string {
		t.Helper()
		for _, line := range strings.Split(scrape(t, adm.addr), "\n") {
			if v, ok := strings.CutPrefix(line, metrics.CapacityUsedName+" "); ok {
				return v
			}
		}
		t.Fatalf("/metrics lacks %s", metrics.CapacityUsedName)
		return ""
	}
	// connect admits a client: the hello is sent once it is counted.
	connect := func() {
		t.Helper()
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if hello, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.Contains(hello, `"hello"`) {
			t.Fatalf("no hello: %q, %v", hello, err)
		}
	}
	steps := []struct {
		clients   int
		used      string
		readyCode int
		ready     string
	}{
		{0, "0", 0, "ready"},
		{1, "0.5", 0, "ready"},
		{2, "1", 1, "at capacity: 2 of 2 clients"},
	}
	for i, s := range steps {
		if i > 0 {
			connect()
		}
		if got := used(); got != s.used {
			t.Errorf("%d clients of 2: %s %s, want %s", s.clients, metrics.CapacityUsedName, got, s.used)
		}
		if code, out, errOut := health(t, "--admin", adm.addr); code != s.readyCode || !strings.Contains(out+errOut, s.ready) {
			t.Errorf("%d clients of 2: health exit %d, %q %q; want %d with %q", s.clients, code, out, errOut, s.readyCode, s.ready)
		}
	}
}

// scrape GETs /metrics from an admin address.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	url := "http://" + addr + "/metrics"
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		client.Transport = unixTransport(path)
		url = "http://admin/metrics"
	}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestHealthSocket: the probe through the session socket, on a server
// without and with a token, and draining.
func TestHealthSocket(t *testing.T) {
	dir := t.TempDir()
	token := strings.Repeat("ab", 20)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, withToken := range []bool{false, true} {
		opts := service.Options{}
		if withToken {
			opts.Token = token
		}
		srv := service.New(opts)
		sock := filepath.Join(dir, "s.sock")
		ln, err := service.ListenUnix(sock, 0o600, -1)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { srv.Serve(ctx, ln); close(done) }()
		type step struct {
			args []string
			code int
			want string
		}
		steps := []step{
			{[]string{"--socket", sock, "--live"}, 0, "alive"},
			{[]string{"--socket", sock, "--token-file", tokenFile}, 0, "ready"},
			// Without the token, readiness cannot be told on a server
			// that has one.
			{[]string{"--socket", sock}, map[bool]int{false: 0, true: 1}[withToken], map[bool]string{false: "ready", true: "requires a token"}[withToken]},
		}
		for _, s := range steps {
			code, out, errOut := health(t, s.args...)
			if code != s.code || !strings.Contains(out+errOut, s.want) {
				t.Errorf("token %v: health %v: exit %d, %q %q; want %d with %q", withToken, s.args, code, out, errOut, s.code, s.want)
			}
		}
		srv.Shutdown(context.Background())
		if code, _, errOut := health(t, "--socket", sock, "--token-file", tokenFile); code != 1 || !strings.Contains(errOut, "draining") {
			t.Errorf("token %v: draining: exit %d, %q", withToken, code, errOut)
		}
		if code, _, errOut := health(t, "--socket", sock, "--live"); code != 0 {
			t.Errorf("token %v: draining, --live: exit %d, %q", withToken, code, errOut)
		}
		cancel()
		<-done
	}
	if code, _, errOut := health(t, "--socket", filepath.Join(dir, "none.sock")); code != 1 || strings.Count(errOut, "\n") != 1 {
		t.Errorf("no server: exit %d, %q", code, errOut)
	}
	if code, _, _ := health(t); code != exitUsage {
		t.Errorf("no address: exit %d, want %d", code, exitUsage)
	}
}

func unixTransport(path string) *http.Transport {
	return &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
}

// --admin-listen's address forms; a bad one is a usage error.
func TestAdminListener(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "a.sock")
	for _, tt := range []struct {
		addr string
		code int // 0: listens
	}{
		{"127.0.0.1:0", 0},
		{"tcp:127.0.0.1:0", 0},
		{"unix:" + sock, 0},
		{"unix:", exitUsage},
		{"9464", exitUsage},
		{"localhost", exitUsage},
	} {
		ln, cleanup, err := adminListener(tt.addr)
		if tt.code == 0 {
			if err != nil {
				t.Errorf("%s: %v", tt.addr, err)
				continue
			}
			if tt.addr == "unix:"+sock {
				if fi, err := os.Stat(sock); err != nil {
					t.Errorf("admin socket: %v", err)
				} else if fi.Mode().Perm() != 0o660 {
					t.Errorf("admin socket mode %v, want 0660", fi.Mode().Perm())
				}
			}
			ln.Close()
			cleanup()
			continue
		}
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != tt.code {
			t.Errorf("%s: %v, want exit code %d", tt.addr, err, tt.code)
		}
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the admin socket is left after cleanup: %v", err)
	}
}
