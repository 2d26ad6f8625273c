package e4

import (
	"bytes"
	"crypto/aes"
	"encoding/binary"
	mathrand "math/rand/v2"
	"testing"
	"time"
)

// An independent, deliberately plain AES-SIV with a round count, written
// from FIPS 197 and RFCs 4493 and 5297 for this test only: the S-box is
// computed from the field inverse and the affine map, the state is a byte
// array, CMAC and S2V follow the RFC pseudo-code. It shares nothing with
// package siv or aesblock, so that Fast's messages are checked against a
// second reading of its definition (PROTOCOL-EXTENSIONS.md), not only
// against vectors the implementation itself produced.

func refGFMul(a, b byte) byte {
	var p byte
	for range 8 {
		if b&1 != 0 {
			p ^= a
		}
		hi := a & 0x80
		a <<= 1
		if hi != 0 {
			a ^= 0x1b
		}
		b >>= 1
	}
	return p
}

var refSbox = func() (s [256]byte) {
	for x := range 256 {
		inv := byte(0) // x^254 is the inverse, and 0 maps to 0
		if x != 0 {
			inv = 1
			for range 254 {
				inv = refGFMul(inv, byte(x))
			}
		}
		rot := func(b byte, n int) byte { return b<<n | b>>(8-n) }
		s[x] = inv ^ rot(inv, 1) ^ rot(inv, 2) ^ rot(inv, 3) ^ rot(inv, 4) ^ 0x63
	}
	return s
}()

// refExpand is the FIPS 197 key expansion for a key of Nk words, run for
// nr+1 round keys.
func refExpand(key []byte, nr int) [][16]byte {
	nk := len(key) / 4
	w := make([][4]byte, 4*(nr+1))
	rcon := byte(1)
	for i := range w {
		if i < nk {
			copy(w[i][:], key[4*i:])
			continue
		}
		t := w[i-1]
		if i%nk == 0 {
			t = [4]byte{refSbox[t[1]] ^ rcon, refSbox[t[2]], refSbox[t[3]], refSbox[t[0]]}
			rcon = refGFMul(rcon, 2)
		} else if nk > 6 && i%nk == 4 {
			t = [4]byte{refSbox[t[0]], refSbox[t[1]], refSbox[t[2]], refSbox[t[3]]}
		}
		for j := range 4 {
			w[i][j] = w[i-nk][j] ^ t[j]
		}
	}
	rk := make([][16]byte, nr+1)
	for r := range rk {
		for c := range 4 {
			copy(rk[r][4*c:], w[4*r+c][:])
		}
	}
	return rk
}

// refEncrypt encrypts one block with nr rounds, the last without
// MixColumns. Byte r+4c of the state is row r, column c.
func refEncrypt(rk [][16]byte, in [16]byte) [16]byte {
	nr := len(rk) - 1
	s := in
	for i := range s {
		s[i] ^= rk[0][i]
	}
	for round := 1; round <= nr; round++ {
		var t [16]byte
		for r := range 4 {
			for c := range 4 {
				t[r+4*c] = refSbox[s[r+4*((c+r)%4)]] // SubBytes and ShiftRows
			}
		}
		if round < nr {
			for c := range 4 {
				a := [4]byte(t[4*c : 4*c+4])
				for r := range 4 {
					t[r+4*c] = refGFMul(a[r], 2) ^ refGFMul(a[(r+1)%4], 3) ^ a[(r+2)%4] ^ a[(r+3)%4]
				}
			}
		}
		for i := range t {
			s[i] = t[i] ^ rk[round][i]
		}
	}
	return s
}

func refDbl(b [16]byte) [16]byte {
	var out [16]byte
	for i := range 15 {
		out[i] = b[i]<<1 | b[i+1]>>7
	}
	out[15] = b[15] << 1
	if b[0]&0x80 != 0 {
		out[15] ^= 0x87
	}
	return out
}

func refXor(a, b [16]byte) [16]byte {
	for i := range a {
		a[i] ^= b[i]
	}
	return a
}

// refCMAC is RFC 4493.
func refCMAC(rk [][16]byte, m []byte) [16]byte {
	k1 := refDbl(refEncrypt(rk, [16]byte{}))
	k2 := refDbl(k1)
	n := (len(m) + 15) / 16
	var last [16]byte
	if n > 0 && len(m)%16 == 0 {
		last = refXor([16]byte(m[16*(n-1):]), k1)
	} else {
		n = max(n, 1)
		copy(last[:], m[16*(n-1):])
		last[len(m)-16*(n-1)] = 0x80
		last = refXor(last, k2)
	}
	var x [16]byte
	for i := 0; i < n-1; i++ {
		x = refEncrypt(rk, refXor(x, [16]byte(m[16*i:])))
	}
	return refEncrypt(rk, refXor(x, last))
}

// refSIVSeal is RFC 5297 SIV-Seal with one associated datum, key K1 || K2
// and nr-round AES.
func refSIVSeal(key, ad, p []byte, nr int) []byte {
	half := len(key) / 2
	rk1, rk2 := refExpand(key[:half], nr), refExpand(key[half:], nr)
	d := refCMAC(rk1, make([]byte, 16))
	d = refXor(refDbl(d), refCMAC(rk1, ad))
	var t []byte
	if len(p) >= 16 {
		t = bytes.Clone(p)
		tail := refXor([16]byte(t[len(t)-16:]), d)
		copy(t[len(t)-16:], tail[:])
	} else {
		var padded [16]byte
		copy(padded[:], p)
		padded[len(p)] = 0x80
		x := refXor(refDbl(d), padded)
		t = x[:]
	}
	v := refCMAC(rk1, t)
	q := v
	q[8] &= 0x7f
	q[12] &= 0x7f
	out := append([]byte(nil), v[:]...)
	hi, lo := binary.BigEndian.Uint64(q[:8]), binary.BigEndian.Uint64(q[8:])
	for i := 0; i < len(p); i += 16 {
		var ctr [16]byte
		binary.BigEndian.PutUint64(ctr[:8], hi)
		binary.BigEndian.PutUint64(ctr[8:], lo)
		ks := refEncrypt(rk2, ctr)
		for j := i; j < min(i+16, len(p)); j++ {
			out = append(out, p[j]^ks[j-i])
		}
		if lo++; lo == 0 {
			hi++
		}
	}
	return out
}

// TestReferenceAESIsAES checks the reference block cipher at the standard
// round counts against crypto/aes, so that it can be trusted at 10.
func TestReferenceAESIsAES(t *testing.T) {
	rng := mathrand.New(mathrand.NewPCG(7, 8))
	for _, size := range []int{16, 24, 32} {
		key := make([]byte, size)
		for i := range key {
			key[i] = byte(rng.Uint32())
		}
		std, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		rk := refExpand(key, 6+size/4)
		for range 20 {
			var in, want [16]byte
			for i := range in {
				in[i] = byte(rng.Uint32())
			}
			std.Encrypt(want[:], in[:])
			if got := refEncrypt(rk, in); got != want {
				t.Fatalf("AES-%d: reference %x, crypto/aes %x", 8*size, got, want)
			}
		}
	}
}

// TestFastMatchesReferenceSIV: Fast and V1 SK messages of many lengths are
// the reference SIV with 10 and 14 rounds of AES-256, the 32-byte key
// written twice and the timestamp as the associated data.
func TestFastMatchesReferenceSIV(t *testing.T) {
	rng := mathrand.New(mathrand.NewPCG(9, 10))
	for _, tc := range []struct {
		suite  *Suite
		rounds int
	}{{Fast, 10}, {V1, 14}} {
		for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 33, 64, 100, 1024} {
			key := make([]byte, KeyLen)
			for i := range key {
				key[i] = byte(rng.Uint32())
			}
			p := make([]byte, n)
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			now := time.Unix(int64(fastVectorTime+n), 0)
			got, err := tc.suite.ProtectSymKey(nil, p, key, now)
			if err != nil {
				t.Fatal(err)
			}
			ts := got[:TimestampLen]
			want := refSIVSeal(append(bytes.Clone(key), key...), ts, p, tc.rounds)
			if !bytes.Equal(got[TimestampLen:], want) {
				t.Fatalf("%v, %d bytes: %x, reference %x", tc.suite, n, got[TimestampLen:], want)
			}
		}
	}
}
