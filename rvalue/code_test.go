package rvalue

import (
	"strings"
	"testing"
)

// Wire forms as bridge/r/values.R writes them.
const (
	wSym     = `{"type":"symbol","value":"x"}`
	wMissing = `{"type":"symbol","value":""}`
	wGlobal  = `{"type":"environment","kind":"global","name":""}`
	wCall    = `{"type":"language","value":[{"type":"symbol","value":"+"},` + wSym + `,{"type":"double","value":[1]}],"names":["","",""],"repr":"x + 1"}`
	wFormula = `{"type":"language","value":[{"type":"symbol","value":"~"},{"type":"symbol","value":"y"},` + wSym + `],"names":["","",""],"repr":"y ~ x",` +
		`"attributes":{"class":{"type":"character","value":["formula"]},".Environment":` + wGlobal + `}}`
	wClosure = `{"type":"closure","formals":{"names":["x","y"],"values":[` + wMissing + `,{"type":"integer","value":[2]}]},"body":` + wCall +
		`,"env":` + wGlobal + `,"source":"function (x, y = 2L) x + 1"}`
	wCycle = `{"type":"environment","kind":"local","name":"","id":"e1","names":["a","self"],"values":[{"type":"integer","value":[1]},` +
		`{"type":"environment","kind":"local","name":"","ref":"e1"}],"dropped":3}`
	wS4 = `{"type":"S4","attributes":{"x":{"type":"double","value":[1.5]},"class":{"type":"character","value":["P"]}}}`
)

func TestCodeWireRoundTrip(t *testing.T) {
	tests := []struct{ name, in string }{
		{"symbol", wSym},
		{"missing arg", wMissing},
		{"call", wCall},
		{"formula", wFormula},
		{"closure", wClosure},
		{"primitive", `{"type":"primitive","name":"sum"}`},
		{"namespace", `{"type":"environment","kind":"namespace","name":"stats"}`},
		{"env cycle", wCycle},
		{"S4", wS4},
		{"S4 bit", `{"type":"list","value":[{"type":"double","value":[1]}],"s4":true}`},
		{"pairlist", `{"type":"list","value":[` + wMissing + `],"attributes":{"names":{"type":"character","value":["i"]}},"pairlist":true}`},
		{"ref to sibling", `{"type":"list","value":[` + strings.Replace(wCycle, `"dropped":3`, `"dropped":0`, 1) +
			`,{"type":"environment","kind":"local","name":"","ref":"e1"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Decode([]byte(tt.in), DecodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			out, err := v.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tt.in {
				t.Errorf("re-marshalled\n got %s\nwant %s", out, tt.in)
			}
			back, err := Decode(out, DecodeOptions{})
			if err != nil || !Equal(back, v) {
				t.Errorf("not equal after a second round: %v", err)
			}
		})
	}
}

func TestCodeWireRejects(t *testing.T) {
	tests := []struct{ name, in, wantErr string }{
		{"symbol not string", `{"type":"symbol","value":[1]}`, "want string, got array"},
		{"symbol NUL", `{"type":"symbol","value":"a\u0000"}`, "cannot contain NUL"},
		{"symbol attributes", `{"type":"symbol","value":"a","attributes":{"a":{"type":"integer","value":[1]}}}`, "symbol values cannot have attributes"},
		{"empty call", `{"type":"language","value":[]}`, "a call needs at least its function"},
		{"call names length", `{"type":"language","value":[` + wSym + `],"names":["a","b"]}`, "2 names for 1 parts"},
		{"call names attribute", `{"type":"language","value":[` + wSym + `],"attributes":{"names":{"type":"character","value":["a"]}}}`, "go in its \"names\" member"},
		{"call without value", `{"type":"language","names":[]}`, `missing member "value"`},
		{"closure no body", `{"type":"closure","formals":{"names":[],"values":[]},"env":` + wGlobal + `}`, `closure needs member "body"`},
		{"closure no env", `{"type":"closure","formals":{"names":[],"values":[]},"body":` + wSym + `}`, `closure needs member "env"`},
		{"closure env not env", `{"type":"closure","formals":{"names":[],"values":[]},"body":` + wSym + `,"env":` + wSym + `}`, "env must be an environment"},
		{"closure formals mismatch", `{"type":"closure","formals":{"names":["a"],"values":[]},"body":` + wSym + `,"env":` + wGlobal + `}`, "1 formal names for 0 defaults"},
		{"closure dup formal", `{"type":"closure","formals":{"names":["a","a"],"values":[` + wMissing + `,` + wMissing + `]},"body":` + wSym + `,"env":` + wGlobal + `}`, `duplicate formal "a"`},
		{"closure formals member", `{"type":"closure","formals":{"names":[],"values":[],"x":1},"body":` + wSym + `,"env":` + wGlobal + `}`, `unknown member "x"`},
		{"closure with value", `{"type":"closure","value":[],"formals":{"names":[],"values":[]},"body":` + wSym + `,"env":` + wGlobal + `}`, "closure has no"},
		{"primitive no name", `{"type":"primitive"}`, `primitive needs member "name"`},
		{"primitive empty", `{"type":"primitive","name":""}`, "a primitive needs a name"},
		{"env bad kind", `{"type":"environment","kind":"parent"}`, `unknown environment kind "parent"`},
		{"env no kind", `{"type":"environment"}`, `environment needs member "kind"`},
		{"global with bindings", `{"type":"environment","kind":"global","names":["a"],"values":[` + wSym + `]}`, "only a local environment"},
		{"namespace no name", `{"type":"environment","kind":"namespace","name":""}`, "needs a name"},
		{"local no id", `{"type":"environment","kind":"local","names":[],"values":[]}`, `exactly one of "id" and "ref"`},
		{"local id and ref", `{"type":"environment","kind":"local","id":"e1","ref":"e1"}`, `exactly one of "id" and "ref"`},
		{"dangling ref", `{"type":"environment","kind":"local","ref":"e9"}`, `ref "e9" names no environment sent before it`},
		{"forward ref", `{"type":"list","value":[{"type":"environment","kind":"local","ref":"e1"},` +
			`{"type":"environment","kind":"local","id":"e1","names":[],"values":[]}]}`, `ref "e1" names no environment sent before it`},
		{"duplicate id", `{"type":"list","value":[{"type":"environment","kind":"local","id":"e1","names":[],"values":[]},` +
			`{"type":"environment","kind":"local","id":"e1","names":[],"values":[]}]}`, `id "e1" used twice`},
		{"ref with bindings", `{"type":"list","value":[{"type":"environment","kind":"local","id":"e1","names":[],"values":[]},` +
			`{"type":"environment","kind":"local","ref":"e1","names":[],"values":[]}]}`, "a ref has no bindings"},
		{"bindings mismatch", `{"type":"environment","kind":"local","id":"e1","names":["a"],"values":[]}`, "1 binding names for 0 values"},
		{"binding empty name", `{"type":"environment","kind":"local","id":"e1","names":[""],"values":[` + wSym + `]}`, "empty binding name"},
		{"negative dropped", `{"type":"environment","kind":"local","id":"e1","names":[],"values":[],"dropped":-1}`, "want a count"},
		{"too many bindings", tooManyBindings(), "101 bindings (at most 100)"},
		{"S4 no class", `{"type":"S4","attributes":{"x":{"type":"double","value":[1]}}}`, "an S4 object needs one class"},
		{"S4 no attributes", `{"type":"S4"}`, "an S4 object needs one class"},
		{"s4 flag on symbol", `{"type":"symbol","value":"a","s4":true}`, `symbol has no member "s4"`},
		{"s4 flag not bool", `{"type":"list","value":[],"s4":1}`, "want boolean"},
		{"pairlist empty", `{"type":"list","value":[],"pairlist":true}`, "a pairlist is a non-empty list"},
		{"pairlist on integer", `{"type":"integer","value":[1],"pairlist":true}`, `integer has no member "pairlist"`},
		{"repr on list", `{"type":"list","value":[],"repr":"x"}`, "belongs to unsupported values and calls only"},
		{"names on closure", `{"type":"closure","names":[],"formals":{"names":[],"values":[]},"body":` + wSym + `,"env":` + wGlobal + `}`, `closure has no member "names"`},
		{"deep env", deepEnvs(101), "nested deeper than 100"},
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

func tooManyBindings() string {
	var names, vals []string
	for i := 0; i <= MaxEnvBindings; i++ {
		names = append(names, `"v`+strings.Repeat("x", i)+`"`)
		vals = append(vals, `{"type":"NULL"}`)
	}
	return `{"type":"environment","kind":"local","id":"e1","names":[` + strings.Join(names, ",") + `],"values":[` + strings.Join(vals, ",") + `]}`
}

// deepEnvs nests n local environments, each the only binding of the last.
func deepEnvs(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(`{"type":"environment","kind":"local","id":"e` + strings.Repeat("1", i+1) + `","names":["x"],"values":[`)
	}
	b.WriteString(`{"type":"NULL"}`)
	for i := 0; i < n; i++ {
		b.WriteString(`]}`)
	}
	return b.String()
}

// Members may come before "type", as for the other types.
func TestCodeWireMemberOrder(t *testing.T) {
	in := `{"env":` + wGlobal + `,"body":` + wSym + `,"formals":{"values":[],"names":[]},"type":"closure"}`
	v, err := Decode([]byte(in), DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Type() != TypeClosure || !Equal(v.Body(), Symbol("x")) || v.Env().EnvKind() != EnvGlobal {
		t.Errorf("got %s", v)
	}
}

func TestCodeMarshalRejects(t *testing.T) {
	tests := []struct {
		name    string
		v       Value
		wantErr string
	}{
		{"dangling ref", Value{typ: TypeEnvironment, envKind: EnvLocal, envRef: "e1"}, "names no environment"},
		{"closure without env", Value{typ: TypeClosure, body: &Value{}}, "env must be an environment"},
		{"empty primitive", Primitive(""), "a primitive needs a name"},
		{"S4 without class", Value{typ: TypeS4}, "needs one class"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.v.MarshalJSON()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
	if _, err := Call(nil); err == nil {
		t.Error("Call() without a function accepted")
	}
	if _, err := Call([]string{"a"}, Symbol("f"), Symbol("x")); err == nil {
		t.Error("Call with too few names accepted")
	}
}

func TestCodeViews(t *testing.T) {
	dec := func(s string) Value {
		v, err := Decode([]byte(s), DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name     string
		v        Value
		plain    string
		describe string
		str      string
		code     bool
	}{
		{"symbol", dec(wSym), `"x"`, "symbol", "x", false},
		{"call", dec(wCall), `"x + 1"`, "call", "x + 1", true},
		{"formula", dec(wFormula), `"y ~ x"`, "formula", "y ~ x", true},
		{"closure", dec(wClosure), `"function (x, y = 2L) x + 1"`, "function", "function (x, y = 2L) x + 1", true},
		{"primitive", Primitive("sum"), `".Primitive(\"sum\")"`, "function", `.Primitive("sum")`, false},
		{"env", dec(wCycle), `{"a":1,"self":{}}`, "environment", "environment", false},
		{"global", dec(wGlobal), `{}`, "global environment", "global environment", false},
		{"S4", dec(wS4), `{"x":1.5}`, "P", "P", false},
		{"lm-like", List(Doubles(1, 2), dec(wFormula)), `[[1,2],"y ~ x"]`, "list(2)", "list(2)", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.v.PlainJSON()
			if err != nil || string(p) != tt.plain {
				t.Errorf("PlainJSON = %s, %v; want %s", p, err, tt.plain)
			}
			if got := tt.v.Describe(); got != tt.describe {
				t.Errorf("Describe = %q, want %q", got, tt.describe)
			}
			if got := tt.v.String(); got != tt.str {
				t.Errorf("String = %q, want %q", got, tt.str)
			}
			if got := tt.v.IsCode(); got != tt.code {
				t.Errorf("IsCode = %v, want %v", got, tt.code)
			}
		})
	}
	env := dec(wCycle)
	if env.Len() != 5 || env.Dropped() != 3 {
		t.Errorf("env Len %d, Dropped %d; want 5, 3", env.Len(), env.Dropped())
	}
	if a, ok := env.Binding("a"); !ok || !Equal(a, Integers(1)) {
		t.Errorf("Binding(a) = %v, %v", a, ok)
	}
	if m, ok := dec(wS4).Go().(map[string]any); !ok || m["x"] != 1.5 {
		t.Errorf("S4 Go() = %v", dec(wS4).Go())
	}
	if dec(wCall).List() != nil {
		t.Error("List() of a call is not nil")
	}
	if Equal(dec(wCall), dec(strings.Replace(wCall, `"value":[1]`, `"value":[2]`, 1))) {
		t.Error("calls with different constants are Equal")
	}
}
