// Package siv implements AES-SIV-CMAC deterministic authenticated encryption
// (RFC 5297) and the AES-CMAC message authentication code it is built on
// (RFC 4493), on top of crypto/aes.
//
// Seal, Open and CMAC.Sum do not allocate for short messages when the
// destination has enough capacity; see ctrMax for the one allocation made
// for long messages.
package siv

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"errors"
	"unsafe"
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
	mac CMAC         // S2V, keyed with the first half of the key
	ctr cipher.Block // CTR, keyed with the second half
	d0  [blockSize]byte
}

// New returns an AES-SIV-CMAC cipher. The key must be 32, 48 or 64 bytes:
// its first half keys S2V (AES-CMAC) and its second half keys AES-CTR, so
// the sizes select AES-128, AES-192 and AES-256 respectively.
func New(key []byte) (*Cipher, error) {
	switch len(key) {
	case 32, 48, 64:
	default:
		return nil, errors.New("siv: invalid key size")
	}
	half := len(key) / 2
	c := new(Cipher)
	if err := c.mac.init(key[:half]); err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(key[half:])
	if err != nil {
		return nil, errors.New("siv: " + err.Error())
	}
	c.ctr = b
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
	st := c.mac.get()
	d := c.s2vHeaders(st, ad)
	c.s2vFinal(st, &d, plaintext)
	v := st.x
	copy(out, v[:])
	c.xorKeyStream(st, &v, out[TagSize:], plaintext)
	c.mac.put(st)
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
	st := c.mac.get()
	d := c.s2vHeaders(st, ad)
	c.xorKeyStream(st, &v, out, ct)
	c.s2vFinal(st, &d, out)
	ok := subtle.ConstantTimeCompare(st.x[:], v[:]) == 1
	c.mac.put(st)
	if !ok {
		clear(out)
		return nil, ErrOpen
	}
	return ret, nil
}

// headerCache remembers S2V's accumulator D for one associated-data string
// of at most one block. E4 passes a single 8-byte timestamp, which is the
// same for every message of the same second, so a sender or receiver busy
// enough for speed to matter skips one AES call per message. It lives in
// the pooled state, which a goroutine usually gets back on its next call,
// so it needs no locking and allocates nothing.
type headerCache struct {
	ad    [blockSize]byte
	adLen int
	valid bool
	d     [blockSize]byte
}

// lookup returns the cached D for ad, if any.
func (h *headerCache) lookup(ad []byte) ([blockSize]byte, bool) {
	if h.valid && h.adLen == len(ad) && h.ad == pad16(ad) {
		return h.d, true
	}
	return [blockSize]byte{}, false
}

func (h *headerCache) store(ad []byte, d [blockSize]byte) {
	h.ad, h.adLen, h.valid, h.d = pad16(ad), len(ad), true, d
}

// pad16 copies a string of at most one block into a zero-padded block.
func pad16(b []byte) (out [blockSize]byte) {
	copy(out[:], b)
	return out
}

// s2vHeaders runs the part of S2V (RFC 5297 section 2.4) that covers the
// associated data and returns the accumulator D, ready for s2vFinal.
func (c *Cipher) s2vHeaders(st *state, ad [][]byte) [blockSize]byte {
	cacheable := len(ad) == 1 && len(ad[0]) <= blockSize
	if cacheable {
		if d, ok := st.header.lookup(ad[0]); ok {
			return d
		}
	}
	d := c.d0
	for _, s := range ad {
		st.reset()
		c.mac.write(st, s)
		c.mac.finish(st)
		dbl(&d)
		subtle.XORBytes(d[:], d[:], st.x[:])
	}
	if cacheable {
		st.header.store(ad[0], d)
	}
	return d
}

// s2vFinal absorbs the plaintext p into S2V, leaving the SIV in st.x.
func (c *Cipher) s2vFinal(st *state, d *[blockSize]byte, p []byte) {
	st.reset()
	if len(p) < blockSize {
		// T = dbl(D) xor pad(p)
		dbl(d)
		subtle.XORBytes(d[:], d[:], p)
		d[len(p)] ^= 0x80
		c.mac.write(st, d[:])
	} else {
		// T = p xorend D, streamed so that p is never copied: everything
		// but the last block goes straight in, then the masked last block.
		n := len(p) - blockSize
		c.mac.write(st, p[:n])
		var last [blockSize]byte
		subtle.XORBytes(last[:], p[n:], d[:])
		c.mac.write(st, last[:])
	}
	c.mac.finish(st)
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
