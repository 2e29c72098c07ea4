package securer

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// An execution ended by the output limit keeps in its Result what was
// streamed, up to the limit and no more, although R wrote past it before
// the interrupt reached it.
func TestCoreOutputLimitKept(t *testing.T) {
	const limit = 1000
	var streamed lockedBuilder
	s, _ := fakeSession(t, Config{Output: Output{LimitBytes: limit, Stdout: &streamed}, InterruptGrace: time.Minute},
		serve(t, func(r *fakeR, m hostMsg) any {
			for i := range 20 {
				_, _ = r.stdout.WriteString(strings.Repeat(string(rune('a'+i)), 500))
			}
			<-r.sigint
			res := result(m.ID, nil)
			res.Interrupted = true
			return res
		}))
	res, err := s.Execute(context.Background(), "flood()")
	if !errors.Is(err, ErrLimit) || res.Verdict != VerdictOutputLimit {
		t.Fatalf("Execute = %+v, %v; want output_limit", res, err)
	}
	want := strings.Repeat("a", 500) + strings.Repeat("b", 500)
	if res.Stdout != want || res.StdoutElided != 0 {
		t.Errorf("the result keeps %d bytes (%d elided), want the first %d", len(res.Stdout), res.StdoutElided, limit)
	}
	if got := streamed.String(); got != res.Stdout {
		t.Errorf("streamed %d bytes, the result keeps %d: they differ", len(got), len(res.Stdout))
	}
	if res.Accounting.StdoutBytes < limit {
		t.Errorf("StdoutBytes %d, want at least the limit", res.Accounting.StdoutBytes)
	}
}

// lockedBuilder is a strings.Builder safe to write from the output
// reader while the test reads it.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
