package rvalue

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConstructorErrors(t *testing.T) {
	tests := []struct {
		name, wantErr string
		err           error
	}{
		{"named list lengths", "2 names for 1 values", second(NamedList([]string{"a", "b"}, []Value{Null()}))},
		{"factor code", "code 3 at index 1 outside 1..2", second(Factor([]string{"a", "b"}, []int32{1, 3}))},
		{"factor zero", "code 0", second(Factor([]string{"a"}, []int32{0}))},
		{"df lengths", `column "b" has 1 rows, want 2`, second(DataFrame([]string{"a", "b"}, []Value{Integers(1, 2), Strings("x")}))},
		{"df names", "1 names for 2 columns", second(DataFrame([]string{"a"}, []Value{Integers(1), Integers(2)}))},
		{"df column type", "not a vector", second(DataFrame([]string{"a"}, []Value{Null()}))},
		{"raw json", "FromRawJSON", second(FromRawJSON(json.RawMessage(`{`)))},
		{"raw json dup", "duplicate", second(FromRawJSON(json.RawMessage(`{"a":1,"a":2}`)))},
		{"raw json NUL", "NUL (at /0)", second(FromRawJSON(json.RawMessage(`["a\u0000b"]`)))},
		{"raw json NUL name", `NUL (at /k\u0000z)`, second(FromRawJSON(json.RawMessage(`{"k\u0000z":1}`)))},
		{"raw json NUL deep", "NUL", second(FromRawJSON(json.RawMessage(`{"a":[1,{"b":"\u0000"}]}`)))},
	}
	// An escaped backslash before "u0000" is no NUL.
	if _, err := FromRawJSON(json.RawMessage(`["a\\u0000b"]`)); err != nil {
		t.Errorf("escaped backslash refused: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil || !strings.Contains(tt.err.Error(), tt.wantErr) || strings.ContainsRune(tt.err.Error(), 0) {
				t.Fatalf("err = %v, want containing %q", tt.err, tt.wantErr)
			}
		})
	}
}

func second[T any](_ T, err error) error { return err }

func TestAccessors(t *testing.T) {
	df := must(DataFrame([]string{"x", "y"}, []Value{Doubles(1, 2, 3), Strings("a", "b", "c")}))
	nl := must(NamedList([]string{"a", "b"}, []Value{Integers(1), Strings("s")}))
	f := FactorOf("b", NAString, "a", "b")
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"zero type", Value{}.Type(), TypeNull},
		{"zero len", Value{}.Len(), 0},
		{"df len", df.Len(), 2},
		{"df nrow", df.NRow(), 3},
		{"df names", df.Names(), []string{"x", "y"}},
		{"df class", df.Class(), []string{"data.frame"}},
		{"df is df", df.IsDataFrame(), true},
		{"list not df", nl.IsDataFrame(), false},
		{"get", must2(nl.Get("b")).Strings(), []string{"s"}},
		{"get missing", second2(nl.Get("z")), false},
		{"factor levels", f.Levels(), []string{"a", "b"}},
		{"factor codes", f.Integers(), []int32{2, NAInteger, 1, 2}},
		{"is factor", f.IsFactor(), true},
		{"inherits", f.Inherits("factor"), true},
		{"dim", Integers(1, 2).SetAttr("dim", Integers(1, 2)).Dim(), []int{1, 2}},
		{"no dim", Integers(1).Dim(), []int(nil)},
		{"na int", Integers(1, NAInteger).IsNA(1), true},
		{"na real", Doubles(NAReal()).IsNA(0), true},
		{"nan not na", Doubles(math.NaN()).IsNA(0), false},
		{"na string", Strings(NAString).IsNA(0), true},
		{"na logical", Logicals(NALogical).IsNA(0), true},
		{"na complex", Complexes(NAComplex()).IsNA(0), true},
		{"list elem not na", List(Null()).IsNA(0), false},
		{"unsupported class", Unsupported([]string{"function"}, "f").Class(), []string{"function"}},
		{"unsupported len", Unsupported(nil, "").Len(), 1},
		{"nrow explicit", Integers(1).SetAttr("row.names", Strings("a", "b")).NRow(), 2},
		{"date value", Date(time.Date(1969, 12, 31, 23, 59, 0, 0, time.UTC)).Doubles(), []float64{-1}},
		{"posixct value", POSIXct("", time.Unix(-1, 250_000_000)).Doubles(), []float64{-0.75}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Fatalf("got %#v, want %#v", tt.got, tt.want)
			}
		})
	}
}

func must2(v Value, ok bool) Value {
	if !ok {
		panic("missing")
	}
	return v
}

func second2(_ Value, ok bool) bool { return ok }

func TestSetAttr(t *testing.T) {
	v := Integers(1, 2).SetAttr("names", Strings("a", "b")).SetAttr("class", Strings("x"))
	w := v.SetAttr("names", Strings("c", "d"))
	if got := w.Attrs(); len(got) != 2 || got[0].Name != "names" || got[0].Value.Strings()[0] != "c" {
		t.Fatalf("replace did not keep order: %+v", got)
	}
	if v.Names()[0] != "a" {
		t.Fatal("SetAttr modified the original")
	}
	u := w.SetAttr("names", Null()).SetAttr("class", Null())
	if u.Attrs() != nil {
		t.Fatalf("setting NULL did not remove: %+v", u.Attrs())
	}
	if !Equal(u, Integers(1, 2)) {
		t.Fatal("removing all attributes should give the bare vector")
	}
}

func TestEqual(t *testing.T) {
	a := Integers(1).SetAttr("x", Strings("1")).SetAttr("y", Strings("2"))
	b := Integers(1).SetAttr("y", Strings("2")).SetAttr("x", Strings("1"))
	tests := []struct {
		name string
		a, b Value
		want bool
	}{
		{"attr order ignored", a, b, true},
		{"attr value", a, Integers(1).SetAttr("x", Strings("2")).SetAttr("y", Strings("2")), false},
		{"attr missing", a, Integers(1), false},
		{"type", Integers(1), Doubles(1), false},
		{"zero vs null", Value{}, Null(), true},
		{"na vs nan", Doubles(NAReal()), Doubles(math.NaN()), false},
		{"nan payloads", Doubles(math.NaN()), Doubles(math.Float64frombits(0x7FF8000000000000)), true},
		{"na quieted", Doubles(NAReal()), Doubles(math.Float64frombits(0x7FF80000000007A2)), true},
		{"neg zero", Doubles(0), Doubles(math.Copysign(0, -1)), true},
		{"lists", List(Null(), Strings("a")), List(Null(), Strings("a")), true},
		{"list lengths", List(Null()), List(), false},
		{"strings na", Strings(NAString), Strings(""), false},
		{"empty vs nil", Integers(), Value{typ: TypeInteger}, true},
		{"complex", Complexes(complex(1, math.NaN())), Complexes(complex(1, math.NaN())), true},
		{"json", must(FromRawJSON(json.RawMessage(`{ "a" : 1 }`))), must(FromRawJSON(json.RawMessage(`{"a":1}`))), true},
		{"unsupported", Unsupported([]string{"f"}, "x"), Unsupported([]string{"f"}, "y"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Equal(tt.a, tt.b); got != tt.want {
				t.Fatalf("Equal = %v", got)
			}
		})
	}
}

func TestFromGo(t *testing.T) {
	ts := time.Date(2020, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600))
	tests := []struct {
		name string
		in   any
		want Value
	}{
		{"nil", nil, Null()},
		{"bool", true, Logicals(True)},
		{"int", 3, Integers(3)},
		{"int big", 1 << 40, Doubles(1 << 40)},
		{"int NA bit pattern", math.MinInt32, Doubles(math.MinInt32)},
		{"int32", int32(-5), Integers(-5)},
		{"int64", int64(7), Integers(7)},
		{"uint8", uint8(200), Integers(200)},
		{"uint64", uint64(1 << 35), Doubles(1 << 35)},
		{"float64", 2.5, Doubles(2.5)},
		{"float32", float32(0.5), Doubles(0.5)},
		{"string", "x", Strings("x")},
		{"[]float64", []float64{1, 2}, Doubles(1, 2)},
		{"[]int", []int{1, 2}, Integers(1, 2)},
		{"[]int mixed", []int{1, 1 << 33}, Doubles(1, 1<<33)},
		{"[]string", []string{"a"}, Strings("a")},
		{"[]bool", []bool{true, false}, Logicals(True, False)},
		{"[]byte", []byte{1}, Raw([]byte{1})},
		{"[]any", []any{1, "a", nil}, List(Integers(1), Strings("a"), Null())},
		{"map sorted", map[string]any{"b": 1, "a": "x"}, must(NamedList([]string{"a", "b"}, []Value{Strings("x"), Integers(1)}))},
		{"map values", map[string]Value{"k": Null()}, must(NamedList([]string{"k"}, []Value{Null()}))},
		{"value", Strings("v"), Strings("v")},
		{"raw json", json.RawMessage(`[1]`), must(FromRawJSON(json.RawMessage(`[1]`)))},
		{"time", ts, POSIXct("UTC", ts)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromGo(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !Equal(got, tt.want) {
				t.Fatalf("got %s, want %s", must(got.MarshalJSON()), must(tt.want.MarshalJSON()))
			}
		})
	}
	if got := must(FromGo(ts)).Doubles()[0]; got != 1577930645 {
		t.Errorf("time: %v seconds", got)
	}
}

func TestFromGoErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      any
		wantErr string
	}{
		{"chan", make(chan int), "unsupported Go type chan int"},
		{"struct", struct{}{}, "unsupported Go type struct {}"},
		{"nested", []any{1, map[string]any{"a": []any{complex(1, 1)}}}, `[1]: ["a"]: [0]: rvalue: FromGo: unsupported Go type complex128`},
		{"inexact int64", int64(1)<<53 + 1, "cannot be represented exactly"},
		{"inexact uint64", uint64(math.MaxUint64), "cannot be represented exactly"},
		{"bad json", json.RawMessage(`{`), "FromRawJSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromGo(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestGo(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	df := must(DataFrame([]string{"n", "f"}, []Value{Integers(1, NAInteger), FactorOf("x", "y")}))
	tests := []struct {
		name string
		v    Value
		want any
	}{
		{"null", Null(), nil},
		{"bool", Logicals(True), true},
		{"na scalar", Logicals(NALogical), nil},
		{"int", Integers(4), 4},
		{"ints", Integers(1, 2), []int{1, 2}},
		{"ints na", Integers(1, NAInteger), []any{1, nil}},
		{"double", Doubles(1.5), 1.5},
		{"doubles na", Doubles(1, NAReal()), []any{1.0, nil}},
		{"inf stays", Doubles(math.Inf(1), 1), []float64{math.Inf(1), 1}},
		{"string", Strings("s"), "s"},
		{"strings na", Strings("s", NAString), []any{"s", nil}},
		{"empty", Strings(), []string{}},
		{"raw", Raw([]byte{1, 2}), []byte{1, 2}},
		{"complex", Complexes(complex(1, 2)), complex(1, 2)},
		{"factor", FactorOf("b", "a", "b"), []string{"b", "a", "b"}},
		{"factor na", FactorOf("a", NAString), []any{"a", nil}},
		{"date", Date(time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)), "2024-02-29"},
		{"dates", Date(time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC), time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)), []string{"1969-12-31", "1970-01-01"}},
		{"posixct", POSIXct("America/New_York", time.Unix(0, 0)), time.Unix(0, 0).In(ny)},
		{"list", List(Integers(1), Null()), []any{1, nil}},
		{"named list", must(NamedList([]string{"a", ""}, []Value{Strings("x"), Doubles(2)})), map[string]any{"a": "x", "2": 2.0}},
		{"data frame", df, []map[string]any{{"n": 1, "f": "x"}, {"n": nil, "f": "y"}}},
		{"json", must(FromRawJSON(json.RawMessage(`{"a":[1,true]}`))), map[string]any{"a": []any{1.0, true}}},
		{"unsupported", Unsupported([]string{"function"}, ""), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.v.Go()
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestPlainJSON(t *testing.T) {
	df := must(DataFrame([]string{"n", "f", "d"}, []Value{
		Integers(1, NAInteger), FactorOf("x", "y"),
		Date(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)),
	}))
	tests := []struct {
		name string
		v    Value
		want string
	}{
		{"null", Null(), `{}`},
		{"scalar", Doubles(1.5), `1.5`},
		{"vector", Integers(1, NAInteger), `[1,null]`},
		{"specials", Doubles(NAReal(), math.NaN(), math.Inf(-1), 0.1), `[null,null,null,0.1]`},
		{"empty", Strings(), `[]`},
		{"logical", Logicals(True, NALogical), `[true,null]`},
		{"named vector drops names", Doubles(1, 2).SetAttr("names", Strings("a", "b")), `[1,2]`},
		{"named list", must(NamedList([]string{"a", "", NAString}, []Value{Integers(1), Strings("x"), Null()})), `{"a":1,"2":"x","3":{}}`},
		{"empty named list", must(NamedList(nil, nil)), `{}`},
		{"unnamed list", List(Integers(1, 2), Strings("s")), `[[1,2],"s"]`},
		{"factor", FactorOf("b", "a"), `["b","a"]`},
		{"date", Date(time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)), `"2024-02-29"`},
		{"posixct tz", POSIXct("America/New_York", time.Unix(0, 0)), `"1969-12-31T19:00:00"`},
		{"posixct no tz", POSIXct("", time.Unix(90, 0)), `"1970-01-01T00:01:30"`},
		{"data frame", df, `[{"n":1,"f":"x","d":"2024-01-01"},{"n":null,"f":"y","d":"2024-01-02"}]`},
		{"rownames", must(DataFrame([]string{"a"}, []Value{Integers(1)})).SetAttr("row.names", Strings("r")), `[{"a":1,"_row":"r"}]`},
		{"matrix", Integers(1, 2, 3, 4, 5, 6).SetAttr("dim", Integers(2, 3)), `[[1,3,5],[2,4,6]]`},
		{"1x1 matrix", Doubles(2).SetAttr("dim", Integers(1, 1)), `[[2]]`},
		{"raw", Raw([]byte{1, 2}), `"AQI="`},
		{"complex", Complexes(complex(1, 2), complex(-1.5, math.Copysign(0, -1)), complex(0, -3), NAComplex()), `["1+2i","-1.5+0i","0-3i",null]`},
		{"json", must(FromRawJSON(json.RawMessage(` {"a": 1} `))), `{"a":1}`},
		{"strings", Strings("é\n", NAString), `["é\n",null]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.v.PlainJSON()
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
	if _, err := Unsupported([]string{"function"}, "").PlainJSON(); err == nil {
		t.Error("unsupported value rendered")
	}
}

// Tool commands must tell NaN and ±Inf from NA (issue 10, item 16):
// PlainJSONNonFinite writes them as strings wherever doubles appear.
func TestPlainJSONNonFinite(t *testing.T) {
	specials := Doubles(NAReal(), math.NaN(), math.Inf(1), math.Inf(-1), 0.5)
	tests := []struct {
		name string
		v    Value
		want string
	}{
		{"vector", specials, `[null,"NaN","Inf","-Inf",0.5]`},
		{"scalar inf", Doubles(math.Inf(1)), `"Inf"`},
		{"scalar NA stays null", Doubles(NAReal()), `null`},
		{"integer NA stays null", Integers(NAInteger), `null`},
		{"in a list", must(NamedList([]string{"a"}, []Value{Doubles(math.NaN())})), `{"a":"NaN"}`},
		{"in a data frame", must(DataFrame([]string{"d"}, []Value{Doubles(math.Inf(-1), 1)})), `[{"d":"-Inf"},{"d":1}]`},
		{"in a matrix", Doubles(math.Inf(1), 2).SetAttr("dim", Integers(1, 2)), `[["Inf",2]]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.v.PlainJSONNonFinite()
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestCheckAndDescribe(t *testing.T) {
	df := must(DataFrame([]string{"a", "b"}, []Value{Integers(1, 2, 3), Strings("x", "y", "z")}))
	date := Date(time.Unix(0, 0))
	posix := POSIXct("UTC", time.Unix(0, 0))
	difftime := Doubles(1).SetAttr("class", Strings("difftime"))
	factor := FactorOf("a")
	matrix := Integers(1, 2, 3, 4, 5, 6).SetAttr("dim", Integers(2, 3))
	tests := []struct {
		name     string
		v        Value
		describe string
		pass     []string // check types that must pass; all others must fail
	}{
		{"null", Null(), "NULL", nil},
		{"int", Integers(1), "integer(1)", []string{"numeric", "integer"}},
		{"double", Doubles(1, 2), "double(2)", []string{"numeric"}},
		{"character", Strings("a"), "character(1)", []string{"character"}},
		{"logical", Logicals(NALogical), "logical(1)", []string{"logical"}},
		{"factor", factor, "factor(1)", nil},
		{"date", date, "Date(1)", nil},
		{"posixct", posix, "POSIXct(1)", nil},
		{"difftime", difftime, "difftime(1)", nil},
		{"list", List(Null(), Null()), "list(2)", []string{"list"}},
		{"data.frame", df, "data.frame 3x2", []string{"list", "data.frame"}},
		{"matrix", matrix, "integer matrix 2x3", []string{"numeric", "integer"}},
		{"array", Integers(1, 2).SetAttr("dim", Integers(1, 1, 2)), "integer array 1x1x2", []string{"numeric", "integer"}},
		{"classed", Doubles(1).SetAttr("class", Strings("myclass")), "myclass(1)", []string{"numeric"}},
		{"raw", Raw([]byte{1}), "raw(1)", nil},
		{"json", must(FromRawJSON(json.RawMessage(`1`))), "json", nil},
		{"closure", Unsupported([]string{"function"}, "function(x) x"), "function", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.v.Describe(); got != tt.describe {
				t.Errorf("Describe = %q, want %q", got, tt.describe)
			}
			for _, c := range CheckTypes {
				err := tt.v.Check(c)
				want := false
				for _, p := range tt.pass {
					want = want || p == c
				}
				if (err == nil) != want {
					t.Errorf("Check(%q) = %v, want pass=%v", c, err, want)
				}
				if err != nil && !errors.Is(err, ErrTypeMismatch) {
					t.Errorf("Check(%q) error %v does not wrap ErrTypeMismatch", c, err)
				}
			}
		})
	}
	err := Strings("a").Check("numeric")
	if err == nil || err.Error() != "type mismatch: want numeric, got character(1)" {
		t.Errorf("message: %v", err)
	}
	if err := Integers(1).Check("double"); !errors.Is(err, ErrUnknownCheck) {
		t.Errorf("unknown type name: %v", err)
	}
}

// Float64s reads what R's is.numeric accepts: a tool declared numeric gets
// integers too (add(2L), add(length(x))), where Doubles() is nil.
func TestFloat64s(t *testing.T) {
	fac := FactorOf("a", "b")
	for _, tc := range []struct {
		name string
		v    Value
		want []float64
	}{
		{"double", Doubles(1.5, 2), []float64{1.5, 2}},
		{"integer", Integers(2, -3), []float64{2, -3}},
		{"integer NA", Integers(NAInteger), []float64{math.NaN()}},
		{"empty integer", Integers(), []float64{}},
		{"factor", fac, nil},
		{"character", Strings("1"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.v.Float64s()
			if (got == nil) != (tc.want == nil) || len(got) != len(tc.want) {
				t.Fatalf("Float64s() = %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] && !(math.IsNaN(got[i]) && math.IsNaN(tc.want[i])) {
					t.Errorf("Float64s()[%d] = %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}
