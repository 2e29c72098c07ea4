package securer

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/securer-runc/securer-runc/bridge"
	"github.com/securer-runc/securer-runc/rvalue"
)

// BenchmarkToolCallHost: the host's side of a tool call alone, against a
// fake R in this process that sends tool_call frames as the runtime
// writes them and waits for each answer (no box, no R): one op is one
// round trip, from R's write to its read of the answer.
func BenchmarkToolCallHost(b *testing.B) {
	head := []byte(`{"type":"tool_call","id":`)
	tail := []byte(`,"tool":"add","args":{"a":{"type":"double","value":[1]},"b":{"type":"double","value":[2]}}}` + "\n")
	start := make(chan struct{})
	var lat []time.Duration
	s, _ := fakeSession(b, Config{MaxToolCalls: 1 << 30, Tools: []Tool{{Name: "add", Args: []Arg{{Name: "a", Type: "numeric"}, {Name: "b", Type: "numeric"}},
		Handler: func(ctx context.Context, args map[string]Value) (any, error) { return 3.0, nil }}}}, func(r *fakeR) {
		if !r.handshake() {
			return
		}
		m, err := r.recv()
		if err != nil || m.Type != "execute" {
			return
		}
		<-start
		buf := make([]byte, 0, 256)
		for i := 1; i <= b.N; i++ {
			buf = append(strconv.AppendInt(append(buf[:0], head...), int64(i), 10), tail...)
			began := time.Now()
			if _, err := r.conn.Write(buf); err != nil {
				return
			}
			if _, err := r.in.ReadSlice('\n'); err != nil {
				return
			}
			lat = append(lat, time.Since(began))
		}
		r.send(result(m.ID, 1.0))
	})
	defer s.Close()
	b.ResetTimer()
	close(start)
	if _, err := s.Execute(context.Background(), "loop"); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2])/float64(time.Microsecond), "median_us")
	}
}

// syncBuffer is a writer safe to read while it is written.
type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.b)
}

// Output R wrote before a tool call reaches the caller's writers before
// the tool runs (R writes it to its pipes, then the frame on the socket).
func TestOutputBeforeToolCallReachesWritersFirst(t *testing.T) {
	var out, errOut syncBuffer
	var seen []string
	s, _ := fakeSession(t, Config{Tools: []Tool{{Name: "mark", Handler: func(ctx context.Context, args map[string]Value) (any, error) {
		seen = append(seen, out.String()+"|"+errOut.String())
		return true, nil
	}}}}, func(r *fakeR) {
		if !r.handshake() {
			return
		}
		m, err := r.recv()
		if err != nil || m.Type != "execute" {
			return
		}
		for i := 1; i <= 50; i++ {
			fmt.Fprintf(r.stdout, "o%d ", i)
			fmt.Fprintf(r.stderr, "e%d ", i)
			r.send(bridge.ToolCall{Type: "tool_call", ID: uint64(i), Tool: "mark", Args: map[string]rvalue.Value{}})
			if _, err := r.recv(); err != nil {
				return
			}
		}
		r.send(result(m.ID, 1.0))
	})
	if _, err := s.ExecuteWith(context.Background(), "x", ExecOptions{Stdout: &out, Stderr: &errOut}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 50 {
		t.Fatalf("%d tool calls ran, want 50", len(seen))
	}
	for i, got := range seen {
		var o, e strings.Builder
		for j := 1; j <= i+1; j++ {
			fmt.Fprintf(&o, "o%d ", j)
			fmt.Fprintf(&e, "e%d ", j)
		}
		if want := o.String() + "|" + e.String(); got != want {
			t.Fatalf("call %d saw %q, want %q", i+1, got, want)
		}
	}
}
