package service

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// recorder is an Observer that records what it is told.
type recorder struct {
	mu      sync.Mutex
	verdict []string
	tools   []bool
	starts  []error
	reaped  [][2]int
	codes   []string
}

func (r *recorder) ExecutionEnded(v string, wall time.Duration, oom uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.verdict = append(r.verdict, v)
}
func (r *recorder) ToolCallEnded(took time.Duration, failed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tools = append(r.tools, failed)
}
func (r *recorder) SandboxStarted(took time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts = append(r.starts, err)
}
func (r *recorder) Reaped(s, c int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reaped = append(r.reaped, [2]int{s, c})
}
func (r *recorder) ErrorSent(code string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.codes = append(r.codes, code)
}

func (r *recorder) errorCodes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.codes...)
}

// TestReady: ready until every session slot is taken, and never again
// once draining.
func TestReady(t *testing.T) {
	s := New(Options{MaxSessions: 2})
	if err := s.Ready(); err != nil {
		t.Fatalf("a new server: %v", err)
	}
	if err := s.reserve(2); err != nil {
		t.Fatal(err)
	}
	err := s.Ready()
	if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "2 of 2 sessions") {
		t.Errorf("full: Ready = %v, want not ready naming 2 of 2 sessions", err)
	}
	if st := s.Stats(); st.Sessions != 2 || st.MaxSessions != 2 || st.Draining {
		t.Errorf("Stats = %+v", st)
	}
	s.release(1)
	if err := s.Ready(); err != nil {
		t.Errorf("a slot free again: %v", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "draining") {
		t.Errorf("draining: Ready = %v", err)
	}
	if !s.Stats().Draining {
		t.Error("Stats does not say draining")
	}
}

// TestObservedRequests: over a real connection, errors sent are counted
// by code and logged with the client and request id; clients are counted
// in Stats while connected.
func TestObservedRequests(t *testing.T) {
	rec := &recorder{}
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := New(Options{Observer: rec, Logger: logger})
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() { srv.ServeConn(context.Background(), a); close(done) }()
	in := bufio.NewReader(b)
	readEvent := func() map[string]any {
		t.Helper()
		b.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := in.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		var ev map[string]any
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	readEvent() // hello
	if st := srv.Stats(); st.Clients != 1 {
		t.Errorf("one client connected: Stats %+v", st)
	}
	for _, line := range []string{
		`{"op":"execute","id":"r1","session":"nope","code":"1"}`,
		`{"op":"frobnicate","id":"r2"}`,
		`{"op":"close_pool","id":"r3","pool":"p9"}`,
	} {
		b.Write([]byte(line + "\n"))
		if ev := readEvent(); ev["type"] != "error" {
			t.Fatalf("%s: got %v, want an error", line, ev)
		}
	}
	b.Close()
	<-done
	want := []string{CodeNotFound, CodeBadRequest, CodeNotFound}
	if got := rec.errorCodes(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("ErrorSent codes %v, want %v", got, want)
	}
	if st := srv.Stats(); st.Clients != 0 {
		t.Errorf("the client left: Stats %+v", st)
	}
	// Every record of the connection names the client; error records
	// name the request too.
	var sawError bool
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log record not JSON: %q", l)
		}
		if rec["client"] != "c1" {
			t.Errorf("record without client c1: %s", l)
		}
		if rec["msg"] == "error sent" && rec["request"] == "r1" && rec["code"] == CodeNotFound {
			sawError = true
		}
	}
	if !sawError {
		t.Errorf("no error record with request r1 and its code:\n%s", logs.String())
	}
}

// TestObserveJob: a result tells the observer its verdict (one that never
// ran does not), and is logged with its request-scoped fields.
func TestObserveJob(t *testing.T) {
	rec := &recorder{}
	var logs syncBuffer
	srv := New(Options{Observer: rec, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c := newConn(context.Background(), srv, &bufConn{})
	j := &job{req: &request{Op: "execute", ID: "r7", Session: "s2"}, began: time.Now()}
	res := &securer.Result{Verdict: securer.VerdictOutOfMemory, Accounting: securer.Accounting{Wall: time.Second, OOMKills: 1}}
	c.observeJob(j, newResultEvent("r7", res), nil)
	c.observeJob(j, newCanceledResult("r7", "nothing ran"), nil)
	if len(rec.verdict) != 1 || rec.verdict[0] != "oom" {
		t.Errorf("verdicts observed %v, want [oom]", rec.verdict)
	}
	for _, want := range []string{"client=c1", "request=r7", "session=s2", "verdict=oom", "oom_kills=1"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
}

// TestObserverHooks: the engine's hooks tell the observer and still the
// operator's own; client tools are timed, their failures told.
func TestObserverHooks(t *testing.T) {
	rec := &recorder{}
	own := 0
	base := securer.Config{Hooks: securer.Hooks{Started: func(time.Duration, error) { own++ }}}
	srv := New(Options{Observer: rec, Base: base})
	h := srv.opts.Base.Hooks
	h.Started(time.Second, nil)
	h.Started(time.Second, securer.ErrTimeout)
	h.Reaped(1, 2)
	if own != 2 || len(rec.starts) != 2 || rec.starts[0] != nil || !errors.Is(rec.starts[1], securer.ErrTimeout) {
		t.Errorf("starts: own hook %d calls, observer %v", own, rec.starts)
	}
	if len(rec.reaped) != 1 || rec.reaped[0] != [2]int{1, 2} {
		t.Errorf("reaped %v", rec.reaped)
	}
	c := newConn(context.Background(), srv, &bufConn{})
	ok := c.observedTool(func(context.Context, map[string]securer.Value) (any, error) { return 1, nil })
	bad := c.observedTool(func(context.Context, map[string]securer.Value) (any, error) { return nil, errors.New("no") })
	ok(context.Background(), nil)
	bad(context.Background(), nil)
	if len(rec.tools) != 2 || rec.tools[0] || !rec.tools[1] {
		t.Errorf("tool calls observed (failed?) %v, want [false true]", rec.tools)
	}
	// Without an observer nothing is wrapped.
	if New(Options{}).opts.Base.Hooks.Started != nil {
		t.Error("hooks set without an observer")
	}
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
