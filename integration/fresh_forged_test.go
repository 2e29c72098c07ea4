package integration

import (
	"fmt"
	"testing"

	securer "github.com/securer-runc/securer-runc"
)

// TestFreshForgedFrames: code of a fresh execution that reaches the
// runtime's own connection and writes frames on it (its own result early,
// a sweep report, frames for the next execution, from the copy or from a
// background process) cannot end the next execution in a protocol error
// nor answer for it: the next fresh execution runs its own code.
func TestFreshForgedFrames(t *testing.T) {
	const prelude = `.rt <- get("rt", environment(body(add)[[1]])); id <- dynGet("id")
		frame <- function(type, id, extra = "") sprintf('{"type":"%s","id":%.0f%s}', type, id, extra)
		res <- function(id, v) frame("result", id, sprintf(',"value":{"type":"character","value":["%s"]},"visible":true,"printed":"","warnings":[],"messages":[],"error":null,"interrupted":false', v))
		`
	attacks := []struct{ name, code string }{
		{"own result then a sweep report", `.rt$send(res(id, "mine")); .rt$send(frame("swept", id)); Sys.sleep(0.5)`},
		{"frames for the next execution", `.rt$send(res(id, "mine")); .rt$send(frame("swept", id)); .rt$send(frame("forked", id + 1)); .rt$send(res(id + 1, "forged")); Sys.sleep(0.5)`},
		{"a background writer", `parallel::mcparallel({ Sys.sleep(0.3); .rt$main_pid <- Sys.getpid(); for (i in 0:3) .rt$send(res(id + i, "forged")) })
			.rt$send(res(id, "mine")); .rt$send(frame("swept", id))`},
		{"the copy answers for the next execution", `.rt$send(res(id, "mine")); .rt$send(frame("swept", id))
			repeat {
				m <- .rt$receive()
				switch(m$type,
					sweep = .rt$send(frame("swept", m$id, sprintf(',"token":"%s"', m$token))),
					execute = .rt$send(frame("forked", m$id)),
					code = .rt$send(res(m$id, "stolen")))
			}`},
		{"garbage", `.rt$send(res(id, "mine")); .rt$write_raw(charToRaw("{not json\n")); Sys.sleep(0.5)`},
	}
	cfg := baseConfig()
	cfg.Tools = seedTools(nil)
	s := newSession(t, cfg)
	for i, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			fresh(t, s, prelude+a.code)
			want := fmt.Sprintf("next %d", i)
			for range 2 {
				res := fresh(t, s, fmt.Sprintf("Sys.sleep(0.7); %q", want))
				if res.Verdict != securer.VerdictOK || res.Value.Go() != want {
					t.Errorf("after the attack: verdict %s value %v detail %q", res.Verdict, res.Value.Go(), res.Detail)
				}
			}
		})
	}
}

// TestToolCallIDsPastScientific: R prints 100000 as 1e+05; a tool call id
// written that way broke the protocol at an R's 100,000th tool call.
func TestToolCallIDsPastScientific(t *testing.T) {
	cfg := baseConfig()
	cfg.Tools = seedTools(nil)
	s := newSession(t, cfg)
	mustOK(t, s, `.rt <- get("rt", environment(body(add)[[1]])); .rt$next_id <- 99999`)
	for range 2 {
		if res := mustOK(t, s, "add(1, 2)"); res.Value.Go() != 3.0 {
			t.Errorf("add: %v", res.Value.Go())
		}
	}
}
