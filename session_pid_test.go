package securer

import (
	"testing"
)

// Pid is the pid R's hello reported (the fake R says 2), until Close;
// SandboxKind follows the config and the host.
func TestSessionPidAndSandboxKind(t *testing.T) {
	script := serve(t, func(r *fakeR, m hostMsg) any { return result(m.ID, 1.0) })
	s, _ := fakeSession(t, Config{}, script)
	if got := s.Pid(); got != 2 {
		t.Errorf("Pid() = %d, want 2 (from the hello)", got)
	}
	s.Close()
	if got := s.Pid(); got != 0 {
		t.Errorf("Pid() after Close = %d, want 0", got)
	}
	tests := []struct {
		cfg  Config
		host Host
		want string
	}{
		{Config{}, Host{}, SandboxContainer},
		{Config{}, Host{UnsafeNoUserNamespace: true}, SandboxContainerNoUserNS},
		{Config{UnsafeNoSandbox: true}, Host{}, SandboxNone},
	}
	for _, tt := range tests {
		cfg := tt.cfg
		cfg.host = tt.host
		if got := (&Session{cfg: cfg}).SandboxKind(); got != tt.want {
			t.Errorf("%+v on %+v: SandboxKind() = %q, want %q", tt.cfg, tt.host, got, tt.want)
		}
	}
}
