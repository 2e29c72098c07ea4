package integration

import (
	"context"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// A tool call in another tool call's argument (directly, through a lazy
// promise, or through .securer_call_tool) is ordinary R. The runtime
// must force the arguments before it takes the outer call's id: since
// 341dcf0 the outer frame carries an id taken before the inner call ran,
// so the host sees ids go backwards and ends the execution with a
// protocol error (and R waits for the wrong id besides).
func TestReviewNestedToolCall(t *testing.T) {
	cfg := baseConfig()
	cfg.Timeout = 10 * time.Second
	cfg.Tools = seedTools(nil)
	s := newSession(t, cfg)
	for _, c := range []struct {
		code string
		want any
	}{
		{`add(add(1, 2), 3)`, 6.0},
		{`add(1, add(2, 3))`, 6.0},
		{`f <- function(x) echo(x); f(add(1, 1))`, 2.0},
		{`echo(list(a = add(1, 1)))$a`, 2.0},
		{`.securer_call_tool("add", a = add(1, 1), b = 1)`, 3.0},
	} {
		for _, fresh := range []bool{false, true} {
			exec := s.Execute
			if fresh {
				exec = s.ExecuteFresh
			}
			res, err := exec(context.Background(), c.code)
			if err != nil || res.Verdict != securer.VerdictOK {
				t.Errorf("fresh=%v %s: verdict %v err %v", fresh, c.code, res.Verdict, err)
				continue
			}
			if got := res.Value.Go(); got != c.want {
				t.Errorf("fresh=%v %s = %v, want %v", fresh, c.code, got, c.want)
			}
		}
	}
}
