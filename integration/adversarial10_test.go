package integration

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	securer "securer-runc"
)

// Issue 10 #15: the bridge answers only a tool call with a new id; R
// replaying an answered id, or going back to an older one, breaks the
// protocol (it used to answer ids 5, 5, 1 in turn).
func TestAdversarialToolCallIDs(t *testing.T) {
	h := newAdvHarness(t, false)
	s := newSession(t, h.config())
	// fixed(id) sends a tool_call with exactly that id and waits for the
	// answer.
	const fixed = `fixed <- function(id) {
		.rt$send(sprintf(r"({"type":"tool_call","id":%d,"tool":"add","args":{"a":%s,"b":%s}})", as.integer(id), enc(1), enc(2)))
		repeat { m <- .rt$receive(); if (identical(m$type, "tool_result")) return(m$id) }
	}
	base <- as.integer(.rt$next_id) + 5L
	`
	for _, tc := range []struct{ name, calls string }{
		{"replayed id", "fixed(base); fixed(base)"},
		{"older id", "fixed(base); fixed(base - 4L)"},
		{"id zero", "fixed(0L)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.ok(t, s, rtPrelude)
			h.ok(t, s, fixed)
			res, err := s.Execute(context.Background(), tc.calls)
			if res == nil {
				t.Fatalf("no result: %v", err)
			}
			if res.Verdict != securer.VerdictProtocolError || !errors.Is(err, securer.ErrProtocol) || !strings.Contains(res.Detail, "tool call id") {
				t.Fatalf("verdict %s, err %v, detail %q: want a protocol error naming the tool call id", res.Verdict, err, res.Detail)
			}
			// The session restarts and tool calls work again.
			if v := number(h.ok(t, s, "add(2, 3)").Value); v != 5 {
				t.Fatalf("after the protocol error add(2, 3) = %v", v)
			}
		})
	}
	// Ordinary calls, many per execution and across executions, are fine.
	h.ok(t, s, "for (i in 1:20) add(i, 1)")
	if v := number(h.ok(t, s, "add(1, 1)").Value); v != 2 {
		t.Fatalf("add(1, 1) = %v", v)
	}
}

// Issue 10 #9: a NUL in a tool's answer is refused with a clear error; it
// used to reach R silently cut at the NUL ("a\u0000b" arrived as "a").
func TestToolAnswerWithNUL(t *testing.T) {
	cfg := baseConfig()
	cfg.Tools = []securer.Tool{{
		Name: "nul",
		Args: []securer.Arg{{Name: "kind", Type: "character"}},
		Handler: func(_ context.Context, args map[string]securer.Value) (any, error) {
			switch args["kind"].Strings()[0] {
			case "json":
				return json.RawMessage(`{"text":"a\u0000b"}`), nil
			case "name":
				return json.RawMessage(`{"a\u0000b":1}`), nil
			}
			return "a\x00b", nil
		},
	}}
	s := newSession(t, cfg)
	for _, kind := range []string{"json", "name", "string"} {
		res := execute(t, s, `nul("`+kind+`")`)
		if res.Verdict != securer.VerdictError || res.Error == nil || !strings.Contains(res.Error.Message, "NUL") {
			t.Errorf("%s: verdict %s, value %s, error %v: want an R error naming the NUL", kind, res.Verdict, valueText(res.Value), res.Error)
		}
	}
	if v := number(mustOK(t, s, "1 + 1").Value); v != 2 {
		t.Fatalf("session after the refused answers: 1 + 1 = %v", v)
	}
}
