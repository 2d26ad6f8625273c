package api

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/e4-iot/e4kit/e4"
)

// UnmarshalJSON parses a request in the API's JSON dialect into m: bytes
// fields are hex (a key or hash of the wrong length, or base64, is refused
// with what was expected), field names the .proto's or their JSON names,
// numbers as numbers or strings; unknown fields are refused.
func UnmarshalJSON(data []byte, m proto.Message) error {
	md := m.ProtoReflect().Descriptor()
	if holdsBytes(md) {
		converted, err := hexToBase64(data, md, "")
		if err != nil {
			return err
		}
		data = converted
	}
	return protojson.UnmarshalOptions{}.Unmarshal(data, m)
}

// bytesHolders caches holdsBytes.
var bytesHolders sync.Map // protoreflect.FullName -> bool

// holdsBytes reports whether a message of md can hold a bytes field, at
// any depth (an Any can hold anything): only those need rewriting.
func holdsBytes(md protoreflect.MessageDescriptor) bool {
	if v, ok := bytesHolders.Load(md.FullName()); ok {
		return v.(bool)
	}
	holds := reachesBytes(md, make(map[protoreflect.FullName]bool))
	bytesHolders.Store(md.FullName(), holds)
	return holds
}

// reachesBytes searches the fields reachable from md for a bytes field,
// each message once.
func reachesBytes(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if md.FullName() == "google.protobuf.Any" {
		return true
	}
	if seen[md.FullName()] {
		return false
	}
	seen[md.FullName()] = true
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if fd.Kind() == protoreflect.BytesKind || (fd.Message() != nil && reachesBytes(fd.Message(), seen)) {
			return true
		}
	}
	return false
}

// fixedSize is the length in bytes a bytes field must have, from its
// name, or 0 for any: E4 keys (a field named key or ending in _key) are
// 32 bytes, topic hashes (hash, *_hash) 16. An empty value is absent and
// passes.
func fixedSize(fd protoreflect.FieldDescriptor) int { return fixedSizeOf(string(fd.Name())) }

// fixedSizeOf is fixedSize for a field named name.
func fixedSizeOf(name string) int {
	switch {
	case name == "key" || strings.HasSuffix(name, "_key"):
		return e4.KeyLen
	case name == "hash" || strings.HasSuffix(name, "_hash"):
		return e4.TopicHashLen
	}
	return 0
}

// hexToBase64 rewrites the JSON object data of a message md, turning the
// hex of its bytes fields (at any depth) into the base64 protojson reads.
// Anything that is not what md expects is copied as is, for protojson to
// refuse with its own message. path names the object in errors.
func hexToBase64(data []byte, md protoreflect.MessageDescriptor, path string) ([]byte, error) {
	switch {
	case isWrapper(md):
		return convertValue(data, md.Fields().Get(0), path)
	case md.FullName() == "google.protobuf.Any":
		return anyToBase64(data, path)
	case isCustomJSON(md):
		return data, nil
	}
	out, err := rewriteMembers(data, func(key string, value []byte) ([]byte, error) {
		fd := md.Fields().ByTextName(key)
		if fd == nil {
			fd = md.Fields().ByJSONName(key)
		}
		if fd == nil {
			return value, nil // unknown: protojson refuses it
		}
		return convertField(value, fd, joinPath(path, string(fd.Name())))
	})
	return unlessNotJSON(out, data, err)
}

// unlessNotJSON returns out, or data when the scanner could not walk it
// (protojson then refuses it with its own message), or err.
func unlessNotJSON(out, data []byte, err error) ([]byte, error) {
	switch {
	case errors.Is(err, errNotJSON):
		return data, nil
	case err != nil:
		return nil, err
	}
	return out, nil
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// convertField converts the value of fd: each element of a list, each
// value of a map, or the one value.
func convertField(value []byte, fd protoreflect.FieldDescriptor, path string) ([]byte, error) {
	switch {
	case fd.IsList():
		out, err := rewriteElements(value, func(i int, elem []byte) ([]byte, error) {
			return convertValue(elem, fd, fmt.Sprintf("%s[%d]", path, i))
		})
		return unlessNotJSON(out, value, err)
	case fd.IsMap():
		values := fd.MapValue()
		if values.Kind() != protoreflect.BytesKind && (values.Message() == nil || !holdsBytes(values.Message())) {
			return value, nil
		}
		out, err := rewriteMembers(value, func(key string, v []byte) ([]byte, error) {
			return convertValue(v, values, fmt.Sprintf("%s[%q]", path, key))
		})
		return unlessNotJSON(out, value, err)
	}
	return convertValue(value, fd, path)
}

// convertValue converts one value of fd: hex to base64 for bytes, the
// fields of a message.
func convertValue(value []byte, fd protoreflect.FieldDescriptor, path string) ([]byte, error) {
	switch fd.Kind() {
	case protoreflect.BytesKind:
		text, ok := stringContent(value)
		if !ok {
			return value, nil // not a string: protojson says so
		}
		b, err := parseHexField(text, fixedSize(fd), path)
		if err != nil {
			return nil, err
		}
		out := make([]byte, 0, base64.StdEncoding.EncodedLen(len(b))+2)
		out = append(out, '"')
		out = base64.StdEncoding.AppendEncode(out, b)
		return append(out, '"'), nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if !holdsBytes(fd.Message()) {
			return value, nil
		}
		return hexToBase64(value, fd.Message(), path)
	}
	return value, nil
}

// anyToBase64 converts an Any whose @type names a known message.
func anyToBase64(data []byte, path string) ([]byte, error) {
	var head struct {
		Type string `json:"@type"`
	}
	if json.Unmarshal(data, &head) != nil || head.Type == "" {
		return data, nil
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(head.Type)
	if err != nil {
		return data, nil // protojson refuses it
	}
	md := mt.Descriptor()
	if !isCustomJSON(md) {
		return hexToBase64(data, md, path)
	}
	// {"@type": ..., "value": <custom JSON>}
	out, err := rewriteMembers(data, func(key string, value []byte) ([]byte, error) {
		if key != "value" {
			return value, nil
		}
		return hexToBase64(value, md, joinPath(path, "value"))
	})
	return unlessNotJSON(out, data, err)
}

// stringContent returns the content of the JSON string value without
// copying it when it has no escapes (hex never has), or unescaped.
func stringContent(value []byte) ([]byte, bool) {
	if n := len(value); n >= 2 && value[0] == '"' && value[n-1] == '"' && bytes.IndexByte(value, '\\') < 0 {
		return value[1 : n-1], true
	}
	var text string
	if json.Unmarshal(value, &text) != nil {
		return nil, false
	}
	return []byte(text), true
}

// parseHexField decodes the hex text of a bytes field, of size bytes
// unless size is 0. Its errors say what was expected, never echo the
// value (it may be a key), and recognise base64, which this API used to
// speak.
func parseHexField(hexText []byte, size int, path string) ([]byte, error) {
	b := make([]byte, hex.DecodedLen(len(hexText)))
	_, err := hex.Decode(b, hexText)
	if err == nil && len(hexText)%2 == 1 {
		err = hex.ErrLength
	}
	if err == nil && (size == 0 || len(b) == size || len(b) == 0) {
		return b, nil
	}
	text := string(hexText)
	want := "hex digits, two per byte"
	if size > 0 {
		want = fmt.Sprintf("%d hex digits (%d bytes)", 2*size, size)
	}
	got := fmt.Sprintf("got %d characters", utf8.RuneCountInString(text))
	var invalid hex.InvalidByteError
	switch {
	case err != nil && looksLikeBase64(text, size):
		got += "; this looks like base64"
	case errors.As(err, &invalid):
		at := utf8.RuneCountInString(text[:strings.IndexByte(text, byte(invalid))]) + 1
		got += fmt.Sprintf(", not all hex digits (character %d is not)", at)
	case err != nil:
		got += " (an odd count)"
	}
	hint := "bytes (keys, hashes, payloads) are hex in this API"
	if size > 0 {
		hint = "keys and hashes are hex in this API"
	}
	return nil, fmt.Errorf("%s: want %s, %s; %s", path, want, got, hint)
}

// looksLikeBase64 reports whether text, which is not hex, is base64: of
// size bytes when size is set, else padded (hex with a typo often decodes
// as unpadded base64 too).
func looksLikeBase64(text string, size int) bool {
	encodings := []*base64.Encoding{base64.StdEncoding, base64.URLEncoding}
	if size > 0 {
		encodings = append(encodings, base64.RawStdEncoding, base64.RawURLEncoding)
	}
	for _, enc := range encodings {
		if b, err := enc.DecodeString(text); err == nil && (size == 0 || len(b) == size) {
			return true
		}
	}
	return false
}

// jsonDialect is the gateway's runtime.Marshaler: MarshalJSON and
// UnmarshalJSON.
type jsonDialect struct{}

// jsonPB renders what is neither a message nor made of messages (the
// gateway hands its marshaler nothing else today).
var jsonPB = &runtime.JSONPb{MarshalOptions: protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}}

// ContentType is JSON's.
func (jsonDialect) ContentType(any) string { return "application/json" }

// Delimiter separates the messages of a stream (ImportClients): one per
// line.
func (jsonDialect) Delimiter() []byte { return []byte("\n") }

// Marshal renders v: a message, or a map or slice of them.
func (jsonDialect) Marshal(v any) ([]byte, error) { return marshalValue(v) }

// Unmarshal parses data into v: a message, or a pointer to the message
// field a route's body names.
func (jsonDialect) Unmarshal(data []byte, v any) error {
	if m, ok := v.(proto.Message); ok {
		return UnmarshalJSON(data, m)
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && rv.Elem().Kind() == reflect.Pointer {
		if _, ok := reflect.New(rv.Elem().Type().Elem()).Interface().(proto.Message); ok {
			if rv.Elem().IsNil() {
				rv.Elem().Set(reflect.New(rv.Elem().Type().Elem()))
			}
			return UnmarshalJSON(data, rv.Elem().Interface().(proto.Message))
		}
	}
	return jsonPB.Unmarshal(data, v)
}

// NewDecoder reads one JSON value from r per Decode.
func (d jsonDialect) NewDecoder(r io.Reader) runtime.Decoder {
	dec := json.NewDecoder(r)
	return runtime.DecoderFunc(func(v any) error {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		return d.Unmarshal(raw, v)
	})
}

// NewEncoder writes each value to w, one per line.
func (d jsonDialect) NewEncoder(w io.Writer) runtime.Encoder {
	return runtime.EncoderFunc(func(v any) error {
		b, err := d.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	})
}
