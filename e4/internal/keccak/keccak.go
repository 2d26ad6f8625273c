// Package keccak is Keccak-p[1600, nr], the Keccak permutation with a
// round-count parameter, and SHA3-256 built on it, for E4's fast mode.
//
// Which rounds: FIPS 202 section 3.3 defines Keccak-p[b, nr] as the LAST nr
// rounds of Keccak-f[b]: round indices 12+2l-nr to 12+2l-1, which for
// b = 1600 (l = 6) and nr = 10 are rounds 14 to 23, with the standard round
// constants of those rounds (RC[14] = 0x8000000000008089 to RC[23] =
// 0x8000000080008008). KangarooTwelve and TurboSHAKE (RFC 9861) reduce
// Keccak the same way, to its last 12 rounds. With nr = 24 the permutation
// is Keccak-f[1600] and Sum256 is FIPS 202 SHA3-256.
//
// Keccak has no data-dependent branch or memory access, so this code runs
// in time independent of its input.
package keccak

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// FullRounds is the round count of Keccak-f[1600].
const FullRounds = 24

// Rate256 is the SHA3-256 rate in bytes (1600 - 2*256 bits).
const Rate256 = 136

// Size256 is the SHA3-256 digest size in bytes.
const Size256 = 32

// roundConstants are the iota constants RC[0..23] of FIPS 202 (Algorithm 6).
var roundConstants = [FullRounds]uint64{
	0x0000000000000001, 0x0000000000008082, 0x800000000000808a, 0x8000000080008000,
	0x000000000000808b, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
	0x000000000000008a, 0x0000000000000088, 0x0000000080008009, 0x000000008000000a,
	0x000000008000808b, 0x800000000000008b, 0x8000000000008089, 0x8000000000008003,
	0x8000000000008002, 0x8000000000000080, 0x000000000000800a, 0x800000008000000a,
	0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
}

// Permute applies Keccak-p[1600, rounds] to the state a (lane (x, y) at
// a[x+5y], each lane little-endian as in FIPS 202): the last rounds rounds
// of Keccak-f[1600]. rounds must be between 1 and 24.
func Permute(a *[25]uint64, rounds int) {
	if rounds < 1 || rounds > FullRounds {
		panic(fmt.Sprintf("keccak: %d rounds, want 1 to %d", rounds, FullRounds))
	}
	permute(a, FullRounds-rounds)
}

// permute is Keccak-p[1600] on the state a for rounds r0 to 23 (the
// last 24-r0 rounds), with the 25 lanes in local variables. Lane (x, y)
// is a[x+5y]. Each round is written out: theta's column parities and
// their mix, then rho and pi as one step (lane (x, y), rotated by its
// rho offset, moves to (y, 2x+3y mod 5)), then chi row by row, then iota.
func permute(a *[25]uint64, r0 int) {
	a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19, a20, a21, a22, a23, a24 := a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15], a[16], a[17], a[18], a[19], a[20], a[21], a[22], a[23], a[24]
	for _, rc := range roundConstants[r0:] {
		c0 := a0 ^ a5 ^ a10 ^ a15 ^ a20
		c1 := a1 ^ a6 ^ a11 ^ a16 ^ a21
		c2 := a2 ^ a7 ^ a12 ^ a17 ^ a22
		c3 := a3 ^ a8 ^ a13 ^ a18 ^ a23
		c4 := a4 ^ a9 ^ a14 ^ a19 ^ a24
		d0 := c4 ^ bits.RotateLeft64(c1, 1)
		d1 := c0 ^ bits.RotateLeft64(c2, 1)
		d2 := c1 ^ bits.RotateLeft64(c3, 1)
		d3 := c2 ^ bits.RotateLeft64(c4, 1)
		d4 := c3 ^ bits.RotateLeft64(c0, 1)
		b0 := a0 ^ d0
		b16 := bits.RotateLeft64(a5^d0, 36)
		b7 := bits.RotateLeft64(a10^d0, 3)
		b23 := bits.RotateLeft64(a15^d0, 41)
		b14 := bits.RotateLeft64(a20^d0, 18)
		b10 := bits.RotateLeft64(a1^d1, 1)
		b1 := bits.RotateLeft64(a6^d1, 44)
		b17 := bits.RotateLeft64(a11^d1, 10)
		b8 := bits.RotateLeft64(a16^d1, 45)
		b24 := bits.RotateLeft64(a21^d1, 2)
		b20 := bits.RotateLeft64(a2^d2, 62)
		b11 := bits.RotateLeft64(a7^d2, 6)
		b2 := bits.RotateLeft64(a12^d2, 43)
		b18 := bits.RotateLeft64(a17^d2, 15)
		b9 := bits.RotateLeft64(a22^d2, 61)
		b5 := bits.RotateLeft64(a3^d3, 28)
		b21 := bits.RotateLeft64(a8^d3, 55)
		b12 := bits.RotateLeft64(a13^d3, 25)
		b3 := bits.RotateLeft64(a18^d3, 21)
		b19 := bits.RotateLeft64(a23^d3, 56)
		b15 := bits.RotateLeft64(a4^d4, 27)
		b6 := bits.RotateLeft64(a9^d4, 20)
		b22 := bits.RotateLeft64(a14^d4, 39)
		b13 := bits.RotateLeft64(a19^d4, 8)
		b4 := bits.RotateLeft64(a24^d4, 14)
		a0 = b0 ^ (^b1 & b2)
		a1 = b1 ^ (^b2 & b3)
		a2 = b2 ^ (^b3 & b4)
		a3 = b3 ^ (^b4 & b0)
		a4 = b4 ^ (^b0 & b1)
		a5 = b5 ^ (^b6 & b7)
		a6 = b6 ^ (^b7 & b8)
		a7 = b7 ^ (^b8 & b9)
		a8 = b8 ^ (^b9 & b5)
		a9 = b9 ^ (^b5 & b6)
		a10 = b10 ^ (^b11 & b12)
		a11 = b11 ^ (^b12 & b13)
		a12 = b12 ^ (^b13 & b14)
		a13 = b13 ^ (^b14 & b10)
		a14 = b14 ^ (^b10 & b11)
		a15 = b15 ^ (^b16 & b17)
		a16 = b16 ^ (^b17 & b18)
		a17 = b17 ^ (^b18 & b19)
		a18 = b18 ^ (^b19 & b15)
		a19 = b19 ^ (^b15 & b16)
		a20 = b20 ^ (^b21 & b22)
		a21 = b21 ^ (^b22 & b23)
		a22 = b22 ^ (^b23 & b24)
		a23 = b23 ^ (^b24 & b20)
		a24 = b24 ^ (^b20 & b21)
		a0 ^= rc
	}
	a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15], a[16], a[17], a[18], a[19], a[20], a[21], a[22], a[23], a[24] = a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19, a20, a21, a22, a23, a24
}

// Sum256 returns SHA3-256 of data computed on Keccak-p[1600, rounds]:
// the FIPS 202 sponge (rate 136 bytes, domain bits 01, pad10*1) with the
// permutation reduced to its last rounds rounds. Sum256(data, 24) is
// SHA3-256.
func Sum256(data []byte, rounds int) [Size256]byte {
	var a [25]uint64
	for len(data) >= Rate256 {
		absorb(&a, data[:Rate256])
		Permute(&a, rounds)
		data = data[Rate256:]
	}
	var last [Rate256]byte
	copy(last[:], data)
	last[len(data)] ^= 0x06 // SHA-3 domain bits 01, then the first pad bit
	last[Rate256-1] ^= 0x80 // the last pad bit
	absorb(&a, last[:])
	Permute(&a, rounds)
	var out [Size256]byte
	for i := range Size256 / 8 {
		binary.LittleEndian.PutUint64(out[8*i:], a[i])
	}
	return out
}

// absorb XORs one rate-sized block into the state.
func absorb(a *[25]uint64, block []byte) {
	for i := range Rate256 / 8 {
		a[i] ^= binary.LittleEndian.Uint64(block[8*i:])
	}
}
