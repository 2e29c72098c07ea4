package rvalue

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests run the real R side (bridge/r/values.R) under the host's
// Rscript. The project installs R on the host for tests, so a missing
// Rscript is a failure, not a skip.

const valuesR = "../bridge/r/values.R"

// rReport is one line printed by testdata/roundtrip.R.
type rReport struct {
	Name     string          `json:"name"`
	Error    string          `json:"error"`
	Wire     json.RawMessage `json:"wire"`
	Plain    json.RawMessage `json:"plain"`
	PlainErr bool            `json:"plainErr"`
	Checks   map[string]bool `json:"checks"`
}

func rscript(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("Rscript")
	if err != nil {
		t.Fatalf("Rscript not found (install r-base-core and r-cran-jsonlite on the host): %v", err)
	}
	cmd := exec.Command(bin, append([]string{"--vanilla", "testdata/roundtrip.R"}, args...)...)
	// POSIXct without a tzone renders in the session zone; pin it.
	cmd.Env = append(os.Environ(), "TZ=UTC", "LANG=C.UTF-8", "LC_ALL=C.UTF-8")
	return cmd
}

func parseReport(t *testing.T, line []byte) rReport {
	t.Helper()
	var r rReport
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatalf("bad report line from R: %v\n%.300s", err, line)
	}
	return r
}

// checkAgainstR compares the Go-side views of v with what R computed for
// the same value: the type predicates and jsonlite's plain JSON.
func checkAgainstR(t *testing.T, name string, v Value, r rReport) {
	t.Helper()
	for _, c := range CheckTypes {
		want, ok := r.Checks[c]
		if !ok {
			t.Errorf("%s: R did not report %s", name, c)
			continue
		}
		if got := v.Check(c) == nil; got != want {
			t.Errorf("%s: Check(%q) = %v, R says %v", name, c, got, want)
		}
	}
	if r.PlainErr || v.Type() == TypeUnsupported {
		return
	}
	got, err := v.PlainJSON()
	if err != nil {
		t.Errorf("%s: PlainJSON: %v", name, err)
		return
	}
	want := r.Plain
	if v.Type() == TypeRaw {
		// jsonlite's base64 has line breaks every 76 characters; ours has none.
		want = bytes.ReplaceAll(want, []byte(`\n`), nil)
	}
	if !sameJSON(got, want) {
		t.Errorf("%s: PlainJSON\n got %.300s\nwant %.300s (jsonlite)", name, got, r.Plain)
	}
}

// sameJSON compares JSON texts as data, allowing for jsonlite printing
// doubles with 15 significant digits.
func sameJSON(a, b []byte) bool {
	x, errx := decodeNumbers(a)
	y, erry := decodeNumbers(b)
	return errx == nil && erry == nil && approxEqual(x, y)
}

func decodeNumbers(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var x any
	err := d.Decode(&x)
	return x, err
}

func approxEqual(x, y any) bool {
	switch x := x.(type) {
	case json.Number:
		y, ok := y.(json.Number)
		if !ok {
			return false
		}
		// Rounded to 15 digits, xmax prints as 1.79769313486232e+308,
		// which overflows; ParseFloat then returns ±Inf, so clamp.
		fx, _ := strconv.ParseFloat(string(x), 64)
		fy, _ := strconv.ParseFloat(string(y), 64)
		fx = math.Max(-math.MaxFloat64, math.Min(math.MaxFloat64, fx))
		fy = math.Max(-math.MaxFloat64, math.Min(math.MaxFloat64, fy))
		return fx == fy || math.Abs(fx-fy) <= 1e-14*math.Max(math.Abs(fx), math.Abs(fy))
	case []any:
		y, ok := y.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !approxEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := y.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k := range x {
			if !approxEqual(x[k], y[k]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(x, y)
}

// TestRRoundTripGoOriginated sends Go-built values through R (decode,
// re-encode) and expects them back unchanged, except json values, which
// R turns into ordinary R values the way fromJSON() does.
func TestRRoundTripGoOriginated(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	deep := Null()
	for i := 1; i < DefaultMaxDepth; i++ {
		deep = List(deep)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]float64, 100_000)
	for i := range big {
		big[i] = rng.NormFloat64() * math.Pow(10, float64(rng.IntN(40)-20))
	}
	df := must(DataFrame([]string{"n", "f", "d", "s"}, []Value{
		Integers(1, 2, NAInteger),
		FactorOf("b", "a", NAString),
		Date(time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC), time.Date(2038, 1, 19, 0, 0, 0, 0, time.UTC)),
		Strings("x", NAString, "z"),
	}))
	fromGo := must(FromGo(map[string]any{"b": []int{1, 2}, "a": "x", "c": nil, "d": []any{true, 2.5}, "e": int64(1) << 40}))
	rec := func(names ...string) func(vals ...Value) Value {
		return func(vals ...Value) Value { return must(NamedList(names, vals)) }
	}
	// jsonlite's data frames carry expanded row names 1:n, not c(NA, -n).
	jsonDF := must(DataFrame([]string{"a", "b"}, []Value{Integers(1, 2), Strings("x", "y")})).
		SetAttr("row.names", Integers(1, 2))
	cases := []struct {
		name string
		v    Value
		want Value // zero: same as v
	}{
		{name: "null", v: Null()},
		{name: "logicals", v: Logicals(True, False, NALogical)},
		{name: "integers", v: Integers(0, 1, NAInteger, math.MaxInt32, -math.MaxInt32)},
		{name: "doubles", v: Doubles(point1+point2, 1e-300, 5e-324, math.MaxFloat64, -1.5, 1e21, 123456789012345680, NAReal(), math.NaN(), math.Inf(1), math.Inf(-1))},
		{name: "neg zero", v: Doubles(math.Copysign(0, -1))},
		{name: "strings", v: Strings("a", NAString, "", "h\u00e9llo \u2603 \u65e5\u672c", "\U0001F600", "q\"\\\n\t\x01\x7f/\u2028")},
		{name: "empty logical", v: Logicals()},
		{name: "empty integer", v: Integers()},
		{name: "empty double", v: Doubles()},
		{name: "empty character", v: Strings()},
		{name: "empty list", v: List()},
		{name: "empty raw", v: Raw(nil)},
		{name: "empty complex", v: Complexes()},
		{name: "list with NULLs", v: List(Null(), Integers(1), Null(), List())},
		{name: "named list", v: rec("a", "", NAString)(Doubles(1), Strings("x"), Null())},
		{name: "nested", v: rec("a")(rec("b")(rec("c")(Integers(1, 2, 3))))},
		{name: "raw", v: Raw([]byte{0, 1, 127, 128, 255})},
		{name: "complex", v: Complexes(complex(1, 2), NAComplex(), complex(math.NaN(), math.Inf(-1)), complex(NAReal(), 1))},
		{name: "factor", v: must(Factor([]string{"lo", "hi"}, []int32{2, 1, NAInteger}))},
		{name: "date", v: Date(time.Date(2024, 2, 29, 15, 0, 0, 0, ny))},
		{name: "posixct", v: POSIXct("America/New_York", time.Date(2024, 3, 10, 12, 34, 56, 0, ny), time.Unix(0, 0))},
		{name: "data frame", v: df},
		{name: "matrix", v: Integers(1, 2, 3, 4, 5, 6).SetAttr("dim", Integers(2, 3)).
			SetAttr("dimnames", List(Null(), Strings("a", "b", "c")))},
		{name: "from go", v: fromGo},
		{name: "time", v: must(FromGo(time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)))},
		{name: "depth 100", v: deep},
		{name: "big", v: Doubles(big...)},
		{name: "json object", v: must(FromRawJSON(json.RawMessage(`{"temp":72,"condition":"sunny"}`))),
			want: rec("temp", "condition")(Integers(72), Strings("sunny"))},
		{name: "json vector", v: must(FromRawJSON(json.RawMessage(`[1.5, null, 3]`))), want: Doubles(1.5, NAReal(), 3)},
		{name: "json rows", v: must(FromRawJSON(json.RawMessage(`[{"a":1,"b":"x"},{"a":2,"b":"y"}]`))), want: jsonDF},
		{name: "json scalar", v: must(FromRawJSON(json.RawMessage(`"x"`))), want: Strings("x")},
		{name: "json null", v: must(FromRawJSON(json.RawMessage(`null`))), want: Null()},
		{name: "json in list", v: List(must(FromRawJSON(json.RawMessage(`[true,false]`)))), want: List(Logicals(True, False))},
		{name: "symbol", v: Symbol("abc")},
		{name: "primitive", v: Primitive("sum")},
		// R adds the display text (repr) of a call; Equal ignores it.
		{name: "call", v: must(Call([]string{"", "", "na.rm"}, Symbol("sum"), Symbol("x"), Bools(true)))},
		{name: "code in list", v: List(Symbol("x"), must(Call(nil, Symbol("f"))))},
	}

	var in bytes.Buffer
	for _, c := range cases {
		b, err := c.v.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		in.Write(b)
		in.WriteByte('\n')
	}
	file := filepath.Join(t.TempDir(), "cases.jsonl")
	if err := os.WriteFile(file, in.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := rscript(t, "go", valuesR, file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("Rscript: %v\n%s", err, stderr.String())
	}
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	if len(lines) != len(cases) {
		t.Fatalf("R printed %d lines for %d cases\n%s", len(lines), len(cases), stderr.String())
	}
	for i, c := range cases {
		r := parseReport(t, lines[i])
		if r.Error != "" {
			t.Errorf("%s: R failed: %s", c.name, r.Error)
			continue
		}
		want := c.want
		if want.typ == "" {
			want = c.v
		}
		got, err := Decode(r.Wire, DecodeOptions{})
		if err != nil {
			t.Errorf("%s: decoding R's output: %v", c.name, err)
			continue
		}
		if !Equal(got, want) {
			wb, _ := want.MarshalJSON()
			t.Errorf("%s: R gave back\n%.400s\nwant\n%.400s", c.name, r.Wire, wb)
		}
		checkAgainstR(t, c.name, want, r)
	}
	// Equal says 0 == -0, as identical() does; the wire must keep the sign.
	if got := must(Decode(parseReport(t, lines[4]).Wire, DecodeOptions{})); !math.Signbit(got.Doubles()[0]) {
		t.Error("neg zero lost its sign in R")
	}
}

// TestRRoundTripROriginated builds values in R, has Go decode and
// re-marshal them, and has R check that what comes back is identical().
func TestRRoundTripROriginated(t *testing.T) {
	cmd := rscript(t, "r", valuesR)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 64<<20)

	byName := map[string]Value{}
	var replies bytes.Buffer
	n := 0
	for sc.Scan() {
		line := sc.Bytes()
		if string(line) == "END" {
			break
		}
		r := parseReport(t, line)
		n++
		v, err := Decode(r.Wire, DecodeOptions{})
		if err != nil {
			t.Errorf("%s: Go cannot decode R's value: %v\n%.300s", r.Name, err, r.Wire)
			replies.WriteString("{}\n")
			continue
		}
		byName[r.Name] = v
		b, err := v.MarshalJSON()
		if err != nil {
			t.Errorf("%s: Go cannot re-marshal: %v", r.Name, err)
			replies.WriteString("{}\n")
			continue
		}
		replies.Write(b)
		replies.WriteByte('\n')
		checkAgainstR(t, r.Name, v, r)
	}
	if n == 0 {
		stdin.Close()
		t.Fatalf("R printed no cases: %v\n%s", sc.Err(), stderr.String())
	}
	if _, err := io.Copy(stdin, &replies); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	ok, done := 0, false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "DONE":
			done = true
		case strings.HasPrefix(line, "OK "):
			ok++
		default:
			t.Error(line)
		}
	}
	if !done {
		t.Fatalf("R did not finish: %v\n%s", sc.Err(), stderr.String())
	}
	if ok != n {
		t.Errorf("%d of %d cases survived R -> Go -> R", ok, n)
	}

	// Spot-check that types and NAs arrive as R meant them.
	expect := []struct {
		name string
		want Value
	}{
		{"int", Integers(1)},
		{"dbl", Doubles(1)},
		{"na_lgl", Logicals(NALogical)},
		{"na_int", Integers(NAInteger)},
		{"na_real", Doubles(NAReal())},
		{"na_chr", Strings(NAString)},
		{"null", Null()},
		{"point3", Doubles(point1 + point2)},
		{"xmax", Doubles(math.MaxFloat64)},
		{"utf8", Strings("h\u00e9llo \u2603 \u65e5\u672c")},
		{"latin1", Strings("caf\u00e9")},
		{"lgl", Logicals(True, NALogical, False)},
		{"raw", Raw([]byte{0, 1, 127, 255})},
		{"factor", must(Factor([]string{"lo", "hi"}, []int32{1, 2, NAInteger, 1}))},
		{"date", Date(time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC))},
		{"posixct", POSIXct("America/New_York", time.Unix(1710088496, 0))},
		{"unsup_ptr", Unsupported([]string{"externalptr"}, "<pointer: (nil)>")},
		{"code_call", must(Call(nil, Symbol("+"), Symbol("x"), Doubles(1)))},
		{"code_symbol", Symbol("abc")},
		{"code_sum", Primitive("sum")},
	}
	for _, e := range expect {
		got, ok := byName[e.name]
		if !ok {
			t.Errorf("R did not send %s", e.name)
			continue
		}
		if !Equal(got, e.want) {
			b, _ := got.MarshalJSON()
			t.Errorf("%s: got %.300s", e.name, b)
		}
	}
	if v := byName["neg_zero"]; v.Len() != 1 || !math.Signbit(v.Doubles()[0]) {
		t.Error("neg_zero lost its sign")
	}
	df := byName["df"]
	if got := df.Describe(); got != "data.frame 3x5" {
		t.Errorf("df Describe = %q", got)
	}
	rows, _ := df.Go().([]map[string]any)
	if len(rows) != 3 || fmt.Sprint(rows[0]) != "map[d:2024-01-01 f:u n:1 s:a x:1.5]" || rows[1]["x"] != nil {
		t.Errorf("df rows = %v", rows)
	}
	if got := byName["unsup_in_list"].List(); len(got) != 2 || got[0].Type() != TypeUnsupported || got[1].Describe() != "double(1)" {
		t.Errorf("unsup_in_list = %v", got)
	}
	checkCodeShapes(t, byName)
}

// checkCodeShapes looks at the Go side of the code, environment and S4
// values R sent: the type tree a Go user reads.
func checkCodeShapes(t *testing.T, byName map[string]Value) {
	t.Helper()
	fn := byName["code_fn"]
	if names, defs := fn.Formals(); fn.Type() != TypeClosure || !slices.Equal(names, []string{"x", "y", "..."}) ||
		!Equal(defs[0], Symbol("")) || !Equal(defs[1], Integers(2)) || fn.Env().EnvKind() != EnvGlobal ||
		fn.Body().Type() != TypeLanguage || !strings.Contains(fn.Source(), "x^y") {
		t.Errorf("code_fn = %s", fn)
	}
	if f := byName["code_formula"]; f.Type() != TypeLanguage || !f.Inherits("formula") || f.String() != "y ~ x + log(z)" {
		t.Errorf("code_formula = %s (%v)", f, f.Class())
	} else if env, _ := f.Attr(".Environment"); env.EnvKind() != EnvGlobal {
		t.Errorf("code_formula .Environment = %v", env.EnvKind())
	}
	if m := byName["code_mean"]; m.Type() != TypeClosure || m.Env().EnvKind() != EnvNamespace || m.Env().Name() != "base" {
		t.Errorf("code_mean = %s in %v", m, m.Env().EnvKind())
	}
	env := byName["code_env_cycle"]
	self, _ := env.Binding("self")
	getN, _ := env.Binding("get_n")
	if env.EnvID() == "" || self.EnvRef() != env.EnvID() || getN.Env().EnvRef() != env.EnvID() || env.Dropped() != 0 {
		t.Errorf("code_env_cycle: id %q, self ref %q, get_n env ref %q", env.EnvID(), self.EnvRef(), getN.Env().EnvRef())
	}
	if p := byName["code_s4"]; p.Type() != TypeS4 || p.Describe() != "RtPoint" || !p.IsS4() {
		t.Errorf("code_s4 = %s", p.Describe())
	} else if x, _ := p.Attr("x"); !Equal(x, Doubles(1.5)) {
		t.Errorf("code_s4 slot x = %v", x)
	}
	if b := byName["code_s4_bit"]; b.Type() != TypeList || !b.IsS4() {
		t.Errorf("code_s4_bit: %s, S4 %v", b.Type(), b.IsS4())
	}
	fit := byName["code_lm"]
	coef, _ := fit.Get("coefficients")
	terms, _ := fit.Get("terms")
	if len(coef.Doubles()) != 2 || terms.Type() != TypeLanguage || !terms.Inherits("terms") || !fit.IsCode() {
		t.Errorf("code_lm: coefficients %s, terms %s %v", coef.Describe(), terms.Type(), terms.Class())
	}
}
