package keyfile

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/atomicfile"
)

// Identity is what a device needs to build its E4 client: who it is and
// its client key. Give Name or ID (or both, which must agree).
type Identity struct {
	// Name is the device name its id is derived from (as `e4 id NAME`).
	Name string
	// ID is the client id; the zero ID means "derive it from Name".
	ID e4.ID
	// Mode is e4.SymKey (the default when zero) or e4.PubKey.
	Mode e4.Mode
	// Key is the client key: 32 bytes in SK mode, the 64-byte Ed25519
	// private key in PK mode.
	Key []byte
	// C2PublicKey is C2's X25519 public key, PK mode only.
	C2PublicKey []byte
}

// identityFields are the fields of an identity file, in the order
// WriteIdentity writes them.
var identityFields = []string{"name", "id", "mode", "key", "c2_public_key"}

// ReadIdentity reads an identity file (see the package documentation).
// An unknown or repeated field, a key of the wrong length or a missing
// one is an error naming the file and the line.
func ReadIdentity(path string) (*Identity, error) {
	data, err := readSmall(path)
	if err != nil {
		return nil, err
	}
	defer clear(data)
	id, err := parseIdentity(data)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %s: %w", path, err)
	}
	return id, nil
}

// parseIdentity parses the lines of an identity file.
func parseIdentity(data []byte) (*Identity, error) {
	fields := make(map[string][]byte)
	lineNo := map[string]int{}
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return nil, fmt.Errorf("line %d: want \"field: value\"", i+1)
		}
		field := string(bytes.TrimSpace(name))
		if !isIdentityField(field) {
			return nil, fmt.Errorf("line %d: unknown field %q (the fields are %s)", i+1, field, strings.Join(identityFields, ", "))
		}
		if _, dup := fields[field]; dup {
			return nil, fmt.Errorf("line %d: %s given twice (first on line %d)", i+1, field, lineNo[field])
		}
		fields[field], lineNo[field] = bytes.TrimSpace(value), i+1
	}
	return identityFromFields(fields, lineNo)
}

func isIdentityField(field string) bool { return slices.Contains(identityFields, field) }

// identityFromFields checks and decodes the fields of an identity file.
func identityFromFields(fields map[string][]byte, lineNo map[string]int) (*Identity, error) {
	at := func(field string) string { // where a field was read, if from a file
		if n := lineNo[field]; n > 0 {
			return fmt.Sprintf("line %d: ", n)
		}
		return ""
	}
	id := &Identity{Name: string(fields["name"]), Mode: e4.SymKey}
	switch mode := string(fields["mode"]); mode {
	case "", "sk":
	case "pk":
		id.Mode = e4.PubKey
	default:
		return nil, fmt.Errorf("%smode %q: want sk or pk", at("mode"), mode)
	}
	if raw, ok := fields["id"]; ok {
		parsed, err := e4.ParseID(string(raw))
		if err != nil {
			return nil, fmt.Errorf("%s%w", at("id"), err)
		}
		id.ID = parsed
	}
	if id.Name == "" && id.ID == (e4.ID{}) {
		return nil, errors.New("no name and no id: give one of them")
	}
	if _, ok := fields["key"]; !ok {
		return nil, errors.New("no key")
	}
	var err error
	if id.Key, err = decodeHex(fields["key"], id.keySize()); err != nil {
		return nil, fmt.Errorf("%skey: %w", at("key"), err)
	}
	raw, ok := fields["c2_public_key"]
	switch {
	case id.Mode == e4.PubKey && !ok:
		return nil, errors.New("mode pk needs c2_public_key (C2's public key, the FILE.pub of e4 keygen --type c2)")
	case id.Mode == e4.SymKey && ok:
		return nil, fmt.Errorf("%sc2_public_key is for mode pk only", at("c2_public_key"))
	case ok:
		if id.C2PublicKey, err = decodeHex(raw, e4.KeyLen); err != nil {
			return nil, fmt.Errorf("%sc2_public_key: %w", at("c2_public_key"), err)
		}
	}
	return id, nil
}

// keySize is the length of the client key in the identity's mode.
func (id *Identity) keySize() int {
	if id.Mode == e4.PubKey {
		return ed25519.PrivateKeySize
	}
	return e4.KeyLen
}

// WriteIdentity writes id to a new file at path, atomically, with mode
// 0600. It refuses to replace an existing file (the error wraps
// fs.ErrExist).
func WriteIdentity(path string, id *Identity) error {
	if err := id.check(); err != nil {
		return fmt.Errorf("keyfile: %s: %w", path, err)
	}
	if err := refuseExisting(path); err != nil {
		return err
	}
	var b bytes.Buffer
	defer clear(b.Bytes())
	b.WriteString("# E4 identity of a device: it holds the client key, keep it secret\n")
	if id.Name != "" {
		fmt.Fprintf(&b, "name: %s\n", id.Name)
	}
	if id.ID != (e4.ID{}) {
		fmt.Fprintf(&b, "id: %s\n", id.ID)
	}
	if id.Mode == e4.PubKey {
		b.WriteString("mode: pk\n")
	}
	fmt.Fprintf(&b, "key: %s\n", hex.EncodeToString(id.Key))
	if id.Mode == e4.PubKey {
		fmt.Fprintf(&b, "c2_public_key: %s\n", hex.EncodeToString(id.C2PublicKey))
	}
	if err := atomicfile.WriteFile(path, b.Bytes(), fileMode); err != nil {
		return fmt.Errorf("keyfile: %w", err)
	}
	return nil
}

// check reports an identity WriteIdentity would write but ReadIdentity
// would refuse.
func (id *Identity) check() error {
	if strings.ContainsAny(id.Name, "\r\n") {
		return errors.New("the name holds a line break")
	}
	fields := map[string][]byte{"key": []byte(hex.EncodeToString(id.Key))}
	if id.Name != "" {
		fields["name"] = []byte(id.Name)
	}
	if id.ID != (e4.ID{}) {
		fields["id"] = []byte(id.ID.String())
	}
	if id.Mode == e4.PubKey {
		fields["mode"] = []byte("pk")
		fields["c2_public_key"] = []byte(hex.EncodeToString(id.C2PublicKey))
	} else if id.Mode != 0 && id.Mode != e4.SymKey {
		return fmt.Errorf("mode %v: want e4.SymKey or e4.PubKey", id.Mode)
	}
	_, err := identityFromFields(fields, map[string]int{})
	return err
}

// NewClient builds the device's E4 client from the identity, deriving the
// id from Name with cfg's suite when ID is zero. With a Store in cfg the
// saved state is loaded when there is one, as e4.NewSymKeyClient and
// e4.NewPubKeyClient do (the saved keys win). A Name and an ID that do not
// agree are an error.
func (id *Identity) NewClient(cfg *e4.Config) (*e4.Client, error) {
	var suite *e4.Suite
	if cfg != nil {
		suite = cfg.Suite
	}
	clientID := id.ID
	if id.Name != "" {
		fromName := suite.IDFromName(id.Name)
		if clientID != (e4.ID{}) && clientID != fromName {
			return nil, fmt.Errorf("keyfile: the identity's id %v is not the id of the name %q (%v, suite %v)", clientID, id.Name, fromName, suite)
		}
		clientID = fromName
	}
	if id.Mode == e4.PubKey {
		return e4.NewPubKeyClient(clientID, ed25519.PrivateKey(id.Key), id.C2PublicKey, cfg)
	}
	return e4.NewSymKeyClient(clientID, id.Key, cfg)
}
