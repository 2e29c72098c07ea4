package securer

import (
	"context"
	"strings"
	"testing"

	"github.com/securer-runc/securer-runc/bridge"
	"github.com/securer-runc/securer-runc/container"
)

// A start that fails because R exited carries the tail of R's stderr: the
// cause (a permission denied, a missing package) is in R's words there.
func TestStartFailureCarriesRStderr(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script func(r *fakeR)
	}{
		{"before hello", func(r *fakeR) {
			_, _ = r.stderr.WriteString("Error: cannot connect (Permission denied)\n")
			r.die(container.Exit{Code: 1})
		}},
		{"after hello", func(r *fakeR) {
			r.send(bridge.Hello{Type: "hello", Protocol: bridge.ProtocolVersion, Pid: 2, RVersion: "fake"})
			if _, err := r.recv(); err != nil { // init
				return
			}
			_, _ = r.stderr.WriteString("Error: cannot connect (Permission denied)\n")
			r.die(container.Exit{Code: 1})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newSession(context.Background(), Host{StateDir: t.TempDir()}, Config{}, &fakeEngine{script: tc.script})
			if s != nil {
				s.Close()
			}
			if err == nil || !strings.Contains(err.Error(), "R's stderr: Error: cannot connect (Permission denied)") {
				t.Errorf("newSession = %v; want an error carrying R's stderr", err)
			}
		})
	}
}

// What R writes to stderr while it starts is not part of the first
// execution's output.
func TestStartupStderrNotInFirstExecution(t *testing.T) {
	s, _ := fakeSession(t, Config{}, func(r *fakeR) {
		_, _ = r.stderr.WriteString("start-up noise\n")
		serve(t, func(r *fakeR, m hostMsg) any {
			_, _ = r.stderr.WriteString("from the code\n")
			return result(m.ID, 1.0)
		})(r)
	})
	res, err := s.Execute(context.Background(), "1")
	if err != nil {
		t.Fatal(err)
	}
	if res.Stderr != "from the code\n" {
		t.Errorf("stderr = %q, want only the execution's", res.Stderr)
	}
}
