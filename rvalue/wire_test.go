package rvalue

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// must unwraps fixture constructors, which cannot fail for the literal
// inputs the tests give them.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Variables, because constant arithmetic is exact: 0.1+0.2 == 0.3 there.
var point1, point2 = 0.1, 0.2

func TestMarshalGolden(t *testing.T) {
	df := must(DataFrame([]string{"a"}, []Value{Integers(1, 2)}))
	named := must(NamedList([]string{"x"}, []Value{Doubles(1)}))
	factor := must(Factor([]string{"a", "b"}, []int32{2, NAInteger}))
	tests := []struct {
		name string
		v    Value
		want string
	}{
		{"zero is NULL", Value{}, `{"type":"NULL"}`},
		{"null", Null(), `{"type":"NULL"}`},
		{"logical", Logicals(True, False, NALogical), `{"type":"logical","value":[true,false,null]}`},
		{"bools", Bools(true), `{"type":"logical","value":[true]}`},
		{"integer", Integers(1, NAInteger, -3), `{"type":"integer","value":[1,null,-3]}`},
		{"empty integer", Integers(), `{"type":"integer","value":[]}`},
		{"double", Doubles(1.5, NAReal(), math.NaN(), math.Inf(1), math.Inf(-1)), `{"type":"double","value":[1.5,"NA","NaN","Inf","-Inf"]}`},
		{"double exact", Doubles(point1+point2, 1e-300, math.MaxFloat64, 5e-324, math.Copysign(0, -1), 1e21, 123456789),
			`{"type":"double","value":[0.30000000000000004,1e-300,1.7976931348623157e+308,5e-324,-0.0,1e+21,123456789]}`},
		{"character", Strings("a", NAString, "h\u00e9llo \u2603 \"q\"\n"), `{"type":"character","value":["a",null,"héllo ☃ \"q\"\n"]}`},
		{"list", List(Null(), Integers(1)), `{"type":"list","value":[{"type":"NULL"},{"type":"integer","value":[1]}]}`},
		{"named list", named, `{"type":"list","value":[{"type":"double","value":[1]}],"attributes":{"names":{"type":"character","value":["x"]}}}`},
		{"raw", Raw([]byte{0, 1, 255}), `{"type":"raw","value":"AAH/"}`},
		{"empty raw", Raw(nil), `{"type":"raw","value":""}`},
		{"complex", Complexes(complex(1, 2), NAComplex(), complex(math.NaN(), math.Inf(-1))),
			`{"type":"complex","value":[{"re":1,"im":2},null,{"re":"NaN","im":"-Inf"}]}`},
		{"json", must(FromRawJSON(json.RawMessage(`{"a": [1, 2]}`))), `{"type":"json","value":{"a":[1,2]}}`},
		{"unsupported", Unsupported([]string{"function"}, "function (x) x"), `{"type":"unsupported","class":["function"],"repr":"function (x) x"}`},
		{"factor", factor, `{"type":"integer","value":[2,null],"attributes":{"levels":{"type":"character","value":["a","b"]},"class":{"type":"character","value":["factor"]}}}`},
		{"data.frame", df, `{"type":"list","value":[{"type":"integer","value":[1,2]}],"attributes":{"names":{"type":"character","value":["a"]},"class":{"type":"character","value":["data.frame"]},"row.names":{"type":"integer","value":[null,-2]}}}`},
		{"date", Date(time.Date(2020, 1, 2, 23, 0, 0, 0, time.UTC)), `{"type":"double","value":[18263],"attributes":{"class":{"type":"character","value":["Date"]}}}`},
		{"posixct", POSIXct("UTC", time.Unix(1, 500_000_000)), `{"type":"double","value":[1.5],"attributes":{"class":{"type":"character","value":["POSIXct","POSIXt"]},"tzone":{"type":"character","value":["UTC"]}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
			var back Value
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatal(err)
			}
			if !Equal(back, tt.v) {
				t.Fatalf("round trip changed value: %s", got)
			}
		})
	}
}

func TestRoundTripBits(t *testing.T) {
	// Equal treats -0 as 0 (like identical()); the wire must not.
	for _, f := range []float64{math.Copysign(0, -1), 0.1, 1.0 / 3, math.SmallestNonzeroFloat64, -math.MaxFloat64, NAReal()} {
		b, err := Doubles(f).MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		v, err := Decode(b, DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := math.Float64bits(v.Doubles()[0]); got != math.Float64bits(f) {
			t.Errorf("%v: bits %x, want %x", f, got, math.Float64bits(f))
		}
	}
}

func TestMarshalRejects(t *testing.T) {
	deep := Null()
	for i := 0; i < DefaultMaxDepth; i++ {
		deep = List(deep)
	}
	tests := []struct {
		name, wantErr string
		v             Value
	}{
		{"invalid utf8", "value.value[1]: string is not valid UTF-8", Strings("ok", "\xff")},
		{"nul", "cannot contain NUL", Strings("a\x00b")},
		{"bad logical", "logical 7", Logicals(7)},
		{"names length", "value.attributes.names: 1 names for 2 elements", Integers(1, 2).SetAttr("names", Strings("a"))},
		{"names type", "names: must be character", Integers(1).SetAttr("names", Integers(1))},
		{"attr on null", "NULL values cannot have attributes", Value{typ: TypeNull, attrs: []Attribute{{"a", Integers(1)}}}},
		{"json attr", "cannot be json", Integers(1).SetAttr("x", must(FromRawJSON(json.RawMessage(`1`))))},
		{"dim mismatch", "dims do not match", Integers(1, 2, 3).SetAttr("dim", Integers(2, 2))},
		{"dimnames no dim", "dimnames without dim", Integers(1).SetAttr("dimnames", List(Null()))},
		{"too deep", "nested deeper than 100", deep},
		{"nested error path", "value.value[1].value[0].value[0]: string is not valid UTF-8", List(Null(), List(Strings("\xfe")))},
		{"NA attribute name in class", "NA is not allowed", Unsupported([]string{NAString}, "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.v.MarshalJSON()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestUnmarshalAccepts(t *testing.T) {
	tests := []struct {
		name, in string
		want     Value
	}{
		{"member order", `{"value":[1],"type":"integer"}`, Integers(1)},
		{"attrs before type", `{"attributes":{"names":{"type":"character","value":["a"]}},"value":[true],"type":"logical"}`,
			Logicals(True).SetAttr("names", Strings("a"))},
		{"whitespace", " { \"type\" : \"NULL\" } ", Null()},
		{"int max", `{"type":"integer","value":[2147483647,-2147483647]}`, Integers(math.MaxInt32, -math.MaxInt32)},
		{"double ints", `{"type":"double","value":[1,-0,1E3]}`, Doubles(1, 0, 1000)},
		{"escaped unicode", `{"type":"character","value":["\u00e9\ud83d\ude00"]}`, Strings("é😀")},
		{"json null", `{"type":"json","value":null}`, must(FromRawJSON(json.RawMessage(`null`)))},
		{"unsupported", `{"type":"unsupported","class":[],"repr":""}`, Unsupported(nil, "")},
		{"empty attrs", `{"type":"integer","value":[],"attributes":{}}`, Integers()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v Value
			if err := json.Unmarshal([]byte(tt.in), &v); err != nil {
				t.Fatal(err)
			}
			if !Equal(v, tt.want) {
				b, _ := v.MarshalJSON()
				t.Fatalf("got %s", b)
			}
		})
	}
}

func TestUnmarshalRejects(t *testing.T) {
	tests := []struct{ name, in, wantErr string }{
		{"not object", `[1]`, "value: want a value object, got array"},
		{"empty", ``, "value:"},
		{"trailing", `{"type":"NULL"} 1`, "unexpected data after value"},
		{"missing type", `{"value":[1]}`, `missing member "type"`},
		{"unknown type", `{"type":"bytecode"}`, `value.type: unknown type "bytecode"`},
		{"type not string", `{"type":1}`, "value.type: want string, got number"},
		{"unknown member", `{"type":"NULL","extra":1}`, `unknown member "extra"`},
		{"duplicate member", `{"type":"NULL","type":"NULL"}`, "duplicate"},
		{"NULL with value", `{"type":"NULL","value":[]}`, "NULL has no"},
		{"missing value", `{"type":"integer"}`, `missing member "value"`},
		{"value not array", `{"type":"integer","value":1}`, "value.value: want an array, got number"},
		{"int fraction", `{"type":"integer","value":[1.5]}`, "value.value[0]: 1.5 is not an integer"},
		{"int exponent", `{"type":"integer","value":[1e3]}`, "is not an integer"},
		{"int range", `{"type":"integer","value":[0,2147483648]}`, "value.value[1]: 2147483648 is outside R's integer range"},
		{"int huge", `{"type":"integer","value":[99999999999999999999999]}`, "outside R's integer range"},
		{"int NA sentinel", `{"type":"integer","value":[-2147483648]}`, "NA must be null"},
		{"int NA string", `{"type":"integer","value":["NA"]}`, "value.value[0]: want number or null, got string"},
		{"double null", `{"type":"double","value":[null]}`, "want number or special string, got null"},
		{"double bad string", `{"type":"double","value":["Infinity"]}`, `string "Infinity" is not a double`},
		{"double overflow", `{"type":"double","value":[1e400]}`, "outside the range of a double"},
		{"logical number", `{"type":"logical","value":[1]}`, "want true, false or null, got number"},
		{"character number", `{"type":"character","value":[1]}`, "want string or null"},
		{"character NUL", `{"type":"character","value":["a\u0000"]}`, "cannot contain NUL"},
		{"invalid utf8", "{\"type\":\"character\",\"value\":[\"\xff\"]}", "UTF-8"},
		{"raw not base64", `{"type":"raw","value":"!!"}`, "bad base64"},
		{"raw array", `{"type":"raw","value":[1]}`, "want base64 string"},
		{"complex missing im", `{"type":"complex","value":[{"re":1}]}`, `value.value[0]: complex needs both "re" and "im"`},
		{"complex extra", `{"type":"complex","value":[{"re":1,"im":1,"x":1}]}`, `unknown member "x"`},
		{"list of non-values", `{"type":"list","value":[1]}`, "value.value[0]: want a value object, got number"},
		{"nested path", `{"type":"list","value":[{"type":"NULL"},{"type":"list","value":[{"type":"integer","value":[1],"attributes":{"names":{"type":"character","value":[1]}}}]}]}`,
			"value.value[1].value[0].attributes.names.value[0]: want string or null, got number"},
		{"names length", `{"type":"integer","value":[1,2],"attributes":{"names":{"type":"character","value":["a"]}}}`,
			"value.attributes.names: 1 names for 2 elements"},
		{"attr NULL", `{"type":"integer","value":[1],"attributes":{"a":{"type":"NULL"}}}`, "value.attributes.a: an attribute cannot be NULL"},
		{"attr on json", `{"type":"json","value":1,"attributes":{"a":{"type":"integer","value":[1]}}}`, "json values cannot have attributes"},
		{"empty attr name", `{"type":"integer","value":[1],"attributes":{"":{"type":"integer","value":[1]}}}`, "empty attribute name"},
		{"dup attr", `{"type":"integer","value":[1],"attributes":{"a":{"type":"integer","value":[1]},"a":{"type":"integer","value":[1]}}}`, "duplicate"},
		{"class on integer", `{"type":"integer","value":[1],"class":["x"]}`, "unsupported values only"},
		{"unsupported missing repr", `{"type":"unsupported","class":["f"]}`, `needs "class" and "repr"`},
		{"unsupported value", `{"type":"unsupported","class":["f"],"repr":"","value":1}`, "unsupported has no"},
		{"bad json payload", `{"type":"json","value":[1,}`, "value.value:"},
		{"dim bad", `{"type":"integer","value":[1,2],"attributes":{"dim":{"type":"integer","value":[3]}}}`, "dims do not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.in), DecodeOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestDecodeLimits(t *testing.T) {
	nest := func(n int) string {
		return strings.Repeat(`{"type":"list","value":[`, n-1) + `{"type":"NULL"}` + strings.Repeat(`]}`, n-1)
	}
	if _, err := Decode([]byte(nest(100)), DecodeOptions{}); err != nil {
		t.Fatalf("depth 100: %v", err)
	}
	_, err := Decode([]byte(nest(101)), DecodeOptions{})
	if err == nil || !strings.Contains(err.Error(), "nested deeper than 100") {
		t.Fatalf("depth 101: %v", err)
	}
	attrNest := strings.Repeat(`{"type":"integer","value":[1],"attributes":{"a":`, 100) + `{"type":"integer","value":[1]}` + strings.Repeat(`}}`, 100)
	if _, err := Decode([]byte(attrNest), DecodeOptions{}); err == nil {
		t.Fatal("attribute nesting 101 accepted")
	}
	jsonDeep := `{"type":"list","value":[{"type":"json","value":` + strings.Repeat("[", 99) + strings.Repeat("]", 99) + `}]}`
	if _, err := Decode([]byte(jsonDeep), DecodeOptions{}); err == nil {
		t.Fatal("deep json payload accepted")
	}
	big := `{"type":"integer","value":[` + strings.TrimSuffix(strings.Repeat("1,", 11), ",") + `]}`
	if _, err := Decode([]byte(big), DecodeOptions{MaxElements: 11}); err != nil {
		t.Fatalf("11 elements, limit 11: %v", err)
	}
	_, err = Decode([]byte(`{"type":"list","value":[`+big+`]}`), DecodeOptions{MaxElements: 11})
	if err == nil || !strings.Contains(err.Error(), "more than 11 elements") {
		t.Fatalf("12 elements, limit 11: %v", err)
	}
	_, err = Decode([]byte(`{"type":"raw","value":"AAAAAAAAAAAAAAAA"}`), DecodeOptions{MaxElements: 11})
	if err == nil {
		t.Fatal("raw over element limit accepted")
	}
}

func TestDecodeLargeVector(t *testing.T) {
	vals := make([]float64, 1_000_000)
	for i := range vals {
		vals[i] = float64(i) / 7
	}
	b, err := Doubles(vals...).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	v, err := Decode(b, DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !Equal(v, Doubles(vals...)) {
		t.Fatal("large vector changed")
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{
		`{"type":"NULL"}`,
		`{"type":"double","value":[1.5,"NA","NaN","Inf","-Inf",-0]}`,
		`{"type":"integer","value":[1,null],"attributes":{"names":{"type":"character","value":["a",null]}}}`,
		`{"type":"list","value":[{"type":"logical","value":[true,null]},{"type":"raw","value":"AAH/"}]}`,
		`{"type":"complex","value":[{"re":1,"im":"NaN"},null]}`,
		`{"type":"json","value":{"a":[1,{"b":null}]}}`,
		`{"type":"unsupported","class":["function"],"repr":"function (x) x"}`,
		`{"value":[2,null],"type":"integer","attributes":{"levels":{"type":"character","value":["a","b"]},"class":{"type":"character","value":["factor"]}}}`,
		`{"type":"integer","value":[1,2,3,4],"attributes":{"dim":{"type":"integer","value":[2,2]},"dimnames":{"type":"list","value":[{"type":"NULL"},{"type":"character","value":["x","y"]}]}}}`,
		wFormula, wClosure, wCycle, wS4,
		`{"type":"primitive","name":"sum"}`,
		`{"type":"list","value":[` + wMissing + `],"attributes":{"names":{"type":"character","value":["i"]}},"pairlist":true,"s4":true}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Decode(data, DecodeOptions{MaxElements: 1 << 16})
		if err != nil {
			return
		}
		b, err := v.MarshalJSON()
		if err != nil {
			t.Fatalf("accepted %q but cannot marshal it: %v", data, err)
		}
		w, err := Decode(b, DecodeOptions{MaxElements: 1 << 16})
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
		if !Equal(v, w) {
			t.Fatalf("round trip changed %q -> %s", data, b)
		}
		b2, err := w.MarshalJSON()
		if err != nil || string(b2) != string(b) {
			t.Fatalf("marshal not stable: %s vs %s (%v)", b, b2, err)
		}
		// The Go-side views must not panic on anything accepted.
		_ = v.Go()
		_, _ = v.PlainJSON()
		_ = v.Describe()
		_ = v.String()
		_ = v.IsCode()
		for _, c := range CheckTypes {
			_ = v.Check(c)
		}
	})
}

func TestDecodeShapeGuard(t *testing.T) {
	tests := []struct{ name, in string }{
		{"zero-column data frame with 2^31 rows", `{"type":"list","value":[],"attributes":{"class":{"type":"character","value":["data.frame"]},"row.names":{"type":"integer","value":[null,-2147483647]}}}`},
		{"empty matrix with huge extents", `{"type":"integer","value":[],"attributes":{"dim":{"type":"integer","value":[2147483647,2147483647,0]}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.in), DecodeOptions{})
			if err == nil || !strings.Contains(err.Error(), "elements in total") {
				t.Fatalf("err = %v", err)
			}
		})
	}
	ok := `{"type":"list","value":[],"attributes":{"class":{"type":"character","value":["data.frame"]},"row.names":{"type":"integer","value":[null,-3]}}}`
	v, err := Decode([]byte(ok), DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := v.PlainJSON(); string(got) != `[{},{},{}]` {
		t.Errorf("zero-column rows: %s", got)
	}
}
