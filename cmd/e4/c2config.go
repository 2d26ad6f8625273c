package main

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// configKey is one setting of serveConfig, found by reflection.
type configKey struct {
	path  string // YAML path: "transport.url"
	env   string // its environment variable: "E4_C2_TRANSPORT_URL"
	field reflect.StructField
	index []int // of the field in serveConfig
}

// configKeys returns every setting of serveConfig, in the order of the
// struct.
func configKeys() []configKey {
	var keys []configKey
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := yamlName(f)
			if name == "" {
				continue
			}
			path := strings.TrimPrefix(prefix+"."+name, ".")
			at := append(slices.Clone(index), i)
			if f.Type.Kind() == reflect.Struct && f.Type.String() != "time.Duration" {
				walk(f.Type, path, at)
				continue
			}
			env := envPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
			keys = append(keys, configKey{path: path, env: env, field: f, index: at})
		}
	}
	walk(reflect.TypeFor[serveConfig](), "", nil)
	return keys
}

// yamlName is the YAML key of a field, or "" for none.
func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// unknownConfigKey returns an error naming the first key of a YAML
// configuration that serveConfig does not have, with its line, the closest
// valid key and the valid keys at that place; nil if every key is known
// (or the YAML does not parse, which the decoder reports).
func unknownConfigKey(data []byte) error {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return nil
	}
	return checkKeys(doc.Content[0], reflect.TypeFor[serveConfig](), "")
}

// checkKeys checks the keys of one YAML mapping against the fields of t.
func checkKeys(n *yaml.Node, t reflect.Type, prefix string) error {
	if n.Kind != yaml.MappingNode || t.Kind() != reflect.Struct || t.String() == "time.Duration" {
		return nil
	}
	fields := make(map[string]reflect.StructField)
	var names []string
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			fields[name] = t.Field(i)
			names = append(names, name)
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, value := n.Content[i], n.Content[i+1]
		f, ok := fields[key.Value]
		if !ok {
			where := "at the top level"
			if prefix != "" {
				where = "in " + prefix
			}
			msg := fmt.Sprintf("line %d: unknown key %q %s", key.Line, key.Value, where)
			if near := closest(key.Value, names); near != "" {
				msg += fmt.Sprintf("; did you mean %q?", near)
			}
			return fmt.Errorf("%s (the keys %s are: %s; see docs/config.md)", msg, where, strings.Join(names, ", "))
		}
		if err := checkKeys(value, f.Type, strings.TrimPrefix(prefix+"."+key.Value, ".")); err != nil {
			return err
		}
	}
	return nil
}

// closest returns the name nearest to s: within an edit distance of 2,
// or else one that s starts or ends; "" if none is near enough to be a typo.
func closest(s string, names []string) string {
	best, bestDist := "", 3
	for _, name := range names {
		if d := editDistance(s, name); d < bestDist {
			best, bestDist = name, d
		}
	}
	if best == "" && len(s) >= 3 {
		for _, name := range names {
			if strings.HasPrefix(name, s) || strings.HasPrefix(s, name) {
				return name
			}
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
