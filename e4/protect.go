package e4

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/e4-iot/e4kit/e4/siv"
)

// Wire formats (all integers little-endian):
//
//	SK message: timestamp (8) | SIV (16) | ciphertext (n)
//	PK message: timestamp (8) | sender id (16) | SIV (16) | ciphertext (n) | Ed25519 signature (64)
//
// AES-SIV runs under the topic key with the 8 timestamp bytes as its only
// associated data; the PK signature covers every byte before it.

// Protect appends the protected form of payload, for publication on topic,
// to dst and returns the extended slice. When dst has enough spare capacity
// (len(payload) plus SKOverhead or PKOverhead) an SK client allocates nothing
// for payloads up to 512 bytes.
func (c *Client) Protect(dst, payload []byte, topic string) ([]byte, error) {
	cipher, err := c.topicCipher(topic)
	if err != nil {
		return dst, err
	}
	ts := uint64(c.now().Unix())
	if c.mode == SymKey {
		return sealSK(dst, cipher, payload, ts), nil
	}
	c.mu.RLock()
	signKey := c.signKey
	c.mu.RUnlock()
	return sealPK(dst, cipher, signKey, c.id, payload, ts), nil
}

// sealSK appends timestamp | SIV | ciphertext.
func sealSK(dst []byte, cipher *siv.Cipher, payload []byte, ts uint64) []byte {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint64(dst, ts)
	return cipher.Seal(dst, payload, dst[start:start+TimestampLen])
}

// sealPK appends timestamp | sender id | SIV | ciphertext | signature.
func sealPK(dst []byte, cipher *siv.Cipher, signKey ed25519.PrivateKey, sender ID, payload []byte, ts uint64) []byte {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint64(dst, ts)
	dst = append(dst, sender[:]...)
	dst = cipher.Seal(dst, payload, dst[start:start+TimestampLen])
	return append(dst, ed25519.Sign(signKey, dst[start:])...)
}

// Unprotect checks a message received on topic and appends its plaintext to
// dst. A message on the client's control topic is a command from C2: it is
// applied and nothing is appended (see HandleCommand).
//
// Checks run in this order, as in the reference implementation: topic key
// (ErrTopicKeyNotFound), length (ErrInvalidLength), timestamp
// (ErrTimestampTooOld, ErrTimestampInFuture), sender key in PK mode
// (ErrPubKeyNotFound), authentication (ErrAuthentication), replay
// (ErrReplay). On error dst is returned as it was.
func (c *Client) Unprotect(dst, protected []byte, topic string) ([]byte, error) {
	if topic == c.controlTopic {
		_, err := c.HandleCommand(protected)
		return dst, err
	}
	if c.mode == SymKey {
		return c.openSK(dst, protected, topic)
	}
	return c.openPK(dst, protected, topic)
}

func (c *Client) openSK(dst, protected []byte, topic string) ([]byte, error) {
	tc := c.lookupTopic(topic)
	if tc.current == nil {
		return dst, ErrTopicKeyNotFound
	}
	if len(protected) < SKOverhead {
		return dst, ErrInvalidLength
	}
	now := c.now()
	ts := readTimestamp(protected)
	oldest, err := c.cfg.checkTimestamp(ts, now)
	if err != nil {
		return dst, err
	}
	out, err := tc.open(dst, protected[:TimestampLen], protected[TimestampLen:], now)
	if err != nil {
		return dst, c.messageAuthError(tc.hash, protected[:TimestampLen], protected[TimestampLen:])
	}
	var noSender ID
	return c.checkReplay(dst, out, &tc.hash, &noSender, protected[TimestampLen:SKOverhead], ts, oldest)
}

func (c *Client) openPK(dst, protected []byte, topic string) ([]byte, error) {
	tc := c.lookupTopic(topic)
	if tc.current == nil {
		return dst, ErrTopicKeyNotFound
	}
	now := c.now()
	sender, sealed, oldest, err := checkSigned(protected, &c.cfg, now, c.signer)
	if err != nil {
		return dst, err
	}
	out, err := tc.open(dst, protected[:TimestampLen], sealed, now)
	if err != nil {
		return dst, c.messageAuthError(tc.hash, protected[:TimestampLen], sealed)
	}
	return c.checkReplay(dst, out, &tc.hash, &sender, sealed[:TagLen], readTimestamp(protected), oldest)
}

func (c *Client) signer(id ID) *verifier {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.signers[id]
}

// checkSigned runs the checks of a PK message that precede decryption:
// length, timestamp, signer lookup and signature. It returns the sender, the
// SIV-sealed part and the oldest timestamp still inside the window.
func checkSigned(protected []byte, cfg *Config, now time.Time, lookup func(ID) *verifier) (sender ID, sealed []byte, oldest uint64, err error) {
	if len(protected) < PKOverhead {
		return sender, nil, 0, ErrInvalidLength
	}
	oldest, err = cfg.checkTimestamp(readTimestamp(protected), now)
	if err != nil {
		return sender, nil, 0, err
	}
	sender = ID(protected[TimestampLen : TimestampLen+IDLen])
	v := lookup(sender)
	if v == nil {
		return sender, nil, 0, ErrPubKeyNotFound
	}
	signed := protected[:len(protected)-SignatureLen]
	if !v.verify(signed, protected[len(signed):]) {
		return sender, nil, 0, ErrAuthentication
	}
	return sender, signed[TimestampLen+IDLen:], oldest, nil
}

// open decrypts under the topic's current key (which the caller checked
// exists) and, while a key transition is open, under the previous key.
func (tc *topicCiphers) open(dst, ad, sealed []byte, now time.Time) ([]byte, error) {
	out, err := tc.current.Open(dst, sealed, ad)
	if err != nil && tc.previous != nil && now.Before(tc.prevUntil) {
		out, err = tc.previous.Open(dst, sealed, ad)
	}
	if err != nil {
		return dst, ErrAuthentication
	}
	return out, nil
}

// checkReplay records an authenticated message and refuses a repeat; on
// refusal it wipes the plaintext it had appended.
func (c *Client) checkReplay(dst, out []byte, h *TopicHash, sender *ID, tag []byte, ts, oldest uint64) ([]byte, error) {
	if c.replay == nil || c.replay.accept(fingerprint(h, sender, tag), ts, oldest) {
		return out, nil
	}
	clear(out[len(dst):])
	return dst, ErrReplay
}

// ProtectSymKey protects payload with a 32-byte key at time now, in the SK
// format, without a client: for tools and for C2, which protects commands
// this way (see ProtectCommand). It appends to dst. It runs suite V1, as do
// the other package-level functions; Suite has the same methods for the
// others.
func ProtectSymKey(dst, payload, key []byte, now time.Time) ([]byte, error) {
	return V1.ProtectSymKey(dst, payload, key, now)
}

// ProtectSymKey is the package's ProtectSymKey under the suite's cipher.
func (s *Suite) ProtectSymKey(dst, payload, key []byte, now time.Time) ([]byte, error) {
	if err := checkSymKey(key); err != nil {
		return dst, err
	}
	cipher, err := s.newTopicCipher(key)
	if err != nil {
		return dst, err
	}
	return sealSK(dst, cipher, payload, uint64(now.Unix())), nil
}

// UnprotectSymKey checks an SK-format message with a 32-byte key and the
// time checks of cfg (nil for the defaults), and appends the plaintext to
// dst. It keeps no replay state.
func UnprotectSymKey(dst, protected, key []byte, cfg *Config) ([]byte, error) {
	return V1.UnprotectSymKey(dst, protected, key, cfg)
}

// UnprotectSymKey is the package's UnprotectSymKey under the suite's
// cipher; a failed authentication names the suite.
func (s *Suite) UnprotectSymKey(dst, protected, key []byte, cfg *Config) ([]byte, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	if err := checkSymKey(key); err != nil {
		return dst, err
	}
	if len(protected) < SKOverhead {
		return dst, ErrInvalidLength
	}
	if _, err := cfg.checkTimestamp(readTimestamp(protected), cfg.now()); err != nil {
		return dst, err
	}
	cipher, err := s.newTopicCipher(key)
	if err != nil {
		return dst, err
	}
	out, err := cipher.Open(dst, protected[TimestampLen:], protected[:TimestampLen])
	if err != nil {
		return dst, s.authError()
	}
	return out, nil
}

// ProtectPubKey protects payload in the PK format, signed by signKey as
// sender, under the 32-byte topic key, at time now. It appends to dst.
func ProtectPubKey(dst, payload, topicKey []byte, sender ID, signKey ed25519.PrivateKey, now time.Time) ([]byte, error) {
	return V1.ProtectPubKey(dst, payload, topicKey, sender, signKey, now)
}

// ProtectPubKey is the package's ProtectPubKey under the suite's cipher.
func (s *Suite) ProtectPubKey(dst, payload, topicKey []byte, sender ID, signKey ed25519.PrivateKey, now time.Time) ([]byte, error) {
	if err := checkSymKey(topicKey); err != nil {
		return dst, err
	}
	if len(signKey) != ed25519.PrivateKeySize {
		return dst, fmt.Errorf("%w: Ed25519 private key must be %d bytes", ErrInvalidKey, ed25519.PrivateKeySize)
	}
	cipher, err := s.newTopicCipher(topicKey)
	if err != nil {
		return dst, err
	}
	return sealPK(dst, cipher, signKey, sender, payload, uint64(now.Unix())), nil
}

// UnprotectPubKey checks a PK-format message against a set of known signers
// (id to Ed25519 public key) and a 32-byte topic key, with the time checks of
// cfg (nil for the defaults), and appends the plaintext to dst. It keeps no
// replay state.
func UnprotectPubKey(dst, protected, topicKey []byte, signers map[ID]ed25519.PublicKey, cfg *Config) ([]byte, error) {
	return V1.UnprotectPubKey(dst, protected, topicKey, signers, cfg)
}

// UnprotectPubKey is the package's UnprotectPubKey under the suite's
// cipher; a failed decryption names the suite.
func (s *Suite) UnprotectPubKey(dst, protected, topicKey []byte, signers map[ID]ed25519.PublicKey, cfg *Config) ([]byte, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	if err := checkSymKey(topicKey); err != nil {
		return dst, err
	}
	lookup := func(id ID) *verifier {
		pub, ok := signers[id]
		if !ok {
			return nil
		}
		v, err := newVerifier(pub)
		if err != nil {
			return nil
		}
		return v
	}
	_, sealed, _, err := checkSigned(protected, cfg, cfg.now(), lookup)
	if err != nil {
		return dst, err
	}
	cipher, err := s.newTopicCipher(topicKey)
	if err != nil {
		return dst, err
	}
	out, err := cipher.Open(dst, sealed, protected[:TimestampLen])
	if err != nil {
		return dst, s.authError()
	}
	return out, nil
}
