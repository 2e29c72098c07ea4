package integration

import (
	"context"
	"testing"
)

// compiledRuntimeR lists the runtime's functions that R has byte-compiled
// (found through a tool's body, which holds the runtime's call_tool).
const compiledRuntimeR = `compiled <- function() {
  rt <- environment(body(add)[[1]])$rt
  n <- ls(rt, all.names = TRUE)
  n[vapply(n, function(x) is.function(rt[[x]]) &&
    typeof(.Internal(bodyCode(rt[[x]]))) == "bytecode", NA)]
}
`

// A tool call runs under the user code's JIT, and the runtime's functions
// on its path must stay uncompiled: compiling them costs milliseconds,
// paid again in every fresh execution's copy. Plain and general values,
// errors, interrupt-free waits and the by-name entry all count.
func TestToolCallCompilesNothing(t *testing.T) {
	cfg := baseConfig()
	cfg.Tools = seedTools(nil)
	s, err := testHost.NewSession(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	code := compiledRuntimeR + `
before <- compiled()
for (i in 1:200) {
  add(i, 1)
  echo(list(a = 1, b = "x"))
  echo(c(x = 2))
  echo("caf\u00e9")
  get_weather("Oslo")
  .securer_call_tool("add", a = 1, b = 2)
  try(add("a", 1), silent = TRUE)
  slow(0)
}
newly <- setdiff(compiled(), before)
stopifnot(compiler::enableJIT(-1L) > 0L)
if (length(newly)) stop("compiled: ", paste(newly, collapse = ", "))
length(before)
`
	for _, fresh := range []bool{false, true} {
		exec := s.Execute
		if fresh {
			exec = s.ExecuteFresh
		}
		res, err := exec(context.Background(), code)
		if err != nil {
			t.Fatalf("fresh=%v: %v\n%s%s", fresh, err, res.Stdout, res.Stderr)
		}
		t.Logf("fresh=%v: %v runtime functions compiled before the calls, none after", fresh, res.Value.Go())
	}
}
