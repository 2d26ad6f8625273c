// Package siv implements AES-SIV-CMAC deterministic authenticated encryption
// (RFC 5297) and the AES-CMAC message authentication code it is built on
// (RFC 4493), on AES from e4/internal/aesblock: assembly on amd64 (AES-NI)
// and arm64 (ARMv8 AES), pure Go elsewhere.
//
// Seal, Open and CMAC.Sum do not allocate when the destination has enough
// capacity, whatever the message length.
package siv

import (
	"crypto/subtle"
	"errors"
	"unsafe"

	"github.com/e4-iot/e4kit/e4/internal/aesblock"
)

// TagSize is the length of the synthetic IV that Seal prepends to the
// ciphertext.
const TagSize = 16

// maxAD is the largest number of associated data strings: RFC 5297 limits
// the S2V vector, which also holds the plaintext, to 127 strings because
// the security proof does not cover longer vectors.
const maxAD = 126

// ErrOpen is returned by Open when the input is not an authentic message
// for the given key and associated data.
var ErrOpen = errors.New("siv: message authentication failed")

// Cipher is AES-SIV-CMAC (RFC 5297). It holds only key material and a pool
// of scratch space, so a single *Cipher may be used by any number of
// goroutines at once.
type Cipher struct {
	mac CMAC            // S2V, keyed with the first half of the key
	ctr *aesblock.Block // CTR, keyed with the second half
	d0  [blockSize]byte
}

// New returns an AES-SIV-CMAC cipher. The key must be 32, 48 or 64 bytes:
// its first half keys S2V (AES-CMAC) and its second half keys AES-CTR, so
// the sizes select AES-128, AES-192 and AES-256 respectively.
func New(key []byte) (*Cipher, error) {
	return NewRounds(key, aesblock.StandardRounds(len(key)/2))
}

// NewRounds is New with AES of the given number of rounds in both S2V and
// CTR. With the standard count (10, 12 or 14 for 32, 48 or 64-byte keys)
// it is New, RFC 5297 AES-SIV. A smaller even count, down to 10, runs the
// same key expansion for fewer rounds: E4's fast mode is a 64-byte key
// with 10 rounds. Such a cipher is not AES-SIV and does not interoperate
// with one; it exists for that mode only.
func NewRounds(key []byte, rounds int) (*Cipher, error) {
	switch len(key) {
	case 32, 48, 64:
	default:
		return nil, errors.New("siv: invalid key size")
	}
	half := len(key) / 2
	c := new(Cipher)
	if err := c.mac.init(key[:half], rounds); err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(key[:half], key[half:]) == 1 {
		// E4 writes its 32-byte keys twice: one expanded key serves both.
		c.ctr = c.mac.block
	} else {
		b, err := aesblock.New(key[half:], rounds)
		if err != nil {
			return nil, errors.New("siv: " + err.Error())
		}
		c.ctr = b
	}
	// S2V always starts from D = CMAC(K, 0^128); it depends only on the
	// key, so it is computed once here instead of on every call.
	var zero [blockSize]byte
	c.mac.Sum(&c.d0, zero[:])
	return c, nil
}

// Overhead returns the difference between the lengths of a sealed message
// and its plaintext, which is TagSize.
func (c *Cipher) Overhead() int { return TagSize }

// Seal encrypts and authenticates plaintext together with the associated
// data strings ad (the RFC 5297 header vector, possibly empty), appends
// SIV || ciphertext to dst and returns the updated slice.
//
// The output must not overlap plaintext, except that it may start exactly
// TagSize bytes before it (dst = buf[:k] with plaintext = buf[k+TagSize:]);
// any other overlap panics. Seal panics if more than 126 associated data
// strings are given.
func (c *Cipher) Seal(dst, plaintext []byte, ad ...[]byte) []byte {
	if len(ad) > maxAD {
		panic("siv: too many associated data strings")
	}
	ret, out := sliceForAppend(dst, TagSize+len(plaintext))
	if anyOverlap(out[:TagSize], plaintext) || inexactOverlap(out[TagSize:], plaintext) {
		panic("siv: invalid buffer overlap")
	}
	var st state
	d := c.s2vHeaders(&st, ad)
	c.s2vFinal(&st, &d, plaintext)
	v := st.x
	copy(out, v[:])
	c.xorKeyStream(&st, &v, out[TagSize:], plaintext)
	st.wipe()
	return ret
}

// Open authenticates and decrypts sealed (SIV || ciphertext) with the
// associated data strings ad, appends the plaintext to dst and returns the
// updated slice. On failure it returns ErrOpen and zeroes the bytes it
// wrote after len(dst).
//
// To decrypt in place use dst = sealed[TagSize:TagSize]. Any other overlap
// between the output and the ciphertext panics.
func (c *Cipher) Open(dst, sealed []byte, ad ...[]byte) ([]byte, error) {
	if len(sealed) < TagSize || len(ad) > maxAD {
		return nil, ErrOpen
	}
	ct := sealed[TagSize:]
	ret, out := sliceForAppend(dst, len(ct))
	if inexactOverlap(out, ct) {
		panic("siv: invalid buffer overlap")
	}
	// Copy the tag and absorb ad before anything is written, so that the
	// output may overlap them.
	v := [TagSize]byte(sealed)
	var st state
	d := c.s2vHeaders(&st, ad)
	c.xorKeyStream(&st, &v, out, ct)
	c.s2vFinal(&st, &d, out)
	ok := subtle.ConstantTimeCompare(st.x[:], v[:]) == 1
	st.wipe()
	if !ok {
		clear(out)
		return nil, ErrOpen
	}
	return ret, nil
}

// s2vHeaders runs the part of S2V (RFC 5297 section 2.4) that covers the
// associated data and returns the accumulator D, ready for s2vFinal.
//
// An earlier version cached D for E4's single 8-byte timestamp in pooled
// state; with the AES call in assembly the pool's Get and Put cost more
// than the block they saved.
func (c *Cipher) s2vHeaders(st *state, ad [][]byte) [blockSize]byte {
	d := c.d0
	for _, s := range ad {
		if len(s) <= blockSize {
			// One block: CMAC is E(pad(s) xor K), as E4's timestamp is.
			var m [blockSize]byte
			copy(m[:], s)
			if len(s) == blockSize {
				xor16(&m, &c.mac.k1)
			} else {
				m[len(s)] = 0x80
				xor16(&m, &c.mac.k2)
			}
			c.mac.block.Encrypt(&st.x, &m)
			clear(m[:]) // holds K1 or K2
		} else {
			st.reset()
			c.mac.write(st, s)
			c.mac.finish(st)
		}
		dbl(&d)
		xor16(&d, &st.x)
	}
	return d
}

// s2vFinal absorbs the plaintext p into S2V, leaving the SIV in st.x.
//
// It is CMAC(T) written out so that the whole message takes two calls of
// the assembly chain: the whole blocks that the final mask does not touch
// straight from p, then the last one or two blocks, masked, from a stack
// buffer (the CMAC of the final masked block is one more CBC-MAC step).
func (c *Cipher) s2vFinal(st *state, d *[blockSize]byte, p []byte) {
	st.reset()
	head := s2vHead(len(p))
	c.mac.block.MAC(&st.x, p[:head])
	last, n := c.s2vLast(d, p[head:])
	c.mac.block.MAC(&st.x, last[:n])
	clear(last[:])
}

// s2vHead returns how many leading bytes of an n-byte plaintext S2V chains
// as they are: the whole blocks before the last 16 to 31 bytes, which D
// and the final CMAC mask touch.
func s2vHead(n int) int {
	if n < blockSize {
		return 0
	}
	return (n - blockSize) &^ (blockSize - 1)
}

// s2vLast returns the last one or two blocks of S2V's CMAC input, masked,
// and their length, for rest = p[s2vHead(len(p)):].
func (c *Cipher) s2vLast(d *[blockSize]byte, rest []byte) (last [2 * blockSize]byte, n int) {
	if len(rest) < blockSize {
		// T = dbl(D) xor pad(p), one whole block, so masked with K1.
		dbl(d)
		copy(last[:], rest)
		last[len(rest)] = 0x80
		xor16((*[blockSize]byte)(last[:]), d)
		xor16((*[blockSize]byte)(last[:]), &c.mac.k1)
		return last, blockSize
	}
	// T = p xorend D: D covers the last 16 of these 16 to 31 bytes.
	n = copy(last[:], rest)
	xor16((*[blockSize]byte)(last[n-blockSize:n]), d)
	if n == blockSize {
		xor16((*[blockSize]byte)(last[:]), &c.mac.k1)
		return last, blockSize
	}
	last[n] = 0x80
	xor16((*[blockSize]byte)(last[blockSize:]), &c.mac.k2)
	return last, 2 * blockSize
}

// sliceForAppend extends in by n bytes, reallocating only if its capacity
// is too small, and returns the whole slice and the new tail.
func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	tail = head[len(in):]
	return head, tail
}

// anyOverlap reports whether x and y share memory.
func anyOverlap(x, y []byte) bool {
	return len(x) > 0 && len(y) > 0 &&
		uintptr(unsafe.Pointer(&x[0])) <= uintptr(unsafe.Pointer(&y[len(y)-1])) &&
		uintptr(unsafe.Pointer(&y[0])) <= uintptr(unsafe.Pointer(&x[len(x)-1]))
}

// inexactOverlap reports whether x and y share memory without starting at
// the same address; exact overlap is safe for a front-to-back XOR.
func inexactOverlap(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 || &x[0] == &y[0] {
		return false
	}
	return anyOverlap(x, y)
}
