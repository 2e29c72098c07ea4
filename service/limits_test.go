package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// Oversized tool declarations are refused as invalid_config before a
// start slot is taken: with every slot held by someone else, the answer
// is invalid_config at once, not busy after StartWait (nor a start that
// fails late).
func TestToolDeclarationLimits(t *testing.T) {
	many := func(n int) []toolDecl {
		ts := make([]toolDecl, n)
		for i := range ts {
			ts[i] = toolDecl{Name: fmt.Sprintf("t%d", i)}
		}
		return ts
	}
	manyArgs := make([]argDecl, 64+1)
	for i := range manyArgs {
		manyArgs[i] = argDecl{Name: fmt.Sprintf("a%d", i)}
	}
	tests := []struct {
		name  string
		tools []toolDecl
		want  string // in the error
	}{
		{"too many tools", many(256 + 1), "tools declared"},
		{"20000 tools", many(20000), "tools declared"},
		{"huge name", []toolDecl{{Name: strings.Repeat("a", 1<<20)}}, "tool name"},
		{"long name", []toolDecl{{Name: strings.Repeat("a", 128+1)}}, "tool name"},
		{"long arg name", []toolDecl{{Name: "f", Args: []argDecl{{Name: strings.Repeat("a", 128+1)}}}}, "argument name"},
		{"too many args", []toolDecl{{Name: "f", Args: manyArgs}}, "arguments"},
		{"long description", []toolDecl{{Name: "f", Description: strings.Repeat("d", 4096+1)}}, "description"},
		{"bad name", []toolDecl{{Name: "no spaces"}}, "must match"},
		{"twice", []toolDecl{{Name: "f"}, {Name: "f"}}, "twice"},
	}
	for _, op := range []string{"create_session", "create_pool"} {
		for _, tc := range tests {
			t.Run(op+"/"+tc.name, func(t *testing.T) {
				s := New(Options{MaxStarts: 1, StartWait: 5 * time.Second})
				s.starts <- struct{}{} // every slot taken
				c := newConn(context.Background(), s, &bufConn{})
				req := &request{Op: op, ID: "1", Tools: tc.tools, Size: 1}
				j := &job{req: req}
				began := time.Now()
				var err error
				if op == "create_session" {
					_, err = c.createSession(j)
				} else {
					_, err = c.createPool(j)
				}
				if !errors.Is(err, securer.ErrInvalidConfig) || errCode(err) != CodeInvalidConfig {
					t.Fatalf("got %v (code %s), want invalid_config", err, errCode(err))
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %q does not say %q", err, tc.want)
				}
				if len(err.Error()) > 1024 {
					t.Errorf("error is %d bytes long: it should not echo a huge name", len(err.Error()))
				}
				if d := time.Since(began); d >= s.opts.StartWait {
					t.Errorf("refused after %s: it waited for a start slot", d)
				}
				if c.held != 0 {
					t.Errorf("%d sessions still held", c.held)
				}
			})
		}
	}
	// At the limits, the declarations are accepted (the start itself is
	// then what waits for a slot).
	s := New(Options{})
	c := newConn(context.Background(), s, &bufConn{})
	ts := many(256)
	ts[0] = toolDecl{Name: strings.Repeat("a", 128), Description: strings.Repeat("d", 4096), Args: manyArgs[:64]}
	if _, _, err := c.config(ts, nil, false); err != nil {
		t.Errorf("declarations at the limits refused: %v", err)
	}
}
