package service

import (
	"context"
	"strings"
	"testing"
)

func TestRequestID(t *testing.T) {
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	deepObj := strings.Repeat(`{"a":`, 20000) + "1" + strings.Repeat("}", 20000)
	cases := []struct {
		name, line, want string
	}{
		{"plain", `{"op":"ping","id":"7"}`, "7"},
		{"id after a deep value", `{"op":"execute","code":` + deep + `,"id":"8"}`, "8"},
		{"id before a deep object", `{"id":"9","options":` + deepObj + `}`, "9"},
		{"escaped id", ` { "id" : "a\"b\\" , "x" : "}]" } `, `a"b\`},
		{"escaped key", `{"\u0069d":"10","x":[1,{"id":"inner"}]}`, "10"},
		{"brackets in strings", `{"x":"[[[{","id":"11","y":["]]]}"]}`, "11"},
		{"nested id only", `{"x":{"id":"inner"}}`, ""},
		{"two ids", `{"id":"1","id":"2"}`, ""},
		{"number id", `{"id":12}`, ""},
		{"not an object", `["id","13"]`, ""},
		{"unfinished", `{"id":"14","x":[`, ""},
		{"broken top level", `{"id":"15" "x":1}`, ""},
		{"trailing garbage", `{"id":"16"} x`, ""},
		{"empty", `{}`, ""},
		{"unterminated string", `{"id":"17`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := requestID([]byte(c.line)); got != c.want {
				t.Errorf("requestID = %q, want %q", got, c.want)
			}
		})
	}
}

// A request nested deeper than the decoder allows is refused with its id,
// wherever the id is among its members.
func TestTooDeepRequestAnsweredWithID(t *testing.T) {
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	for _, line := range []string{
		`{"op":"execute","id":"deep-1","session":"s1","code":` + deep + `}`,
		`{"op":"execute","session":"s1","code":` + deep + `,"id":"deep-1"}`,
	} {
		rw := &bufConn{}
		c := newConn(context.Background(), New(Options{}), rw)
		c.handle([]byte(line))
		evs := rw.events(t)
		if len(evs) != 1 || evs[0]["type"] != "error" || evs[0]["id"] != "deep-1" {
			t.Errorf("events %v; want one error with the request's id", evs)
			continue
		}
		if code := evs[0]["error"].(map[string]any)["code"]; code != CodeBadRequest {
			t.Errorf("code %v, want %s", code, CodeBadRequest)
		}
	}
}
