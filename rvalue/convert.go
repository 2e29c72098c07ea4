package rvalue

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// maxExactInt is the largest integer a double holds exactly (2^53).
const maxExactInt = 1 << 53

// FromGo converts a Go value to an R value:
//
//	nil -> NULL; bool -> logical; string -> character; float32/64 -> double;
//	signed and unsigned integers -> integer when they fit R's integer range
//	(which excludes math.MinInt32, R's NA), else double (error beyond 2^53,
//	where a double would silently change the number);
//	[]bool, []string, []float64, []int, []int32, []int64 -> vectors (one
//	out-of-range int makes the whole vector double); []byte -> raw;
//	[]any, []Value -> list; map[string]any, map[string]Value -> named list
//	with sorted names; Value -> itself; json.RawMessage -> json;
//	time.Time -> POSIXct in UTC.
func FromGo(x any) (Value, error) {
	switch x := x.(type) {
	case nil:
		return Null(), nil
	case Value:
		return x, nil
	case *Value:
		if x == nil {
			return Null(), nil
		}
		return *x, nil
	case json.RawMessage:
		return FromRawJSON(x)
	case time.Time:
		return POSIXct("UTC", x), nil
	case bool:
		return Bools(x), nil
	case string:
		return Strings(x), nil
	case float64:
		return Doubles(x), nil
	case float32:
		return Doubles(float64(x)), nil
	case int:
		return intsValue([]int64{int64(x)})
	case int8:
		return Integers(int32(x)), nil
	case int16:
		return Integers(int32(x)), nil
	case int32:
		return intsValue([]int64{int64(x)})
	case int64:
		return intsValue([]int64{x})
	case uint8:
		return Integers(int32(x)), nil
	case uint16:
		return Integers(int32(x)), nil
	case uint32:
		return intsValue([]int64{int64(x)})
	case uint:
		if uint64(x) > math.MaxInt64 {
			return Value{}, fmt.Errorf("rvalue: FromGo: %d cannot be represented exactly in R", x)
		}
		return intsValue([]int64{int64(x)})
	case uint64:
		if x > math.MaxInt64 {
			return Value{}, fmt.Errorf("rvalue: FromGo: %d cannot be represented exactly in R", x)
		}
		return intsValue([]int64{int64(x)})
	case []bool:
		return Bools(x...), nil
	case []string:
		return Strings(slices.Clone(x)...), nil
	case []float64:
		return Doubles(slices.Clone(x)...), nil
	case []byte:
		return Raw(slices.Clone(x)), nil
	case []int:
		s := make([]int64, len(x))
		for i, n := range x {
			s[i] = int64(n)
		}
		return intsValue(s)
	case []int32:
		s := make([]int64, len(x))
		for i, n := range x {
			s[i] = int64(n)
		}
		return intsValue(s)
	case []int64:
		return intsValue(x)
	case []Value:
		return List(slices.Clone(x)...), nil
	case []any:
		vals := make([]Value, len(x))
		for i, e := range x {
			v, err := FromGo(e)
			if err != nil {
				return Value{}, fmt.Errorf("[%d]: %w", i, err)
			}
			vals[i] = v
		}
		return List(vals...), nil
	case map[string]any:
		names := sortedKeys(x)
		vals := make([]Value, len(names))
		for i, k := range names {
			v, err := FromGo(x[k])
			if err != nil {
				return Value{}, fmt.Errorf("[%q]: %w", k, err)
			}
			vals[i] = v
		}
		return NamedList(names, vals)
	case map[string]Value:
		names := sortedKeys(x)
		vals := make([]Value, len(names))
		for i, k := range names {
			vals[i] = x[k]
		}
		return NamedList(names, vals)
	}
	return Value{}, fmt.Errorf("rvalue: FromGo: unsupported Go type %T", x)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// intsValue makes an integer vector when every element fits (NA_integer_
// excluded), else a double vector when every element is exact as a double.
func intsValue(s []int64) (Value, error) {
	fits := true
	for _, n := range s {
		if n <= math.MinInt32 || n > math.MaxInt32 {
			fits = false
		}
		if n > maxExactInt || n < -maxExactInt {
			return Value{}, fmt.Errorf("rvalue: FromGo: %d cannot be represented exactly in R", n)
		}
	}
	if fits {
		out := make([]int32, len(s))
		for i, n := range s {
			out[i] = int32(n)
		}
		return Integers(out...), nil
	}
	out := make([]float64, len(s))
	for i, n := range s {
		out[i] = float64(n)
	}
	return Doubles(out...), nil
}

// Go converts v to a natural Go form:
//
//   - NULL and unsupported values -> nil; json -> the payload decoded by
//     encoding/json into any.
//   - Atomic vectors of length 1 -> a scalar (bool, int, float64, string,
//     complex128), NA -> nil; other lengths -> []bool, []int, []float64,
//     []string, []complex128, or []any with nil for NA when NAs are
//     present. NaN and ±Inf stay float64. raw -> []byte.
//   - Factors -> their level strings; Date -> "YYYY-MM-DD" strings;
//     POSIXct -> time.Time in the tzone if it is known, else UTC.
//   - Data frames -> []map[string]any, one map per row.
//   - Lists with names -> map[string]any (empty or NA names become the
//     1-based position, as jsonlite does); without -> []any.
//   - Symbols, calls, formulas and functions -> their display text (Repr);
//     environments -> map[string]any of the bindings sent; S4 objects ->
//     map[string]any of their slots.
//
// Names, dim and other attributes of atomic vectors are dropped.
func (v Value) Go() any {
	switch v.typeOf() {
	case TypeNull, TypeUnsupported:
		return nil
	case TypeSymbol, TypeLanguage, TypeClosure, TypePrimitive:
		return v.Repr()
	case TypeEnvironment, TypeS4:
		names, vals := v.Bindings()
		m := make(map[string]any, len(vals))
		for i, e := range vals {
			m[names[i]] = e.Go()
		}
		if v.typeOf() == TypeS4 {
			for _, a := range v.attrs {
				if a.Name != "class" {
					m[a.Name] = a.Value.Go()
				}
			}
		}
		return m
	case TypeJSON:
		var out any
		if err := json.Unmarshal(v.json, &out); err != nil {
			return nil
		}
		return out
	case TypeRaw:
		return slices.Clone(v.raw)
	case TypeList:
		if v.IsDataFrame() {
			return v.rows()
		}
		if names := v.Names(); names != nil {
			m := make(map[string]any, len(v.list))
			for i, e := range v.list {
				m[listKey(names, i)] = e.Go()
			}
			return m
		}
		out := make([]any, len(v.list))
		for i, e := range v.list {
			out[i] = e.Go()
		}
		return out
	}
	n := v.Len()
	if n == 1 {
		return v.elemGo(0)
	}
	hasNA := false
	for i := 0; i < n && !hasNA; i++ {
		hasNA = v.elemGo(i) == nil
	}
	if hasNA {
		out := make([]any, n)
		for i := range out {
			out[i] = v.elemGo(i)
		}
		return out
	}
	switch {
	case v.IsFactor(), v.Inherits("Date"), v.typeOf() == TypeCharacter:
		out := make([]string, n)
		for i := range out {
			out[i] = v.elemGo(i).(string)
		}
		return out
	case v.Inherits("POSIXct") && v.isNumeric():
		out := make([]time.Time, n)
		for i := range out {
			out[i] = v.elemGo(i).(time.Time)
		}
		return out
	case v.typeOf() == TypeLogical:
		out := make([]bool, n)
		for i, l := range v.lgl {
			out[i] = l == True
		}
		return out
	case v.typeOf() == TypeInteger:
		out := make([]int, n)
		for i, x := range v.ints {
			out[i] = int(x)
		}
		return out
	case v.typeOf() == TypeDouble:
		return slices.Clone(v.dbls)
	case v.typeOf() == TypeComplex:
		return slices.Clone(v.cplx)
	}
	return nil
}

func listKey(names []string, i int) string {
	if i < len(names) && names[i] != "" && names[i] != NAString {
		return names[i]
	}
	return strconv.Itoa(i + 1)
}

func (v Value) isNumeric() bool {
	return v.typeOf() == TypeInteger || v.typeOf() == TypeDouble
}

// elemGo converts element i of an atomic vector; nil means NA (or a date
// that has no calendar form).
func (v Value) elemGo(i int) any {
	if v.IsFactor() {
		c := v.ints[i]
		levels := v.Levels()
		if c == NAInteger || c < 1 || int(c) > len(levels) || levels[c-1] == NAString {
			return nil
		}
		return levels[c-1]
	}
	if v.isNumeric() && v.Inherits("Date") {
		d, ok := v.num(i)
		if !ok {
			return nil
		}
		return dateString(d)
	}
	if v.isNumeric() && v.Inherits("POSIXct") {
		s, ok := v.num(i)
		if !ok {
			return nil
		}
		return posixTime(s, v.tzone())
	}
	switch v.typeOf() {
	case TypeLogical:
		if v.lgl[i] == NALogical {
			return nil
		}
		return v.lgl[i] == True
	case TypeInteger:
		if v.ints[i] == NAInteger {
			return nil
		}
		return int(v.ints[i])
	case TypeDouble:
		if IsNAReal(v.dbls[i]) {
			return nil
		}
		return v.dbls[i]
	case TypeCharacter:
		if v.strs[i] == NAString {
			return nil
		}
		return v.strs[i]
	case TypeComplex:
		if IsNAComplex(v.cplx[i]) {
			return nil
		}
		return v.cplx[i]
	case TypeRaw:
		return int(v.raw[i])
	case TypeList:
		return v.list[i].Go()
	}
	return nil
}

// num returns element i of an integer or double vector as a finite float.
func (v Value) num(i int) (float64, bool) {
	switch v.typeOf() {
	case TypeInteger:
		if v.ints[i] == NAInteger {
			return 0, false
		}
		return float64(v.ints[i]), true
	case TypeDouble:
		f := v.dbls[i]
		return f, !math.IsNaN(f) && !math.IsInf(f, 0)
	}
	return 0, false
}

func dateString(days float64) any {
	secs := math.Floor(days) * 86400
	if math.Abs(secs) > 1e15 {
		return nil
	}
	return time.Unix(int64(secs), 0).UTC().Format("2006-01-02")
}

func posixTime(secs float64, loc *time.Location) any {
	if math.Abs(secs) > 1e15 {
		return nil
	}
	whole := math.Floor(secs)
	ns := math.Round((secs - whole) * 1e9)
	return time.Unix(int64(whole), int64(ns)).In(loc)
}

// tzone returns the location named by the tzone attribute, falling back
// to UTC when it is absent, empty (R's session zone, unknown here) or not
// in the host's zone database.
func (v Value) tzone() *time.Location {
	tz, _ := v.Attr("tzone")
	if len(tz.strs) > 0 && tz.strs[0] != "" && tz.strs[0] != NAString {
		if loc, err := time.LoadLocation(tz.strs[0]); err == nil {
			return loc
		}
	}
	return time.UTC
}

// rows turns a data frame into one map per row.
func (v Value) rows() []map[string]any {
	n := v.NRow()
	names := v.Names()
	out := make([]map[string]any, n)
	for r := range out {
		row := make(map[string]any, len(v.list))
		for j, col := range v.list {
			if r < col.Len() && col.isVector() {
				row[listKey(names, j)] = col.elemGo(r)
			}
		}
		out[r] = row
	}
	return out
}
