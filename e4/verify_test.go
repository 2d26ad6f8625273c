package e4

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

// TestVerifierWycheproof runs the cached-point Ed25519 verifier over every
// Wycheproof ed25519 vector, and checks it agrees with crypto/ed25519.
func TestVerifierWycheproof(t *testing.T) {
	raw, err := os.ReadFile("testdata/wycheproof/ed25519_test.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		NumberOfTests int `json:"numberOfTests"`
		TestGroups    []struct {
			PublicKey struct {
				PK string `json:"pk"`
			} `json:"publicKey"`
			Tests []struct {
				TcID   int    `json:"tcId"`
				Msg    string `json:"msg"`
				Sig    string `json:"sig"`
				Result string `json:"result"`
			} `json:"tests"`
		} `json:"testGroups"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, g := range file.TestGroups {
		pub, err := hex.DecodeString(g.PublicKey.PK)
		if err != nil {
			t.Fatal(err)
		}
		// Some vectors carry keys the verifier refuses: they must all be
		// invalid.
		v, keyErr := newVerifier(pub)
		for _, tc := range g.Tests {
			ran++
			msg, err := hex.DecodeString(tc.Msg)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := hex.DecodeString(tc.Sig)
			if err != nil {
				t.Fatal(err)
			}
			got := keyErr == nil && v.verify(msg, sig)
			if want := tc.Result == "valid"; got != want {
				t.Errorf("tcId %d: verify = %v, want %v (%s)", tc.TcID, got, want, tc.Result)
			}
			if std := len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, msg, sig); got != std {
				t.Errorf("tcId %d: verify = %v, crypto/ed25519 says %v", tc.TcID, got, std)
			}
		}
	}
	if ran != file.NumberOfTests || ran == 0 {
		t.Fatalf("ran %d of %d vectors", ran, file.NumberOfTests)
	}
}
