package benchmarks

import "encoding/binary"

// bound is the true lower bound of any CMAC chain on this machine: AES-256
// applied n times, each output the next input, in assembly with the round
// keys in registers where the architecture has AES instructions
// (bound_amd64.s, bound_arm64.s), so that a block costs exactly the latency of the
// instructions. It shares no code with the E4 crypto core it bounds: the
// key expansion below is its own, and TestBoundIsAES256 checks it against
// crypto/aes.
type bound struct {
	xk   [15][16]byte // round keys, FIPS-197 byte order
	slow func(x *[16]byte, n int)
}

// expandAES256 runs the FIPS-197 key expansion for a 32-byte key.
func expandAES256(key []byte) (xk [15][16]byte) {
	var sbox [256]byte
	for a := range 256 { // multiplicative inverse, then the affine map
		var inv byte
		for b := 1; b < 256 && a != 0; b++ {
			if gfMul(byte(a), byte(b)) == 1 {
				inv = byte(b)
			}
		}
		s := inv
		for i := 1; i <= 4; i++ {
			s ^= inv<<i | inv>>(8-i)
		}
		sbox[a] = s ^ 0x63
	}
	sub := func(w uint32) uint32 {
		return uint32(sbox[w>>24])<<24 | uint32(sbox[w>>16&0xff])<<16 | uint32(sbox[w>>8&0xff])<<8 | uint32(sbox[w&0xff])
	}
	var w [60]uint32
	for i := range 8 {
		w[i] = binary.BigEndian.Uint32(key[4*i:])
	}
	rcon := uint32(1)
	for i := 8; i < 60; i++ {
		t := w[i-1]
		switch i % 8 {
		case 0:
			t = sub(t<<8|t>>24) ^ rcon<<24
			rcon = uint32(gfMul(byte(rcon), 2))
		case 4:
			t = sub(t)
		}
		w[i] = w[i-8] ^ t
	}
	for i, v := range w {
		binary.BigEndian.PutUint32(xk[i/4][4*(i%4):], v)
	}
	return xk
}

func gfMul(a, b byte) (p byte) {
	for ; b != 0; b >>= 1 {
		if b&1 != 0 {
			p ^= a
		}
		a = a<<1 ^ byte(int8(a)>>7)&0x1b
	}
	return p
}
