package e4

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4/command"
)

// buildCommand rebuilds a vector's command with this package's builders, so
// that C2 and the vectors agree byte for byte.
func buildCommand(t *testing.T, v vec) []byte {
	t.Helper()
	var cmd []byte
	var err error
	switch v.Name {
	case "RemoveTopic":
		cmd = command.NewRemoveTopic(HashTopic(v.Args.Topic))
	case "ResetTopics":
		cmd = command.NewResetTopics()
	case "SetIDKey":
		cmd, err = command.NewSetIDKey(v.Args.Key)
	case "SetTopicKey":
		cmd, err = command.NewSetTopicKey(v.Args.Key, HashTopic(v.Args.Topic))
	case "RemovePubKey":
		cmd = command.NewRemovePubKey(IDFromName(v.Args.Name))
	case "ResetPubKeys":
		cmd = command.NewResetPubKeys()
	case "SetPubKey":
		cmd, err = command.NewSetPubKey(ed25519.PublicKey(v.Args.PublicKey), IDFromName(v.Args.Name))
	case "SetC2Key":
		cmd, err = command.NewSetC2Key(v.Args.C2PublicKey)
	default:
		t.Fatalf("unknown command %q", v.Name)
	}
	if err != nil {
		t.Fatalf("%s: %v", v.Name, err)
	}
	return cmd
}

func TestVectorSKCommands(t *testing.T) { forEachAES(t, testVectorSKCommands) }

func testVectorSKCommands(t *testing.T) {
	f := loadVectors(t)
	for _, v := range f.SKCommands {
		if cmd := buildCommand(t, v); !bytes.Equal(cmd, v.Command) {
			t.Errorf("%s: built %x, want %x", v.Name, cmd, v.Command)
		}
		at := time.Unix(int64(v.Timestamp), 0)
		if got, err := ProtectCommand(v.Command, v.ClientKey, at); err != nil || !bytes.Equal(got, v.Protected) {
			t.Errorf("%s: ProtectCommand = %x, %v; want %x", v.Name, got, err, v.Protected)
		}
		c, err := NewSymKeyClient(ID(v.ClientID), v.ClientKey, fixedClock(v.Timestamp))
		if err != nil {
			t.Fatal(err)
		}
		if c.ControlTopic() != v.ReceivingTopic {
			t.Errorf("control topic %q, want %q", c.ControlTopic(), v.ReceivingTopic)
		}
		checkCommandEffect(t, c, v, v.ClientKey, func(newKey []byte) []byte { return newKey })
	}
}

func TestVectorPKCommands(t *testing.T) { forEachAES(t, testVectorPKCommands) }

func testVectorPKCommands(t *testing.T) {
	f := loadVectors(t)
	for _, v := range f.PKCommands {
		if cmd := buildCommand(t, v); !bytes.Equal(cmd, v.Command) {
			t.Errorf("%s: built %x, want %x", v.Name, cmd, v.Command)
		}
		c2Key, err := C2CommandKey(v.C2Private, v.ClientPublic)
		if err != nil || !bytes.Equal(c2Key, v.SharedKey) {
			t.Fatalf("%s: C2CommandKey = %x, %v; want %x", v.Name, c2Key, err, v.SharedKey)
		}
		if k, err := ClientCommandKey(ed25519.PrivateKey(v.ClientPrivate), v.C2Public); err != nil || !bytes.Equal(k, v.SharedKey) {
			t.Fatalf("%s: ClientCommandKey = %x, %v", v.Name, k, err)
		}
		at := time.Unix(int64(v.Timestamp), 0)
		if got, err := ProtectCommand(v.Command, c2Key, at); err != nil || !bytes.Equal(got, v.Protected) {
			t.Errorf("%s: ProtectCommand = %x, %v; want %x", v.Name, got, err, v.Protected)
		}
		c, err := NewPubKeyClient(ID(v.ClientID), ed25519.PrivateKey(v.ClientPrivate), v.C2Public, fixedClock(v.Timestamp))
		if err != nil {
			t.Fatal(err)
		}
		// After SetIDKey, the command key is derived from the new Ed25519 key.
		nextKey := func(newIDKey []byte) []byte {
			k, err := C2CommandKey(v.C2Private, newIDKey[32:])
			if err != nil {
				t.Fatal(err)
			}
			return k
		}
		checkCommandEffect(t, c, v, c2Key, nextKey)
	}
}

// checkCommandEffect prepares the state a command acts on, applies the
// vector's protected command, and checks the state afterwards.
func checkCommandEffect(t *testing.T, c *Client, v vec, cmdKey []byte, cmdKeyAfterSetID func([]byte) []byte) {
	t.Helper()
	other := bytes.Repeat([]byte{0x42}, KeyLen)
	switch v.Name {
	case "RemoveTopic", "ResetTopics":
		mustSetTopicKey(t, c, other, "kept/"+v.Name)
		if v.Name == "RemoveTopic" {
			mustSetTopicKey(t, c, other, v.Args.Topic)
		}
	case "RemovePubKey":
		_, pub := mustKeyPair(t)
		if err := c.SetPubKey(ID(v.Args.ID), pub); err != nil {
			t.Fatal(err)
		}
	case "ResetPubKeys":
		_, pub := mustKeyPair(t)
		if err := c.SetPubKey(IDFromName("someone"), pub); err != nil {
			t.Fatal(err)
		}
	}
	code, err := c.HandleCommand(v.Protected)
	if err != nil || code.String() != v.Name {
		t.Fatalf("%s: HandleCommand = %v, %v", v.Name, code, err)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	switch v.Name {
	case "RemoveTopic":
		if t2 := c.topics[TopicHash(v.Args.TopicHash)]; t2 == nil || t2.current != nil {
			t.Errorf("RemoveTopic: key still present")
		}
		if len(c.topics) != 2 {
			t.Errorf("RemoveTopic: %d entries, want the other topic and a tombstone", len(c.topics))
		}
	case "ResetTopics":
		if len(c.topics) != 0 {
			t.Errorf("ResetTopics: %d topics left", len(c.topics))
		}
	case "SetTopicKey":
		tk := c.topics[TopicHash(v.Args.TopicHash)]
		if tk == nil || !bytes.Equal(tk.key[:], v.Args.Key) {
			t.Errorf("SetTopicKey: key not installed")
		}
	case "RemovePubKey":
		if _, ok := c.signers[ID(v.Args.ID)]; ok {
			t.Errorf("RemovePubKey: signer still known")
		}
	case "ResetPubKeys":
		if len(c.signers) != 0 {
			t.Errorf("ResetPubKeys: %d signers left", len(c.signers))
		}
	case "SetPubKey":
		s := c.signers[ID(v.Args.ID)]
		if s == nil || !bytes.Equal(s.public, v.Args.PublicKey) {
			t.Errorf("SetPubKey: signer not recorded")
		}
	case "SetIDKey":
		if c.mode == PubKey && !bytes.Equal(c.signKey.Public().(ed25519.PublicKey), v.Args.NewPublicKey) {
			t.Errorf("SetIDKey: public key not replaced")
		}
		cmdKey = cmdKeyAfterSetID(v.Args.Key)
	case "SetC2Key":
		k, err := C2CommandKey(v.Args.NewC2Private, v.ClientPublic)
		if err != nil {
			t.Fatal(err)
		}
		cmdKey = k
	}
	// The command key in force now must be accepted.
	c.mu.RUnlock()
	defer c.mu.RLock()
	later := time.Unix(int64(v.Timestamp)+1, 0) // C2 dates each command later than the last
	probe, err := ProtectCommand(command.NewRemoveTopic(HashTopic("probe")), cmdKey, later)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.HandleCommand(probe); err != nil {
		t.Errorf("%s: command under the current command key refused: %v", v.Name, err)
	}
}

func mustSetTopicKey(t *testing.T, c *Client, key []byte, topic string) {
	t.Helper()
	if err := c.SetTopicKey(key, topic); err != nil {
		t.Fatal(err)
	}
}

func mustKeyPair(t *testing.T) (ed25519.PrivateKey, ed25519.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

func TestVectorNegativeCommands(t *testing.T) { forEachAES(t, testVectorNegativeCommands) }

func testVectorNegativeCommands(t *testing.T) {
	f := loadVectors(t)
	for _, v := range f.NegativeCommands {
		var c *Client
		var err error
		if v.Mode == "sk" {
			c, err = NewSymKeyClient(ID(v.ClientID), v.ClientKey, fixedClock(v.TimestampNow))
		} else {
			c, err = NewPubKeyClient(ID(v.ClientID), ed25519.PrivateKey(v.ClientPrivate), v.C2Public, fixedClock(v.TimestampNow))
		}
		if err != nil {
			t.Fatal(err)
		}
		want := ourError(t, v)
		if len(v.Command) == 0 {
			want = ErrInvalidCommand // an empty command, validly protected
		}
		if _, err := c.Unprotect(nil, v.Protected, v.ReceivingTopic); !errors.Is(err, want) {
			t.Errorf("%s: error = %v, want %v", v.Why, err, want)
		}
	}
}
