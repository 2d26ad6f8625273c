package siv

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"sync"
)

const blockSize = aes.BlockSize

// state is the working memory of one CMAC or SIV computation.
//
// It is pooled rather than kept on the stack because every buffer handed to
// a cipher.Block method (an interface call) escapes to the heap; recycling
// it keeps Sum, Seal and Open free of allocations. Only memory owned by
// state is ever passed to those methods, so callers' buffers, the
// associated data in particular, do not escape through the CMAC code.
type state struct {
	x   [blockSize]byte // CBC-MAC chaining value; the tag after finish
	buf [blockSize]byte // last block seen so far, held back until finish
	n   int             // number of bytes in buf
	iv  [blockSize]byte // CTR initial counter block (Cipher only)
	tmp [ctrMax]byte    // short-message CTR keystream (Cipher only)
	// used is how much of tmp holds keystream; put wipes only that much,
	// so short messages do not pay for clearing all of tmp.
	used int
	// header caches S2V's accumulator after a single short associated-data
	// string (Cipher only); see Cipher.s2vHeaders.
	header headerCache
}

// CMAC computes AES-CMAC (RFC 4493). Besides the key material it holds
// only a sync.Pool of scratch space, so a single *CMAC may be used by any
// number of goroutines at once.
type CMAC struct {
	block  cipher.Block
	k1, k2 [blockSize]byte
	pool   sync.Pool // of *state
}

// NewCMAC returns an AES-CMAC instance for a 16, 24 or 32 byte key.
func NewCMAC(key []byte) (*CMAC, error) {
	c := new(CMAC)
	if err := c.init(key); err != nil {
		return nil, err
	}
	return c, nil
}

// init sets up c in place; CMAC contains a sync.Pool and must not be copied,
// so Cipher embeds one and initialises it through this method.
func (c *CMAC) init(key []byte) error {
	switch len(key) {
	case 16, 24, 32:
	default:
		return errors.New("siv: invalid CMAC key size")
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return errors.New("siv: " + err.Error())
	}
	c.block = b
	// RFC 4493 section 2.3: K1 = dbl(E(0)), K2 = dbl(K1).
	b.Encrypt(c.k1[:], c.k1[:])
	dbl(&c.k1)
	c.k2 = c.k1
	dbl(&c.k2)
	c.pool.New = newState
	return nil
}

// newState is the pool constructor; states are reset by get.
func newState() any { return new(state) }

// get returns a reset state from the pool.
func (c *CMAC) get() *state {
	st := c.pool.Get().(*state)
	st.reset()
	return st
}

// put wipes the secret-dependent parts of st and returns it to the pool.
func (c *CMAC) put(st *state) {
	st.reset()
	clear(st.iv[:])
	clear(st.tmp[:st.used])
	st.used = 0
	c.pool.Put(st)
}

func (st *state) reset() {
	clear(st.x[:])
	clear(st.buf[:])
	st.n = 0
}

// Sum writes the AES-CMAC of msg to dst. It does not allocate.
func (c *CMAC) Sum(dst *[16]byte, msg []byte) {
	st := c.get()
	c.write(st, msg)
	c.finish(st)
	*dst = st.x
	c.put(st)
}

// write absorbs p. The last block seen so far is always held back in st.buf
// because only at finish is it known whether it is the final block, which
// is the one that gets K1 or K2 mixed in.
func (c *CMAC) write(st *state, p []byte) {
	if st.n < blockSize {
		k := copy(st.buf[st.n:], p)
		st.n += k
		p = p[k:]
	}
	if len(p) == 0 {
		return
	}
	// More data follows, so the held-back block is not the last one.
	c.chain(st, st.buf[:])
	full := (len(p) - 1) &^ (blockSize - 1) // keep 1..16 bytes back
	c.chain(st, p[:full])
	st.n = copy(st.buf[:], p[full:])
}

// finish pads and masks the held-back block and leaves the tag in st.x.
func (c *CMAC) finish(st *state) {
	if st.n == blockSize {
		subtle.XORBytes(st.buf[:], st.buf[:], c.k1[:])
	} else {
		clear(st.buf[st.n:])
		st.buf[st.n] = 0x80
		subtle.XORBytes(st.buf[:], st.buf[:], c.k2[:])
	}
	subtle.XORBytes(st.x[:], st.x[:], st.buf[:])
	c.block.Encrypt(st.x[:], st.x[:])
}

// chain runs the CBC-MAC chain over p, whose length is a multiple of the
// block size.
//
// The chain is bound by the latency of one AES encryption per block. A
// pooled cipher.NewCBCEncrypter (reset with its SetIV method) runs the same
// loop inside the standard library and measured no faster on amd64, so this
// plain loop is used and the package keeps no mutable cipher state;
// BenchmarkChainCBC16K in siv_test.go keeps that comparison reproducible.
func (c *CMAC) chain(st *state, p []byte) {
	for ; len(p) > 0; p = p[blockSize:] {
		subtle.XORBytes(st.x[:], st.x[:], p[:blockSize])
		c.block.Encrypt(st.x[:], st.x[:])
	}
}

// dbl multiplies b by x in GF(2^128) (RFC 5297 "dbl", RFC 4493 subkey
// generation) in constant time.
func dbl(b *[blockSize]byte) {
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	mask := -(hi >> 63) // all ones if the top bit is set
	hi = hi<<1 | lo>>63
	lo = lo<<1 ^ mask&0x87
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
}
