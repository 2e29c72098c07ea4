package integration

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/rvalue"
)

// TestValueRoundTrip sends each value from R to a host tool and back
// (R -> host -> R) and checks R sees an identical() value.
func TestValueRoundTrip(t *testing.T) {
	cfg := baseConfig()
	cfg.Tools = seedTools(nil)
	s := newSession(t, cfg)
	cases := map[string]string{
		"integer":        "1:3",
		"double":         "c(1.5, 0.1 + 0.2, -0, 1e-300, .Machine$double.xmax)",
		"integer vs dbl": "c(1L, NA_integer_)",
		"NA double":      "c(NA_real_, NaN, Inf, -Inf)",
		"NA character":   `c("a", NA_character_, "NA")`,
		"NA logical":     "c(TRUE, FALSE, NA)",
		"NULL":           "NULL",
		"utf8":           `c("héllo", "☃", "日本語", "")`,
		"named list":     "list(a = 1, b = list(c = 'x', d = NULL))",
		"unnamed list":   "list(1L, 'a', TRUE, NULL)",
		"nested":         "list(list(list(1:2)))",
		"data frame":     `data.frame(x = 1:3, y = c("a", "b", NA), z = c(1.5, NA, 3), f = factor(c("u", "v", "u")), stringsAsFactors = FALSE)`,
		"factor":         `factor(c("lo", "hi", NA, "lo"), levels = c("lo", "hi"))`,
		"ordered":        `factor(c("a", "b"), ordered = TRUE)`,
		"Date":           `as.Date(c("2024-02-29", NA, "1970-01-01"))`,
		"POSIXct":        `as.POSIXct(c("2024-03-10 12:34:56.5", NA), tz = "America/New_York")`,
		"matrix":         "matrix(1:6, 2, dimnames = list(c('r1', 'r2'), NULL))",
		"named vector":   "c(a = 1, b = 2)",
		"empty":          "list(integer(0), character(0), double(0), logical(0), list())",
		"raw":            "as.raw(c(0, 255, 16))",
		"complex":        "c(1+2i, NA)",
		"formula":        "y ~ x + log(z)",
		"call":           "quote(f(x, y = 2))",
		"symbol":         "as.name('a')",
		"function":       "function(x, y = 2) x + y",
	}
	for name, expr := range cases {
		t.Run(name, func(t *testing.T) {
			res := mustOK(t, s, "x <- "+expr+"; y <- echo(x); if (!identical(x, y)) { str(x); str(y) }; identical(x, y)")
			if res.Value.Go() != true {
				t.Errorf("%s did not survive the round trip:\n%s", expr, res.Stdout)
			}
		})
	}
}

// TestValuesToHost checks what Go sees of R values.
func TestValuesToHost(t *testing.T) {
	s := newSession(t, baseConfig())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	get := func(code string) securer.Value {
		t.Helper()
		res, err := s.Execute(ctx, code)
		if err != nil {
			t.Fatalf("%s: %v", code, err)
		}
		return res.Value
	}
	if v := get("5L"); v.Type() != rvalue.TypeInteger || v.Integers()[0] != 5 {
		t.Errorf("5L arrived as %s %v", v.Type(), v.Go())
	}
	if v := get("5"); v.Type() != rvalue.TypeDouble || v.Doubles()[0] != 5 {
		t.Errorf("5 arrived as %s", v.Type())
	}
	v := get("c(NA, 1)")
	if v.Type() != rvalue.TypeDouble || !rvalue.IsNAReal(v.Doubles()[0]) || !v.IsNA(0) {
		t.Errorf("NA_real_ lost: %v", v.Go())
	}
	if v := get("NaN"); !math.IsNaN(v.Doubles()[0]) || v.IsNA(0) {
		t.Errorf("NaN is not NA")
	}
	if v := get("NA_character_"); v.Type() != rvalue.TypeCharacter || !v.IsNA(0) {
		t.Errorf("NA_character_ arrived as %v", v.Go())
	}
	v = get(`data.frame(a = 1:2, b = c("x", "y"))`)
	if !v.IsDataFrame() || v.NRow() != 2 {
		t.Errorf("data frame arrived as %v", v.Go())
	}
	if rows, ok := v.Go().([]map[string]any); !ok || len(rows) != 2 || rows[1]["b"] != "y" {
		t.Errorf("data frame rows: %#v", v.Go())
	}
	v = get(`factor(c("a", "b", "a"))`)
	if !v.IsFactor() || len(v.Levels()) != 2 {
		t.Errorf("factor arrived as %v", v.Go())
	}
	if v := get("as.Date('2024-02-29')"); v.Go() != "2024-02-29" {
		t.Errorf("Date arrived as %#v", v.Go())
	}
	if v := get("function(x) x"); v.Type() != rvalue.TypeClosure {
		t.Errorf("a closure arrived as %s", v.Type())
	}
}

// TestValueModels: a fitted model crosses as data plus its code (terms),
// and the invisible function definition of an assignment is no error.
func TestValueModels(t *testing.T) {
	s := newSession(t, baseConfig())
	res := mustOK(t, s, "lm(mpg ~ wt, data = mtcars)")
	fit := res.Value
	if !fit.Inherits("lm") || !fit.IsCode() {
		t.Fatalf("lm arrived as %s (%v)", fit.Describe(), fit.Class())
	}
	coef, _ := fit.Get("coefficients")
	if coef.Type() != rvalue.TypeDouble || coef.Len() != 2 || coef.Names()[1] != "wt" {
		t.Errorf("coefficients = %s %v", coef.Describe(), coef.Names())
	}
	terms, _ := fit.Get("terms")
	if terms.Type() != rvalue.TypeLanguage || !terms.Inherits("terms") || terms.String() != "mpg ~ wt" {
		t.Errorf("terms = %s %v %q", terms.Type(), terms.Class(), terms.String())
	}
	if env, _ := terms.Attr(".Environment"); env.EnvKind() != rvalue.EnvGlobal {
		t.Errorf("terms .Environment = %s", env.Describe())
	}
	if call, _ := fit.Get("call"); call.Type() != rvalue.TypeLanguage || len(call.Parts()) != 3 || call.PartNames()[2] != "data" {
		t.Errorf("call = %s %v", call, call.PartNames())
	}
	res = mustOK(t, s, "square <- function(x) x^2")
	if res.Value.Type() != rvalue.TypeClosure || res.Visible || !strings.Contains(res.Value.Source(), "x^2") {
		t.Errorf("an assignment returned %s, visible %v", res.Value, res.Visible)
	}
	// An invisible value that cannot cross is NULL, not a placeholder.
	res = mustOK(t, s, `p <- methods::new("externalptr")`)
	if res.Value.Type() != rvalue.TypeNull || res.Visible {
		t.Errorf("an invisible external pointer returned %s, visible %v", res.Value.Describe(), res.Visible)
	}
}

// TestLargeValues: frames bigger than a socket buffer cross intact both ways.
func TestLargeValues(t *testing.T) {
	cfg := baseConfig()
	cfg.Tools = seedTools(nil)
	s := newSession(t, cfg)
	res := mustOK(t, s, `x <- strrep("ab", 3e6); y <- echo(x); identical(x, y)`)
	if res.Value.Go() != true {
		t.Error("a 6 MB string did not survive the round trip")
	}
	res = mustOK(t, s, `v <- runif(2e5); identical(echo(v), v)`)
	if res.Value.Go() != true {
		t.Error("200,000 doubles did not survive the round trip")
	}
	res = mustOK(t, s, `strrep("z", 5e6)`)
	if res.Value.Len() != 1 || len(res.Value.Strings()[0]) != 5e6 {
		t.Error("a 5 MB result value was not delivered")
	}
}

// TestInvalidUTF8Text: invalid bytes in R's messages do not break the result.
func TestInvalidUTF8Text(t *testing.T) {
	cfg := baseConfig()
	cfg.Tools = seedTools(nil)
	s := newSession(t, cfg)
	res := execute(t, s, `x <- rawToChar(as.raw(c(0x66, 0xff))); warning(x); stop(x)`)
	if res.Verdict != securer.VerdictError || res.Error == nil {
		t.Fatalf("verdict %s", res.Verdict)
	}
	res = execute(t, s, `echo(rawToChar(as.raw(c(0x66, 0xff))))`)
	if res.Verdict != securer.VerdictError || res.Error == nil || !strings.Contains(res.Error.Message, "UTF-8") {
		t.Fatalf("invalid UTF-8 tool argument: verdict %s error %+v", res.Verdict, res.Error)
	}
	mustOK(t, s, "1")
}
