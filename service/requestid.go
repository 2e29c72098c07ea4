package service

import (
	"encoding/json"
)

// requestID finds a request's top-level "id" without decoding the rest, for
// answering a request that cannot be decoded (nested deeper than the
// decoder allows, say) with an error its client can match. Values are
// skipped by counting brackets, so no nesting is too deep for it. It
// returns "" unless the line is one object whose top level is well formed
// and holds exactly one "id", a string.
func requestID(line []byte) string {
	i := skipSpace(line, 0)
	if i >= len(line) || line[i] != '{' {
		return ""
	}
	i = skipSpace(line, i+1)
	if i < len(line) && line[i] == '}' {
		return ""
	}
	id, ids := "", 0
	for {
		keyEnd := skipString(line, i)
		if keyEnd < 0 {
			return ""
		}
		var key string
		if json.Unmarshal(line[i:keyEnd], &key) != nil {
			return ""
		}
		i = skipSpace(line, keyEnd)
		if i >= len(line) || line[i] != ':' {
			return ""
		}
		i = skipSpace(line, i+1)
		end := skipValue(line, i)
		if end < 0 {
			return ""
		}
		if key == "id" {
			ids++
			if json.Unmarshal(line[i:end], &id) != nil {
				return "" // not a string
			}
		}
		i = skipSpace(line, end)
		if i >= len(line) {
			return ""
		}
		switch line[i] {
		case ',':
			i = skipSpace(line, i+1)
			continue
		case '}':
			if skipSpace(line, i+1) != len(line) || ids != 1 {
				return ""
			}
			return id
		}
		return ""
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at i, or -1.
func skipString(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// skipValue returns the index just past the value starting at i, or -1.
// Objects and arrays are skipped by depth alone (their insides are not
// checked); scalars run to the next delimiter.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				if i = skipString(b, i); i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	}
	start := i
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
		i++
	}
	if i == start {
		return -1
	}
	return i
}
