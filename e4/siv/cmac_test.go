package siv

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// refCMAC is a deliberately naive AES-CMAC straight from RFC 4493 section
// 2.4, used to cross-check the streaming implementation at every length.
func refCMAC(block cipher.Block, msg []byte) []byte {
	var k1, k2 [16]byte
	block.Encrypt(k1[:], k1[:])
	refDbl(k1[:])
	copy(k2[:], k1[:])
	refDbl(k2[:])

	n := (len(msg) + 15) / 16
	last := make([]byte, 16)
	if n == 0 || len(msg)%16 != 0 {
		n = max(n, 1)
		copy(last, msg[(n-1)*16:])
		last[len(msg)-(n-1)*16] = 0x80
		xorInto(last, k2[:])
	} else {
		copy(last, msg[(n-1)*16:])
		xorInto(last, k1[:])
	}
	x := make([]byte, 16)
	for i := 0; i < n-1; i++ {
		xorInto(x, msg[i*16:(i+1)*16])
		block.Encrypt(x, x)
	}
	xorInto(x, last)
	block.Encrypt(x, x)
	return x
}

func refDbl(b []byte) {
	carry := b[0] >> 7
	for i := 0; i < 15; i++ {
		b[i] = b[i]<<1 | b[i+1]>>7
	}
	b[15] = b[15]<<1 ^ carry*0x87
}

func xorInto(dst, src []byte) {
	for i := range src {
		dst[i] ^= src[i]
	}
}

func sum(c *CMAC, msg []byte) []byte {
	var t [16]byte
	c.Sum(&t, msg)
	return t[:]
}

// TestCMACRFC4493 checks the subkeys and the four examples of RFC 4493
// section 4.
func TestCMACRFC4493(t *testing.T) { forEachImpl(t, testCMACRFC4493) }

func testCMACRFC4493(t *testing.T) {
	c, err := NewCMAC(unhex(t, "2b7e151628aed2a6abf7158809cf4f3c"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(c.k1[:]), "fbeed618357133667c85e08f7236a8de"; got != want {
		t.Errorf("K1 = %s, want %s", got, want)
	}
	if got, want := hex.EncodeToString(c.k2[:]), "f7ddac306ae266ccf90bc11ee46d513b"; got != want {
		t.Errorf("K2 = %s, want %s", got, want)
	}
	msg := unhex(t, "6bc1bee22e409f96e93d7e117393172a"+
		"ae2d8a571e03ac9c9eb76fac45af8e51"+
		"30c81c46a35ce411e5fbc1191a0a52ef"+
		"f69f2445df4f9b17ad2b417be66c3710")
	for _, tc := range []struct {
		n   int
		tag string
	}{
		{0, "bb1d6929e95937287fa37d129b756746"},
		{16, "070a16b46b4d4144f79bdd9dd04a287c"},
		{40, "dfa66747de9ae63030ca32611497c827"},
		{64, "51f0bebf7e3b9d92fc49741779363cfe"},
	} {
		if got := hex.EncodeToString(sum(c, msg[:tc.n])); got != tc.tag {
			t.Errorf("len %d: tag %s, want %s", tc.n, got, tc.tag)
		}
	}
}

type wycheproofCMAC struct {
	NumberOfTests int `json:"numberOfTests"`
	TestGroups    []struct {
		KeySize int `json:"keySize"`
		TagSize int `json:"tagSize"`
		Tests   []struct {
			TcID    int    `json:"tcId"`
			Comment string `json:"comment"`
			Key     string `json:"key"`
			Msg     string `json:"msg"`
			Tag     string `json:"tag"`
			Result  string `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

func TestCMACWycheproof(t *testing.T) { forEachImpl(t, testCMACWycheproof) }

func testCMACWycheproof(t *testing.T) {
	raw, err := os.ReadFile("../testdata/wycheproof/aes_cmac_test.json")
	if err != nil {
		t.Fatal(err)
	}
	var f wycheproofCMAC
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			ran++
			checkWycheproofCMAC(t, g.KeySize, g.TagSize, tc.TcID, tc.Key, tc.Msg, tc.Tag, tc.Result)
		}
	}
	if ran != f.NumberOfTests || ran != 311 {
		t.Errorf("ran %d vectors, file declares %d, expected 311", ran, f.NumberOfTests)
	}
}

func checkWycheproofCMAC(t *testing.T, keySize, tagSize, id int, key, msg, tag, result string) {
	t.Helper()
	c, err := NewCMAC(unhex(t, key))
	switch keySize {
	case 128, 192, 256:
		if err != nil {
			t.Errorf("tc %d: NewCMAC: %v", id, err)
			return
		}
	default:
		if err == nil {
			t.Errorf("tc %d: NewCMAC accepted a %d-bit key", id, keySize)
		}
		return
	}
	want := unhex(t, tag)
	got := sum(c, unhex(t, msg))[:tagSize/8]
	if match := bytes.Equal(got, want); match != (result == "valid") {
		t.Errorf("tc %d (%s): tag %x, file %x", id, result, got, want)
	}
}

// TestCMACStreaming cross-checks Sum against the naive reference for every
// length up to 1 KiB and some longer ones, for all key sizes.
func TestCMACStreaming(t *testing.T) { forEachImpl(t, testCMACStreaming) }

func testCMACStreaming(t *testing.T) {
	for _, ks := range []int{16, 24, 32} {
		key := bytes.Repeat([]byte{byte(ks)}, ks)
		c, err := NewCMAC(key)
		if err != nil {
			t.Fatal(err)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		msg := make([]byte, 5000)
		for i := range msg {
			msg[i] = byte(i * 7)
		}
		for n := 0; n <= len(msg); n++ {
			if n > 1024 && n%97 != 0 {
				continue // keep the run short
			}
			if got, want := sum(c, msg[:n]), refCMAC(block, msg[:n]); !bytes.Equal(got, want) {
				t.Fatalf("key %d, len %d: %x, want %x", ks, n, got, want)
			}
		}
	}
}

// TestCMACWriteSplits feeds messages in pieces of every size and checks the
// held-back-block logic against one-shot Sum.
func TestCMACWriteSplits(t *testing.T) { forEachImpl(t, testCMACWriteSplits) }

func testCMACWriteSplits(t *testing.T) {
	c, err := NewCMAC(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 700)
	for i := range msg {
		msg[i] = byte(i)
	}
	for _, n := range []int{0, 1, 15, 16, 17, 32, 33, 300, 700} {
		want := sum(c, msg[:n])
		for piece := 1; piece <= n+1; piece++ {
			var st state
			for p := msg[:n]; len(p) > 0; {
				k := min(piece, len(p))
				c.write(&st, p[:k])
				p = p[k:]
			}
			c.finish(&st)
			got := st.x
			if !bytes.Equal(got[:], want) {
				t.Fatalf("len %d in pieces of %d: %x, want %x", n, piece, got, want)
			}
		}
	}
}

func TestNewCMACKeySizes(t *testing.T) {
	for n := 0; n <= 80; n++ {
		_, err := NewCMAC(make([]byte, n))
		if valid := n == 16 || n == 24 || n == 32; valid != (err == nil) {
			t.Errorf("key length %d: err = %v", n, err)
		}
	}
}

// TestCMACAllocs runs under -race too: Sum keeps its state on the stack.
func TestCMACAllocs(t *testing.T) {
	c, err := NewCMAC(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 64, 1024, 16384} {
		msg := make([]byte, n)
		var tag [16]byte
		if a := testing.AllocsPerRun(1000, func() { c.Sum(&tag, msg) }); a != 0 {
			t.Errorf("Sum of %d bytes: %v allocs, want 0", n, a)
		}
	}
}

func TestDbl(t *testing.T) {
	for _, seed := range []byte{0x00, 0x01, 0x7f, 0x80, 0xff} {
		var a [16]byte
		for i := range a {
			a[i] = seed ^ byte(i*37)
		}
		b := a
		dbl(&a)
		refDbl(b[:])
		if a != b {
			t.Errorf("dbl(%x) = %x, want %x", seed, a, b)
		}
	}
}

func BenchmarkCMAC(b *testing.B) {
	c, err := NewCMAC(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{16, 64, 256, 1024, 16384} {
		msg := make([]byte, n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			var tag [16]byte
			for b.Loop() {
				c.Sum(&tag, msg)
			}
		})
	}
}

// TestWipe checks that the state Seal, Open and Sum leave behind holds no
// chaining value, held-back block or counter.
func TestWipe(t *testing.T) {
	c := newTestCipher(t, 32)
	for _, n := range []int{0, 100, 1000} {
		var st state
		src := pattern(n)
		v := [16]byte{1, 2, 3}
		c.xorKeyStream(&st, &v, make([]byte, n), src)
		c.mac.write(&st, src)
		if st == (state{}) {
			t.Fatalf("len %d: state unused", n)
		}
		st.wipe()
		if st != (state{}) {
			t.Errorf("len %d: state not wiped: %+v", n, st)
		}
	}
}
