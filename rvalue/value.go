package rvalue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// Type is an R value's wire type; for R data it is what typeof() reports.
type Type string

// The wire types.
const (
	TypeNull        Type = "NULL"
	TypeLogical     Type = "logical"
	TypeInteger     Type = "integer"
	TypeDouble      Type = "double"
	TypeCharacter   Type = "character"
	TypeList        Type = "list"
	TypeRaw         Type = "raw"
	TypeComplex     Type = "complex"
	TypeJSON        Type = "json"
	TypeUnsupported Type = "unsupported"

	// Language objects, functions, environments and S4 objects (R to host,
	// and back as they came). Code-bearing values are data here: nothing
	// in Go evaluates them.
	TypeSymbol      Type = "symbol"
	TypeLanguage    Type = "language"
	TypeClosure     Type = "closure"
	TypePrimitive   Type = "primitive"
	TypeEnvironment Type = "environment"
	TypeS4          Type = "S4"
)

func (t Type) valid() bool {
	switch t {
	case TypeNull, TypeLogical, TypeInteger, TypeDouble, TypeCharacter, TypeList,
		TypeRaw, TypeComplex, TypeJSON, TypeUnsupported,
		TypeSymbol, TypeLanguage, TypeClosure, TypePrimitive, TypeEnvironment, TypeS4:
		return true
	}
	return false
}

// EnvKind says which environment an environment value stands for.
type EnvKind string

// The environment kinds. Only local environments carry bindings; the
// others are the receiving side's own (global, base, ...).
const (
	EnvGlobal    EnvKind = "global"
	EnvBase      EnvKind = "base"
	EnvEmpty     EnvKind = "empty"
	EnvNamespace EnvKind = "namespace"
	EnvPackage   EnvKind = "package"
	EnvLocal     EnvKind = "local"
)

func (k EnvKind) valid() bool {
	switch k {
	case EnvGlobal, EnvBase, EnvEmpty, EnvNamespace, EnvPackage, EnvLocal:
		return true
	}
	return false
}

// MaxEnvBindings is the most bindings one environment value may carry; R
// sends the first ones by name and counts the rest in Dropped.
const MaxEnvBindings = 100

// Logical is one element of an R logical vector: FALSE, TRUE or NA.
type Logical int8

// Logical values. NALogical is -1 so that the zero value is FALSE.
const (
	False     Logical = 0
	True      Logical = 1
	NALogical Logical = -1
)

// NAInteger is R's NA_integer_. R reserves this bit pattern, so it can never
// be a real integer value and the wire spells it null.
const NAInteger int32 = math.MinInt32

// NAString marks NA_character_ in a character vector. It is not valid
// UTF-8, so it cannot collide with any string that may cross the wire.
const NAString = "\xff\x00NA"

// naRealBits is R's NA_real_: a NaN whose low word is 1954. R tests only
// the low word, so any NaN carrying that payload is NA.
const naRealBits = 0x7FF00000000007A2

// NAReal returns R's NA_real_, a NaN that R distinguishes from NaN.
func NAReal() float64 { return math.Float64frombits(naRealBits) }

// IsNAReal reports whether f is R's NA_real_ (as opposed to NaN or a number).
func IsNAReal(f float64) bool {
	return math.IsNaN(f) && uint32(math.Float64bits(f)) == 1954
}

// NAComplex returns R's NA_complex_ (both parts NA_real_).
func NAComplex() complex128 { return complex(NAReal(), NAReal()) }

// IsNAComplex reports whether c is NA_complex_ as the wire encodes it: both
// parts NA_real_. (R's is.na is wider: it is TRUE if either part is NA or
// NaN.)
func IsNAComplex(c complex128) bool { return IsNAReal(real(c)) && IsNAReal(imag(c)) }

// Attribute is one R attribute. Attributes are kept in order so that a
// value re-marshals as it arrived.
type Attribute struct {
	Name  string
	Value Value
}

// Value is an R value. The zero Value is NULL. Values are treated as
// immutable: methods that change a value return a modified copy, but the
// slices returned by accessors alias the value's storage and must not be
// modified.
type Value struct {
	typ   Type
	lgl   []Logical
	ints  []int32
	dbls  []float64
	strs  []string
	list  []Value
	raw   []byte
	cplx  []complex128
	json  json.RawMessage
	class []string // unsupported only: the R class of the value that could not cross
	repr  string   // unsupported and language: display text, never parsed
	attrs []Attribute

	// Language, closure and environment values reuse list for their parts,
	// formal defaults and binding values, with names beside them.
	names    []string
	name     string // symbol: its name; primitive: its name; environment: namespace/package name
	body     *Value // closure
	env      *Value // closure: its environment
	source   string // closure: its text, for display
	envKind  EnvKind
	envID    string // local environment: its id, named by refs
	envRef   string // local environment seen before: the id it refers to
	dropped  int    // local environment: bindings not sent
	s4       bool   // vectors and lists with R's S4 bit
	pairlist bool   // list: a pairlist (formals inside a function(...) call)
}

// Null returns R's NULL.
func Null() Value { return Value{typ: TypeNull} }

// Logicals returns a logical vector.
func Logicals(v ...Logical) Value { return Value{typ: TypeLogical, lgl: nonNil(v)} }

// Bools returns a logical vector without NAs.
func Bools(v ...bool) Value {
	l := make([]Logical, len(v))
	for i, b := range v {
		if b {
			l[i] = True
		}
	}
	return Value{typ: TypeLogical, lgl: l}
}

// Integers returns an integer vector; NAInteger marks NA.
func Integers(v ...int32) Value { return Value{typ: TypeInteger, ints: nonNil(v)} }

// Doubles returns a double vector; NAReal() marks NA, math.NaN() is NaN.
func Doubles(v ...float64) Value { return Value{typ: TypeDouble, dbls: nonNil(v)} }

// Strings returns a character vector; NAString marks NA.
func Strings(v ...string) Value { return Value{typ: TypeCharacter, strs: nonNil(v)} }

// Raw returns a raw vector.
func Raw(b []byte) Value { return Value{typ: TypeRaw, raw: nonNil(b)} }

// Complexes returns a complex vector; NAComplex() marks NA.
func Complexes(v ...complex128) Value { return Value{typ: TypeComplex, cplx: nonNil(v)} }

// List returns an unnamed list. A zero Value element is NULL.
func List(v ...Value) Value { return Value{typ: TypeList, list: nonNil(v)} }

// NamedList returns a list with a names attribute.
func NamedList(names []string, vals []Value) (Value, error) {
	if len(names) != len(vals) {
		return Value{}, fmt.Errorf("rvalue: NamedList: %d names for %d values", len(names), len(vals))
	}
	return List(vals...).SetAttr("names", Strings(names...)), nil
}

// Unsupported returns the placeholder R sends for a value that cannot
// cross (closures, environments, ...). It exists mostly for tests: the
// host never sends one to R.
func Unsupported(class []string, repr string) Value {
	return Value{typ: TypeUnsupported, class: nonNil(class), repr: repr}
}

// FromRawJSON returns a value of the json type: R turns it into an R value
// as jsonlite::fromJSON(txt, simplifyVector = TRUE) would.
// The payload is stored compacted, so equal JSON compares equal.
func FromRawJSON(raw json.RawMessage) (Value, error) {
	c, err := compactJSON(raw)
	if err != nil {
		return Value{}, fmt.Errorf("rvalue: FromRawJSON: %w", err)
	}
	return Value{typ: TypeJSON, json: c}, nil
}

// compactJSON validates strictly (UTF-8, duplicate names) as well, since
// jsonlite on the R side must be able to read the payload.
func compactJSON(raw []byte) (json.RawMessage, error) {
	v := jsontext.Value(bytes.Clone(raw))
	if !v.IsValid() {
		return nil, fmt.Errorf("invalid JSON (syntax, UTF-8 or duplicate names)")
	}
	if err := v.Compact(); err != nil {
		return nil, err
	}
	if err := noNUL(v); err != nil {
		return nil, err
	}
	return json.RawMessage(v), nil
}

// noNUL refuses a payload with a NUL in any string, name or value: R's
// strings cannot hold one, and jsonlite would silently cut the string
// there ("a\u0000b" becomes "a").
func noNUL(v jsontext.Value) error {
	if !bytes.Contains(v, []byte(`\u0000`)) {
		return nil // a literal NUL byte is not valid JSON
	}
	d := jsontext.NewDecoder(bytes.NewReader(v))
	for {
		t, err := d.ReadToken()
		if err != nil {
			return nil // the payload was validated: this is its end
		}
		if t.Kind() == '"' && strings.IndexByte(t.String(), 0) >= 0 {
			at := strings.ReplaceAll(string(d.StackPointer()), "\x00", `\u0000`) // the message goes to R too
			return fmt.Errorf("a string contains NUL (at %s), which R strings cannot hold: send bytes as raw instead", at)
		}
	}
}

// Factor returns an R factor: 1-based codes into levels, NAInteger for NA.
func Factor(levels []string, codes []int32) (Value, error) {
	for i, c := range codes {
		if c != NAInteger && (c < 1 || int(c) > len(levels)) {
			return Value{}, fmt.Errorf("rvalue: Factor: code %d at index %d outside 1..%d", c, i, len(levels))
		}
	}
	return Integers(codes...).
		SetAttr("levels", Strings(levels...)).
		SetAttr("class", Strings("factor")), nil
}

// FactorOf builds a factor from strings the way R's factor() does: levels
// are the sorted distinct non-NA values. (R sorts in the locale's collation;
// this sorts by bytes, which agrees for ASCII in the C locale.)
func FactorOf(vals ...string) Value {
	var levels []string
	for _, s := range vals {
		if s != NAString {
			levels = append(levels, s)
		}
	}
	slices.Sort(levels)
	levels = slices.Compact(levels)
	codes := make([]int32, len(vals))
	for i, s := range vals {
		if s == NAString {
			codes[i] = NAInteger
			continue
		}
		j, _ := slices.BinarySearch(levels, s)
		codes[i] = int32(j + 1)
	}
	f, _ := Factor(levels, codes) // codes are in range by construction
	return f
}

// Date returns an R Date vector (days since 1970-01-01 as double) holding
// the calendar date of each t in t's own location.
func Date(ts ...time.Time) Value {
	d := make([]float64, len(ts))
	for i, t := range ts {
		y, m, day := t.Date()
		d[i] = float64(time.Date(y, m, day, 0, 0, 0, 0, time.UTC).Unix() / 86400)
	}
	return Doubles(d...).SetAttr("class", Strings("Date"))
}

// POSIXct returns an R POSIXct vector (seconds since the epoch) with the
// given tzone attribute ("" means R's session time zone).
func POSIXct(tz string, ts ...time.Time) Value {
	d := make([]float64, len(ts))
	for i, t := range ts {
		d[i] = float64(t.Unix()) + float64(t.Nanosecond())/1e9
	}
	return Doubles(d...).
		SetAttr("class", Strings("POSIXct", "POSIXt")).
		SetAttr("tzone", Strings(tz))
}

// DataFrame returns a data.frame with the given columns, which must all have
// the same length. Row names are R's compact automatic form c(NA, -n).
func DataFrame(names []string, cols []Value) (Value, error) {
	if len(names) != len(cols) {
		return Value{}, fmt.Errorf("rvalue: DataFrame: %d names for %d columns", len(names), len(cols))
	}
	n := 0
	for i, c := range cols {
		if !c.isVector() {
			return Value{}, fmt.Errorf("rvalue: DataFrame: column %q is %s, not a vector", names[i], c.typeOf())
		}
		if i == 0 {
			n = c.Len()
		} else if c.Len() != n {
			return Value{}, fmt.Errorf("rvalue: DataFrame: column %q has %d rows, want %d", names[i], c.Len(), n)
		}
	}
	if n > math.MaxInt32 {
		return Value{}, fmt.Errorf("rvalue: DataFrame: %d rows is too many for R", n)
	}
	return List(cols...).
		SetAttr("names", Strings(names...)).
		SetAttr("class", Strings("data.frame")).
		SetAttr("row.names", Integers(NAInteger, -int32(n))), nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// typeOf maps the zero Value to NULL.
func (v Value) typeOf() Type {
	if v.typ == "" {
		return TypeNull
	}
	return v.typ
}

// Type returns the value's wire type.
func (v Value) Type() Type { return v.typeOf() }

// isVector reports whether v is an R vector (atomic or list).
func (v Value) isVector() bool {
	switch v.typeOf() {
	case TypeLogical, TypeInteger, TypeDouble, TypeCharacter, TypeList, TypeRaw, TypeComplex:
		return true
	}
	return false
}

// Len returns R's length(): elements of a vector, parts of a call, bindings
// of an environment (including dropped ones), 0 for NULL, and 1 for json,
// unsupported and the other single objects (whose R length is not needed
// here).
func (v Value) Len() int {
	switch v.typeOf() {
	case TypeLanguage:
		return len(v.list)
	case TypeEnvironment:
		return len(v.names) + v.dropped
	case TypeSymbol, TypeClosure, TypePrimitive, TypeS4:
		return 1
	case TypeLogical:
		return len(v.lgl)
	case TypeInteger:
		return len(v.ints)
	case TypeDouble:
		return len(v.dbls)
	case TypeCharacter:
		return len(v.strs)
	case TypeList:
		return len(v.list)
	case TypeRaw:
		return len(v.raw)
	case TypeComplex:
		return len(v.cplx)
	case TypeJSON, TypeUnsupported:
		return 1
	}
	return 0
}

// Accessors return nil when the value has another type.

// Logicals returns the elements of a logical vector.
func (v Value) Logicals() []Logical { return v.lgl }

// Integers returns the elements of an integer vector (including factor codes).
func (v Value) Integers() []int32 { return v.ints }

// Doubles returns the elements of a double vector.
func (v Value) Doubles() []float64 { return v.dbls }

// Float64s returns a numeric vector, double or integer (R's is.numeric
// takes both: 2L, length(x)), as float64s, an integer NA as NaN; nil for
// any other type and for factors.
func (v Value) Float64s() []float64 {
	switch {
	case v.typeOf() == TypeDouble:
		return v.dbls
	case v.typeOf() == TypeInteger && !v.IsFactor():
		out := make([]float64, len(v.ints))
		for i, n := range v.ints {
			if n == NAInteger {
				out[i] = math.NaN()
			} else {
				out[i] = float64(n)
			}
		}
		return out
	}
	return nil
}

// Strings returns the elements of a character vector; NA is NAString.
func (v Value) Strings() []string { return v.strs }

// Raw returns the bytes of a raw vector.
func (v Value) Raw() []byte { return v.raw }

// Complexes returns the elements of a complex vector.
func (v Value) Complexes() []complex128 { return v.cplx }

// List returns the elements of a list (nil for other types, including
// calls: see Parts).
func (v Value) List() []Value {
	if v.typeOf() != TypeList {
		return nil
	}
	return v.list
}

// RawJSON returns the payload of a json value.
func (v Value) RawJSON() json.RawMessage { return v.json }

// Repr returns display text: the short deparse of an unsupported value or
// of a call, a function's source, a symbol's or primitive's name, and ""
// for other values. It is for people: nothing ever parses it.
func (v Value) Repr() string {
	switch v.typeOf() {
	case TypeClosure:
		return v.source
	case TypeSymbol:
		return v.name
	case TypePrimitive:
		return `.Primitive("` + v.name + `")`
	}
	return v.repr
}

// IsNA reports whether element i is NA (for doubles: NA_real_, not NaN).
// It panics if i is out of range, like indexing.
func (v Value) IsNA(i int) bool {
	switch v.typeOf() {
	case TypeLogical:
		return v.lgl[i] == NALogical
	case TypeInteger:
		return v.ints[i] == NAInteger
	case TypeDouble:
		return IsNAReal(v.dbls[i])
	case TypeCharacter:
		return v.strs[i] == NAString
	case TypeComplex:
		return IsNAComplex(v.cplx[i])
	case TypeList:
		_ = v.list[i]
	case TypeRaw:
		_ = v.raw[i]
	default:
		panic(fmt.Sprintf("rvalue: IsNA on %s", v.typeOf()))
	}
	return false
}

// Attrs returns the attributes in order.
func (v Value) Attrs() []Attribute { return v.attrs }

// Attr returns the named attribute.
func (v Value) Attr(name string) (Value, bool) {
	for _, a := range v.attrs {
		if a.Name == name {
			return a.Value, true
		}
	}
	return Value{}, false
}

// SetAttr returns a copy of v with attribute name set to a, replacing any
// existing one in place. As in R, setting NULL removes the attribute.
func (v Value) SetAttr(name string, a Value) Value {
	attrs := make([]Attribute, 0, len(v.attrs)+1)
	found := false
	for _, old := range v.attrs {
		if old.Name == name {
			found = true
			if a.typeOf() == TypeNull {
				continue
			}
			old.Value = a
		}
		attrs = append(attrs, old)
	}
	if !found && a.typeOf() != TypeNull {
		attrs = append(attrs, Attribute{Name: name, Value: a})
	}
	if len(attrs) == 0 {
		attrs = nil
	}
	v.attrs = attrs
	return v
}

// Names returns the names attribute (NA names are NAString), or nil.
func (v Value) Names() []string {
	n, _ := v.Attr("names")
	return n.strs
}

// Class returns the class attribute, or for an unsupported value the class
// R reported for it. It is nil for values without an explicit class (R's
// implicit classes such as "numeric" are not reported).
func (v Value) Class() []string {
	if v.typeOf() == TypeUnsupported {
		return v.class
	}
	c, _ := v.Attr("class")
	return c.strs
}

// Inherits reports whether class is among v's classes, like R's inherits().
func (v Value) Inherits(class string) bool { return slices.Contains(v.Class(), class) }

// IsFactor reports whether v is a factor.
func (v Value) IsFactor() bool { return v.typeOf() == TypeInteger && v.Inherits("factor") }

// IsDataFrame reports whether v is a data frame.
func (v Value) IsDataFrame() bool { return v.typeOf() == TypeList && v.Inherits("data.frame") }

// Levels returns a factor's levels.
func (v Value) Levels() []string {
	l, _ := v.Attr("levels")
	return l.strs
}

// Dim returns the dim attribute, or nil.
func (v Value) Dim() []int {
	d, ok := v.Attr("dim")
	if !ok {
		return nil
	}
	out := make([]int, 0, d.Len())
	for _, x := range d.ints {
		out = append(out, int(x))
	}
	for _, x := range d.dbls {
		out = append(out, int(x))
	}
	return out
}

// NRow returns the number of rows of a data frame, taken from its row
// names as R's nrow() does.
func (v Value) NRow() int {
	rn, ok := v.Attr("row.names")
	if !ok {
		if len(v.list) > 0 {
			return v.list[0].Len()
		}
		return 0
	}
	if rn.typeOf() == TypeInteger && len(rn.ints) == 2 && rn.ints[0] == NAInteger {
		n := int(rn.ints[1])
		if n < 0 {
			n = -n
		}
		return n
	}
	return rn.Len()
}

// Get returns the element of a named list with the given name (the first,
// if names repeat).
func (v Value) Get(name string) (Value, bool) {
	if v.typeOf() != TypeList {
		return Value{}, false
	}
	for i, n := range v.Names() {
		if n == name && i < len(v.list) {
			return v.list[i], true
		}
	}
	return Value{}, false
}

// Equal reports whether a and b are the same R value in the sense of R's
// identical(): NA equals NA, NaN equals NaN, 0 equals -0, attributes
// compare as a set. json payloads compare byte for byte.
func Equal(a, b Value) bool {
	if a.typeOf() != b.typeOf() || len(a.attrs) != len(b.attrs) || a.s4 != b.s4 || a.pairlist != b.pairlist {
		return false
	}
	for _, x := range a.attrs {
		y, ok := b.Attr(x.Name)
		if !ok || !Equal(x.Value, y) {
			return false
		}
	}
	switch a.typeOf() {
	case TypeLogical:
		return slices.Equal(a.lgl, b.lgl)
	case TypeInteger:
		return slices.Equal(a.ints, b.ints)
	case TypeDouble:
		return slices.EqualFunc(a.dbls, b.dbls, sameDouble)
	case TypeCharacter:
		return slices.Equal(a.strs, b.strs)
	case TypeRaw:
		return slices.Equal(a.raw, b.raw)
	case TypeComplex:
		return slices.EqualFunc(a.cplx, b.cplx, func(x, y complex128) bool {
			return sameDouble(real(x), real(y)) && sameDouble(imag(x), imag(y))
		})
	case TypeList:
		return slices.EqualFunc(a.list, b.list, Equal)
	case TypeJSON:
		return string(a.json) == string(b.json)
	case TypeUnsupported:
		return slices.Equal(a.class, b.class) && a.repr == b.repr
	}
	return equalCode(a, b)
}

func sameDouble(x, y float64) bool {
	if math.IsNaN(x) || math.IsNaN(y) {
		return math.IsNaN(x) && math.IsNaN(y) && IsNAReal(x) == IsNAReal(y)
	}
	return x == y
}

// Count is the number of value objects in v: itself, its list elements and
// attributes, the parts of code and bindings of environments, recursively
// (what DecodeOptions.MaxValues counts).
func (v Value) Count() int {
	n := 1
	for _, e := range v.list {
		n += e.Count()
	}
	if v.body != nil {
		n += v.body.Count()
	}
	if v.env != nil {
		n += v.env.Count()
	}
	for _, a := range v.attrs {
		n += a.Value.Count()
	}
	return n
}
