package aesblock

import (
	"encoding/binary"
	"math/bits"
)

// te0..te3 combine SubBytes and MixColumns for one input byte, one table
// per row position (te[k] is te0 rotated right by 8k bits).
var te0, te1, te2, te3 [256]uint32

func init() {
	for i, s := range sbox {
		s2 := xtime(s)
		w := uint32(s2)<<24 | uint32(s)<<16 | uint32(s)<<8 | uint32(s2^s)
		te0[i] = w
		te1[i] = bits.RotateLeft32(w, -8)
		te2[i] = bits.RotateLeft32(w, -16)
		te3[i] = bits.RotateLeft32(w, -24)
	}
}

// xtime multiplies by x in GF(2^8) modulo the AES polynomial.
func xtime(b byte) byte {
	return b<<1 ^ byte(int8(b)>>7)&0x1b
}

// encryptGo encrypts src into dst with nr rounds under the round keys xk.
// It is the table-driven form of FIPS-197 section 5.1, the same technique
// as crypto/aes's portable code.
func encryptGo(xk []byte, nr int, dst, src *[BlockSize]byte) {
	_ = xk[(nr+1)*BlockSize-1]
	k := func(i int) uint32 { return binary.BigEndian.Uint32(xk[4*i:]) }
	s0 := binary.BigEndian.Uint32(src[0:]) ^ k(0)
	s1 := binary.BigEndian.Uint32(src[4:]) ^ k(1)
	s2 := binary.BigEndian.Uint32(src[8:]) ^ k(2)
	s3 := binary.BigEndian.Uint32(src[12:]) ^ k(3)
	for r := 1; r < nr; r++ {
		t0 := te0[s0>>24] ^ te1[s1>>16&0xff] ^ te2[s2>>8&0xff] ^ te3[s3&0xff] ^ k(4*r)
		t1 := te0[s1>>24] ^ te1[s2>>16&0xff] ^ te2[s3>>8&0xff] ^ te3[s0&0xff] ^ k(4*r+1)
		t2 := te0[s2>>24] ^ te1[s3>>16&0xff] ^ te2[s0>>8&0xff] ^ te3[s1&0xff] ^ k(4*r+2)
		t3 := te0[s3>>24] ^ te1[s0>>16&0xff] ^ te2[s1>>8&0xff] ^ te3[s2&0xff] ^ k(4*r+3)
		s0, s1, s2, s3 = t0, t1, t2, t3
	}
	// Last round: SubBytes and ShiftRows without MixColumns.
	last := func(a, b, c, d uint32) uint32 {
		return uint32(sbox[a>>24])<<24 | uint32(sbox[b>>16&0xff])<<16 |
			uint32(sbox[c>>8&0xff])<<8 | uint32(sbox[d&0xff])
	}
	binary.BigEndian.PutUint32(dst[0:], last(s0, s1, s2, s3)^k(4*nr))
	binary.BigEndian.PutUint32(dst[4:], last(s1, s2, s3, s0)^k(4*nr+1))
	binary.BigEndian.PutUint32(dst[8:], last(s2, s3, s0, s1)^k(4*nr+2))
	binary.BigEndian.PutUint32(dst[12:], last(s3, s0, s1, s2)^k(4*nr+3))
}
