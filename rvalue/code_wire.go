package rvalue

import (
	"math"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// The members of the code, environment and S4 wire forms (see doc.go),
// beside type, value, attributes and repr.
const (
	cmNames = 1 << iota
	cmValues
	cmFormals
	cmBody
	cmEnv
	cmSource
	cmName
	cmKind
	cmID
	cmRef
	cmDropped
	cmS4
	cmPairlist
)

var codeMemberBits = map[string]uint16{
	"names": cmNames, "values": cmValues, "formals": cmFormals, "body": cmBody,
	"env": cmEnv, "source": cmSource, "name": cmName, "kind": cmKind, "id": cmID,
	"ref": cmRef, "dropped": cmDropped, "s4": cmS4, "pairlist": cmPairlist,
}

func isCodeMember(name string) bool { _, ok := codeMemberBits[name]; return ok }

// codeMembers records which of those members a value object had.
type codeMembers struct{ seen uint16 }

type pendingMember struct {
	name string
	raw  jsontext.Value
}

// allowedCode says which members each type may have, and requiredCode
// which it must.
func allowedCode(t Type) uint16 {
	switch t {
	case TypeLogical, TypeInteger, TypeDouble, TypeCharacter, TypeRaw, TypeComplex:
		return cmS4
	case TypeList:
		return cmS4 | cmPairlist
	case TypeLanguage:
		return cmNames
	case TypeClosure:
		return cmFormals | cmBody | cmEnv | cmSource
	case TypePrimitive:
		return cmName
	case TypeEnvironment:
		return cmKind | cmName | cmID | cmRef | cmNames | cmValues | cmDropped
	}
	return 0
}

func requiredCode(t Type) uint16 {
	switch t {
	case TypeClosure:
		return cmFormals | cmBody | cmEnv
	case TypePrimitive:
		return cmName
	case TypeEnvironment:
		return cmKind
	}
	return 0
}

func (c codeMembers) check(t Type, at path) error {
	for name, bit := range codeMemberBits {
		if c.seen&bit != 0 && allowedCode(t)&bit == 0 {
			return errAt(at, "%s has no member %q", t, name)
		}
		if c.seen&bit == 0 && requiredCode(t)&bit != 0 {
			return errAt(at, "%s needs member %q", t, name)
		}
	}
	return nil
}

// codeMember parses one of the members above into v.
func (p *parser) codeMember(d *jsontext.Decoder, v *Value, m *members, name string, depth int, at path) error {
	m.code.seen |= codeMemberBits[name]
	var err error
	switch name {
	case "names":
		v.names, err = p.stringArray(d, at)
	case "values":
		v.list, err = p.valueArray(d, depth, at)
	case "formals":
		return p.formals(d, v, depth, at)
	case "body", "env":
		e, err := p.value(d, depth+1, at)
		if err != nil {
			return err
		}
		if name == "body" {
			v.body = &e
		} else {
			v.env = &e
		}
	case "source":
		v.source, err = p.stringToken(d, "string", at)
	case "name":
		v.name, err = p.stringToken(d, "string", at)
	case "kind":
		var s string
		if s, err = p.stringToken(d, "string", at); err == nil {
			if v.envKind = EnvKind(s); !v.envKind.valid() {
				return errAt(at, "unknown environment kind %q", s)
			}
		}
	case "id":
		v.envID, err = p.stringToken(d, "string", at)
	case "ref":
		v.envRef, err = p.stringToken(d, "string", at)
	case "dropped":
		t, err := p.readToken(d, at)
		if err != nil {
			return err
		}
		n, ierr := t.Int()
		if t.Kind() != '0' || ierr != nil || n < 0 || n > math.MaxInt32 {
			return errAt(at, "want a count, got %s", t.String())
		}
		v.dropped = int(n)
	case "s4", "pairlist":
		t, err := p.readToken(d, at)
		if err != nil {
			return err
		}
		if t.Kind() != 't' && t.Kind() != 'f' {
			return errAt(at, "want boolean, got %s", kindName(t.Kind()))
		}
		if name == "s4" {
			v.s4 = t.Bool()
		} else {
			v.pairlist = t.Bool()
		}
	}
	return err
}

// stringArray reads an array of strings (no nulls: names are never NA on
// these types).
func (p *parser) stringArray(d *jsontext.Decoder, at path) ([]string, error) {
	if err := p.expect(d, '[', "an array of strings", at); err != nil {
		return nil, err
	}
	out := []string{}
	for i := 0; d.PeekKind() != ']'; i++ {
		iat := pathIndex{at, i}
		if err := p.count(1, iat); err != nil {
			return nil, err
		}
		s, err := p.stringToken(d, "string", iat)
		if err != nil {
			return nil, err
		}
		if strings.IndexByte(s, 0) >= 0 {
			return nil, errAt(iat, "R strings cannot contain NUL")
		}
		out = append(out, s)
	}
	_, err := d.ReadToken()
	return out, err
}

func (p *parser) valueArray(d *jsontext.Decoder, depth int, at path) ([]Value, error) {
	if err := p.expect(d, '[', "an array of values", at); err != nil {
		return nil, err
	}
	out := []Value{}
	for i := 0; d.PeekKind() != ']'; i++ {
		iat := pathIndex{at, i}
		if err := p.count(1, iat); err != nil {
			return nil, err
		}
		e, err := p.value(d, depth+1, iat)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	_, err := d.ReadToken()
	return out, err
}

// formals reads {"names":[...],"values":[...]}.
func (p *parser) formals(d *jsontext.Decoder, v *Value, depth int, at path) error {
	if err := p.expect(d, '{', "an object", at); err != nil {
		return err
	}
	var haveNames, haveValues bool
	for d.PeekKind() != '}' {
		t, err := p.readToken(d, at)
		if err != nil {
			return err
		}
		switch name := t.String(); name {
		case "names":
			haveNames = true
			v.names, err = p.stringArray(d, pathName{at, name})
		case "values":
			haveValues = true
			v.list, err = p.valueArray(d, depth, pathName{at, name})
		default:
			return errAt(at, "unknown member %q", name)
		}
		if err != nil {
			return err
		}
	}
	if _, err := d.ReadToken(); err != nil {
		return syntaxErr(at, err)
	}
	if !haveNames || !haveValues {
		return errAt(at, "formals need \"names\" and \"values\"")
	}
	return nil
}

// checkCode enforces the shape of the code, environment and S4 values
// (and the flags of vectors), whether parsed or built in Go.
func checkCode(v *Value, at path) error {
	if v.pairlist && (v.typeOf() != TypeList || len(v.list) == 0) {
		return errAt(at, "a pairlist is a non-empty list")
	}
	switch v.typeOf() {
	case TypeSymbol:
		if strings.IndexByte(v.name, 0) >= 0 {
			return errAt(at, "R symbols cannot contain NUL")
		}
	case TypePrimitive:
		if v.name == "" || strings.IndexByte(v.name, 0) >= 0 {
			return errAt(at, "a primitive needs a name")
		}
	case TypeLanguage:
		if len(v.list) == 0 {
			return errAt(at, "a call needs at least its function")
		}
		if v.names == nil {
			v.names = make([]string, len(v.list))
		}
		if len(v.names) != len(v.list) {
			return errAt(at, "%d names for %d parts", len(v.names), len(v.list))
		}
	case TypeClosure:
		if len(v.names) != len(v.list) {
			return errAt(at, "%d formal names for %d defaults", len(v.names), len(v.list))
		}
		if err := uniqueNames(v.names, "formal", at); err != nil {
			return err
		}
		if v.body == nil {
			return errAt(at, "a function needs a body")
		}
		if v.env == nil || v.env.typeOf() != TypeEnvironment {
			return errAt(at, "a function's env must be an environment")
		}
	case TypeEnvironment:
		return checkEnv(v, at)
	case TypeS4:
		cl, ok := v.Attr("class")
		if !ok || cl.typeOf() != TypeCharacter || len(cl.strs) != 1 || cl.strs[0] == NAString || cl.strs[0] == "" {
			return errAt(at, "an S4 object needs one class")
		}
	}
	return nil
}

func checkEnv(v *Value, at path) error {
	if !v.envKind.valid() {
		return errAt(at, "unknown environment kind %q", v.envKind)
	}
	local := v.envKind == EnvLocal
	if !local && (v.envID != "" || v.envRef != "" || v.names != nil || v.list != nil || v.dropped != 0) {
		return errAt(at, "only a local environment has an id, ref or bindings")
	}
	switch v.envKind {
	case EnvNamespace, EnvPackage:
		if v.name == "" {
			return errAt(at, "a %s environment needs a name", v.envKind)
		}
	default:
		if v.name != "" {
			return errAt(at, "a %s environment has no name", v.envKind)
		}
	}
	if !local {
		return nil
	}
	if (v.envID == "") == (v.envRef == "") {
		return errAt(at, "a local environment needs exactly one of \"id\" and \"ref\"")
	}
	if v.envRef != "" {
		if v.names != nil || v.list != nil || v.dropped != 0 {
			return errAt(at, "a ref has no bindings")
		}
		return nil
	}
	if len(v.names) != len(v.list) {
		return errAt(at, "%d binding names for %d values", len(v.names), len(v.list))
	}
	if len(v.names) > MaxEnvBindings {
		return errAt(at, "%d bindings (at most %d)", len(v.names), MaxEnvBindings)
	}
	return uniqueNames(v.names, "binding", at)
}

func uniqueNames(names []string, what string, at path) error {
	seen := make(map[string]bool, len(names))
	for i, n := range names {
		if n == "" {
			return errAt(pathIndex{at, i}, "empty %s name", what)
		}
		if seen[n] {
			return errAt(pathIndex{at, i}, "duplicate %s %q", what, n)
		}
		seen[n] = true
	}
	return nil
}

// checkRefs walks v in wire order (elements, formals, body, env, bindings,
// then attributes: the order both sides decode in) and refuses a local
// environment id used twice and a ref that names no environment sent
// before it (dangling or forward).
func checkRefs(v Value) error {
	ids := map[string]bool{}
	return walkRefs(v, ids, pathRoot{})
}

func walkRefs(v Value, ids map[string]bool, at path) error {
	if v.typeOf() == TypeEnvironment {
		if v.envRef != "" {
			if !ids[v.envRef] {
				return errAt(at, "environment ref %q names no environment sent before it", v.envRef)
			}
			return nil
		}
		if v.envID != "" {
			if ids[v.envID] {
				return errAt(at, "environment id %q used twice", v.envID)
			}
			ids[v.envID] = true
		}
	}
	for i, e := range v.list {
		if err := walkRefs(e, ids, pathIndex{at, i}); err != nil {
			return err
		}
	}
	if v.body != nil {
		if err := walkRefs(*v.body, ids, pathName{at, "body"}); err != nil {
			return err
		}
	}
	if v.env != nil {
		if err := walkRefs(*v.env, ids, pathName{at, "env"}); err != nil {
			return err
		}
	}
	for _, a := range v.attrs {
		if err := walkRefs(a.Value, ids, pathName{pathName{at, "attributes"}, a.Name}); err != nil {
			return err
		}
	}
	return nil
}

// appendCode writes the members of the code, environment and S4 types;
// done means the value is complete (no attributes follow).
func appendCode(b []byte, v Value, depth int, at path) ([]byte, bool, error) {
	var err error
	str := func(key, s string) {
		if err == nil {
			b = append(b, ',', '"')
			b = append(b, key...)
			b = append(b, '"', ':')
			b, err = appendString(b, s, pathName{at, key})
		}
	}
	strs := func(key string, ss []string) {
		if err != nil {
			return
		}
		if key != "" {
			b = append(b, ',', '"')
			b = append(b, key...)
			b = append(b, '"', ':')
		}
		b = append(b, '[')
		for i, s := range ss {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendString(b, s, pathIndex{pathName{at, key}, i}); err != nil {
				return
			}
		}
		b = append(b, ']')
	}
	vals := func(key string, vs []Value) {
		if err != nil {
			return
		}
		b = append(b, ',', '"')
		b = append(b, key...)
		b = append(b, `":[`...)
		for i, e := range vs {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendValue(b, e, depth+1, pathIndex{pathName{at, key}, i}); err != nil {
				return
			}
		}
		b = append(b, ']')
	}
	one := func(key string, e Value) {
		if err != nil {
			return
		}
		b = append(b, ',', '"')
		b = append(b, key...)
		b = append(b, '"', ':')
		b, err = appendValue(b, e, depth+1, pathName{at, key})
	}
	done := false
	switch v.typeOf() {
	case TypeSymbol:
		str("value", v.name)
		done = true
	case TypePrimitive:
		str("name", v.name)
		done = true
	case TypeLanguage:
		vals("value", v.list)
		strs("names", v.names)
		if v.repr != "" {
			str("repr", v.repr)
		}
	case TypeClosure:
		b = append(b, `,"formals":{"names":`...)
		strs("", v.names)
		if err == nil {
			b = append(b, `,"values":[`...)
			for i, e := range v.list {
				if i > 0 {
					b = append(b, ',')
				}
				if b, err = appendValue(b, e, depth+1, pathIndex{pathName{at, "formals"}, i}); err != nil {
					break
				}
			}
			b = append(b, "]}"...)
		}
		one("body", *v.body)
		one("env", *v.env)
		if v.source != "" {
			str("source", v.source)
		}
	case TypeEnvironment:
		str("kind", string(v.envKind))
		str("name", v.name)
		switch {
		case v.envRef != "":
			str("ref", v.envRef)
			done = true
		case v.envKind == EnvLocal:
			str("id", v.envID)
			strs("names", v.names)
			vals("values", v.list)
			if err == nil {
				b = append(b, `,"dropped":`...)
				b = strconv.AppendInt(b, int64(v.dropped), 10)
			}
		default:
			done = true
		}
	case TypeS4:
	}
	if err != nil {
		return nil, false, err
	}
	if done {
		b = append(b, '}')
	}
	return b, done, nil
}
