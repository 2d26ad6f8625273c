package siv

import (
	"encoding/binary"
	"errors"

	"github.com/e4-iot/e4kit/e4/internal/aesblock"
)

const blockSize = aesblock.BlockSize

// state is the working memory of one CMAC or SIV computation. It lives on
// the caller's stack: the aesblock entry points do not let their arguments
// escape, so nothing here needs the heap (an earlier version pooled it,
// because cipher.Block's interface methods made every buffer escape).
type state struct {
	x   [blockSize]byte // CBC-MAC chaining value; the tag after finish
	buf [blockSize]byte // last block seen so far, held back until finish
	n   int             // number of bytes in buf
	iv  [blockSize]byte // CTR initial counter block (Cipher only)
}

// CMAC computes AES-CMAC (RFC 4493). It holds only key material, so a
// single *CMAC may be used by any number of goroutines at once.
type CMAC struct {
	block  *aesblock.Block
	k1, k2 [blockSize]byte
}

// NewCMAC returns an AES-CMAC instance for a 16, 24 or 32 byte key.
func NewCMAC(key []byte) (*CMAC, error) {
	c := new(CMAC)
	if err := c.init(key, aesblock.StandardRounds(len(key))); err != nil {
		return nil, err
	}
	return c, nil
}

// init sets up c in place with an AES of the given round count.
func (c *CMAC) init(key []byte, rounds int) error {
	switch len(key) {
	case 16, 24, 32:
	default:
		return errors.New("siv: invalid CMAC key size")
	}
	b, err := aesblock.New(key, rounds)
	if err != nil {
		return errors.New("siv: " + err.Error())
	}
	c.initBlock(b)
	return nil
}

// initBlock sets up c in place for an expanded key.
func (c *CMAC) initBlock(b *aesblock.Block) {
	c.block = b
	// RFC 4493 section 2.3: K1 = dbl(E(0)), K2 = dbl(K1).
	b.Encrypt(&c.k1, &c.k1)
	dbl(&c.k1)
	c.k2 = c.k1
	dbl(&c.k2)
}

// wipe clears st, which holds message- and key-dependent values (the held
// back block is masked with K1 or K2), before its stack memory is left.
func (st *state) wipe() {
	st.reset()
	clear(st.iv[:])
}

func (st *state) reset() {
	clear(st.x[:])
	clear(st.buf[:])
	st.n = 0
}

// Sum writes the AES-CMAC of msg to dst. It does not allocate.
func (c *CMAC) Sum(dst *[16]byte, msg []byte) {
	var st state
	c.write(&st, msg)
	c.finish(&st)
	*dst = st.x
	st.wipe()
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
		xor16(&st.buf, &c.k1)
	} else {
		clear(st.buf[st.n:])
		st.buf[st.n] = 0x80
		xor16(&st.buf, &c.k2)
	}
	xor16(&st.x, &st.buf)
	c.block.Encrypt(&st.x, &st.x)
}

// chain runs the CBC-MAC chain over p, whose length is a multiple of the
// block size. On amd64 and arm64 it is one assembly loop that keeps the
// chaining value and the round keys in registers, so each block costs the
// latency of the AES instructions and nothing more.
func (c *CMAC) chain(st *state, p []byte) {
	c.block.MAC(&st.x, p)
}

// xor16 sets dst to dst xor src. It is plain Go on two words, cheaper for
// one block than subtle.XORBytes with its length and overlap checks.
func xor16(dst, src *[blockSize]byte) {
	a := binary.NativeEndian.Uint64(dst[:8]) ^ binary.NativeEndian.Uint64(src[:8])
	b := binary.NativeEndian.Uint64(dst[8:]) ^ binary.NativeEndian.Uint64(src[8:])
	binary.NativeEndian.PutUint64(dst[:8], a)
	binary.NativeEndian.PutUint64(dst[8:], b)
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
