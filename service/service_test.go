package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"

	securer "securer-runc"
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
	var evs []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.out.String()), "\n") {
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
	rw.out.Reset()
	ts.Write([]byte{0xe2, 0x82})
	ts.flush()
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
		errors.New("other"): CodeInternal,
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
