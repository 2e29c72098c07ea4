package service

import (
	"context"
	"testing"
)

// Issue 13 item 3: an execute request's plots member is checked before
// the request is queued; unknown members in it are refused.
func TestExecutePlotsRequest(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		code       string // "": accepted (the session does not exist: not_found)
	}{
		{"png", `{"op":"execute","id":"1","session":"s1","code":"plot(1)","plots":{"format":"png","width":400,"height":300,"dpi":72}}`, CodeNotFound},
		{"svg only", `{"op":"execute","id":"1","session":"s1","code":"1","plots":{"format":"svg"}}`, CodeNotFound},
		{"none", `{"op":"execute","id":"1","pool":"p1","code":"1","plots":{"format":"none"}}`, CodeNotFound},
		{"gif", `{"op":"execute","id":"1","session":"s1","code":"1","plots":{"format":"gif"}}`, CodeBadRequest},
		{"too wide", `{"op":"execute","id":"1","session":"s1","code":"1","plots":{"width":4097}}`, CodeBadRequest},
		{"too small", `{"op":"execute","id":"1","session":"s1","code":"1","plots":{"height":15}}`, CodeBadRequest},
		{"dpi", `{"op":"execute","id":"1","session":"s1","code":"1","plots":{"dpi":601}}`, CodeBadRequest},
		{"unknown member", `{"op":"execute","id":"1","session":"s1","code":"1","plots":{"format":"png","bg":"red"}}`, "decode"},
		{"wrong type", `{"op":"execute","id":"1","session":"s1","code":"1","plots":{"width":"768"}}`, "decode"},
		{"other op", `{"op":"restart_session","id":"1","session":"s1","plots":{}}`, "decode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := decodeRequest([]byte(tc.line))
			if tc.code == "decode" {
				if err == nil {
					t.Fatalf("decoded %+v, want refused", req)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := newConn(context.Background(), New(Options{}), &bufConn{})
			j, err := c.prepare(req, int64(len(tc.line)))
			if err == nil {
				c.finish(j)
				c.work.Done()
			}
			if got := errCode(err); got != tc.code {
				t.Errorf("prepare: %v (code %s), want code %s", err, got, tc.code)
			}
		})
	}
}
