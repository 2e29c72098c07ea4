package service

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// bufConn is a client connection that records what the server writes.
type bufConn struct {
	mu  sync.Mutex
	out bytes.Buffer
}

func (b *bufConn) Read([]byte) (int, error) { return 0, errors.New("no input") }
func (b *bufConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.Write(p)
}
func (b *bufConn) Close() error { return nil }

func (b *bufConn) events(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	out := b.out.String()
	b.mu.Unlock()
	var evs []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		evs = append(evs, ev)
	}
	return evs
}

func TestTextStreamKeepsCharactersWhole(t *testing.T) {
	rw := &bufConn{}
	c := newConn(context.Background(), New(Options{}), rw)
	ts := &textStream{c: c, id: "1", kind: "stdout"}
	text := "añ€😀z"
	for i := 0; i < len(text); i++ { // one byte at a time: every seam
		ts.Write([]byte{text[i]})
	}
	ts.flush()
	c.flushPending()
	var got strings.Builder
	for _, ev := range rw.events(t) {
		s := ev["text"].(string)
		if strings.ContainsRune(s, '\uFFFD') {
			t.Fatalf("an event split a character: %q", s)
		}
		got.WriteString(s)
	}
	if got.String() != text {
		t.Errorf("reassembled %q, want %q", got.String(), text)
	}
	// A cut character at the very end still reaches the client at flush.
	rw.mu.Lock()
	rw.out.Reset()
	rw.mu.Unlock()
	ts.Write([]byte{0xe2, 0x82})
	ts.flush()
	c.flushPending()
	if evs := rw.events(t); len(evs) != 1 {
		t.Errorf("trailing partial character: %v", evs)
	}
}

func TestSeconds(t *testing.T) {
	tests := []struct {
		in  float64
		ok  bool
		out string
	}{
		{0, true, "0s"}, {1.5, true, "1.5s"}, {maxSeconds, true, "168h0m0s"},
		{-1, false, ""}, {maxSeconds + 1, false, ""}, {1e300, false, ""}, {math.NaN(), false, ""}, {math.Inf(1), false, ""},
	}
	for _, tt := range tests {
		d, err := seconds("timeout", tt.in)
		if (err == nil) != tt.ok || (tt.ok && d.String() != tt.out) {
			t.Errorf("seconds(%g) = %v, %v", tt.in, d, err)
		}
		if err != nil && !errors.Is(err, securer.ErrInvalidConfig) {
			t.Errorf("seconds(%g): %v is not ErrInvalidConfig", tt.in, err)
		}
	}
}

func TestDecodeRequestIsStrict(t *testing.T) {
	for _, bad := range []string{
		`{"op":"execute","id":"1","bogus":1}`,
		`{"op":"execute","id":"1","id":"2"}`,
		`{"op":"execute","id":1}`,
		`[1]`,
		"{\"op\":\"execute\",\"id\":\"\xff\"}",
	} {
		if _, err := decodeRequest([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	r, err := decodeRequest([]byte(`{"op":"tool_result","call":"1.1","typed":{"type":"integer","value":[1]}}`))
	if err != nil || r.Call != "1.1" || len(r.Typed) == 0 {
		t.Errorf("valid request: %+v, %v", r, err)
	}
}

func TestErrCodes(t *testing.T) {
	for err, code := range map[error]string{
		errBadRequest: CodeBadRequest, errNotFound: CodeNotFound, errDraining: CodeDraining, errTooMany: CodeLimit,
		securer.ErrInvalidConfig: CodeInvalidConfig, securer.ErrBusy: CodeBusy, securer.ErrSessionClosed: CodeClosed,
		securer.ErrPoolClosed: CodeClosed, securer.ErrRejected: CodeRejected, securer.ErrSandboxUnavailable: CodeUnavailable, securer.ErrNeedsSandbox: CodeNeedsSandbox,
		securer.ErrPoolBusy: CodePoolBusy, securer.ErrCanceled: CodeCanceled, errors.New("other"): CodeInternal,
	} {
		if got := errCode(errors.Join(errors.New("context"), err)); got != code {
			t.Errorf("errCode(%v) = %s, want %s", err, got, code)
		}
	}
}

func TestReserveRefusesOverflow(t *testing.T) {
	s := New(Options{MaxSessions: 4})
	if err := s.reserve(3); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{2, math.MaxInt, -1} {
		if err := s.reserve(n); !errors.Is(err, errTooMany) {
			t.Errorf("reserve(%d) with 3 of 4 taken: %v", n, err)
		}
	}
	if err := s.reserve(1); err != nil {
		t.Errorf("the last slot: %v", err)
	}
}

// TestOpMembers: each op takes only its own members; one of another op,
// or of none, is refused before anything is queued.
func TestOpMembers(t *testing.T) {
	for _, tc := range []struct {
		line string
		ok   bool
	}{
		{`{"op":"execute","id":"1","session":"s1","code":"1","fresh":true,"timeout":2}`, true},
		// A one-shot (no session, no pool) takes tools, options and clamp;
		// an execute on a session is refused them when prepared.
		{`{"op":"execute","id":"1","code":"1","tools":[{"name":"x","description":"big"}]}`, true},
		{`{"op":"execute","id":"1","session":"s1","code":"1","token":"t"}`, false},
		{`{"op":"execute","id":"1","session":"s1","code":"1","bogus":1}`, false},
		{`{"op":"create_session","id":"1","tools":[],"options":{}}`, true},
		{`{"op":"create_session","id":"1","code":"x"}`, false},
		{`{"op":"create_pool","id":"1","size":2,"reset":"none"}`, true},
		{`{"op":"tool_result","call":"1.1","value":1}`, true},
		{`{"op":"tool_result","call":"1.1","value":1,"session":"s1"}`, false},
		{`{"op":"cancel","id":"2","target":"1"}`, true},
		{`{"op":"cancel","id":"2","target":"1","pool":"p1"}`, false},
		{`{"op":"ping","id":"2"}`, true},
		{`{"op":"ping","id":"2","size":1}`, false},
		{`{"op":"auth","id":"2","token":"x"}`, true},
		{`{"op":"close_pool","id":"2","pool":"p1"}`, true},
		{`{"op":"close_pool","id":"2","session":"s1"}`, false},
		{`{"op":"execute","id":"1","pool":"p1","code":"1","acquire_timeout":0}`, true},
		{`{"op":"create_pool","id":"1","size":2,"acquire_timeout":1}`, false},
		{`{"op":"create_session","id":"1","clamp":true}`, true},
		{`{"op":"create_pool","id":"1","size":2,"clamp":true}`, true},
		{`{"op":"execute","id":"1","code":"1","clamp":true,"options":{"pids":8}}`, true},
	} {
		_, err := decodeRequest([]byte(tc.line))
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok %v", tc.line, err, tc.ok)
		}
	}
}

// TestMemoryCeiling: the ceiling grows with each flag that bounds what
// clients can make the server hold.
func TestMemoryCeiling(t *testing.T) {
	base := Options{MaxClients: 4, MaxSessions: 4}
	c0 := base.MemoryCeiling()
	for name, o := range map[string]Options{
		"clients":  {MaxClients: 8, MaxSessions: 4},
		"sessions": {MaxClients: 4, MaxSessions: 8},
		"message":  {MaxClients: 4, MaxSessions: 4, MaxMessageBytes: 32 << 20},
		"queued":   {MaxClients: 4, MaxSessions: 4, MaxQueuedBytes: 16 << 20},
		"token":    {MaxClients: 4, MaxSessions: 4, Token: "t"},
	} {
		if c := o.MemoryCeiling(); c <= c0 {
			t.Errorf("%s: ceiling %d, not above %d", name, c, c0)
		}
	}
	// 64 MiB + 4 × (512 KiB + 2 × 16 MiB + 8 MiB) + 4 × (3 × 16 MiB + 4 × 1 MiB + 16 MiB of files)
	if want := int64(64<<20 + 4*(512<<10+32<<20+8<<20) + 4*(48<<20+4<<20+16<<20)); c0 != want {
		t.Errorf("ceiling %d, want %d", c0, want)
	}
}

// TestRetryHint: refusals about load carry retry_after; others do not.
func TestRetryHint(t *testing.T) {
	rw := &bufConn{}
	c := newConn(context.Background(), New(Options{}), rw)
	c.sendError("1", &retryError{fmt.Errorf("%w: full", errTooMany), 2 * time.Second})
	c.sendError("2", fmt.Errorf("%w: nope", errBadRequest))
	evs := rw.events(t)
	e0, e1 := evs[0]["error"].(map[string]any), evs[1]["error"].(map[string]any)
	if e0["code"] != CodeLimit || e0["retry_after"] != 2.0 {
		t.Errorf("limit: %v", e0)
	}
	if _, ok := e1["retry_after"]; ok || e1["code"] != CodeBadRequest {
		t.Errorf("bad_request: %v", e1)
	}
}

// TestQueuedBytesBudget: a client's requests being served are bounded in
// bytes as well as in number; the budget comes back when they end.
func TestQueuedBytesBudget(t *testing.T) {
	c := newConn(context.Background(), New(Options{MaxQueuedBytes: 1000}), &bufConn{})
	req := &request{Op: "create_session", ID: "1"}
	j1, err := c.prepare(req, 600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.prepare(&request{Op: "create_session", ID: "2"}, 600); errCode(err) != CodeLimit || retryAfter(err) <= 0 {
		t.Errorf("over the byte budget: %v", err)
	}
	c.finish(j1)
	c.work.Done()
	j2, err := c.prepare(&request{Op: "create_session", ID: "3"}, 600)
	if err != nil {
		t.Errorf("after the first ended: %v", err)
	} else {
		c.finish(j2)
		c.work.Done()
	}
}

// A file-size limit of 2^63 or more reads as a negative offset in the
// kernel: every write in the box failed silently. The client's
// fsize_bytes is refused at 2^62 and up whatever the operator's ceiling,
// including a ceiling that does not fit an int64.
func TestConfigFileSizeBound(t *testing.T) {
	for _, tt := range []struct {
		name    string
		ceiling uint64
		asked   int64
		ok      bool
	}{
		{"within the default ceiling", 0, 8 << 20, true},
		{"over the default ceiling", 0, 1 << 40, false},
		{"2^62 under a huge ceiling", 1 << 63, 1 << 62, false},
		{"max int64 under a huge ceiling", 1 << 63, math.MaxInt64, false},
		{"2^62-1 under a huge ceiling", 1 << 63, 1<<62 - 1, true},
		{"negative", 0, -1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var opts Options
			opts.Base.Limits.FileSizeBytes = tt.ceiling
			c := &conn{srv: New(opts)}
			cfg, _, err := c.config(nil, &sessionOptions{FsizeBytes: tt.asked}, false)
			if tt.ok {
				if err != nil || cfg.Limits.FileSizeBytes != uint64(tt.asked) {
					t.Errorf("fsize_bytes %d: %v, limit %d", tt.asked, err, cfg.Limits.FileSizeBytes)
				}
				return
			}
			if !errors.Is(err, securer.ErrInvalidConfig) || !strings.Contains(err.Error(), "fsize_bytes") {
				t.Errorf("fsize_bytes %d: %v (limit %d), want ErrInvalidConfig naming fsize_bytes", tt.asked, err, cfg.Limits.FileSizeBytes)
			}
		})
	}
}

// TestIdleCountsFromLastWork: the idle timeout counts from when the
// connection's last request ended, not from when it was sent. A session
// that took longer than the timeout to start left its client no time to
// send the next request (seen in TestHostile on a loaded host).
func TestIdleCountsFromLastWork(t *testing.T) {
	const idle = 2 * time.Second
	srvEnd, cliEnd := net.Pipe()
	defer cliEnd.Close()
	c := newConn(context.Background(), New(Options{IdleTimeout: idle, Version: "test"}), srvEnd)
	served := make(chan error, 1)
	go func() { served <- c.serve() }()
	r := bufio.NewScanner(cliEnd)
	if !r.Scan() || !strings.Contains(r.Text(), `"hello"`) {
		t.Fatalf("hello: %q", r.Text())
	}
	// A request that is served for 1.5 timeouts, as a slow start is.
	j, err := c.prepare(&request{Op: "create_session", ID: "slow"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(idle * 3 / 2)
	c.finish(j)
	c.work.Done()
	// Three quarters of a timeout after it ended, the client asks again.
	time.Sleep(idle * 3 / 4)
	if _, err := cliEnd.Write([]byte(`{"op":"ping","id":"p"}` + "\n")); err != nil {
		t.Fatalf("the connection was closed %s after its last request ended, within the %s idle timeout: %v", idle*3/4, idle, err)
	}
	if !r.Scan() || !strings.Contains(r.Text(), `"pong"`) {
		t.Errorf("after the ping: %q; want a pong, not an idle close", r.Text())
	}
	cliEnd.Close()
	<-served
}
