package rvalue

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// Limits applied by UnmarshalJSON. MaxDepth matches the R side
// (bridge/r/values.R), which refuses to encode or decode deeper values.
const (
	DefaultMaxDepth    = 100
	DefaultMaxElements = 1 << 24
	// DefaultMaxValues bounds the value objects (list elements, attributes)
	// in one decode: each costs a few hundred bytes in Go, so a small frame
	// of tiny values could otherwise demand far more memory than its size.
	DefaultMaxValues = 100000
)

// DecodeOptions bounds what Decode accepts; zero fields mean the defaults.
type DecodeOptions struct {
	// MaxDepth is the deepest allowed nesting of values, counting the top
	// value as 1 and each list element or attribute as one level more
	// (json payloads count their own JSON nesting too).
	MaxDepth int
	// MaxElements caps the total number of elements across all vectors,
	// lists, raw bytes and json tokens, so a small message cannot demand
	// a huge allocation.
	MaxElements int
	// MaxValues caps the number of value objects (a list's elements each
	// count, as do attributes).
	MaxValues int
}

// ErrInvalid is wrapped by every wire decoding and validation error.
var ErrInvalid = errors.New("invalid R value")

// Decode parses one wire value strictly: unknown or duplicate members,
// wrong JSON kinds, values that do not fit their type, NA sentinels spelled
// as data, invalid UTF-8 and trailing data are all rejected, with the path
// of the offending element in the error.
func Decode(data []byte, opts DecodeOptions) (Value, error) {
	p := &parser{opts: opts.withDefaults()}
	v, err := p.parseTop(data, 1, "value")
	if err != nil {
		return Value{}, err
	}
	if err := checkRefs(v); err != nil {
		return Value{}, err
	}
	return v, nil
}

// DecodeFrom parses one wire value at d's position, as strictly as
// Decode, and leaves d just after it: a value inside a bigger message is
// decoded in the same pass that reads the message (Decode of a member's
// raw bytes would read them twice).
func DecodeFrom(d *jsontext.Decoder, opts DecodeOptions) (Value, error) {
	p := &parser{opts: opts.withDefaults()}
	v, err := p.value(d, 1, pathRoot{})
	if err != nil {
		return Value{}, err
	}
	if err := checkRefs(v); err != nil {
		return Value{}, err
	}
	return v, nil
}

func (o DecodeOptions) withDefaults() DecodeOptions {
	if o.MaxDepth <= 0 {
		o.MaxDepth = DefaultMaxDepth
	}
	if o.MaxElements <= 0 {
		o.MaxElements = DefaultMaxElements
	}
	if o.MaxValues <= 0 {
		o.MaxValues = DefaultMaxValues
	}
	return o
}

// UnmarshalJSON implements json.Unmarshaler with the default limits.
func (v *Value) UnmarshalJSON(data []byte) error {
	x, err := Decode(data, DecodeOptions{})
	if err != nil {
		return err
	}
	*v = x
	return nil
}

// MarshalJSON implements json.Marshaler. It validates the value first, so
// nothing R would reject or decode differently is ever sent.
func (v Value) MarshalJSON() ([]byte, error) {
	return v.AppendJSON(nil)
}

// AppendJSON appends the wire form of v to dst.
func (v Value) AppendJSON(dst []byte) ([]byte, error) {
	if err := checkRefs(v); err != nil {
		return nil, err
	}
	return appendValue(dst, v, 1, pathRoot{})
}

// ---- errors and paths -----------------------------------------------------

// path is a lazily rendered location like value.list[2].attributes.names;
// building strings eagerly would cost an allocation per list element.
type path interface{ render(*strings.Builder) }

type pathRoot struct{}
type pathName struct {
	parent path
	name   string
}
type pathIndex struct {
	parent path
	i      int
}
type pathStr struct{ s string }

func (pathRoot) render(b *strings.Builder)  { b.WriteString("value") }
func (p pathStr) render(b *strings.Builder) { b.WriteString(p.s) }
func (p pathName) render(b *strings.Builder) {
	p.parent.render(b)
	b.WriteByte('.')
	b.WriteString(p.name)
}
func (p pathIndex) render(b *strings.Builder) {
	p.parent.render(b)
	fmt.Fprintf(b, "[%d]", p.i)
}

func errAt(p path, format string, args ...any) error {
	var b strings.Builder
	p.render(&b)
	return fmt.Errorf("%w: %s: %s", ErrInvalid, b.String(), fmt.Sprintf(format, args...))
}

// ---- decoding ---------------------------------------------------------------

type parser struct {
	opts   DecodeOptions
	elems  int
	values int
}

// parseTop parses data as one complete value (used for the top level and
// for members that arrived before "type").
func (p *parser) parseTop(data []byte, depth int, where string) (Value, error) {
	return p.parseTopAt(data, depth, pathStr{where})
}

func (p *parser) parseTopAt(data []byte, depth int, at path) (Value, error) {
	d := jsontext.NewDecoder(bytes.NewReader(data))
	v, err := p.value(d, depth, at)
	if err != nil {
		return Value{}, err
	}
	if _, err := d.ReadToken(); err != io.EOF {
		return Value{}, errAt(at, "unexpected data after value")
	}
	return v, nil
}

func (p *parser) count(n int, at path) error {
	p.elems += n
	if p.elems > p.opts.MaxElements {
		return errAt(at, "more than %d elements in total", p.opts.MaxElements)
	}
	return nil
}

func syntaxErr(at path, err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return errAt(at, "%v", err)
}

func (p *parser) readToken(d *jsontext.Decoder, at path) (jsontext.Token, error) {
	t, err := d.ReadToken()
	if err != nil {
		return t, syntaxErr(at, err)
	}
	return t, nil
}

func kindName(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 'f', 't':
		return "boolean"
	case '"':
		return "string"
	case '0':
		return "number"
	case '{':
		return "object"
	case '[':
		return "array"
	}
	return "end of input"
}

func (p *parser) expect(d *jsontext.Decoder, k jsontext.Kind, what string, at path) error {
	t, err := p.readToken(d, at)
	if err != nil {
		return err
	}
	if t.Kind() != k {
		return errAt(at, "want %s, got %s", what, kindName(t.Kind()))
	}
	return nil
}

// value parses one wire value object. Members may come in any order; the
// value is parsed as it streams past when "type" came first (as both R and
// Go write it), and buffered otherwise.
func (p *parser) value(d *jsontext.Decoder, depth int, at path) (Value, error) {
	if err := p.enter(depth, at); err != nil {
		return Value{}, err
	}
	if err := p.expect(d, '{', "a value object", at); err != nil {
		return Value{}, err
	}
	var (
		v Value
		m members
	)
	for d.PeekKind() != '}' {
		if err := p.member(d, &v, &m, depth, at); err != nil {
			return Value{}, err
		}
	}
	if _, err := d.ReadToken(); err != nil {
		return Value{}, syntaxErr(at, err)
	}
	if v.typ == "" {
		return Value{}, errAt(at, "missing member \"type\"")
	}
	if err := p.pendingMembers(&v, &m, depth, at); err != nil {
		return Value{}, err
	}
	if err := m.check(v.typ, at); err != nil {
		return Value{}, err
	}
	if err := checkCode(&v, at); err != nil {
		return Value{}, err
	}
	if m.haveAttrs {
		if err := checkAttrs(v, at); err != nil {
			return Value{}, err
		}
		// Row counts and array shapes drive loops in Go() and PlainJSON
		// independently of the data length (a zero-column data frame can
		// claim 2^31 rows), so they count against the element budget too.
		if err := p.count(shapeCost(v), pathName{at, "attributes"}); err != nil {
			return Value{}, err
		}
	}
	return v, nil
}

// enter counts one more value at depth against the depth and value limits.
func (p *parser) enter(depth int, at path) error {
	if depth > p.opts.MaxDepth {
		return errAt(at, "nested deeper than %d levels", p.opts.MaxDepth)
	}
	if p.values++; p.values > p.opts.MaxValues {
		return errAt(at, "more than %d values in total", p.opts.MaxValues)
	}
	return nil
}

// members records which members of a value object were seen, and keeps
// those that came before "type" to be parsed once the type is known.
type members struct {
	haveValue, haveAttrs, haveClass, haveRepr bool
	pendingValue, pendingAttrs, pendingClass  jsontext.Value
	// The members of the code, environment and S4 types (code.go).
	code    codeMembers
	pending []pendingMember
}

// member parses one member of a value object into v.
func (p *parser) member(d *jsontext.Decoder, v *Value, m *members, depth int, at path) error {
	t, err := p.readToken(d, at)
	if err != nil {
		return err
	}
	if t.Kind() != '"' {
		return errAt(at, "want member name, got %s", kindName(t.Kind()))
	}
	name := t.String()
	mat := pathName{at, name}
	switch name {
	case "type":
		s, err := p.stringToken(d, "string", mat)
		if err != nil {
			return err
		}
		typ := Type(s)
		if !typ.valid() {
			return errAt(mat, "unknown type %q", typ)
		}
		v.typ = typ
	case "value":
		m.haveValue = true
		if v.typ == "" {
			m.pendingValue, err = p.buffer(d, mat)
			return err
		}
		return p.payload(d, v, depth, mat)
	case "attributes":
		m.haveAttrs = true
		if v.typ == "" {
			m.pendingAttrs, err = p.buffer(d, mat)
			return err
		}
		v.attrs, err = p.attributes(d, depth, mat)
		return err
	case "class":
		m.haveClass = true
		if v.typ == "" {
			m.pendingClass, err = p.buffer(d, mat)
			return err
		}
		v.class, err = p.classMember(d, v.typ, mat)
		return err
	case "repr":
		m.haveRepr = true
		if v.repr, err = p.stringToken(d, "string", mat); err != nil {
			return err
		}
	default:
		if !isCodeMember(name) {
			return errAt(at, "unknown member %q", name)
		}
		if v.typ == "" {
			raw, err := p.buffer(d, mat)
			if err != nil {
				return err
			}
			m.pending = append(m.pending, pendingMember{name, raw})
			return nil
		}
		return p.codeMember(d, v, m, name, depth, mat)
	}
	return nil
}

// stringToken reads a token that must be a JSON string (what names it in
// the error).
func (p *parser) stringToken(d *jsontext.Decoder, what string, at path) (string, error) {
	t, err := p.readToken(d, at)
	if err != nil {
		return "", err
	}
	if t.Kind() != '"' {
		return "", errAt(at, "want %s, got %s", what, kindName(t.Kind()))
	}
	return t.String(), nil
}

// buffer keeps the next JSON value, unparsed, for later.
func (p *parser) buffer(d *jsontext.Decoder, at path) (jsontext.Value, error) {
	raw, err := d.ReadValue()
	if err != nil {
		return nil, syntaxErr(at, err)
	}
	return raw.Clone(), nil
}

// pendingMembers parses the members that preceded "type", now that it is
// known.
func (p *parser) pendingMembers(v *Value, m *members, depth int, at path) error {
	var err error
	if m.pendingValue != nil {
		sub := jsontext.NewDecoder(bytes.NewReader(m.pendingValue))
		if err := p.payload(sub, v, depth, pathName{at, "value"}); err != nil {
			return err
		}
	}
	if m.pendingAttrs != nil {
		sub := jsontext.NewDecoder(bytes.NewReader(m.pendingAttrs))
		if v.attrs, err = p.attributes(sub, depth, pathName{at, "attributes"}); err != nil {
			return err
		}
	}
	if m.pendingClass != nil {
		sub := jsontext.NewDecoder(bytes.NewReader(m.pendingClass))
		if v.class, err = p.classMember(sub, v.typ, pathName{at, "class"}); err != nil {
			return err
		}
	}
	for _, pm := range m.pending {
		sub := jsontext.NewDecoder(bytes.NewReader(pm.raw))
		if err := p.codeMember(sub, v, m, pm.name, depth, pathName{at, pm.name}); err != nil {
			return err
		}
	}
	return nil
}

// check says whether the members seen are the ones a value of type typ
// has.
func (m *members) check(typ Type, at path) error {
	switch typ {
	case TypeNull:
		if m.haveValue {
			return errAt(at, "NULL has no \"value\"")
		}
	case TypeUnsupported:
		if m.haveValue {
			return errAt(at, "unsupported has no \"value\"")
		}
		if !m.haveClass || !m.haveRepr {
			return errAt(at, "unsupported needs \"class\" and \"repr\"")
		}
	case TypeClosure, TypePrimitive, TypeEnvironment, TypeS4:
		if m.haveValue {
			return errAt(at, "%s has no \"value\"", typ)
		}
	default:
		if !m.haveValue {
			return errAt(at, "missing member \"value\"")
		}
	}
	if typ != TypeUnsupported && m.haveClass {
		return errAt(at, "\"class\" belongs to unsupported values only")
	}
	if typ != TypeUnsupported && typ != TypeLanguage && m.haveRepr {
		return errAt(at, "\"repr\" belongs to unsupported values and calls only")
	}
	return m.code.check(typ, at)
}

// shapeCost is the number of rows or nested arrays that v's data-frame
// row names or dim make Go() and PlainJSON produce.
func shapeCost(v Value) int {
	cost := 0
	if rn, ok := v.Attr("row.names"); ok && rn.typeOf() == TypeInteger && len(rn.ints) == 2 && rn.ints[0] == NAInteger {
		n := int(rn.ints[1])
		cost += max(n, -n)
	}
	if dim, ok := v.Attr("dim"); ok {
		cost += arrayNodes(dim.ints)
	}
	return cost
}

// arrayNodes counts the JSON arrays a nested rendering of dim emits,
// saturating well above any element limit.
func arrayNodes(dim []int32) int {
	const limit = 1 << 40
	total, level := 0, 1
	for _, d := range dim {
		total += level
		if d <= 0 || total > limit {
			break
		}
		level *= int(d)
		if level > limit {
			return limit
		}
	}
	return min(total, limit)
}

func (p *parser) classMember(d *jsontext.Decoder, typ Type, at path) ([]string, error) {
	if typ != TypeUnsupported {
		return nil, errAt(at, "\"class\" belongs to unsupported values only")
	}
	if err := p.expect(d, '[', "an array of strings", at); err != nil {
		return nil, err
	}
	cls := []string{}
	for i := 0; d.PeekKind() != ']'; i++ {
		t, err := p.readToken(d, pathIndex{at, i})
		if err != nil {
			return nil, err
		}
		if t.Kind() != '"' {
			return nil, errAt(pathIndex{at, i}, "want string, got %s", kindName(t.Kind()))
		}
		if err := p.count(1, at); err != nil {
			return nil, err
		}
		cls = append(cls, t.String())
	}
	_, err := d.ReadToken()
	return cls, err
}

func (p *parser) attributes(d *jsontext.Decoder, depth int, at path) ([]Attribute, error) {
	if err := p.expect(d, '{', "an object", at); err != nil {
		return nil, err
	}
	var attrs []Attribute
	for d.PeekKind() != '}' {
		t, err := p.readToken(d, at)
		if err != nil {
			return nil, err
		}
		name := t.String() // jsontext guarantees a string name, unique within the object
		aat := pathName{at, name}
		if name == "" {
			return nil, errAt(aat, "empty attribute name")
		}
		av, err := p.value(d, depth+1, aat)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, Attribute{Name: name, Value: av})
	}
	if _, err := d.ReadToken(); err != nil {
		return nil, syntaxErr(at, err)
	}
	return attrs, nil
}

// payload parses the "value" member for v.typ.
func (p *parser) payload(d *jsontext.Decoder, v *Value, depth int, at path) error {
	switch v.typ {
	case TypeNull:
		return errAt(at, "NULL has no value")
	case TypeUnsupported:
		return errAt(at, "unsupported has no value")
	case TypeJSON:
		return p.jsonPayload(d, v, depth, at)
	case TypeRaw:
		return p.rawPayload(d, v, at)
	case TypeSymbol:
		name, err := p.stringToken(d, "string", at)
		if err != nil {
			return err
		}
		if strings.IndexByte(name, 0) >= 0 {
			return errAt(at, "R symbols cannot contain NUL")
		}
		v.name = name
		return nil
	case TypeClosure, TypePrimitive, TypeEnvironment, TypeS4:
		return errAt(at, "%s has no value", v.typ)
	}
	return p.vectorPayload(d, v, depth, at)
}

// jsonPayload keeps any JSON, compacted, within the depth and element
// limits.
func (p *parser) jsonPayload(d *jsontext.Decoder, v *Value, depth int, at path) error {
	raw, err := d.ReadValue()
	if err != nil {
		return syntaxErr(at, err)
	}
	n, jd := jsonShape(raw)
	if depth+jd > p.opts.MaxDepth {
		return errAt(at, "nested deeper than %d levels", p.opts.MaxDepth)
	}
	if err := p.count(n, at); err != nil {
		return err
	}
	if v.json, err = compactJSON(raw); err != nil {
		return errAt(at, "%v", err)
	}
	return nil
}

// rawPayload decodes strict, unbroken base64.
func (p *parser) rawPayload(d *jsontext.Decoder, v *Value, at path) error {
	s, err := p.stringToken(d, "base64 string", at)
	if err != nil {
		return err
	}
	if strings.ContainsAny(s, "\r\n") {
		return errAt(at, "line breaks in base64")
	}
	if err := p.count(base64.StdEncoding.DecodedLen(len(s)), at); err != nil {
		return err
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return errAt(at, "bad base64: %v", err)
	}
	v.raw = b
	return nil
}

// vectorPayload parses the array of a vector type, element by element.
func (p *parser) vectorPayload(d *jsontext.Decoder, v *Value, depth int, at path) error {
	if err := p.expect(d, '[', "an array", at); err != nil {
		return err
	}
	// An empty array is an empty vector, not a missing one.
	switch v.typ {
	case TypeLogical:
		v.lgl = []Logical{}
	case TypeInteger:
		v.ints = []int32{}
	case TypeDouble:
		v.dbls = []float64{}
	case TypeCharacter:
		v.strs = []string{}
	case TypeList, TypeLanguage:
		v.list = []Value{}
	case TypeComplex:
		v.cplx = []complex128{}
	}
	for i := 0; d.PeekKind() != ']'; i++ {
		eat := pathIndex{at, i}
		if err := p.count(1, eat); err != nil {
			return err
		}
		if err := p.element(d, v, depth, eat); err != nil {
			return err
		}
	}
	if _, err := d.ReadToken(); err != nil {
		return syntaxErr(at, err)
	}
	return nil
}

// element parses one element of a vector and appends it to v.
func (p *parser) element(d *jsontext.Decoder, v *Value, depth int, at path) error {
	switch v.typ {
	case TypeList, TypeLanguage:
		e, err := p.value(d, depth+1, at)
		if err != nil {
			return err
		}
		v.list = append(v.list, e)
		return nil
	case TypeComplex:
		c, err := p.complexElem(d, at)
		if err != nil {
			return err
		}
		v.cplx = append(v.cplx, c)
		return nil
	}
	t, err := p.readToken(d, at)
	if err != nil {
		return err
	}
	switch v.typ {
	case TypeLogical:
		l, err := logicalToken(t, at)
		if err != nil {
			return err
		}
		v.lgl = append(v.lgl, l)
	case TypeInteger:
		n, err := integerToken(t, at)
		if err != nil {
			return err
		}
		v.ints = append(v.ints, n)
	case TypeDouble:
		f, err := doubleToken(t, at)
		if err != nil {
			return err
		}
		v.dbls = append(v.dbls, f)
	case TypeCharacter:
		s, err := characterToken(t, at)
		if err != nil {
			return err
		}
		v.strs = append(v.strs, s)
	}
	return nil
}

// logicalToken accepts true, false or null (NA).
func logicalToken(t jsontext.Token, at path) (Logical, error) {
	switch k := t.Kind(); k {
	case 't':
		return True, nil
	case 'f':
		return False, nil
	case 'n':
		return NALogical, nil
	default:
		return 0, errAt(at, "want true, false or null, got %s", kindName(k))
	}
}

// integerToken accepts null (NA) or a whole number in R's integer range
// other than the one that stands for NA.
func integerToken(t jsontext.Token, at path) (int32, error) {
	switch k := t.Kind(); k {
	case 'n':
		return NAInteger, nil
	case '0':
		n, err := t.Int()
		switch {
		case errors.Is(err, strconv.ErrSyntax):
			return 0, errAt(at, "%s is not an integer", t.String())
		case err != nil || n < math.MinInt32 || n > math.MaxInt32:
			return 0, errAt(at, "%s is outside R's integer range", t.String())
		case n == int64(NAInteger):
			return 0, errAt(at, "%d is R's NA_integer_; NA must be null", n)
		}
		return int32(n), nil
	default:
		return 0, errAt(at, "want number or null, got %s", kindName(k))
	}
}

// characterToken accepts null (NA) or a string without NUL.
func characterToken(t jsontext.Token, at path) (string, error) {
	switch k := t.Kind(); k {
	case 'n':
		return NAString, nil
	case '"':
		s := t.String()
		if strings.IndexByte(s, 0) >= 0 {
			return "", errAt(at, "R strings cannot contain NUL")
		}
		return s, nil
	default:
		return "", errAt(at, "want string or null, got %s", kindName(k))
	}
}

// doubleToken accepts a JSON number or one of the special strings.
func doubleToken(t jsontext.Token, at path) (float64, error) {
	switch t.Kind() {
	case '0':
		f, err := t.Float()
		if err != nil {
			return 0, errAt(at, "%s is outside the range of a double", t.String())
		}
		return f, nil
	case '"':
		switch s := t.String(); s {
		case "NA":
			return NAReal(), nil
		case "NaN":
			return math.NaN(), nil
		case "Inf":
			return math.Inf(1), nil
		case "-Inf":
			return math.Inf(-1), nil
		default:
			return 0, errAt(at, "string %q is not a double (want a number, \"NA\", \"NaN\", \"Inf\" or \"-Inf\")", s)
		}
	}
	return 0, errAt(at, "want number or special string, got %s", kindName(t.Kind()))
}

func (p *parser) complexElem(d *jsontext.Decoder, at path) (complex128, error) {
	t, err := p.readToken(d, at)
	if err != nil {
		return 0, err
	}
	switch t.Kind() {
	case 'n':
		return NAComplex(), nil
	case '{':
	default:
		return 0, errAt(at, "want {\"re\":..,\"im\":..} or null, got %s", kindName(t.Kind()))
	}
	var re, im float64
	var haveRe, haveIm bool
	for d.PeekKind() != '}' {
		t, err := p.readToken(d, at)
		if err != nil {
			return 0, err
		}
		name := t.String()
		mat := pathName{at, name}
		if name != "re" && name != "im" {
			return 0, errAt(at, "unknown member %q", name)
		}
		t, err = p.readToken(d, mat)
		if err != nil {
			return 0, err
		}
		f, err := doubleToken(t, mat)
		if err != nil {
			return 0, err
		}
		if name == "re" {
			re, haveRe = f, true
		} else {
			im, haveIm = f, true
		}
	}
	if _, err := d.ReadToken(); err != nil {
		return 0, syntaxErr(at, err)
	}
	if !haveRe || !haveIm {
		return 0, errAt(at, "complex needs both \"re\" and \"im\"")
	}
	return complex(re, im), nil
}

// jsonShape returns a rough token count and the nesting depth of valid
// JSON text, for the element and depth guards.
func jsonShape(raw []byte) (tokens, depth int) {
	inStr, esc, cur := false, false, 0
	tokens = 1
	for _, c := range raw {
		switch {
		case esc:
			esc = false
		case inStr:
			switch c {
			case '\\':
				esc = true
			case '"':
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '[' || c == '{':
			cur++
			tokens++
			depth = max(depth, cur)
		case c == ']' || c == '}':
			cur--
		case c == ',':
			tokens++
		}
	}
	return tokens, depth
}

// checkAttrs enforces the invariants R itself keeps, so that a value the
// host accepts is one R can rebuild exactly.
func checkAttrs(v Value, at path) error {
	if len(v.attrs) == 0 {
		return nil
	}
	aat := pathName{at, "attributes"}
	switch v.typeOf() {
	case TypeNull, TypeJSON, TypeUnsupported, TypeSymbol, TypePrimitive:
		return errAt(aat, "%s values cannot have attributes", v.typeOf())
	case TypeEnvironment:
		if v.envKind != EnvLocal || v.envRef != "" {
			return errAt(aat, "only a local environment sent in full can have attributes")
		}
	}
	if v.pairlist && (len(v.attrs) != 1 || v.attrs[0].Name != "names") {
		return errAt(aat, "a pairlist has only names")
	}
	vector := v.isVector()
	seen := make(map[string]bool, len(v.attrs))
	for _, a := range v.attrs {
		nat := pathName{aat, a.Name}
		if a.Name == "" {
			return errAt(nat, "empty attribute name")
		}
		if !utf8.ValidString(a.Name) {
			return errAt(aat, "attribute name is not valid UTF-8")
		}
		if seen[a.Name] {
			return errAt(nat, "duplicate attribute")
		}
		seen[a.Name] = true
		switch t := a.Value.typeOf(); t {
		case TypeNull, TypeJSON, TypeUnsupported:
			return errAt(nat, "an attribute cannot be %s", t)
		}
		av := a.Value
		if !vector {
			// Calls keep argument names in "names"; S4 slots, functions and
			// environments have no R shape invariants.
			if a.Name == "names" && v.typeOf() == TypeLanguage {
				return errAt(nat, "a call's names go in its \"names\" member")
			}
			continue
		}
		switch a.Name {
		case "names":
			if av.typeOf() != TypeCharacter {
				return errAt(nat, "must be character, not %s", av.typeOf())
			}
			if av.Len() != v.Len() {
				return errAt(nat, "%d names for %d elements", av.Len(), v.Len())
			}
		case "class":
			if av.typeOf() != TypeCharacter {
				return errAt(nat, "must be character, not %s", av.typeOf())
			}
		case "dim":
			if av.typeOf() != TypeInteger || av.Len() == 0 {
				return errAt(nat, "must be a non-empty integer vector")
			}
			prod := 1
			for _, x := range av.ints {
				if x < 0 { // NAInteger is negative too
					return errAt(nat, "extents must be non-negative and not NA")
				}
				// Saturate instead of overflowing; a later 0 still wins.
				if prod <= v.Len() || x == 0 {
					prod *= int(x)
				}
			}
			if prod != v.Len() {
				return errAt(nat, "dims do not match the length %d", v.Len())
			}
		case "dimnames":
			dim, ok := v.Attr("dim")
			if !ok {
				return errAt(nat, "dimnames without dim")
			}
			if av.typeOf() != TypeList || av.Len() != dim.Len() {
				return errAt(nat, "must be a list with one element per dim")
			}
			for i, e := range av.list {
				switch e.typeOf() {
				case TypeNull:
				case TypeCharacter:
					if e.Len() != int(dim.ints[i]) {
						return errAt(pathIndex{nat, i}, "%d names for extent %d", e.Len(), dim.ints[i])
					}
				default:
					return errAt(pathIndex{nat, i}, "must be NULL or character")
				}
			}
		}
	}
	return nil
}

// ---- encoding ---------------------------------------------------------------

func appendValue(b []byte, v Value, depth int, at path) ([]byte, error) {
	if depth > DefaultMaxDepth {
		return nil, errAt(at, "nested deeper than %d levels", DefaultMaxDepth)
	}
	if err := checkCode(&v, at); err != nil {
		return nil, err
	}
	if err := checkAttrs(v, at); err != nil {
		return nil, err
	}
	t := v.typeOf()
	b = append(b, `{"type":"`...)
	b = append(b, t...)
	b = append(b, '"')
	vat := pathName{at, "value"}
	var err error
	switch t {
	case TypeNull:
		return append(b, '}'), nil
	case TypeUnsupported:
		b = append(b, `,"class":[`...)
		for i, c := range v.class {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendString(b, c, pathIndex{pathName{at, "class"}, i}); err != nil {
				return nil, err
			}
		}
		b = append(b, `],"repr":`...)
		if b, err = appendString(b, v.repr, pathName{at, "repr"}); err != nil {
			return nil, err
		}
		return append(b, '}'), nil
	case TypeJSON:
		if _, jd := jsonShape(v.json); depth+jd > DefaultMaxDepth {
			return nil, errAt(vat, "nested deeper than %d levels", DefaultMaxDepth)
		}
		b = append(b, `,"value":`...)
		c, err := compactJSON(v.json)
		if err != nil {
			return nil, errAt(vat, "%v", err)
		}
		b = append(b, c...)
		return append(b, '}'), nil
	case TypeRaw:
		b = append(b, `,"value":"`...)
		b = base64.StdEncoding.AppendEncode(b, v.raw)
		b = append(b, '"')
	case TypeLogical, TypeInteger, TypeDouble, TypeCharacter, TypeList, TypeComplex:
		b = append(b, `,"value":[`...)
		n := v.Len()
		for i := 0; i < n; i++ {
			if i > 0 {
				b = append(b, ',')
			}
			switch t {
			case TypeLogical:
				switch v.lgl[i] {
				case True:
					b = append(b, "true"...)
				case False:
					b = append(b, "false"...)
				case NALogical:
					b = append(b, "null"...)
				default:
					return nil, errAt(pathIndex{vat, i}, "logical %d is not FALSE, TRUE or NA", v.lgl[i])
				}
			case TypeInteger:
				if v.ints[i] == NAInteger {
					b = append(b, "null"...)
				} else {
					b = strconv.AppendInt(b, int64(v.ints[i]), 10)
				}
			case TypeDouble:
				b = appendDouble(b, v.dbls[i])
			case TypeCharacter:
				if v.strs[i] == NAString {
					b = append(b, "null"...)
				} else if b, err = appendString(b, v.strs[i], pathIndex{vat, i}); err != nil {
					return nil, err
				}
			case TypeComplex:
				c := v.cplx[i]
				if IsNAComplex(c) {
					b = append(b, "null"...)
					continue
				}
				b = append(b, `{"re":`...)
				b = appendDouble(b, real(c))
				b = append(b, `,"im":`...)
				b = appendDouble(b, imag(c))
				b = append(b, '}')
			case TypeList:
				if b, err = appendValue(b, v.list[i], depth+1, pathIndex{vat, i}); err != nil {
					return nil, err
				}
			}
		}
		b = append(b, ']')
	case TypeSymbol, TypePrimitive, TypeLanguage, TypeClosure, TypeEnvironment, TypeS4:
		var done bool
		if b, done, err = appendCode(b, v, depth, at); err != nil || done {
			return b, err
		}
	default:
		return nil, errAt(at, "unknown type %q", t)
	}
	if len(v.attrs) > 0 {
		aat := pathName{at, "attributes"}
		b = append(b, `,"attributes":{`...)
		for i, a := range v.attrs {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendString(b, a.Name, aat); err != nil {
				return nil, err
			}
			b = append(b, ':')
			if b, err = appendValue(b, a.Value, depth+1, pathName{aat, a.Name}); err != nil {
				return nil, err
			}
		}
		b = append(b, '}')
	}
	if v.s4 {
		b = append(b, `,"s4":true`...)
	}
	if v.pairlist {
		b = append(b, `,"pairlist":true`...)
	}
	return append(b, '}'), nil
}

// appendDouble writes the shortest decimal that parses back to the same
// bits; NA and NaN are told apart by R's NA payload.
func appendDouble(b []byte, f float64) []byte {
	switch {
	case IsNAReal(f):
		return append(b, `"NA"`...)
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Inf"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Inf"`...)
	}
	if f == 0 && math.Signbit(f) {
		// jsonlite reads "-0" as integer 0; "-0.0" keeps the sign bit.
		return append(b, "-0.0"...)
	}
	return jsontext.AppendFloat(b, f, 64)
}

func appendString(b []byte, s string, at path) ([]byte, error) {
	if s == NAString {
		return nil, errAt(at, "NA is not allowed here")
	}
	if !utf8.ValidString(s) {
		return nil, errAt(at, "string is not valid UTF-8")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return nil, errAt(at, "R strings cannot contain NUL")
	}
	out, err := jsontext.AppendQuote(b, s)
	if err != nil {
		return nil, errAt(at, "%v", err)
	}
	return out, nil
}
