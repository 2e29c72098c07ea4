package service

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

func ptr[T any](v T) *T { return &v }

// With clamp, limits over the operator's ceilings are lowered to them and
// named; without it they are refused naming the limit. Negative values,
// and a memory given as zero, are refused either way.
func TestConfigClamp(t *testing.T) {
	var opts Options
	opts.Base.Limits = securer.Limits{MemoryBytes: 256 << 20, Pids: 32, CPUs: 1, TmpBytes: 16 << 20, FileSizeBytes: 16 << 20}
	opts.Ceilings = Ceilings{Timeout: time.Minute, MaxToolCalls: 10, MaxExecutions: 5, OutputLimit: 1 << 20}
	opts.Base.MaxCodeBytes = 1 << 16
	over := &sessionOptions{MemoryBytes: ptr(int64(1 << 30)), Pids: 1000, CPUs: 8, TmpBytes: 1 << 30, FsizeBytes: 1 << 62,
		Timeout: 3600, MaxToolCalls: 100, OutputLimit: 1 << 30, MaxExecutions: 100, MaxCodeBytes: 1 << 20}
	within := &sessionOptions{MemoryBytes: ptr(int64(128 << 20)), Pids: 16, Timeout: 10}
	tests := []struct {
		name    string
		o       *sessionOptions
		clamp   bool
		refused string   // in the error; "" when accepted
		clamped []string // when accepted
		check   func(cfg securer.Config) bool
	}{
		{name: "over, refused", o: over, refused: "memory_bytes 1073741824 is over the server's 268435456"},
		{name: "over, clamped", o: over, clamp: true,
			clamped: []string{"memory_bytes", "pids", "tmp_bytes", "max_tool_calls", "max_executions", "output_limit", "fsize_bytes", "cpus", "timeout", "max_code_bytes"},
			check: func(cfg securer.Config) bool {
				return cfg.Limits == opts.Base.Limits.WithDefaults() && cfg.Timeout == time.Minute && cfg.MaxToolCalls == 10 &&
					cfg.MaxExecutions == 5 && cfg.Output.LimitBytes == 1<<20 && cfg.MaxCodeBytes == 1<<16
			}},
		{name: "within, clamp asked", o: within, clamp: true, clamped: nil,
			check: func(cfg securer.Config) bool {
				return cfg.Limits.MemoryBytes == 128<<20 && cfg.Limits.Pids == 16 && cfg.Timeout == 10*time.Second
			}},
		{name: "one over", o: &sessionOptions{Pids: 33}, clamp: true, clamped: []string{"pids"},
			check: func(cfg securer.Config) bool { return cfg.Limits.Pids == 32 && cfg.Limits.MemoryBytes == 256<<20 }},
		{name: "memory zero", o: &sessionOptions{MemoryBytes: ptr(int64(0))}, clamp: true, refused: "memory_bytes must be a positive number of bytes, got 0"},
		{name: "memory negative", o: &sessionOptions{MemoryBytes: ptr(int64(-1))}, clamp: true, refused: "memory_bytes must be a positive number of bytes, got -1"},
		{name: "pids negative", o: &sessionOptions{Pids: -1}, clamp: true, refused: "pids must not be negative"},
		{name: "cpus negative", o: &sessionOptions{CPUs: -1}, clamp: true, refused: "cpus must not be negative"},
		{name: "timeout negative", o: &sessionOptions{Timeout: -1}, clamp: true, refused: "timeout must be between 0"},
		{name: "max_code_bytes negative", o: &sessionOptions{MaxCodeBytes: -1}, clamp: true, refused: "max_code_bytes must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &conn{srv: New(opts)}
			cfg, clamped, err := c.config(nil, tt.o, tt.clamp)
			if tt.refused != "" {
				if !errors.Is(err, securer.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.refused) {
					t.Fatalf("got %v, want invalid_config saying %q", err, tt.refused)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !slices.Equal(clamped, tt.clamped) {
				t.Errorf("clamped %q, want %q", clamped, tt.clamped)
			}
			if !tt.check(cfg) {
				t.Errorf("applied limits %+v, timeout %s, calls %d, execs %d, output %d, code %d", cfg.Limits, cfg.Timeout,
					cfg.MaxToolCalls, cfg.MaxExecutions, cfg.Output.LimitBytes, cfg.MaxCodeBytes)
			}
			// What the reply reports is what was applied.
			w := toWireLimits(cfg)
			if w.MemoryBytes != cfg.Limits.MemoryBytes || w.Timeout != cfg.Timeout.Seconds() || w.MaxExecutions != cfg.MaxExecutions {
				t.Errorf("reply limits %+v do not match the config", w)
			}
		})
	}
}

// A pool larger than the server allows is refused before anything
// starts, naming the flag that would allow it; one within both caps gets
// as far as waiting for a start slot (taken here, so: busy). 100 works
// when the operator raises both flags.
func TestPoolSizeCaps(t *testing.T) {
	tests := []struct {
		name      string
		opts      Options
		size      int
		code, say string
	}{
		{"defaults, 100", Options{}, 100, CodeBadRequest, "--max-sessions"},
		{"defaults, 17", Options{}, 17, CodeLimit, "--max-sessions-per-client"},
		{"per client 16 of 100, 100", Options{MaxSessions: 100}, 100, CodeLimit, "--max-sessions-per-client"},
		{"per client 100 of 64, 100", Options{MaxSessionsPerClient: 100}, 100, CodeBadRequest, "--max-sessions"},
		{"both 100, 100", Options{MaxSessions: 100, MaxSessionsPerClient: 100}, 100, CodeBusy, ""},
		{"defaults, 16", Options{}, 16, CodeBusy, ""},
		{"zero", Options{}, 0, CodeBadRequest, "at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.MaxStarts, tt.opts.StartWait = 1, time.Millisecond
			s := New(tt.opts)
			s.starts <- struct{}{} // every slot taken: nothing starts
			c := newConn(context.Background(), s, &bufConn{})
			_, err := c.createPool(&job{req: &request{Op: "create_pool", ID: "1", Size: tt.size}})
			if got := errCode(err); got != tt.code {
				t.Fatalf("size %d: %v (code %s), want %s", tt.size, err, got, tt.code)
			}
			if !strings.Contains(err.Error(), tt.say) {
				t.Errorf("error %q does not name %q", err, tt.say)
			}
			if c.held != 0 || s.sessions != 0 {
				t.Errorf("after the refusal: %d held by the client, %d by the server", c.held, s.sessions)
			}
		})
	}
}

// acquire_timeout is for pools only, and checked as any duration.
func TestAcquireTimeoutChecked(t *testing.T) {
	c := newConn(context.Background(), New(Options{}), &bufConn{})
	c.pools["p1"] = &clientPool{}
	c.sessions["s1"] = nil
	if _, err := c.prepare(&request{Op: "execute", ID: "1", Session: "s1", Code: "1", AcquireTimeout: ptr(0.0)}, 1); errCode(err) != CodeBadRequest {
		t.Errorf("acquire_timeout on a session execute: %v, want bad_request", err)
	}
	for _, v := range []float64{-1, 1e300} {
		j := &job{req: &request{Op: "execute", ID: "2", Pool: "p1", Code: "1", AcquireTimeout: ptr(v)}, pool: c.pools["p1"],
			exec: &execution{ctx: context.Background(), cancel: func() {}}}
		if _, err := c.execute(j); errCode(err) != CodeInvalidConfig || !strings.Contains(err.Error(), "acquire_timeout") {
			t.Errorf("acquire_timeout %g: %v, want invalid_config naming it", v, err)
		}
	}
}

// A pool member waits for a start slot while its pool makes progress
// (here: 40 members through one slot, each holding it 40 ms, far longer
// in all than StartWait), and hears busy, after at least StartWait, once
// nothing moves (the only slot held by someone else).
func TestPoolGate(t *testing.T) {
	s := New(Options{MaxStarts: 1, StartWait: time.Second})
	gate := s.poolGate()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 40 {
		wg.Go(func() {
			release, err := gate(context.Background())
			if err != nil {
				errs <- err
				return
			}
			time.Sleep(40 * time.Millisecond)
			release()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a member of a progressing pool: %v", err)
	}
	s.starts <- struct{}{} // the only slot, held elsewhere
	began := time.Now()
	_, err := s.poolGate()(context.Background())
	if errCode(err) != CodeBusy || retryAfter(err) <= 0 {
		t.Errorf("no progress: %v, want busy with a retry hint", err)
	}
	if took := time.Since(began); took < s.opts.StartWait {
		t.Errorf("busy after %s, before StartWait (%s)", took, s.opts.StartWait)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.poolGate()(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
