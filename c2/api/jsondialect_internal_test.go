package api

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

// dialectSamples are messages with every kind of field the API uses:
// bytes at the top and nested in lists, 64-bit integers, timestamps,
// nested messages, unset messages.
func dialectSamples() []proto.Message {
	at := timestamppb.New(time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC))
	return []proto.Message{
		&c2pb.Topic{Name: "plant/x", Hash: bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 4), KeyVersion: 7, CreatedAt: at, Members: 3},
		&c2pb.ImportClientsProgress{Imported: 2, Done: true, Generated: []*c2pb.GeneratedKey{
			{ClientId: "00112233445566778899aabbccddeeff", Key: bytes.Repeat([]byte{1}, 32)}, {ClientId: "x", Key: bytes.Repeat([]byte{0xff}, 32)},
		}},
		&c2pb.ClientState{Id: "abc", TopicStates: []*c2pb.TopicKeyState{{Topic: "a/b", WantVersion: 1 << 60, AckedVersion: 2, AckedAt: at}}},
		&c2pb.AddClientResponse{},
		&c2pb.FleetState{CatchUp: &c2pb.CatchUpProgress{SyncReceived: 1 << 53, SyncQueued: -(1 << 53) - 1}},
		&c2pb.Empty{},
	}
}

// TestJSONDialectRoundTrip: what MarshalJSON writes, UnmarshalJSON reads
// back identically, and it has the fields protojson would write.
func TestJSONDialectRoundTrip(t *testing.T) {
	for _, m := range dialectSamples() {
		data, err := MarshalJSON(m)
		if err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		back := m.ProtoReflect().New().Interface()
		if err := UnmarshalJSON(data, back); err != nil {
			t.Fatalf("%T: %s: %v", m, data, err)
		}
		if !proto.Equal(m, back) {
			t.Fatalf("%T: %s read back as %v", m, data, back)
		}
		reference, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fieldNames(t, data), fieldNames(t, reference); !slices.Equal(got, want) {
			t.Fatalf("%T: fields %v, protojson writes %v", m, got, want)
		}
	}
}

func fieldNames(t *testing.T, data []byte) []string {
	t.Helper()
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	return slices.Sorted(maps.Keys(obj))
}

// TestJSONDialectValues: bytes are hex, nested too; 64-bit integers are
// numbers up to 2^53 and strings beyond (a float64 would round them);
// zero values and unset messages are present.
func TestJSONDialectValues(t *testing.T) {
	samples := dialectSamples()
	want := []string{
		`{"name":"plant/x","hash":"` + strings.Repeat("deadbeef", 4) + `","key_version":7,"created_at":"2026-12-07T06:00:00Z","rotated_at":null,"members":3}`,
		`{"imported":2,"done":true,"generated":[{"client_id":"00112233445566778899aabbccddeeff","key":"` + strings.Repeat("01", 32) + `"},{"client_id":"x","key":"` + strings.Repeat("ff", 32) + `"}]}`,
		`"want_version":"1152921504606846976","acked_version":2,`,
		`{"client":null,"key":""}`,
		`"sync_received":9007199254740992,"sync_queued":"-9007199254740993",`,
		`{}`,
	}
	for i, m := range samples {
		data, err := MarshalJSON(m)
		if err != nil || !strings.Contains(string(data), want[i]) {
			t.Errorf("%T: %s (%v), want %s", m, data, err, want[i])
		}
	}
}

// TestJSONDialectInput: requests take numbers as numbers or strings,
// proto or JSON field names, hex at any depth; unknown and duplicate
// fields, and keys that are not hex of 32 bytes, are refused.
func TestJSONDialectInput(t *testing.T) {
	var topic c2pb.Topic
	if err := UnmarshalJSON([]byte(`{"keyVersion":"9","hash":"`+strings.Repeat("0a0B", 8)+`","members":5}`), &topic); err != nil ||
		topic.KeyVersion != 9 || topic.Members != 5 || string(topic.Hash) != strings.Repeat("\x0a\x0b", 8) {
		t.Fatalf("topic: %v (%v)", &topic, err)
	}
	for m, want := range map[proto.Message]bool{&c2pb.Topic{}: true, &c2pb.ImportClientsProgress{}: true, &anypb.Any{}: true,
		&c2pb.ListClientsRequest{}: false, &c2pb.ClientState{}: false} {
		if got := holdsBytes(m.ProtoReflect().Descriptor()); got != want {
			t.Errorf("holdsBytes(%T) = %v", m, got)
		}
	}
	var progress c2pb.ImportClientsProgress
	if err := UnmarshalJSON([]byte(`{"generated":[{"key":"`+strings.Repeat("ab", 32)+`"}]}`), &progress); err != nil ||
		len(progress.Generated) != 1 || len(progress.Generated[0].Key) != 32 {
		t.Fatalf("nested key: %v (%v)", &progress, err)
	}
	refused := map[string]string{
		`{"generated":[{"key":"abcd"}]}`:                                          "generated[0].key: want 64 hex digits (32 bytes), got 4 characters",
		`{"imported":1,"imported":2}`:                                             "duplicate field",
		`{"colour":"red"}`:                                                        `unknown field "colour"`,
		`{"generated":[{"key":"` + strings.Repeat("zz", 32):                       "",                 // malformed JSON
		`{"imported":1} {"imported":2}`:                                           "unexpected token", // two objects
		`{"generated":[{"key":"ab"}   `:                                           "",                 // unterminated
		`{"generated":[{"key":"ab"}}]}`:                                           "",                 // mismatched brackets
		`{"generated":[{"key":"` + strings.Repeat("ab", 32) + `"},{"key":"zz"}]}`: "generated[1].key: want 64 hex digits (32 bytes), got 2 characters, not all hex digits (character 1 is not)",
		`{"generated" : [ {"key" : 5} ] }`:                                        "invalid value for bytes field key", // protojson says it
	}
	for body, want := range refused {
		err := UnmarshalJSON([]byte(body), &c2pb.ImportClientsProgress{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", body, err, want)
		}
	}
}

// TestJSONDialectGatewayValues: the gateway's marshaler renders the
// stream chunks and errors it builds (maps of messages, Any details) in
// the dialect, and reads a message field a route's body names.
func TestJSONDialectGatewayValues(t *testing.T) {
	st, err := status.New(codes.InvalidArgument, "bad").WithDetails(wrapperspb.Bytes([]byte{0xab}), &c2pb.Topic{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	data, err := jsonDialect{}.Marshal(map[string]any{"error": st.Proto(), "result": &c2pb.Topic{KeyVersion: 2}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"code":3`, `{"@type":"type.googleapis.com/google.protobuf.BytesValue","value":"ab"}`,
		`{"@type":"type.googleapis.com/e4kit.c2.v1.Topic","name":"t","hash":"",`, `"key_version":2`,
	} {
		if !strings.Contains(string(data), want) {
			t.Errorf("%s lacks %s", data, want)
		}
	}
	var detail anypb.Any
	if err := UnmarshalJSON([]byte(`{"@type":"type.googleapis.com/e4kit.c2.v1.Topic","hash":"0102"}`), &detail); err == nil ||
		!strings.Contains(err.Error(), "hash: want 32 hex digits (16 bytes), got 4 characters") {
		t.Fatalf("a short hash in an Any: %v", err)
	}
	var topic *c2pb.Topic
	if err := (jsonDialect{}).Unmarshal([]byte(`{"hash":"`+strings.Repeat("0304", 8)+`"}`), &topic); err != nil || len(topic.GetHash()) != 16 {
		t.Fatalf("body field: %v (%v)", topic, err)
	}
}

// BenchmarkJSONDialect measures the dialect against protojson, the
// gateway's marshaler before it, in the same run: a page of 100 clients
// out, an AddClient request with a key in.
func BenchmarkJSONDialect(b *testing.B) {
	page := &c2pb.ListClientsResponse{Total: 1000}
	for i := range 100 {
		page.Clients = append(page.Clients, &c2pb.Client{Id: strings.Repeat("ab", 16), Name: "pump-" + strings.Repeat("7", i%9+1),
			PublicKey: bytes.Repeat([]byte{byte(i)}, 32), CreatedAt: timestamppb.Now()})
	}
	in := []byte(`{"name":"pump-7","key":"` + strings.Repeat("ab", 32) + `","password":""}`)
	inBase64 := []byte(`{"name":"pump-7","key":"` + strings.Repeat("A", 43) + `=","password":""}`)
	file := bytes.Repeat([]byte("name,key\npump,"+strings.Repeat("ab", 32)+"\n"), 1<<20/80)
	importHex := []byte(`{"format":"csv","data":"` + hex.EncodeToString(file) + `"}`)
	importBase64 := []byte(`{"format":"csv","data":"` + base64.StdEncoding.EncodeToString(file) + `"}`)
	reference := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}
	b.Run("marshal/dialect", func(b *testing.B) {
		for b.Loop() {
			if _, err := MarshalJSON(page); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("marshal/protojson", func(b *testing.B) {
		for b.Loop() {
			if _, err := reference.Marshal(page); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unmarshal/dialect", func(b *testing.B) {
		for b.Loop() {
			if err := UnmarshalJSON(in, &c2pb.AddClientRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unmarshal/protojson", func(b *testing.B) {
		for b.Loop() {
			if err := protojson.Unmarshal(inBase64, &c2pb.AddClientRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("import-1MiB/dialect", func(b *testing.B) {
		for b.Loop() {
			if err := UnmarshalJSON(importHex, &c2pb.ImportClientsRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("import-1MiB/protojson", func(b *testing.B) {
		for b.Loop() {
			if err := protojson.Unmarshal(importBase64, &c2pb.ImportClientsRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzUnmarshalJSON: no input panics the request decoder, and whatever it
// accepts renders and reads back to the same message.
func FuzzUnmarshalJSON(f *testing.F) {
	for _, seed := range []string{
		`{"generated":[{"client_id":"x","key":"` + strings.Repeat("ab", 32) + `"}],"imported":"3"}`,
		`{"generated":[{"key":"abcd"}]}`, `{"imported":1} {"imported":2}`, `{"done":true,"generated":[]}`,
		`{"generated":[{"key":"\u0061b` + strings.Repeat("ab", 31) + `"}]}`, `{ "generated" : [ { } , { "key" : "" } ] }`,
		`[`, `{"generated":{}}`, `{"generated":[{"key":null}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m c2pb.ImportClientsProgress
		if UnmarshalJSON(data, &m) != nil {
			return
		}
		out, err := MarshalJSON(&m)
		if err != nil {
			t.Fatalf("%q read as %v, which does not render: %v", data, &m, err)
		}
		var back c2pb.ImportClientsProgress
		if err := UnmarshalJSON(out, &back); err != nil || !proto.Equal(&m, &back) {
			t.Fatalf("%q: %s reads back as %v (%v)", data, out, &back, err)
		}
	})
}
