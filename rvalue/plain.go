package rvalue

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// PlainJSON renders v as ordinary JSON for external tool commands, the way
//
//	jsonlite::toJSON(x, auto_unbox = TRUE, dataframe = "rows", na = "null",
//	                 factor = "string", Date = "ISO8601", POSIXt = "ISO8601")
//
// would, except that doubles keep full precision (jsonlite rounds to 4
// digits by default): length-1 vectors are scalars and others arrays, NA,
// NaN and ±Inf are null, named lists are objects (empty or NA names become
// the 1-based position), unnamed lists arrays, NULL is {}, data frames are
// arrays of row objects, matrices and arrays are row-major nested arrays,
// factors are their labels, Dates "YYYY-MM-DD", POSIXct
// "YYYY-MM-DDTHH:MM:SS" in their tzone (UTC when unset or unknown), raw is
// one base64 string and complex numbers are strings like "1+2i". A json
// value is passed through. Calls, formulas, functions, symbols and
// primitives are their display text (Repr); an environment is an object of
// the bindings that were sent, an S4 object an object of its slots.
// Unsupported values are an error.
func (v Value) PlainJSON() ([]byte, error) {
	return plain{}.append(nil, v, 1)
}

// PlainJSONNonFinite is PlainJSON, except that NaN, Inf and -Inf in double
// vectors become the strings "NaN", "Inf" and "-Inf" (as jsonlite's
// na = "string" writes them) rather than null, so that a consumer can tell
// them from NA, which stays null.
func (v Value) PlainJSONNonFinite() ([]byte, error) {
	return plain{nonFinite: true}.append(nil, v, 1)
}

// plain holds PlainJSON's rendering choices.
type plain struct {
	nonFinite bool // NaN and ±Inf as strings, not null
}

func (p plain) append(b []byte, v Value, depth int) ([]byte, error) {
	if depth > DefaultMaxDepth {
		return nil, fmt.Errorf("rvalue: PlainJSON: nested deeper than %d levels", DefaultMaxDepth)
	}
	var err error
	switch v.typeOf() {
	case TypeNull:
		return append(b, "{}"...), nil
	case TypeUnsupported:
		return nil, fmt.Errorf("rvalue: PlainJSON: cannot convert %s", v.Describe())
	case TypeSymbol, TypeLanguage, TypeClosure, TypePrimitive:
		// Code is shown as its text, never run or parsed.
		return plainString(b, v.Repr())
	case TypeEnvironment, TypeS4:
		return p.appendObject(b, v, depth)
	case TypeJSON:
		c, err := compactJSON(v.json)
		if err != nil {
			return nil, fmt.Errorf("rvalue: PlainJSON: %w", err)
		}
		return append(b, c...), nil
	case TypeRaw:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, v.raw)
		return append(b, '"'), nil
	case TypeList:
		if v.IsDataFrame() {
			return p.appendRows(b, v, depth)
		}
		names := v.Names()
		if names == nil {
			b = append(b, '[')
			for i, e := range v.list {
				if i > 0 {
					b = append(b, ',')
				}
				if b, err = p.append(b, e, depth+1); err != nil {
					return nil, err
				}
			}
			return append(b, ']'), nil
		}
		b = append(b, '{')
		for i, e := range v.list {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = plainString(b, listKey(names, i)); err != nil {
				return nil, err
			}
			b = append(b, ':')
			if b, err = p.append(b, e, depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}
	if dim := v.Dim(); len(dim) > 0 {
		return p.appendArray(b, v, dim)
	}
	n := v.Len()
	if n == 1 {
		return p.appendElem(b, v, 0)
	}
	b = append(b, '[')
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = p.appendElem(b, v, i); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

// appendObject writes an environment's bindings or an S4 object's slots
// (its attributes other than class) as an object.
func (p plain) appendObject(b []byte, v Value, depth int) ([]byte, error) {
	names, vals := v.Bindings()
	if v.typeOf() == TypeS4 {
		names, vals = nil, nil
		for _, a := range v.attrs {
			if a.Name != "class" {
				names = append(names, a.Name)
				vals = append(vals, a.Value)
			}
		}
	}
	b = append(b, '{')
	var err error
	for i, e := range vals {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = plainString(b, names[i]); err != nil {
			return nil, err
		}
		b = append(b, ':')
		if b, err = p.append(b, e, depth+1); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// appendArray writes an R array (column-major) as jsonlite does: nested
// arrays with the first index outermost.
func (p plain) appendArray(b []byte, v Value, dim []int) ([]byte, error) {
	prod := 1
	d32 := make([]int32, len(dim))
	for i, d := range dim {
		if d < 0 || d > math.MaxInt32 {
			return nil, fmt.Errorf("rvalue: PlainJSON: bad dim %v", dim)
		}
		prod *= d
		d32[i] = int32(d)
	}
	if prod != v.Len() {
		return nil, fmt.Errorf("rvalue: PlainJSON: dim does not match length %d", v.Len())
	}
	if arrayNodes(d32) > DefaultMaxElements {
		return nil, fmt.Errorf("rvalue: PlainJSON: dim %v is too large to render", dim)
	}
	var rec func(b []byte, k, offset, stride int) ([]byte, error)
	// k is the dimension being expanded; offset/stride locate elements.
	rec = func(b []byte, k, offset, stride int) ([]byte, error) {
		if k == len(dim) {
			return p.appendElem(b, v, offset)
		}
		b = append(b, '[')
		var err error
		for i := 0; i < dim[k]; i++ {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = rec(b, k+1, offset+i*stride, stride*dim[k]); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	}
	return rec(b, 0, 0, 1)
}

func (p plain) appendRows(b []byte, v Value, depth int) ([]byte, error) {
	n := v.NRow()
	names := v.Names()
	var err error
	b = append(b, '[')
	for r := 0; r < n; r++ {
		if r > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		first := true
		for j, col := range v.list {
			if r >= col.Len() {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			if b, err = plainString(b, listKey(names, j)); err != nil {
				return nil, err
			}
			b = append(b, ':')
			if col.typeOf() == TypeList && !col.IsDataFrame() {
				b, err = p.append(b, col.list[r], depth+1)
			} else {
				b, err = p.appendElem(b, col, r)
			}
			if err != nil {
				return nil, err
			}
		}
		// jsonlite adds non-automatic (character) row names as "_row".
		if rn, _ := v.Attr("row.names"); rn.typeOf() == TypeCharacter && r < rn.Len() {
			if !first {
				b = append(b, ',')
			}
			b = append(b, `"_row":`...)
			if rn.strs[r] == NAString {
				b = append(b, "null"...)
			} else if b, err = plainString(b, rn.strs[r]); err != nil {
				return nil, err
			}
		}
		b = append(b, '}')
	}
	return append(b, ']'), nil
}

// appendElem writes element i of an atomic vector as a scalar.
func (p plain) appendElem(b []byte, v Value, i int) ([]byte, error) {
	if v.IsFactor() || (v.isNumeric() && (v.Inherits("Date") || v.Inherits("POSIXct"))) {
		switch e := v.elemGo(i).(type) {
		case string:
			return plainString(b, e)
		case time.Time:
			return plainString(b, e.Format("2006-01-02T15:04:05"))
		default:
			return append(b, "null"...), nil
		}
	}
	switch v.typeOf() {
	case TypeLogical:
		switch v.lgl[i] {
		case True:
			return append(b, "true"...), nil
		case False:
			return append(b, "false"...), nil
		}
	case TypeInteger:
		if v.ints[i] != NAInteger {
			return strconv.AppendInt(b, int64(v.ints[i]), 10), nil
		}
	case TypeDouble:
		switch f := v.dbls[i]; {
		case !math.IsNaN(f) && !math.IsInf(f, 0):
			return jsontext.AppendFloat(b, f, 64), nil
		case !p.nonFinite || IsNAReal(f):
		case math.IsNaN(f):
			return append(b, `"NaN"`...), nil
		case f > 0:
			return append(b, `"Inf"`...), nil
		default:
			return append(b, `"-Inf"`...), nil
		}
	case TypeCharacter:
		if v.strs[i] != NAString {
			return plainString(b, v.strs[i])
		}
	case TypeComplex:
		if c := v.cplx[i]; !IsNAComplex(c) {
			return plainString(b, complexString(c))
		}
	case TypeRaw:
		return strconv.AppendInt(b, int64(v.raw[i]), 10), nil
	case TypeList:
		return p.append(b, v.list[i], 2)
	}
	return append(b, "null"...), nil
}

// complexString mimics R's as.character() for complex numbers.
func complexString(c complex128) string {
	f := func(x float64) string {
		switch {
		case IsNAReal(x):
			return "NA"
		case math.IsNaN(x):
			return "NaN"
		case math.IsInf(x, 1):
			return "Inf"
		case math.IsInf(x, -1):
			return "-Inf"
		}
		return strconv.FormatFloat(x, 'g', 15, 64)
	}
	re, im := real(c), imag(c)
	sign := "+"
	if im < 0 {
		sign, im = "-", -im
	} else if im == 0 {
		im = 0 // R prints -0i as +0i
	}
	return f(re) + sign + f(im) + "i"
}

func plainString(b []byte, s string) ([]byte, error) {
	out, err := jsontext.AppendQuote(b, s)
	if err != nil {
		return nil, fmt.Errorf("rvalue: PlainJSON: %w", err)
	}
	return out, nil
}
