package rvalue

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrTypeMismatch is wrapped by Check when a value is not of the wanted type.
var ErrTypeMismatch = errors.New("type mismatch")

// ErrUnknownCheck is wrapped by Check for a type name it does not know.
var ErrUnknownCheck = errors.New("unknown type name")

// CheckTypes lists the type names Check understands.
var CheckTypes = []string{"numeric", "character", "logical", "integer", "list", "data.frame"}

// Check reports whether v satisfies the securer_tool argument type
// typeName, using R's own predicates:
//
//	numeric     is.numeric: integer or double, but not a factor, and not
//	            Date, POSIXt or difftime (whose is.numeric methods say FALSE)
//	character   is.character
//	logical     is.logical
//	integer     is.integer: integer storage but not a factor (R's
//	            is.integer(factor("a")) is FALSE, though typeof is "integer")
//	list        is.list (TRUE for data frames)
//	data.frame  is.data.frame (class contains "data.frame")
func (v Value) Check(typeName string) error {
	var ok bool
	switch typeName {
	case "numeric":
		ok = v.isNumeric() && !v.Inherits("factor") &&
			!v.Inherits("Date") && !v.Inherits("POSIXt") && !v.Inherits("difftime")
	case "character":
		ok = v.typeOf() == TypeCharacter
	case "logical":
		ok = v.typeOf() == TypeLogical
	case "integer":
		ok = v.typeOf() == TypeInteger && !v.Inherits("factor")
	case "list":
		ok = v.typeOf() == TypeList
	case "data.frame":
		ok = v.typeOf() == TypeList && v.Inherits("data.frame")
	default:
		return fmt.Errorf("%w %q (want one of %s)", ErrUnknownCheck, typeName, strings.Join(CheckTypes, ", "))
	}
	if !ok {
		return fmt.Errorf("%w: want %s, got %s", ErrTypeMismatch, typeName, v.Describe())
	}
	return nil
}

// Describe summarises v for error messages, in R's terms: "NULL",
// "character(1)", "list(2)", "factor(3)", "Date(1)", "data.frame 3x2",
// "integer matrix 2x3", "function" (for an unsupported closure), "json".
func (v Value) Describe() string {
	switch v.typeOf() {
	case TypeNull:
		return "NULL"
	case TypeJSON:
		return "json"
	case TypeUnsupported:
		if len(v.class) > 0 {
			return v.class[0]
		}
		return "unsupported"
	case TypeSymbol:
		return "symbol"
	case TypeClosure, TypePrimitive:
		return "function"
	case TypeEnvironment:
		if v.envKind == EnvLocal {
			return "environment"
		}
		return string(v.envKind) + " environment"
	case TypeLanguage, TypeS4:
		if cls := v.Class(); len(cls) > 0 {
			return cls[0]
		}
		if v.typeOf() == TypeS4 {
			return "S4"
		}
		return "call"
	}
	if v.IsDataFrame() {
		return fmt.Sprintf("data.frame %dx%d", v.NRow(), v.Len())
	}
	if dim := v.Dim(); len(dim) >= 2 {
		kind := "array"
		if len(dim) == 2 {
			kind = "matrix"
		}
		parts := make([]string, len(dim))
		for i, d := range dim {
			parts[i] = strconv.Itoa(d)
		}
		return fmt.Sprintf("%s %s %s", v.typeOf(), kind, strings.Join(parts, "x"))
	}
	name := string(v.typeOf())
	if cls := v.Class(); len(cls) > 0 {
		name = cls[0]
	}
	return fmt.Sprintf("%s(%d)", name, v.Len())
}
