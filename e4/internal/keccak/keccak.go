// Package keccak is Keccak-p[1600, nr], the Keccak permutation with a
// round-count parameter, and SHA3-256 built on it, for E4's fast mode.
//
// Which rounds: FIPS 202 section 3.3 defines Keccak-p[b, nr] as the LAST nr
// rounds of Keccak-f[b]: round indices 12+2l-nr to 12+2l-1, which for
// b = 1600 (l = 6) and nr = 10 are rounds 14 to 23, with the standard round
// constants of those rounds (RC[14] = 0x800000000000008b to RC[23] =
// 0x8000000080008008). KangarooTwelve and TurboSHAKE reduce Keccak the same
// way (the last 12 rounds), as does the Too Much Crypto paper's Keccak
// proposal. With nr = 24 the permutation is Keccak-f[1600] and Sum256 is
// FIPS 202 SHA3-256.
//
// This package is not constant-time-sensitive: Keccak has no secret-indexed
// memory access, and every operation here runs in time independent of the
// data.
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

// The rho-pi walk: starting at lane (1, 0), lane i of the walk moves to
// piLanes[i] rotated by rhoOffsets[i] (lanes indexed x + 5y).
var (
	rhoOffsets = [24]int{1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44}
	piLanes    = [24]int{10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1}
)

// Permute applies Keccak-p[1600, rounds] to the state a (lane (x, y) at
// a[x+5y], each lane little-endian as in FIPS 202): the last rounds rounds
// of Keccak-f[1600]. rounds must be between 1 and 24.
func Permute(a *[25]uint64, rounds int) {
	if rounds < 1 || rounds > FullRounds {
		panic(fmt.Sprintf("keccak: %d rounds, want 1 to %d", rounds, FullRounds))
	}
	for r := FullRounds - rounds; r < FullRounds; r++ {
		round(a, roundConstants[r])
	}
}

// round is one Keccak round: theta, rho and pi together, chi, iota.
func round(a *[25]uint64, rc uint64) {
	var c [5]uint64
	for x := range 5 {
		c[x] = a[x] ^ a[x+5] ^ a[x+10] ^ a[x+15] ^ a[x+20]
	}
	for x := range 5 {
		d := c[(x+4)%5] ^ bits.RotateLeft64(c[(x+1)%5], 1)
		for y := 0; y < 25; y += 5 {
			a[y+x] ^= d
		}
	}
	t := a[1]
	for i, j := range piLanes {
		t, a[j] = a[j], bits.RotateLeft64(t, rhoOffsets[i])
	}
	for y := 0; y < 25; y += 5 {
		b0, b1, b2, b3, b4 := a[y], a[y+1], a[y+2], a[y+3], a[y+4]
		a[y] = b0 ^ (^b1 & b2)
		a[y+1] = b1 ^ (^b2 & b3)
		a[y+2] = b2 ^ (^b3 & b4)
		a[y+3] = b3 ^ (^b4 & b0)
		a[y+4] = b4 ^ (^b0 & b1)
	}
	a[0] ^= rc
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
