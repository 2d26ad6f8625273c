package aesblock

import (
	"bytes"
	"crypto/aes"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// forEachImpl runs f once per implementation this machine has, with New
// set to make Blocks of it.
func forEachImpl(t *testing.T, f func(t *testing.T)) {
	for _, impl := range Implementations() {
		t.Run(impl.String(), func(t *testing.T) {
			prev := SetImplementation(impl)
			defer SetImplementation(prev)
			f(t)
		})
	}
}

// textbook is FIPS-197 section 5.1 written byte by byte, with its own
// S-box derived from the multiplicative inverse and the affine map
// (section 5.1.1), its own key expansion and no tables: the independent
// reference for round counts crypto/aes does not offer.
type textbook struct {
	sbox [256]byte
	w    [][4]byte
	nr   int
}

func gmul(a, b byte) byte {
	var p byte
	for b != 0 {
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

func newTextbook(key []byte, nr int) *textbook {
	tb := &textbook{nr: nr}
	for a := range 256 {
		var inv byte
		for b := 1; b < 256 && a != 0; b++ {
			if gmul(byte(a), byte(b)) == 1 {
				inv = byte(b)
			}
		}
		s := inv
		for i := 1; i <= 4; i++ {
			s ^= inv<<i | inv>>(8-i)
		}
		tb.sbox[a] = s ^ 0x63
	}
	nk := len(key) / 4
	tb.w = make([][4]byte, 4*(nr+1))
	for i := range nk {
		copy(tb.w[i][:], key[4*i:])
	}
	rc := byte(1)
	for i := nk; i < len(tb.w); i++ {
		t := tb.w[i-1]
		if i%nk == 0 {
			t = [4]byte{tb.sbox[t[1]] ^ rc, tb.sbox[t[2]], tb.sbox[t[3]], tb.sbox[t[0]]}
			rc = gmul(rc, 2)
		} else if nk > 6 && i%nk == 4 {
			t = [4]byte{tb.sbox[t[0]], tb.sbox[t[1]], tb.sbox[t[2]], tb.sbox[t[3]]}
		}
		for j := range 4 {
			tb.w[i][j] = tb.w[i-nk][j] ^ t[j]
		}
	}
	return tb
}

func (tb *textbook) encrypt(in [16]byte) [16]byte {
	s := in // s[r+4c]: byte of row r, column c
	addRoundKey := func(round int) {
		for c := range 4 {
			for r := range 4 {
				s[r+4*c] ^= tb.w[4*round+c][r]
			}
		}
	}
	addRoundKey(0)
	for round := 1; round <= tb.nr; round++ {
		for i := range s {
			s[i] = tb.sbox[s[i]]
		}
		var t [16]byte
		for r := range 4 {
			for c := range 4 {
				t[r+4*c] = s[r+4*((c+r)%4)]
			}
		}
		s = t
		if round < tb.nr {
			for c := range 4 {
				a := [4]byte(s[4*c:])
				s[4*c+0] = gmul(a[0], 2) ^ gmul(a[1], 3) ^ a[2] ^ a[3]
				s[4*c+1] = a[0] ^ gmul(a[1], 2) ^ gmul(a[2], 3) ^ a[3]
				s[4*c+2] = a[0] ^ a[1] ^ gmul(a[2], 2) ^ gmul(a[3], 3)
				s[4*c+3] = gmul(a[0], 3) ^ a[1] ^ a[2] ^ gmul(a[3], 2)
			}
		}
		addRoundKey(round)
	}
	return s
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestFIPS197Vector checks the example of FIPS-197 appendix C.3 through the
// textbook reference, so that the reference itself is anchored.
func TestFIPS197Vector(t *testing.T) {
	key := make([]byte, 32)
	var pt [16]byte
	for i := range key {
		key[i] = byte(i)
	}
	for i := range pt {
		pt[i] = byte(i * 0x11)
	}
	want := [16]byte{0x8e, 0xa2, 0xb7, 0xca, 0x51, 0x67, 0x45, 0xbf, 0xea, 0xfc, 0x49, 0x90, 0x4b, 0x49, 0x60, 0x89}
	if got := newTextbook(key, 14).encrypt(pt); got != want {
		t.Fatalf("textbook AES-256 = %x, want %x", got, want)
	}
	forEachImpl(t, func(t *testing.T) {
		b, err := New(key, 14)
		if err != nil {
			t.Fatal(err)
		}
		var got [16]byte
		b.Encrypt(&got, &pt)
		if got != want {
			t.Fatalf("Encrypt = %x, want %x", got, want)
		}
	})
}

// reference returns an encryption function for key and nr rounds that
// does not use this package: crypto/aes at the standard round count, the
// textbook code otherwise (checked against crypto/aes in TestTextbook).
func reference(key []byte, nr int) func([16]byte) [16]byte {
	if nr == StandardRounds(len(key)) {
		c, _ := aes.NewCipher(key)
		return func(in [16]byte) (out [16]byte) {
			c.Encrypt(out[:], in[:])
			return out
		}
	}
	return newTextbook(key, nr).encrypt
}

func TestTextbookMatchesStdlib(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, kl := range []int{16, 24, 32} {
		key := randBytes(r, kl)
		tb := newTextbook(key, StandardRounds(kl))
		std := reference(key, StandardRounds(kl))
		for range 50 {
			in := [16]byte(randBytes(r, 16))
			if got, want := tb.encrypt(in), std(in); got != want {
				t.Fatalf("key %d bytes: textbook %x, crypto/aes %x", kl, got, want)
			}
		}
	}
}

// roundConfigs are every key size and round count New accepts.
var roundConfigs = []struct{ keyLen, nr int }{
	{16, 10}, {24, 10}, {24, 12}, {32, 10}, {32, 12}, {32, 14},
}

func TestEncrypt(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		for _, cfg := range roundConfigs {
			for range 20 {
				key := randBytes(r, cfg.keyLen)
				ref := reference(key, cfg.nr)
				b, err := New(key, cfg.nr)
				if err != nil {
					t.Fatal(err)
				}
				for range 20 {
					in := [16]byte(randBytes(r, 16))
					var out [16]byte
					b.Encrypt(&out, &in)
					if want := ref(in); out != want {
						t.Fatalf("%d-byte key, %d rounds: Encrypt(%x) = %x, want %x", cfg.keyLen, cfg.nr, in, out, want)
					}
					b.Encrypt(&in, &in) // in place
					if in != out {
						t.Fatalf("in-place Encrypt differs")
					}
				}
			}
		}
	})
}

func refMAC(ref func([16]byte) [16]byte, x [16]byte, p []byte) [16]byte {
	for ; len(p) > 0; p = p[16:] {
		for i := range x {
			x[i] ^= p[i]
		}
		x = ref(x)
	}
	return x
}

func TestMAC(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, cfg := range roundConfigs {
			key := randBytes(r, cfg.keyLen)
			ref := reference(key, cfg.nr)
			b, err := New(key, cfg.nr)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{0, 1, 2, 3, 7, 64, 200} {
				p := randBytes(r, 16*n)
				x := [16]byte(randBytes(r, 16))
				want := refMAC(ref, x, p)
				b.MAC(&x, p)
				if x != want {
					t.Fatalf("%d-byte key, %d rounds, %d blocks: MAC %x, want %x", cfg.keyLen, cfg.nr, n, x, want)
				}
			}
		}
	})
}

func TestMACLanes(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 8))
		for _, cfg := range roundConfigs {
			key := randBytes(r, cfg.keyLen)
			ref := reference(key, cfg.nr)
			b, err := New(key, cfg.nr)
			if err != nil {
				t.Fatal(err)
			}
			for lanes := 1; lanes <= MaxLanes; lanes++ {
				for _, n := range []int{0, 1, 5, 64} {
					var x [MaxLanes][16]byte
					var p [MaxLanes][]byte
					var want [MaxLanes][16]byte
					for i := range MaxLanes {
						x[i] = [16]byte(randBytes(r, 16))
						// Lanes may be longer than n blocks; only n are read.
						p[i] = randBytes(r, 16*(n+i%2))
						want[i] = x[i]
						if i < lanes {
							want[i] = refMAC(ref, x[i], p[i][:16*n])
						}
					}
					b.MACLanes(&x, &p, lanes, n)
					if x != want {
						t.Fatalf("%d-byte key, %d rounds, %d lanes, %d blocks: chains differ", cfg.keyLen, cfg.nr, lanes, n)
					}
				}
			}
		}
	})
}

func refCTR(ref func([16]byte) [16]byte, iv [16]byte, src []byte) []byte {
	out := make([]byte, len(src))
	for i := 0; i < len(src); i += 16 {
		ks := ref(iv)
		for j := i; j < min(i+16, len(src)); j++ {
			out[j] = src[j] ^ ks[j-i]
		}
		for k := 15; k >= 0; k-- { // 128-bit big-endian increment
			iv[k]++
			if iv[k] != 0 {
				break
			}
		}
	}
	return out
}

func TestCTR(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(9, 10))
		ivs := [][16]byte{
			{}, // plain
			{0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfd},                         // carry into the high half
			{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}, // wraps to zero
		}
		for _, cfg := range roundConfigs {
			key := randBytes(r, cfg.keyLen)
			ref := reference(key, cfg.nr)
			b, err := New(key, cfg.nr)
			if err != nil {
				t.Fatal(err)
			}
			for _, iv := range append(ivs, [16]byte(randBytes(r, 16))) {
				for _, n := range []int{0, 1, 15, 16, 17, 100, 127, 128, 129, 255, 1024, 1031} {
					src := randBytes(r, n)
					want := refCTR(ref, iv, src)
					dst := make([]byte, n)
					ivCopy := iv
					b.CTR(dst, src, &ivCopy)
					if !bytes.Equal(dst, want) || ivCopy != iv {
						t.Fatalf("%d-byte key, %d rounds, iv %x, %d bytes: CTR differs (or iv changed)", cfg.keyLen, cfg.nr, iv, n)
					}
					b.CTR(src, src, &iv) // in place
					if !bytes.Equal(src, want) {
						t.Fatalf("in-place CTR of %d bytes differs", n)
					}
				}
			}
		}
	})
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct{ keyLen, nr int }{
		{15, 10}, {33, 14}, {0, 10}, {16, 12}, {32, 16}, {32, 8}, {32, 11}, {24, 14},
	} {
		if _, err := New(make([]byte, tc.keyLen), tc.nr); err == nil {
			t.Errorf("New accepted a %d-byte key with %d rounds", tc.keyLen, tc.nr)
		}
	}
}

func TestRoundKeysAligned(t *testing.T) {
	for range 100 {
		b, err := New(make([]byte, 32), 14)
		if err != nil {
			t.Fatal(err)
		}
		if addr := uintptr(unsafe.Pointer(&b.xk[0])); addr%16 != 0 {
			t.Fatalf("round keys at %#x, not 16-byte aligned", addr)
		}
	}
}

func TestAllocs(t *testing.T) {
	b, err := New(make([]byte, 32), 14)
	if err != nil {
		t.Fatal(err)
	}
	src := make([]byte, 1031)
	dst := make([]byte, len(src))
	p := [MaxLanes][]byte{src[:1024], src[:1024], src[:1024]}
	allocs := testing.AllocsPerRun(100, func() {
		var x, iv [16]byte
		var xs [MaxLanes][16]byte
		b.Encrypt(&x, &x)
		b.MAC(&x, src[:1024])
		b.MACLanes(&xs, &p, 3, 64)
		b.CTR(dst, src, &iv)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run, want 0", allocs)
	}
}
