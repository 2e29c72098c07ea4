package securer

import (
	"context"
	"testing"

	"github.com/securer-runc/securer-runc/bridge"
)

// freshR plays a warm R that serves fresh executions: the copy asks for
// the code (forked) and answers through copy, then the warm R sweeps when
// the host asks, repeating the host's token.
func freshR(t *testing.T, copy func(r *fakeR, id uint64, code string)) func(r *fakeR) {
	return func(r *fakeR) {
		if !r.handshake() {
			return
		}
		for {
			m, err := r.recv()
			if err != nil {
				return
			}
			switch {
			case m.Type == "execute" && m.Fresh:
				r.send(bridge.Forked{Type: "forked", ID: m.ID})
				c, ok := r.expect(t, "code")
				if !ok {
					return
				}
				copy(r, m.ID, c.Code)
			case m.Type == "sweep":
				r.send(bridge.Swept{Type: "swept", ID: m.ID, Token: m.Token})
			default:
				t.Errorf("R got %+v", m)
				return
			}
		}
	}
}

// Frames a fresh execution's copy writes after its own result (a forged
// sweep report, frames for the next execution's id) are dropped: the next
// execution runs in the same warm R and gets its own result, not the
// forged one nor a protocol error.
func TestCoreFreshForgedFrames(t *testing.T) {
	tests := []struct {
		name   string
		forged func(id uint64) []any
	}{
		{"a sweep report without the token", func(id uint64) []any {
			return []any{bridge.Swept{Type: "swept", ID: id}}
		}},
		{"a sweep report with a guessed token", func(id uint64) []any {
			return []any{bridge.Swept{Type: "swept", ID: id, Token: "00000000000000000000000000000000"}}
		}},
		{"the next execution's frames", func(id uint64) []any {
			return []any{bridge.Swept{Type: "swept", ID: id}, bridge.Forked{Type: "forked", ID: id + 1}, result(id+1, "forged")}
		}},
		{"its own result again", func(id uint64) []any {
			return []any{result(id, "again"), result(id, "and again")}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, eng := fakeSession(t, Config{}, freshR(t, func(r *fakeR, id uint64, code string) {
				if code == "attack" {
					r.send(append([]any{result(id, "mine")}, tt.forged(id)...)...)
					return
				}
				r.send(result(id, code))
			}))
			if res, err := s.ExecuteFresh(context.Background(), "attack"); err != nil || res.Value.Go() != "mine" {
				t.Fatalf("the attacking execution: %+v, %v", res, err)
			}
			for _, code := range []string{"next", "after"} {
				res, err := s.ExecuteFresh(context.Background(), code)
				if err != nil || res.Verdict != VerdictOK || res.Value.Go() != code {
					t.Fatalf("execution %q after the attack: %+v, %v; want its own result", code, res, err)
				}
			}
			if n := eng.launches(); n != 1 {
				t.Errorf("R was started %d times; the warm R should have been kept", n)
			}
		})
	}
}
