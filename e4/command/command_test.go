package command_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
)

// built returns one valid command of each code, made by the builders.
func built(t *testing.T) map[command.Code][][]byte {
	t.Helper()
	key := bytes.Repeat([]byte{7}, e4.KeyLen)
	pub, priv, err := ed25519.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{1}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	must := func(cmd []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	id := e4.IDFromName("sender")
	return map[command.Code][][]byte{
		command.RemoveTopic:  {command.NewRemoveTopic(e4.HashTopic("t"))},
		command.ResetTopics:  {command.NewResetTopics()},
		command.SetIDKey:     {must(command.NewSetIDKey(key)), must(command.NewSetIDKey(priv))},
		command.SetTopicKey:  {must(command.NewSetTopicKey(key, e4.HashTopic("t")))},
		command.RemovePubKey: {command.NewRemovePubKey(id)},
		command.ResetPubKeys: {command.NewResetPubKeys()},
		command.SetPubKey:    {must(command.NewSetPubKey(pub, id))},
		command.SetC2Key:     {must(command.NewSetC2Key(key))},
	}
}

// TestCheckAcceptsBuiltAndRefusesOtherLengths: every builder's output
// passes Check with its own code, and one byte more or less does not, with
// the code still reported so that a device can refuse by mode first.
func TestCheckAcceptsBuiltAndRefusesOtherLengths(t *testing.T) {
	for code, cmds := range built(t) {
		for _, cmd := range cmds {
			if cmd[0] != byte(code) {
				t.Fatalf("%v builder starts with %#02x", code, cmd[0])
			}
			if got, err := command.Check(cmd); err != nil || got != code {
				t.Errorf("Check(%v, %d bytes) = %v, %v", code, len(cmd), got, err)
			}
			for _, bad := range [][]byte{cmd[:len(cmd)-1], append(append([]byte(nil), cmd...), 0)} {
				if len(bad) == 0 {
					continue
				}
				got, err := command.Check(bad)
				if !errors.Is(err, e4.ErrInvalidCommand) || got != code {
					t.Errorf("Check(%v, %d bytes) = %v, %v; want %v and ErrInvalidCommand", code, len(bad), got, err, code)
				}
			}
		}
	}
	for _, bad := range [][]byte{nil, {0x08}, {0xff, 1, 2}} {
		if _, err := command.Check(bad); !errors.Is(err, e4.ErrInvalidCommand) {
			t.Errorf("Check(%x) = %v, want ErrInvalidCommand", bad, err)
		}
	}
}

// TestCodes: names, the PK-only set and unknown codes.
func TestCodes(t *testing.T) {
	if got := command.SetTopicKey.String(); got != "SetTopicKey" {
		t.Errorf("SetTopicKey.String() = %q", got)
	}
	if got := command.Code(0x42).String(); got != "Code(0x42)" {
		t.Errorf("Code(0x42).String() = %q", got)
	}
	if command.Code(0x08).Known() || !command.SetC2Key.Known() {
		t.Error("Known is wrong at the end of the range")
	}
	for c := command.RemoveTopic; c <= command.SetC2Key; c++ {
		if want := c >= command.RemovePubKey; c.PubKeyOnly() != want {
			t.Errorf("%v.PubKeyOnly() = %v", c, !want)
		}
	}
}

// TestBuildersRefuseBadKeys: builders refuse key material a device would
// refuse, with e4.ErrInvalidKey.
func TestBuildersRefuseBadKeys(t *testing.T) {
	zero := make([]byte, e4.KeyLen)
	var id e4.ID
	for name, err := range map[string]error{
		"SetIDKey zero":      second(command.NewSetIDKey(zero)),
		"SetIDKey short":     second(command.NewSetIDKey(zero[:31])),
		"SetTopicKey zero":   second(command.NewSetTopicKey(zero, e4.HashTopic("t"))),
		"SetTopicKey long":   second(command.NewSetTopicKey(append(bytes.Repeat([]byte{1}, 32), 1), e4.HashTopic("t"))),
		"SetPubKey identity": second(command.NewSetPubKey(append([]byte{1}, zero[1:]...), id)),
		"SetC2Key short":     second(command.NewSetC2Key(zero[:16])),
	} {
		if !errors.Is(err, e4.ErrInvalidKey) {
			t.Errorf("%s: %v, want ErrInvalidKey", name, err)
		}
	}
}

func second(_ []byte, err error) error { return err }
