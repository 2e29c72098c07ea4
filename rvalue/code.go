package rvalue

import (
	"fmt"
	"slices"
)

// Symbol returns an R symbol (a name); "" is the empty symbol R uses for a
// missing argument.
func Symbol(name string) Value { return Value{typ: TypeSymbol, name: name} }

// Primitive returns one of R's primitive functions by name (sum, c, ...).
func Primitive(name string) Value { return Value{typ: TypePrimitive, name: name} }

// Call returns an R call: the function (usually a Symbol) and its
// arguments; names may be nil, else one per part ("" for unnamed).
func Call(names []string, parts ...Value) (Value, error) {
	if len(parts) == 0 {
		return Value{}, fmt.Errorf("rvalue: Call: a call needs a function")
	}
	if names != nil && len(names) != len(parts) {
		return Value{}, fmt.Errorf("rvalue: Call: %d names for %d parts", len(names), len(parts))
	}
	if names == nil {
		names = make([]string, len(parts))
	}
	return Value{typ: TypeLanguage, list: parts, names: names}, nil
}

// GlobalEnv returns R's global environment (local environments come only
// from R).
func GlobalEnv() Value { return Value{typ: TypeEnvironment, envKind: EnvGlobal} }

// Name returns a symbol's or primitive's name, or the name of a namespace
// or package environment.
func (v Value) Name() string {
	switch v.typeOf() {
	case TypeSymbol, TypePrimitive, TypeEnvironment:
		return v.name
	}
	return ""
}

// Parts returns the parts of a call, function position first.
func (v Value) Parts() []Value {
	if v.typeOf() != TypeLanguage {
		return nil
	}
	return v.list
}

// PartNames returns the argument names of a call ("" where unnamed).
func (v Value) PartNames() []string {
	if v.typeOf() != TypeLanguage {
		return nil
	}
	return v.names
}

// Formals returns a function's argument names and defaults (the empty
// Symbol where an argument has no default).
func (v Value) Formals() (names []string, defaults []Value) {
	if v.typeOf() != TypeClosure {
		return nil, nil
	}
	return v.names, v.list
}

// Body returns a function's body.
func (v Value) Body() Value {
	if v.body == nil {
		return Value{}
	}
	return *v.body
}

// Env returns a function's environment.
func (v Value) Env() Value {
	if v.env == nil {
		return Value{}
	}
	return *v.env
}

// Source returns a function's text (for display only).
func (v Value) Source() string { return v.source }

// EnvKind returns an environment's kind.
func (v Value) EnvKind() EnvKind { return v.envKind }

// EnvID returns the id of a local environment sent in full.
func (v Value) EnvID() string { return v.envID }

// EnvRef returns the id a repeated local environment (a cycle or a shared
// environment) refers to.
func (v Value) EnvRef() string { return v.envRef }

// Bindings returns a local environment's bindings that were sent.
func (v Value) Bindings() (names []string, values []Value) {
	if v.typeOf() != TypeEnvironment {
		return nil, nil
	}
	return v.names, v.list
}

// Binding returns the named binding of an environment.
func (v Value) Binding(name string) (Value, bool) {
	names, vals := v.Bindings()
	if i := slices.Index(names, name); i >= 0 {
		return vals[i], true
	}
	return Value{}, false
}

// Dropped returns how many bindings of a local environment were not sent
// (over MaxEnvBindings, or nested too deep).
func (v Value) Dropped() int { return v.dropped }

// IsS4 reports whether v is an S4 object: an S4 value, or a vector or list
// with R's S4 bit.
func (v Value) IsS4() bool { return v.typeOf() == TypeS4 || v.s4 }

// IsPairlist reports whether a list stands for an R pairlist.
func (v Value) IsPairlist() bool { return v.pairlist }

// IsCode reports whether v carries R code: a call, formula or function,
// or anything holding one (a model's terms, an environment's binding). Such
// a value runs box-written code on a host that uses it.
func (v Value) IsCode() bool {
	switch v.typeOf() {
	case TypeLanguage, TypeClosure:
		return true
	}
	for _, e := range v.list {
		if e.IsCode() {
			return true
		}
	}
	for _, a := range v.attrs {
		if a.Value.IsCode() {
			return true
		}
	}
	return v.body != nil && v.body.IsCode() || v.env != nil && v.env.IsCode()
}

// String is a short display form: code as its text, other values as
// Describe says.
func (v Value) String() string {
	switch v.typeOf() {
	case TypeLanguage, TypeClosure, TypeSymbol, TypePrimitive:
		return v.Repr()
	}
	return v.Describe()
}

// equalCode compares the members of the non-vector types (vectors,
// lists and attributes were compared by Equal).
func equalCode(a, b Value) bool {
	if a.name != b.name || a.source != b.source || a.envKind != b.envKind ||
		a.envID != b.envID || a.envRef != b.envRef || a.dropped != b.dropped ||
		!slices.Equal(a.names, b.names) || !slices.EqualFunc(a.list, b.list, Equal) {
		return false
	}
	// repr is display text (deparse), not part of the value.
	return equalPtr(a.body, b.body) && equalPtr(a.env, b.env)
}

func equalPtr(a, b *Value) bool {
	if a == nil || b == nil {
		return a == b
	}
	return Equal(*a, *b)
}
