package api

import (
	"bytes"
	"encoding/json"
	"errors"
)

// A request is rewritten (hex to base64) by slicing its JSON text, never
// by decoding it: a 16 MiB import is copied about once, not once per
// decoding layer. The scanner below only finds where values start and
// end; whatever it does not understand is left as it is, for protojson,
// which parses the result, to refuse.

// errNotJSON marks text the scanner cannot walk; the caller hands it to
// protojson unchanged.
var errNotJSON = errors.New("not JSON the scanner walks")

func skipSpace(d []byte, i int) int {
	for i < len(d) && (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index past the JSON string starting at d[i] ('"').
func stringEnd(d []byte, i int) (int, error) {
	for j := i + 1; j < len(d); j++ {
		switch d[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errNotJSON
}

// valueEnd returns the index past the JSON value starting at d[i] (no
// space before it). Objects and arrays are skipped by counting brackets,
// without recursion, so deep nesting costs nothing.
func valueEnd(d []byte, i int) (int, error) {
	if i >= len(d) {
		return 0, errNotJSON
	}
	switch d[i] {
	case '"':
		return stringEnd(d, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(d); j++ {
			switch d[j] {
			case '"':
				end, err := stringEnd(d, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errNotJSON
	}
	j := i
	for j < len(d) && bytes.IndexByte([]byte(",}] \t\r\n"), d[j]) < 0 {
		j++
	}
	if j == i {
		return 0, errNotJSON
	}
	return j, nil
}

// rewriteMembers copies the JSON object data, replacing each member's
// value by what visit returns for it (key unescaped). It returns
// errNotJSON when data is not an object it can walk, or visit's error.
func rewriteMembers(data []byte, visit func(key string, value []byte) ([]byte, error)) ([]byte, error) {
	return rewriteItems(data, '{', '}', func(item []byte, d []byte, at int) ([]byte, int, error) {
		keyEnd, err := stringEnd(d, at)
		if err != nil {
			return nil, 0, err
		}
		key, err := unquote(d[at:keyEnd])
		if err != nil {
			return nil, 0, err
		}
		colon := skipSpace(d, keyEnd)
		if colon >= len(d) || d[colon] != ':' {
			return nil, 0, errNotJSON
		}
		start := skipSpace(d, colon+1)
		end, err := valueEnd(d, start)
		if err != nil {
			return nil, 0, err
		}
		value, err := visit(key, d[start:end])
		if err != nil {
			return nil, 0, err
		}
		item = append(item, d[at:start]...)
		return append(item, value...), end, nil
	})
}

// rewriteElements is rewriteMembers for the elements of a JSON array.
func rewriteElements(data []byte, visit func(i int, value []byte) ([]byte, error)) ([]byte, error) {
	n := 0
	return rewriteItems(data, '[', ']', func(item []byte, d []byte, at int) ([]byte, int, error) {
		end, err := valueEnd(d, at)
		if err != nil {
			return nil, 0, err
		}
		value, err := visit(n, d[at:end])
		if err != nil {
			return nil, 0, err
		}
		n++
		return append(item, value...), end, nil
	})
}

// rewriteItems walks the items between open and close, separated by
// commas: each (from its first non-space byte at) is rewritten by item,
// which appends to out and returns where the item ends.
func rewriteItems(data []byte, open, close byte, item func(out []byte, d []byte, at int) ([]byte, int, error)) ([]byte, error) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != open {
		return nil, errNotJSON
	}
	out := make([]byte, 0, len(data)+len(data)/8)
	out = append(out, data[:i+1]...)
	j := skipSpace(data, i+1)
	if j < len(data) && data[j] == close {
		return append(out, data[i+1:]...), nil
	}
	for from := i + 1; ; {
		at := skipSpace(data, from)
		out = append(out, data[from:at]...)
		var err error
		if out, from, err = item(out, data, at); err != nil {
			return nil, err
		}
		next := skipSpace(data, from)
		if next >= len(data) {
			return nil, errNotJSON
		}
		switch data[next] {
		case ',':
			out = append(out, data[from:next+1]...)
			from = next + 1
		case close:
			return append(out, data[from:]...), nil
		default:
			return nil, errNotJSON
		}
	}
}

// unquote returns the content of a JSON string.
func unquote(s []byte) (string, error) {
	if bytes.IndexByte(s, '\\') < 0 && len(s) >= 2 {
		return string(s[1 : len(s)-1]), nil
	}
	var out string
	if err := json.Unmarshal(s, &out); err != nil {
		return "", errNotJSON
	}
	return out, nil
}
