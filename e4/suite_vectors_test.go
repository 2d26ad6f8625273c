package e4

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/e4/internal/keccak"
)

var updateFastVectors = flag.Bool("update-fast-vectors", false, "rewrite e4/testdata/fast-vectors.json from the implementation")

const fastVectorsPath = "testdata/fast-vectors.json"

// hexString is hexBytes (which encodes and decodes as hex) under the name
// the vector structure reads best with.
type hexString = hexBytes

// fastVectors is the known-answer file of the fast suite: every input and
// the expected output of each operation whose result the suite changes.
type fastVectors struct {
	Suite        string `json:"suite"`
	AESRounds    int    `json:"aes_rounds"`
	KeccakRounds int    `json:"keccak_rounds"`
	Hashes       []struct {
		Input     string    `json:"input"`
		SHA3      hexString `json:"sha3_256"`
		TopicHash hexString `json:"topic_hash"`
		ID        hexString `json:"id_from_name"`
	} `json:"hashes"`
	SKMessages []struct {
		Topic     string    `json:"topic"`
		Key       hexString `json:"key"`
		Timestamp uint64    `json:"timestamp"`
		Plaintext hexString `json:"plaintext"`
		Protected hexString `json:"protected"`
	} `json:"sk_messages"`
	PKMessages []struct {
		Topic      string    `json:"topic"`
		TopicKey   hexString `json:"topic_key"`
		SenderSeed hexString `json:"sender_ed25519_seed"`
		SenderName string    `json:"sender_name"`
		SenderID   hexString `json:"sender_id"`
		Timestamp  uint64    `json:"timestamp"`
		Plaintext  hexString `json:"plaintext"`
		Protected  hexString `json:"protected"`
	} `json:"pk_messages"`
	SKCommands []struct {
		ClientKey hexString `json:"client_key"`
		Timestamp uint64    `json:"timestamp"`
		Topic     string    `json:"topic,omitempty"` // of SetTopicKey and RemoveTopic
		Command   hexString `json:"command"`
		Protected hexString `json:"protected"`
	} `json:"sk_commands"`
	PKCommands []struct {
		ClientSeed hexString `json:"client_ed25519_seed"`
		C2Private  hexString `json:"c2_x25519_private_key"`
		C2Public   hexString `json:"c2_x25519_public_key"`
		CommandKey hexString `json:"command_key"`
		Timestamp  uint64    `json:"timestamp"`
		Topic      string    `json:"topic,omitempty"`
		Command    hexString `json:"command"`
		Protected  hexString `json:"protected"`
	} `json:"pk_commands"`
}

// pattern returns n bytes start, start+1, ... (mod 256): fixed inputs that
// need no randomness to reproduce.
func pattern(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

const fastVectorTime = 1767225600 // 2026-01-01T00:00:00Z

// generateFastVectors computes every vector from its inputs with Fast.
func generateFastVectors(t *testing.T) *fastVectors {
	t.Helper()
	v := &fastVectors{Suite: Fast.Name(), AESRounds: 10, KeccakRounds: 10}
	for _, in := range []string{"", "abc", "home/livingroom/temperature", "e4/00112233445566778899aabbccddeeff", strings.Repeat("a", 135), strings.Repeat("a", 136), strings.Repeat("a", 137)} {
		sum := keccak.Sum256([]byte(in), 10)
		h, id := Fast.HashTopic(in), Fast.IDFromName(in)
		v.Hashes = append(v.Hashes, struct {
			Input     string    `json:"input"`
			SHA3      hexString `json:"sha3_256"`
			TopicHash hexString `json:"topic_hash"`
			ID        hexString `json:"id_from_name"`
		}{in, sum[:], h[:], id[:]})
	}
	for i, n := range []int{0, 3, 16, 33, 100} {
		key := pattern(KeyLen, byte(1+i))
		ts := uint64(fastVectorTime + i)
		plain := pattern(n, byte(0x40+i))
		out, err := Fast.ProtectSymKey(nil, plain, key, time.Unix(int64(ts), 0))
		if err != nil {
			t.Fatal(err)
		}
		v.SKMessages = append(v.SKMessages, struct {
			Topic     string    `json:"topic"`
			Key       hexString `json:"key"`
			Timestamp uint64    `json:"timestamp"`
			Plaintext hexString `json:"plaintext"`
			Protected hexString `json:"protected"`
		}{"sensors/" + string(rune('a'+i)), key, ts, plain, out})
	}
	for i, n := range []int{0, 17, 64} {
		key := pattern(KeyLen, byte(0x80+i))
		seed := pattern(ed25519.SeedSize, byte(0x20+i))
		name := "sender-" + string(rune('a'+i))
		id := Fast.IDFromName(name)
		ts := uint64(fastVectorTime + 10 + i)
		plain := pattern(n, byte(0x60+i))
		out, err := Fast.ProtectPubKey(nil, plain, key, id, ed25519.NewKeyFromSeed(seed), time.Unix(int64(ts), 0))
		if err != nil {
			t.Fatal(err)
		}
		v.PKMessages = append(v.PKMessages, struct {
			Topic      string    `json:"topic"`
			TopicKey   hexString `json:"topic_key"`
			SenderSeed hexString `json:"sender_ed25519_seed"`
			SenderName string    `json:"sender_name"`
			SenderID   hexString `json:"sender_id"`
			Timestamp  uint64    `json:"timestamp"`
			Plaintext  hexString `json:"plaintext"`
			Protected  hexString `json:"protected"`
		}{"actuators/" + string(rune('a'+i)), key, seed, name, id[:], ts, plain, out})
	}
	for i, c := range fastCommands(t) {
		key := pattern(KeyLen, byte(0xa0+i))
		ts := uint64(fastVectorTime + 20 + i)
		out, err := Fast.ProtectCommand(c.cmd, key, time.Unix(int64(ts), 0))
		if err != nil {
			t.Fatal(err)
		}
		v.SKCommands = append(v.SKCommands, struct {
			ClientKey hexString `json:"client_key"`
			Timestamp uint64    `json:"timestamp"`
			Topic     string    `json:"topic,omitempty"`
			Command   hexString `json:"command"`
			Protected hexString `json:"protected"`
		}{key, ts, c.topic, c.cmd, out})
	}
	for i, c := range fastCommands(t) {
		seed := pattern(ed25519.SeedSize, byte(0xc0+i))
		c2Priv := pattern(KeyLen, byte(0xe0+i))
		c2Pub := x25519Public(t, c2Priv)
		client := ed25519.NewKeyFromSeed(seed)
		key, err := Fast.C2CommandKey(c2Priv, client.Public().(ed25519.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		ts := uint64(fastVectorTime + 30 + i)
		out, err := Fast.ProtectCommand(c.cmd, key, time.Unix(int64(ts), 0))
		if err != nil {
			t.Fatal(err)
		}
		v.PKCommands = append(v.PKCommands, struct {
			ClientSeed hexString `json:"client_ed25519_seed"`
			C2Private  hexString `json:"c2_x25519_private_key"`
			C2Public   hexString `json:"c2_x25519_public_key"`
			CommandKey hexString `json:"command_key"`
			Timestamp  uint64    `json:"timestamp"`
			Topic      string    `json:"topic,omitempty"`
			Command    hexString `json:"command"`
			Protected  hexString `json:"protected"`
		}{seed, c2Priv, c2Pub, key, ts, c.topic, c.cmd, out})
	}
	return v
}

type topicCommand struct {
	topic string
	cmd   []byte
}

// fastCommands are the commands of the vectors: those that carry a topic
// hash, which the suite changes, and one without.
func fastCommands(t *testing.T) []topicCommand {
	set, err := command.NewSetTopicKey(pattern(KeyLen, 0x11), Fast.HashTopic("home/kitchen"))
	if err != nil {
		t.Fatal(err)
	}
	return []topicCommand{
		{"home/kitchen", set},
		{"home/kitchen", command.NewRemoveTopic(Fast.HashTopic("home/kitchen"))},
		{"", command.NewResetTopics()},
	}
}

func loadFastVectors(t *testing.T) *fastVectors {
	t.Helper()
	b, err := os.ReadFile(fastVectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	var v fastVectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return &v
}

// TestFastVectorsGenerate checks that the implementation computes exactly
// the pinned file from its inputs (or rewrites it with
// -update-fast-vectors).
func TestFastVectorsGenerate(t *testing.T) {
	got, err := json.MarshalIndent(generateFastVectors(t), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *updateFastVectors {
		if err := os.WriteFile(fastVectorsPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(fastVectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Fast computes other values than %s pins; regenerate only after checking why:\n%s", fastVectorsPath, got)
	}
}

// TestFastVectorsOpen runs the pinned outputs the other way: fast clients
// open every message and apply every command, and V1 refuses each.
func TestFastVectorsOpen(t *testing.T) {
	v := loadFastVectors(t)
	if v.Suite != "fast" || v.AESRounds != 10 || v.KeccakRounds != 10 {
		t.Fatalf("file describes suite %q, %d AES rounds, %d Keccak rounds", v.Suite, v.AESRounds, v.KeccakRounds)
	}
	for _, h := range v.Hashes {
		if got := Fast.HashTopic(h.Input); !bytes.Equal(got[:], h.TopicHash) || !bytes.Equal(h.SHA3[:16], h.TopicHash) {
			t.Errorf("topic hash of %q: %x, pinned %x", h.Input, got, h.TopicHash)
		}
		if got := Fast.IDFromName(h.Input); !bytes.Equal(got[:], h.ID) {
			t.Errorf("id of %q: %x, pinned %x", h.Input, got, h.ID)
		}
	}
	for _, m := range v.SKMessages {
		c := newFastSKClient(t, Fast, m.Timestamp)
		if err := c.SetTopicKey(m.Key, m.Topic); err != nil {
			t.Fatal(err)
		}
		got, err := c.Unprotect(nil, m.Protected, m.Topic)
		if err != nil || !bytes.Equal(got, m.Plaintext) {
			t.Errorf("SK message on %s: %x, %v; want %x", m.Topic, got, err, m.Plaintext)
		}
		if _, err := UnprotectSymKey(nil, m.Protected, m.Key, &Config{Now: fixedNow(m.Timestamp)}); !errors.Is(err, ErrAuthentication) {
			t.Errorf("V1 opened a fast SK message: %v", err)
		}
	}
	for _, m := range v.PKMessages {
		sender := ed25519.NewKeyFromSeed(m.SenderSeed)
		signers := map[ID]ed25519.PublicKey{ID(m.SenderID): sender.Public().(ed25519.PublicKey)}
		cfg := &Config{Now: fixedNow(m.Timestamp)}
		got, err := Fast.UnprotectPubKey(nil, m.Protected, m.TopicKey, signers, cfg)
		if err != nil || !bytes.Equal(got, m.Plaintext) {
			t.Errorf("PK message on %s: %x, %v; want %x", m.Topic, got, err, m.Plaintext)
		}
		if _, err := UnprotectPubKey(nil, m.Protected, m.TopicKey, signers, cfg); !errors.Is(err, ErrAuthentication) {
			t.Errorf("V1 opened a fast PK message: %v", err)
		}
	}
	for _, cmd := range v.SKCommands {
		c := newFastSKClientKey(t, Fast, cmd.ClientKey, cmd.Timestamp)
		checkFastCommand(t, c, cmd.Protected, cmd.Command, cmd.Topic)
		v1 := newFastSKClientKey(t, V1, cmd.ClientKey, cmd.Timestamp)
		if _, err := v1.HandleCommand(cmd.Protected); !errors.Is(err, ErrAuthentication) {
			t.Errorf("V1 client applied a fast SK command: %v", err)
		}
	}
	for _, cmd := range v.PKCommands {
		client := ed25519.NewKeyFromSeed(cmd.ClientSeed)
		if key, err := Fast.ClientCommandKey(client, cmd.C2Public); err != nil || !bytes.Equal(key, cmd.CommandKey) {
			t.Errorf("client side of the PK command key: %x, %v; pinned %x", key, err, cmd.CommandKey)
		}
		c, err := NewPubKeyClient(IDFromName("pk-vector"), client, cmd.C2Public, &Config{Suite: Fast, Now: fixedNow(cmd.Timestamp)})
		if err != nil {
			t.Fatal(err)
		}
		checkFastCommand(t, c, cmd.Protected, cmd.Command, cmd.Topic)
	}
}

func checkFastCommand(t *testing.T, c *Client, protected, want []byte, topic string) {
	t.Helper()
	code, err := c.HandleCommand(protected)
	if err != nil || code != command.Code(want[0]) {
		t.Errorf("%v client: command %v, %v; want %v", c.Suite(), code, err, command.Code(want[0]))
	}
	if code == command.SetTopicKey && !c.HasTopicKey(topic) {
		t.Errorf("SetTopicKey applied but the client has no key for %q", topic)
	}
}

func fixedNow(ts uint64) func() time.Time {
	return func() time.Time { return time.Unix(int64(ts), 0) }
}

func newFastSKClient(t *testing.T, s *Suite, ts uint64) *Client {
	t.Helper()
	return newFastSKClientKey(t, s, pattern(KeyLen, 0x77), ts)
}

func newFastSKClientKey(t *testing.T, s *Suite, key []byte, ts uint64) *Client {
	t.Helper()
	c, err := NewSymKeyClient(IDFromName("sk-vector"), key, &Config{Suite: s, Now: fixedNow(ts)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func x25519Public(t *testing.T, private []byte) []byte {
	t.Helper()
	pub, err := x25519PublicOf(private)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}
