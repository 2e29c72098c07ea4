package service

import (
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// TestSameProfile: a one-shot matches the warm boxes when everything a
// client may choose is the default profile's, its timeout and executions
// cap aside; a session must match those too; tools never match.
func TestSameProfile(t *testing.T) {
	base := securer.Config{Timeout: 30 * time.Second, MaxToolCalls: 100, MaxCodeBytes: 1000, MaxExecutions: 0,
		Limits: securer.Limits{MemoryBytes: 512 << 20, Pids: 64, CPUs: 1, TmpBytes: 64 << 20}, Preload: []string{"stats"}}
	for _, tc := range []struct {
		name             string
		change           func(*securer.Config)
		oneShot, session bool
	}{
		{"same", func(*securer.Config) {}, true, true},
		{"timeout", func(c *securer.Config) { c.Timeout = time.Second }, true, false},
		{"max executions", func(c *securer.Config) { c.MaxExecutions = 3 }, true, false},
		{"memory", func(c *securer.Config) { c.Limits.MemoryBytes = 256 << 20 }, false, false},
		{"pids", func(c *securer.Config) { c.Limits.Pids = 32 }, false, false},
		{"cpus", func(c *securer.Config) { c.Limits.CPUs = 0.5 }, false, false},
		{"fsize", func(c *securer.Config) { c.Limits.FileSizeBytes = 1 << 20 }, false, false},
		{"tool calls", func(c *securer.Config) { c.MaxToolCalls = 5 }, false, false},
		{"output limit", func(c *securer.Config) { c.Output.LimitBytes = 10 }, false, false},
		{"code bytes", func(c *securer.Config) { c.MaxCodeBytes = 10 }, false, false},
		{"preload", func(c *securer.Config) { c.Preload = append(c.Preload, "splines") }, false, false},
		{"tools", func(c *securer.Config) { c.Tools = []securer.Tool{{Name: "add"}} }, false, false},
	} {
		c := base
		c.Preload = append([]string(nil), base.Preload...)
		tc.change(&c)
		if got := sameProfile(c, base, false); got != tc.oneShot {
			t.Errorf("%s: one-shot match %v, want %v", tc.name, got, tc.oneShot)
		}
		if got := sameProfile(c, base, true); got != tc.session {
			t.Errorf("%s: session match %v, want %v", tc.name, got, tc.session)
		}
	}
}

// TestStartWarmRefused: more warm boxes than sessions, or warm boxes on
// an unsandboxed server, are refused before anything starts.
func TestStartWarmRefused(t *testing.T) {
	for name, o := range map[string]Options{
		"over max sessions": {Warm: 3, MaxSessions: 2},
		"unsandboxed":       {Warm: 1, MaxSessions: 2, Base: securer.Config{UnsafeNoSandbox: true}},
	} {
		s := New(o)
		if err := s.StartWarm(t.Context()); err == nil {
			t.Errorf("%s: StartWarm succeeded", name)
		}
		if st := s.Stats(); st.Sessions != 0 || st.WarmTotal != 0 {
			t.Errorf("%s: after a refused StartWarm: %+v", name, st)
		}
	}
}
