package api

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// The HTTP/JSON API speaks the dialect of the CLI and of every file E4kit
// writes, for every message of c2.proto (those added later too, since it
// works from the descriptors): bytes fields (keys, hashes, payloads) are
// hex, 64-bit integers are JSON numbers while a float64 holds them
// exactly (|n| <= 2^53, past that the decimal string protojson writes),
// field names are the .proto names, and every field is present, zero
// values too. Everything else is protojson's: timestamps in RFC 3339,
// enums by name, unknown fields refused.

// maxExactInteger is the largest integer every JSON parser (a float64)
// holds exactly.
const maxExactInteger = 1 << 53

// MarshalJSON renders m in the API's JSON dialect (see above), as the
// HTTP/JSON API and `e4 c2 --json` print it.
func MarshalJSON(m proto.Message) ([]byte, error) {
	var e jsonEncoder
	if err := e.message(m.ProtoReflect()); err != nil {
		return nil, err
	}
	return e.buf.Bytes(), nil
}

// jsonEncoder writes messages in the API's dialect.
type jsonEncoder struct{ buf bytes.Buffer }

// customJSON lists the well-known types whose JSON protojson defines
// apart from their fields (a string for a Timestamp, the bare value for a
// wrapper).
var customJSON = map[protoreflect.Name]bool{
	"Any": true, "Timestamp": true, "Duration": true, "Struct": true, "ListValue": true, "Value": true,
	"FieldMask": true, "Empty": true, "BoolValue": true, "Int32Value": true, "Int64Value": true,
	"UInt32Value": true, "UInt64Value": true, "FloatValue": true, "DoubleValue": true,
	"StringValue": true, "BytesValue": true,
}

func isCustomJSON(md protoreflect.MessageDescriptor) bool {
	return md.FullName().Parent() == "google.protobuf" && customJSON[md.Name()]
}

// isWrapper reports whether md is a wrapper type (google.protobuf.Int64Value...),
// whose JSON is that of its one field, value.
func isWrapper(md protoreflect.MessageDescriptor) bool {
	return isCustomJSON(md) && md.Fields().Len() == 1 && md.Fields().Get(0).Name() == "value"
}

func (e *jsonEncoder) message(m protoreflect.Message) error {
	md := m.Descriptor()
	switch {
	case isWrapper(md):
		fd := md.Fields().Get(0)
		return e.singular(fd, m.Get(fd))
	case md.FullName() == "google.protobuf.Any":
		return e.anyMessage(m)
	case isCustomJSON(md):
		b, err := protojson.Marshal(m.Interface())
		e.buf.Write(b)
		return err
	}
	e.buf.WriteByte('{')
	n := 0
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		set := m.Has(fd)
		if !set && fd.ContainingOneof() != nil {
			continue // protojson leaves out unset oneof members (and proto3 optional fields)
		}
		if n++; n > 1 {
			e.buf.WriteByte(',')
		}
		e.str(string(fd.Name()))
		e.buf.WriteByte(':')
		if !set && fd.Message() != nil && !fd.IsList() && !fd.IsMap() {
			e.buf.WriteString("null")
			continue
		}
		if err := e.field(fd, m.Get(fd)); err != nil {
			return err
		}
	}
	e.buf.WriteByte('}')
	return nil
}

// anyMessage writes an Any as protojson does: {"@type": url, fields...}, or
// {"@type": url, "value": json} for a type with custom JSON.
func (e *jsonEncoder) anyMessage(m protoreflect.Message) error {
	fds := m.Descriptor().Fields()
	url := m.Get(fds.ByName("type_url")).String()
	if url == "" {
		b, err := protojson.Marshal(m.Interface())
		e.buf.Write(b)
		return err
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(url)
	if err != nil {
		return fmt.Errorf("google.protobuf.Any: unable to resolve %q: %w", url, err)
	}
	inner := mt.New()
	opts := proto.UnmarshalOptions{AllowPartial: true}
	if err := opts.Unmarshal(m.Get(fds.ByName("value")).Bytes(), inner.Interface()); err != nil {
		return fmt.Errorf("google.protobuf.Any: unable to unmarshal %q: %w", url, err)
	}
	var sub jsonEncoder
	if err := sub.message(inner); err != nil {
		return err
	}
	e.buf.WriteString(`{"@type":`)
	e.str(url)
	body := sub.buf.Bytes()
	switch {
	case isCustomJSON(inner.Descriptor()):
		e.buf.WriteString(`,"value":`)
		e.buf.Write(body)
		e.buf.WriteByte('}')
	case len(body) > 2:
		e.buf.WriteByte(',')
		e.buf.Write(body[1:])
	default:
		e.buf.WriteByte('}')
	}
	return nil
}

func (e *jsonEncoder) field(fd protoreflect.FieldDescriptor, v protoreflect.Value) error {
	switch {
	case fd.IsList():
		list := v.List()
		e.buf.WriteByte('[')
		for i := range list.Len() {
			if i > 0 {
				e.buf.WriteByte(',')
			}
			if err := e.singular(fd, list.Get(i)); err != nil {
				return err
			}
		}
		e.buf.WriteByte(']')
		return nil
	case fd.IsMap():
		return e.mapField(fd, v.Map())
	}
	return e.singular(fd, v)
}

// mapField writes a map with its keys in order, as protojson does.
func (e *jsonEncoder) mapField(fd protoreflect.FieldDescriptor, m protoreflect.Map) error {
	keys := make([]protoreflect.MapKey, 0, m.Len())
	m.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		keys = append(keys, k)
		return true
	})
	slices.SortFunc(keys, func(a, b protoreflect.MapKey) int { return compareMapKeys(a, b) })
	e.buf.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			e.buf.WriteByte(',')
		}
		e.str(k.String())
		e.buf.WriteByte(':')
		if err := e.singular(fd.MapValue(), m.Get(k)); err != nil {
			return err
		}
	}
	e.buf.WriteByte('}')
	return nil
}

func compareMapKeys(a, b protoreflect.MapKey) int {
	switch x := a.Interface().(type) {
	case bool:
		if x == b.Bool() {
			return 0
		} else if !x {
			return -1
		}
		return 1
	case int32, int64:
		return cmpInt(a.Int(), b.Int())
	case uint32, uint64:
		return cmpInt(a.Uint(), b.Uint())
	}
	return cmpInt(a.String(), b.String())
}

func cmpInt[T int64 | uint64 | string](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// singular writes one value of fd (an element, for a list).
func (e *jsonEncoder) singular(fd protoreflect.FieldDescriptor, v protoreflect.Value) error {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		e.buf.WriteString(strconv.FormatBool(v.Bool()))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		e.buf.WriteString(strconv.FormatInt(v.Int(), 10))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		e.buf.WriteString(strconv.FormatUint(v.Uint(), 10))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		n := v.Int()
		e.integer(strconv.FormatInt(n, 10), n >= -maxExactInteger && n <= maxExactInteger)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		n := v.Uint()
		e.integer(strconv.FormatUint(n, 10), n <= maxExactInteger)
	case protoreflect.FloatKind:
		e.float(v.Float(), 32)
	case protoreflect.DoubleKind:
		e.float(v.Float(), 64)
	case protoreflect.StringKind:
		if !utf8.ValidString(v.String()) {
			return fmt.Errorf("field %s holds invalid UTF-8", fd.FullName())
		}
		e.str(v.String())
	case protoreflect.BytesKind:
		e.str(hex.EncodeToString(v.Bytes()))
	case protoreflect.EnumKind:
		e.enum(fd, v.Enum())
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return e.message(v.Message())
	default:
		return fmt.Errorf("field %s: unsupported kind %v", fd.FullName(), fd.Kind())
	}
	return nil
}

// integer writes a 64-bit integer as a number when exact, else as the
// decimal string protojson writes.
func (e *jsonEncoder) integer(digits string, exact bool) {
	if exact {
		e.buf.WriteString(digits)
		return
	}
	e.str(digits)
}

func (e *jsonEncoder) float(f float64, bits int) {
	switch {
	case math.IsNaN(f):
		e.str("NaN")
	case math.IsInf(f, 1):
		e.str("Infinity")
	case math.IsInf(f, -1):
		e.str("-Infinity")
	default:
		e.buf.WriteString(strconv.FormatFloat(f, 'g', -1, bits))
	}
}

func (e *jsonEncoder) enum(fd protoreflect.FieldDescriptor, n protoreflect.EnumNumber) {
	if fd.Enum().FullName() == "google.protobuf.NullValue" {
		e.buf.WriteString("null")
		return
	}
	if ev := fd.Enum().Values().ByNumber(n); ev != nil {
		e.str(string(ev.Name()))
		return
	}
	e.buf.WriteString(strconv.Itoa(int(n)))
}

// str writes s as a JSON string (valid UTF-8), escaping only what JSON
// requires.
func (e *jsonEncoder) str(s string) {
	const hexDigits = "0123456789abcdef"
	e.buf.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			e.buf.WriteByte('\\')
			e.buf.WriteRune(r)
		case r == '\n':
			e.buf.WriteString(`\n`)
		case r == '\r':
			e.buf.WriteString(`\r`)
		case r == '\t':
			e.buf.WriteString(`\t`)
		case r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029':
			e.buf.WriteString(`\u`)
			for shift := 12; shift >= 0; shift -= 4 {
				e.buf.WriteByte(hexDigits[(r>>shift)&0xf])
			}
		default:
			e.buf.WriteRune(r)
		}
	}
	e.buf.WriteByte('"')
}

// marshalValue renders what the gateway hands its marshaler: a message,
// or (for streams and errors) a map or slice of them.
func marshalValue(v any) ([]byte, error) {
	if m, ok := v.(proto.Message); ok {
		return MarshalJSON(m)
	}
	if b, ok := v.([]byte); ok {
		return []byte(strconv.Quote(hex.EncodeToString(b))), nil
	}
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
		if rv.IsNil() {
			return []byte("null"), nil
		}
		rv = rv.Elem()
	}
	switch {
	case !rv.IsValid():
		return []byte("null"), nil
	case rv.Kind() == reflect.Map && rv.Type().Key().Kind() == reflect.String:
		return marshalMap(rv)
	case rv.Kind() == reflect.Slice:
		return marshalSlice(rv)
	}
	return jsonPB.Marshal(rv.Interface())
}

func marshalMap(rv reflect.Value) ([]byte, error) {
	keys := rv.MapKeys()
	slices.SortFunc(keys, func(a, b reflect.Value) int { return cmpInt(a.String(), b.String()) })
	var e jsonEncoder
	e.buf.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			e.buf.WriteByte(',')
		}
		e.str(k.String())
		e.buf.WriteByte(':')
		b, err := marshalValue(rv.MapIndex(k).Interface())
		if err != nil {
			return nil, err
		}
		e.buf.Write(b)
	}
	e.buf.WriteByte('}')
	return e.buf.Bytes(), nil
}

func marshalSlice(rv reflect.Value) ([]byte, error) {
	if rv.IsNil() {
		return []byte("null"), nil
	}
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i := range rv.Len() {
		if i > 0 {
			buf.WriteByte(',')
		}
		b, err := marshalValue(rv.Index(i).Interface())
		if err != nil {
			return nil, err
		}
		buf.Write(b)
	}
	buf.WriteByte(']')
	return buf.Bytes(), nil
}
