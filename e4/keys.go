package e4

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha512"
	"crypto/subtle"
	"fmt"

	"filippo.io/edwards25519"
	"github.com/e4-iot/e4kit/e4/internal/check"
)

// Ed25519KeyFromPassword derives an Ed25519 private key from a password as
// E4 v1 does: the Argon2i output of KeyFromPassword is the 32-byte seed.
func Ed25519KeyFromPassword(password string) (ed25519.PrivateKey, error) {
	seed, err := KeyFromPassword(password)
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// X25519PrivateFromEd25519 converts an Ed25519 private key to the X25519
// private key with the same secret scalar: the first 32 bytes of
// SHA-512(seed), clamped.
func X25519PrivateFromEd25519(priv ed25519.PrivateKey) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: Ed25519 private key must be %d bytes", ErrInvalidKey, ed25519.PrivateKeySize)
	}
	h := sha512.Sum512(priv.Seed())
	s := h[:32]
	s[0] &= 248
	s[31] &= 127
	s[31] |= 64
	return s, nil
}

// X25519PublicFromEd25519 maps an Ed25519 public key to the Montgomery
// u-coordinate of the same point, the X25519 public key: u = (1+y)/(1-y).
func X25519PublicFromEd25519(pub []byte) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: Ed25519 public key must be %d bytes", ErrInvalidKey, ed25519.PublicKeySize)
	}
	p, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: Ed25519 public key is not a valid point", ErrInvalidKey)
	}
	return p.BytesMontgomery(), nil
}

// commandKeyPK computes the PK-mode command key on either side:
// SHA3-256(X25519(priv, pub)), with the suite's SHA3-256.
func (s *Suite) commandKeyPK(x25519Priv, x25519Pub []byte) ([]byte, error) {
	priv, err := ecdh.X25519().NewPrivateKey(x25519Priv)
	if err != nil {
		return nil, fmt.Errorf("%w: X25519 private key: %v", ErrInvalidKey, err)
	}
	pub, err := ecdh.X25519().NewPublicKey(x25519Pub)
	if err != nil {
		return nil, fmt.Errorf("%w: X25519 public key: %v", ErrInvalidKey, err)
	}
	shared, err := priv.ECDH(pub)
	if err != nil {
		// crypto/ecdh refuses low-order points (all-zero shared secret).
		return nil, fmt.Errorf("%w: X25519 public key has low order", ErrInvalidKey)
	}
	sum := s.orV1().sum256(shared)
	return sum[:], nil
}

// ClientCommandKey returns the PK-mode command key as the client computes
// it, from its Ed25519 private key and C2's X25519 public key.
func ClientCommandKey(clientPriv ed25519.PrivateKey, c2Public []byte) ([]byte, error) {
	return V1.ClientCommandKey(clientPriv, c2Public)
}

// C2CommandKey returns the PK-mode command key as C2 computes it, from its
// X25519 private key and the client's Ed25519 public key.
func C2CommandKey(c2Private, clientPublic []byte) ([]byte, error) {
	return V1.C2CommandKey(c2Private, clientPublic)
}

// verifier checks Ed25519 signatures of one known signer. It keeps the
// decoded, negated public point so that each verification skips the point
// decompression that ed25519.Verify repeats on every call; the equation and
// the checks are those of crypto/ed25519 (RFC 8032, cofactorless).
type verifier struct {
	public ed25519.PublicKey
	negA   edwards25519.Point
}

// CheckPublicKey reports whether pub can be trusted as an Ed25519 sender key:
// 32 bytes, the canonical encoding of a curve point, and not a point of
// small order. With a small-order key (the identity point among them),
// signatures verify for messages their "signer" never held a private key
// for, so anyone holding the topic key could send as that client. Errors
// wrap ErrInvalidKey. C2 and devices use this one check.
func CheckPublicKey(pub []byte) error {
	_, err := check.PublicKey(pub)
	return err
}

// CheckSymKey reports whether key can be used as an E4 symmetric key (topic
// or client key): 32 bytes, not all zero. Errors wrap ErrInvalidKey.
func CheckSymKey(key []byte) error { return check.SymKey(key) }

func newVerifier(pub []byte) (*verifier, error) {
	A, err := check.PublicKey(pub)
	if err != nil {
		return nil, err
	}
	v := &verifier{public: ed25519.PublicKey(append([]byte(nil), pub...))}
	v.negA.Negate(A)
	return v, nil
}

// verify reports whether sig is a valid signature of msg.
func (v *verifier) verify(msg, sig []byte) bool {
	if len(sig) != ed25519.SignatureSize || sig[63]&224 != 0 {
		return false
	}
	h := sha512.New()
	h.Write(sig[:32])
	h.Write(v.public)
	h.Write(msg)
	var digest [64]byte
	k, err := new(edwards25519.Scalar).SetUniformBytes(h.Sum(digest[:0]))
	if err != nil {
		return false
	}
	S, err := new(edwards25519.Scalar).SetCanonicalBytes(sig[32:])
	if err != nil {
		return false
	}
	// R' = [S]B - [k]A must encode to R.
	var R edwards25519.Point
	R.VarTimeDoubleScalarBaseMult(k, &v.negA, S)
	return subtle.ConstantTimeCompare(R.Bytes(), sig[:32]) == 1
}
