package keyfile_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/keyfile"
	"github.com/e4-iot/e4kit/e4/store"
)

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return b
}

func writeText(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func assertMode0600(t *testing.T, path string) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, info.Mode().Perm())
	}
}

// TestKeyRoundTrip: WriteKey writes a hex line with mode 0600 that ReadKey
// reads back, and refuses to replace the file; ReplaceKey replaces it.
func TestKeyRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "topic.key")
	key := randomBytes(e4.KeyLen)
	if err := keyfile.WriteKey(path, key); err != nil {
		t.Fatal(err)
	}
	assertMode0600(t, path)
	got, err := keyfile.ReadKey(path, e4.KeyLen)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("ReadKey = %x, %v; want %x", got, err, key)
	}
	if err := keyfile.WriteKey(path, randomBytes(e4.KeyLen)); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("WriteKey over an existing file: %v, want fs.ErrExist", err)
	}
	if got, _ := keyfile.ReadKey(path, e4.KeyLen); !bytes.Equal(got, key) {
		t.Fatal("the refused WriteKey changed the file")
	}
	second := randomBytes(e4.KeyLen)
	if err := keyfile.ReplaceKey(path, second); err != nil {
		t.Fatal(err)
	}
	if got, _ := keyfile.ReadKey(path, e4.KeyLen); !bytes.Equal(got, second) {
		t.Fatal("ReplaceKey did not replace the key")
	}
	assertMode0600(t, path)
}

// TestReadKeyErrors: each bad key file gets an error naming the file and
// the fault, and never showing its content.
func TestReadKeyErrors(t *testing.T) {
	secret := "00112233445566778899aabbccddeeff00112233445566778899aabbccddee" // 31 bytes
	cases := []struct{ name, text, want string }{
		{"empty", "\n", "empty"},
		{"not hex", "zz" + secret[2:] + "00", "character 1 is not a hex digit"},
		{"odd", secret + "0", "odd number"},
		{"short", secret, "want a 32-byte key (64 hex characters), found 31 bytes"},
		{"too large", strings.Repeat("00", 40<<10), "larger than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeText(t, c.text)
			_, err := keyfile.ReadKey(path, e4.KeyLen)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("ReadKey = %v, want an error naming %s and saying %q", err, path, c.want)
			}
			if strings.Contains(err.Error(), secret[4:20]) {
				t.Fatalf("the error shows the file's content: %v", err)
			}
		})
	}
	if _, err := keyfile.ReadKey(filepath.Join(t.TempDir(), "missing.key"), 32); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v, want fs.ErrNotExist", err)
	}
	if key, err := keyfile.ReadKey(writeText(t, "  0a0b0c \n"), 0); err != nil || !bytes.Equal(key, []byte{10, 11, 12}) {
		t.Fatalf("size 0: %x, %v", key, err)
	}
}

// TestIdentityRoundTrip: identities in both modes survive WriteIdentity and
// ReadIdentity, and build clients with the right id and key; the state
// store then takes over, as with the e4 constructors.
func TestIdentityRoundTrip(t *testing.T) {
	dir := t.TempDir()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	c2Public := randomBytes(e4.KeyLen)
	cases := map[string]*keyfile.Identity{
		"sk by name": {Name: "thermostat-42", Key: randomBytes(e4.KeyLen)},
		"sk by id":   {ID: e4.IDFromName("boiler"), Key: randomBytes(e4.KeyLen)},
		"pk":         {Name: "gateway", Mode: e4.PubKey, Key: priv, C2PublicKey: c2Public},
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".e4id")
			if err := keyfile.WriteIdentity(path, want); err != nil {
				t.Fatal(err)
			}
			assertMode0600(t, path)
			got, err := keyfile.ReadIdentity(path)
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != want.Name || got.ID != want.ID || !bytes.Equal(got.Key, want.Key) || !bytes.Equal(got.C2PublicKey, want.C2PublicKey) {
				t.Fatalf("read %+v, wrote %+v", got, want)
			}
			c, err := got.NewClient(&e4.Config{Store: store.NewFile(path + ".state")})
			if err != nil {
				t.Fatal(err)
			}
			wantID := want.ID
			if want.Name != "" {
				wantID = e4.IDFromName(want.Name)
			}
			if c.ID() != wantID {
				t.Fatalf("client id %v, want %v", c.ID(), wantID)
			}
			if want.Mode == e4.PubKey && !bytes.Equal(c.PublicKey(), pub) {
				t.Fatal("the PK client does not have the identity's key")
			}
			if err := keyfile.WriteIdentity(path, want); !errors.Is(err, fs.ErrExist) {
				t.Fatalf("WriteIdentity over an existing file: %v, want fs.ErrExist", err)
			}
		})
	}
}

// TestIdentityFastSuite: the id of a named identity is derived with the
// suite of the configuration, as C2 derives it.
func TestIdentityFastSuite(t *testing.T) {
	id := &keyfile.Identity{Name: "thermostat-42", Key: randomBytes(e4.KeyLen)}
	c, err := id.NewClient(&e4.Config{Suite: e4.Fast})
	if err != nil {
		t.Fatal(err)
	}
	if c.ID() != e4.Fast.IDFromName("thermostat-42") || c.ID() == e4.IDFromName("thermostat-42") {
		t.Fatal("the fast client's id is not the fast suite's id of its name")
	}
	mismatch := &keyfile.Identity{Name: "thermostat-42", ID: e4.IDFromName("other"), Key: id.Key}
	if _, err := mismatch.NewClient(nil); err == nil || !strings.Contains(err.Error(), "is not the id of the name") {
		t.Fatalf("a name and an id that disagree: %v", err)
	}
}

// TestReadIdentityErrors: a bad identity file gets an error naming the
// file, the line and the fault (a typo in a field name lists the fields).
func TestReadIdentityErrors(t *testing.T) {
	key := strings.Repeat("ab", 32)
	cases := []struct{ name, text, want string }{
		{"typo", "name: a\nkye: " + key + "\n", `line 2: unknown field "kye" (the fields are name, id, mode, key, c2_public_key)`},
		{"no colon", "name a\n", "line 1: want \"field: value\""},
		{"twice", "name: a\nname: b\nkey: " + key, "line 2: name given twice (first on line 1)"},
		{"no key", "# comment\nname: a\n", "no key"},
		{"no name", "key: " + key, "no name and no id"},
		{"short key", "name: a\nkey: abcd", "line 2: key: want a 32-byte key"},
		{"bad id", "id: 1234\nkey: " + key, "line 1: e4: client id must be 32 hex characters"},
		{"bad mode", "name: a\nmode: xx\nkey: " + key, `line 2: mode "xx": want sk or pk`},
		{"pk without c2", "name: a\nmode: pk\nkey: " + key + key, "mode pk needs c2_public_key"},
		{"sk with c2", "name: a\nkey: " + key + "\nc2_public_key: " + key, "line 3: c2_public_key is for mode pk only"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeText(t, c.text)
			_, err := keyfile.ReadIdentity(path)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("ReadIdentity = %v, want an error naming %s and saying %q", err, path, c.want)
			}
			if strings.Contains(err.Error(), key) {
				t.Fatalf("the error shows the key: %v", err)
			}
		})
	}
}

// TestWriteIdentityRefusesUnreadable: WriteIdentity writes nothing that
// ReadIdentity would refuse.
func TestWriteIdentityRefusesUnreadable(t *testing.T) {
	dir := t.TempDir()
	for name, id := range map[string]*keyfile.Identity{
		"no name or id": {Key: randomBytes(32)},
		"short key":     {Name: "a", Key: randomBytes(16)},
		"line break":    {Name: "a\nkey: 00", Key: randomBytes(32)},
		"pk without c2": {Name: "a", Mode: e4.PubKey, Key: randomBytes(64)},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := keyfile.WriteIdentity(path, id); err == nil {
			t.Errorf("%s: WriteIdentity succeeded", name)
		}
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: a refused identity left a file: %v", name, err)
		}
	}
}
