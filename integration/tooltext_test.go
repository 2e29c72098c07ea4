package integration

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// installRefused is the message install.packages() gives in the box.
const installRefused = `securer: packages cannot be installed inside the sandbox (read-only, no network). ` +
	`Add Debian packages to the rootfs instead: securer-runc rootfs build --packages "r-cran-<name> ..."`

// TestInstallPackagesRefused: install.packages() says why it cannot work
// and how packages are added, with and without tools, in stateful and
// fresh executions.
func TestInstallPackagesRefused(t *testing.T) {
	withTools := baseConfig()
	withTools.Tools = seedTools(nil)
	code := `tryCatch(install.packages("x"), error = function(e) c(conditionMessage(e), class(e)))`
	want := []string{installRefused, "securer_install_refused", "error", "condition"}
	for _, c := range []struct {
		name  string
		cfg   securer.Config
		fresh bool
	}{
		{"no tools", baseConfig(), false},
		{"tools", withTools, false},
		{"fresh", withTools, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSession(t, c.cfg)
			var res *securer.Result
			if c.fresh {
				ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
				defer cancel()
				var err error
				if res, err = s.ExecuteFresh(ctx, code); res == nil {
					t.Fatalf("ExecuteFresh: %v", err)
				}
			} else {
				res = mustOK(t, s, code)
			}
			if got := strs(res.Value); !slices.Equal(got, want) {
				t.Fatalf("got %q, want %q", got, want)
			}
			// Uncaught, it ends the execution as an R error with that text.
			res = execute(t, s, `install.packages(c("dplyr", "ggplot2"))`)
			if res.Verdict != securer.VerdictError || res.Error == nil || !strings.Contains(res.Error.Message, installRefused) {
				t.Fatalf("verdict %s, error %+v; want an R error with %q", res.Verdict, res.Error, installRefused)
			}
		})
	}
}

// TestToolErrorText: a tool's error reaches the code with the tool's own
// text and the tool's name in a field; a refused argument reads as
// securer 0.2.0 wrote it; .securer_call_tool (0.2.0) calls a tool by name.
func TestToolErrorText(t *testing.T) {
	cfg := baseConfig()
	cfg.Tools = append(seedTools(nil), securer.Tool{
		Name: "lookup", Description: "Looks a key up",
		Args: []securer.Arg{{Name: "key", Type: "character"}},
		Handler: func(ctx context.Context, args map[string]securer.Value) (any, error) {
			k, _ := args["key"].Go().(string)
			return nil, errors.New("no such key: " + k)
		},
	})
	s := newSession(t, cfg)
	cond := `function(expr) tryCatch({expr; "no error"}, error = function(e)
		c(conditionMessage(e), if (is.null(e$tool)) "<no tool field>" else e$tool, class(e)))`
	cases := []struct {
		name, code string
		want       []string
	}{
		{"tool error", `lookup("k")`,
			[]string{"no such key: k", "lookup", "securer_tool_error", "error", "condition"}},
		{"wrong type", `add("1", 2)`,
			[]string{"Tool 'add': argument 'a' must be numeric, got character", "add", "securer_tool_error", "error", "condition"}},
		{"wrong type, list", `add(1, list(2))`,
			[]string{"Tool 'add': argument 'b' must be numeric, got list", "add", "securer_tool_error", "error", "condition"}},
		{"wrong type, factor", `lookup(factor("k"))`,
			[]string{"Tool 'lookup': argument 'key' must be character, got factor", "lookup", "securer_tool_error", "error", "condition"}},
		{"legacy call", `.securer_call_tool("lookup", key = "z")`,
			[]string{"no such key: z", "lookup", "securer_tool_error", "error", "condition"}},
		{"legacy call, unknown tool", `.securer_call_tool("nope", 1)`,
			[]string{`unknown tool "nope"`, "nope", "securer_tool_error", "error", "condition"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := mustOK(t, s, "("+cond+")("+c.code+")")
			if got := strs(res.Value); !slices.Equal(got, c.want) {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
	// .securer_call_tool forwards named and positional arguments.
	for _, code := range []string{`.securer_call_tool("add", a = 2, b = 3)`, `.securer_call_tool("add", 2, 3)`} {
		res := mustOK(t, s, code)
		if got := number(res.Value); got != 5 {
			t.Errorf("%s = %v, want 5", code, res.Value.Go())
		}
	}
	// Uncaught, the Go side still sees a tool failure.
	res := execute(t, s, `lookup("k")`)
	if !errors.Is(errorOf(res), securer.ErrToolFailed) || !strings.Contains(res.Error.Message, "no such key: k") {
		t.Errorf("uncaught tool error: %+v", res.Error)
	}
}
