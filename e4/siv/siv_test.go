package siv

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4/internal/aesblock"
)

// refSeal is a naive AES-SIV straight from RFC 5297 (copying xorend,
// cipher.NewCTR for every length), used to cross-check Seal.
func refSeal(key, plaintext []byte, ad ...[]byte) []byte {
	half := len(key) / 2
	mac, _ := aes.NewCipher(key[:half])
	ctr, _ := aes.NewCipher(key[half:])
	return refSealBlocks(mac, ctr, plaintext, ad...)
}

// refSealBlocks is refSeal over given block ciphers.
func refSealBlocks(mac, ctr cipher.Block, plaintext []byte, ad ...[]byte) []byte {

	d := refCMAC(mac, make([]byte, 16))
	for _, s := range ad {
		refDbl(d)
		xorInto(d, refCMAC(mac, s))
	}
	var t []byte
	if len(plaintext) >= 16 {
		t = bytes.Clone(plaintext)
		xorInto(t[len(t)-16:], d)
	} else {
		refDbl(d)
		t = make([]byte, 16)
		copy(t, plaintext)
		t[len(plaintext)] = 0x80
		xorInto(t, d)
	}
	v := refCMAC(mac, t)
	q := bytes.Clone(v)
	q[8] &= 0x7f
	q[12] &= 0x7f
	out := make([]byte, 16+len(plaintext))
	copy(out, v)
	cipher.NewCTR(ctr, q).XORKeyStream(out[16:], plaintext)
	return out
}

func newTestCipher(t testing.TB, keyLen int) *Cipher {
	t.Helper()
	key := make([]byte, keyLen)
	for i := range key {
		key[i] = byte(i*29 + 3)
	}
	c, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// forEachImpl runs f once per AES implementation this machine has
// (assembly and pure Go on amd64 and arm64), so that every vector covers
// both paths.
func forEachImpl(t *testing.T, f func(t *testing.T)) {
	for _, impl := range aesblock.Implementations() {
		t.Run(impl.String(), func(t *testing.T) {
			prev := aesblock.SetImplementation(impl)
			defer aesblock.SetImplementation(prev)
			f(t)
		})
	}
}

// blockAdapter is an aesblock.Block as a cipher.Block, for the reference.
type blockAdapter struct{ b *aesblock.Block }

func (a blockAdapter) BlockSize() int { return 16 }
func (a blockAdapter) Encrypt(dst, src []byte) {
	a.b.Encrypt((*[16]byte)(dst), (*[16]byte)(src))
}
func (a blockAdapter) Decrypt(dst, src []byte) { panic("not used") }

// TestNewRounds checks the fast-mode primitive: a 64-byte key with 10
// rounds in both S2V and CTR matches the reference built on 10-round
// blocks (aesblock checks those against a byte-wise FIPS-197 AES), differs
// from standard AES-SIV, round-trips, and bad round counts are refused.
func TestNewRounds(t *testing.T) { forEachImpl(t, testNewRounds) }

func testNewRounds(t *testing.T) {
	key := pattern(64)
	fast, err := NewRounds(key, 10)
	if err != nil {
		t.Fatal(err)
	}
	std, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	if same, _ := NewRounds(key, 14); !bytes.Equal(same.Seal(nil, pattern(50)), std.Seal(nil, pattern(50))) {
		t.Fatal("NewRounds with 14 rounds differs from New")
	}
	mac, err := aesblock.New(key[:32], 10)
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := aesblock.New(key[32:], 10)
	if err != nil {
		t.Fatal(err)
	}
	ad := []byte("12345678")
	for _, n := range []int{0, 1, 16, 17, 64, 1024, 1031} {
		pt := pattern(n)
		sealed := fast.Seal(nil, pt, ad)
		if want := refSealBlocks(blockAdapter{mac}, blockAdapter{ctr}, pt, ad); !bytes.Equal(sealed, want) {
			t.Fatalf("len %d: 10-round Seal differs from the reference", n)
		}
		if bytes.Equal(sealed, std.Seal(nil, pt, ad)) {
			t.Fatalf("len %d: 10-round Seal equals standard AES-SIV", n)
		}
		if got, err := fast.Open(nil, sealed, ad); err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("len %d: Open: %v", n, err)
		}
		if _, err := std.Open(nil, sealed, ad); err == nil {
			t.Fatalf("len %d: standard AES-SIV opened a 10-round message", n)
		}
	}
	for _, bad := range []struct{ keyLen, rounds int }{{64, 8}, {64, 11}, {64, 16}, {32, 12}, {48, 14}} {
		if _, err := NewRounds(make([]byte, bad.keyLen), bad.rounds); err == nil {
			t.Errorf("NewRounds accepted a %d-byte key with %d rounds", bad.keyLen, bad.rounds)
		}
	}
}

func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*131 + n)
	}
	return p
}

func TestRFC5297(t *testing.T) { forEachImpl(t, testRFC5297) }

func testRFC5297(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		ad        []string
		pt, out   string
	}{
		{
			name: "A.1 deterministic",
			key:  "fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
			ad:   []string{"101112131415161718191a1b1c1d1e1f2021222324252627"},
			pt:   "112233445566778899aabbccddee",
			out:  "85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c",
		},
		{
			name: "A.2 nonce-based",
			key:  "7f7e7d7c7b7a79787776757473727170404142434445464748494a4b4c4d4e4f",
			ad: []string{
				"00112233445566778899aabbccddeeffdeaddadadeaddadaffeeddccbbaa99887766554433221100",
				"102030405060708090a0",
				"09f911029d74e35bd84156c5635688c0",
			},
			pt: "7468697320697320736f6d6520706c61696e7465787420746f20656e63727970" +
				"74207573696e67205349562d414553",
			out: "7bdb6e3b432667eb06f4d14bff2fbd0fcb900f2fddbe404326601965c889bf17" +
				"dba77ceb094fa663b7a3f748ba8af829ea64ad544a272e9c485b62a3fd5c0d",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(unhex(t, tc.key))
			if err != nil {
				t.Fatal(err)
			}
			var ad [][]byte
			for _, s := range tc.ad {
				ad = append(ad, unhex(t, s))
			}
			pt, want := unhex(t, tc.pt), unhex(t, tc.out)
			if got := c.Seal(nil, pt, ad...); !bytes.Equal(got, want) {
				t.Errorf("Seal = %x, want %x", got, want)
			}
			got, err := c.Open(nil, want, ad...)
			if err != nil || !bytes.Equal(got, pt) {
				t.Errorf("Open = %x, %v; want %x", got, err, pt)
			}
			if _, err := c.Open(nil, want, ad[:len(ad)-1]...); err == nil {
				t.Error("Open succeeded without the last associated data string")
			}
		})
	}
}

type wycheproofSIV struct {
	NumberOfTests int `json:"numberOfTests"`
	TestGroups    []struct {
		KeySize int `json:"keySize"`
		Tests   []struct {
			TcID    int    `json:"tcId"`
			Comment string `json:"comment"`
			Key     string `json:"key"`
			AAD     string `json:"aad"`
			Msg     string `json:"msg"`
			CT      string `json:"ct"`
			Result  string `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

func TestWycheproof(t *testing.T) { forEachImpl(t, testWycheproof) }

func testWycheproof(t *testing.T) {
	raw, err := os.ReadFile("../testdata/wycheproof/aes_siv_cmac_test.json")
	if err != nil {
		t.Fatal(err)
	}
	var f wycheproofSIV
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	ran, valid := 0, 0
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			ran++
			if tc.Result == "valid" {
				valid++
			}
			checkWycheproofSIV(t, g.KeySize, tc.TcID, tc.Key, tc.AAD, tc.Msg, tc.CT, tc.Result)
		}
	}
	if ran != f.NumberOfTests || ran != 442 || valid != 118 {
		t.Errorf("ran %d vectors (%d valid), file declares %d, expected 442 (118 valid)",
			ran, valid, f.NumberOfTests)
	}
}

func checkWycheproofSIV(t *testing.T, keySize, id int, key, aad, msg, ct, result string) {
	t.Helper()
	c, err := New(unhex(t, key))
	if err != nil {
		if keySize == 256 || keySize == 384 || keySize == 512 {
			t.Errorf("tc %d: New: %v", id, err)
		}
		return
	}
	ad, pt, sealed := unhex(t, aad), unhex(t, msg), unhex(t, ct)
	got, err := c.Open(nil, sealed, ad)
	if result != "valid" {
		if err == nil {
			t.Errorf("tc %d: invalid vector opened to %x", id, got)
		}
		return
	}
	if err != nil || !bytes.Equal(got, pt) {
		t.Errorf("tc %d: Open = %x, %v; want %x", id, got, err, pt)
	}
	if s := c.Seal(nil, pt, ad); !bytes.Equal(s, sealed) {
		t.Errorf("tc %d: Seal = %x, want %x", id, s, sealed)
	}
}

// TestEmptyVector checks the zero-AD, empty-plaintext case, whose S2V
// reduces to CMAC(dbl(D0) xor pad) and whose output is just the SIV.
func TestEmptyVector(t *testing.T) { forEachImpl(t, testEmptyVector) }

func testEmptyVector(t *testing.T) {
	c, err := New(unhex(t, "fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"))
	if err != nil {
		t.Fatal(err)
	}
	got := c.Seal(nil, nil)
	if want := "f2007a5beb2b8900c588a7adf599f172"; hex.EncodeToString(got) != want {
		t.Errorf("Seal() = %x, want %s", got, want)
	}
	pt, err := c.Open(nil, got)
	if err != nil || len(pt) != 0 {
		t.Errorf("Open = %x, %v", pt, err)
	}
}

func TestNewKeySizes(t *testing.T) {
	for n := 0; n <= 100; n++ {
		c, err := New(make([]byte, n))
		if valid := n == 32 || n == 48 || n == 64; valid != (err == nil) || valid != (c != nil) {
			t.Errorf("key length %d: %v, %v", n, c, err)
		}
	}
	if c := newTestCipher(t, 32); c.Overhead() != TagSize || TagSize != 16 {
		t.Errorf("Overhead = %d", c.Overhead())
	}
}

var roundTripLengths = func() []int {
	var l []int
	for n := 0; n <= 100; n++ {
		l = append(l, n)
	}
	return append(l, 255, 256, 511, 512, 513, 1000, 2048, 2049, 4096, 16384, 65536+7)
}()

// TestRoundTrip seals every length with zero, one and three ADs, for every
// key size, compares with the reference implementation and opens again.
func TestRoundTrip(t *testing.T) { forEachImpl(t, testRoundTrip) }

func testRoundTrip(t *testing.T) {
	for _, keyLen := range []int{32, 48, 64} {
		c := newTestCipher(t, keyLen)
		key := make([]byte, keyLen)
		for i := range key {
			key[i] = byte(i*29 + 3)
		}
		for _, ad := range [][][]byte{nil, {[]byte("12345678")}, {nil, pattern(40), pattern(17)}} {
			for _, n := range roundTripLengths {
				pt := pattern(n)
				sealed := c.Seal(nil, pt, ad...)
				if want := refSeal(key, pt, ad...); !bytes.Equal(sealed, want) {
					t.Fatalf("key %d, %d ADs, len %d: Seal differs from reference", keyLen, len(ad), n)
				}
				got, err := c.Open(nil, sealed, ad...)
				if err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("key %d, %d ADs, len %d: Open: %v", keyLen, len(ad), n, err)
				}
			}
		}
	}
}

// TestAppend checks that Seal and Open append after existing dst content,
// both with and without spare capacity.
func TestAppend(t *testing.T) { forEachImpl(t, testAppend) }

func testAppend(t *testing.T) {
	c := newTestCipher(t, 32)
	ad := []byte("ts")
	for _, n := range []int{0, 5, 600} {
		pt := pattern(n)
		want := c.Seal(nil, pt, ad)
		for _, dst := range [][]byte{[]byte("abc"), append(make([]byte, 0, 1024), "abc"...)} {
			sealed := c.Seal(bytes.Clone(dst), pt, ad)
			if !bytes.Equal(sealed[:3], []byte("abc")) || !bytes.Equal(sealed[3:], want) {
				t.Fatalf("len %d: Seal did not append", n)
			}
			opened, err := c.Open(bytes.Clone(dst), want, ad)
			if err != nil || !bytes.Equal(opened[:3], []byte("abc")) || !bytes.Equal(opened[3:], pt) {
				t.Fatalf("len %d: Open did not append: %v", n, err)
			}
		}
	}
}

func TestBitFlips(t *testing.T) { forEachImpl(t, testBitFlips) }

func testBitFlips(t *testing.T) {
	c := newTestCipher(t, 32)
	ad := []byte("\x00\x00\x01\x8f\x00\x00\x00\x01")
	for _, n := range []int{0, 1, 15, 16, 17, 64, 300, 600} {
		sealed := c.Seal(nil, pattern(n), ad)
		for bit := 0; bit < 8*len(sealed); bit++ {
			sealed[bit/8] ^= 1 << (bit % 8)
			if _, err := c.Open(nil, sealed, ad); !errors.Is(err, ErrOpen) {
				t.Fatalf("len %d: flipping bit %d was not detected: %v", n, bit, err)
			}
			sealed[bit/8] ^= 1 << (bit % 8)
		}
		if _, err := c.Open(nil, sealed, ad); err != nil {
			t.Fatalf("len %d: restored message rejected: %v", n, err)
		}
	}
}

func TestTruncation(t *testing.T) {
	c := newTestCipher(t, 32)
	ad := []byte("12345678")
	for _, n := range []int{0, 1, 16, 40, 700} {
		sealed := c.Seal(nil, pattern(n), ad)
		for k := 0; k < len(sealed); k++ {
			if _, err := c.Open(nil, sealed[:k], ad); err != ErrOpen {
				t.Fatalf("len %d truncated to %d: %v", n, k, err)
			}
			if _, err := c.Open(nil, sealed[len(sealed)-k:], ad); err != ErrOpen {
				t.Fatalf("len %d: suffix of %d accepted: %v", n, k, err)
			}
		}
		if _, err := c.Open(nil, append(sealed, 0), ad); err != ErrOpen {
			t.Fatalf("len %d: extended message accepted: %v", n, err)
		}
	}
}

func TestWrongAD(t *testing.T) {
	c := newTestCipher(t, 32)
	pt := pattern(50)
	ab, cd := []byte("ab"), []byte("cd")
	sealed := c.Seal(nil, pt, ab, cd)
	for name, ad := range map[string][][]byte{
		"none":      nil,
		"missing":   {ab},
		"extra":     {ab, cd, nil},
		"empty":     {ab, cd[:0]},
		"swapped":   {cd, ab},
		"resplit":   {[]byte("a"), []byte("bcd")},
		"joined":    {[]byte("abcd")},
		"changed":   {ab, []byte("ce")},
		"lengthen":  {ab, []byte("cd\x00")},
		"leadEmpty": {nil, ab, cd},
	} {
		if _, err := c.Open(nil, sealed, ad...); err != ErrOpen {
			t.Errorf("%s: Open with wrong AD: %v", name, err)
		}
	}
	if got, err := c.Open(nil, sealed, ab, cd); err != nil || !bytes.Equal(got, pt) {
		t.Errorf("correct AD rejected: %v", err)
	}
	// An empty AD string is a component of its own, unlike no AD.
	if bytes.Equal(c.Seal(nil, pt), c.Seal(nil, pt, nil)) {
		t.Error("Seal with one empty AD equals Seal with none")
	}
}

func TestTooManyAD(t *testing.T) {
	c := newTestCipher(t, 32)
	ad := make([][]byte, maxAD+1)
	sealed := c.Seal(nil, nil, ad[:maxAD]...)
	if _, err := c.Open(nil, sealed, ad[:maxAD]...); err != nil {
		t.Fatalf("126 ADs: %v", err)
	}
	if _, err := c.Open(nil, sealed, ad...); err != ErrOpen {
		t.Errorf("Open with 127 ADs: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("Seal with 127 ADs did not panic")
		}
	}()
	c.Seal(nil, nil, ad...)
}

func TestInPlace(t *testing.T) { forEachImpl(t, testInPlace) }

func testInPlace(t *testing.T) {
	c := newTestCipher(t, 32)
	ad := []byte("12345678")
	for _, n := range []int{0, 1, 64, 512, 513, 5000} {
		pt := pattern(n)
		want := c.Seal(nil, pt, ad)

		// Seal with the plaintext already placed after room for the SIV.
		buf := make([]byte, TagSize+n)
		copy(buf[TagSize:], pt)
		if got := c.Seal(buf[:0], buf[TagSize:], ad); !bytes.Equal(got, want) || &got[0] != &buf[0] {
			t.Fatalf("len %d: in-place Seal wrong", n)
		}

		got, err := c.Open(buf[TagSize:TagSize], buf, ad)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("len %d: in-place Open: %v", n, err)
		}
		if n > 0 && &got[0] != &buf[TagSize] {
			t.Fatalf("len %d: in-place Open reallocated", n)
		}
	}
}

func TestOverlapPanics(t *testing.T) {
	c := newTestCipher(t, 32)
	buf := make([]byte, 200)
	sealed := c.Seal(nil, pattern(100), nil)
	for name, f := range map[string]func(){
		"seal onto plaintext":  func() { c.Seal(buf[:0], buf[:100]) },
		"seal shifted by one":  func() { c.Seal(buf[:0], buf[1:101]) },
		"seal tag on input":    func() { c.Seal(buf[:0], buf[8:108]) },
		"open shifted by one":  func() { copy(buf, sealed); c.Open(buf[TagSize+1:TagSize+1], buf[:len(sealed)]) },
		"open onto the sealed": func() { copy(buf, sealed); c.Open(buf[:0], buf[:len(sealed)]) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// TestOpenFailureWipes checks that a failed Open leaves no plaintext in the
// spare capacity of dst, at lengths below and above a CTR batch.
func TestOpenFailureWipes(t *testing.T) {
	c := newTestCipher(t, 32)
	for _, n := range []int{1, 64, 513, 4000} {
		sealed := c.Seal(nil, pattern(n), nil)
		sealed[0] ^= 1
		dst := make([]byte, 3, 3+n+100)
		copy(dst, "abc")
		if _, err := c.Open(dst, sealed); err != ErrOpen {
			t.Fatalf("len %d: tampered message accepted: %v", n, err)
		}
		full := dst[:cap(dst)]
		if string(full[:3]) != "abc" {
			t.Errorf("len %d: dst prefix modified", n)
		}
		if subtle.ConstantTimeCompare(full[3:], make([]byte, len(full)-3)) != 1 {
			t.Errorf("len %d: plaintext left in dst capacity", n)
		}
	}
}

// TestAllocs also runs under -race: nothing in Seal or Open uses a
// sync.Pool any more, so the race detector has no objects to drop.
func TestAllocs(t *testing.T) {
	c := newTestCipher(t, 32)
	for _, n := range []int{0, 64, 512, 513, 1024, 16384} {
		pt := pattern(n)
		dst := make([]byte, 0, n+TagSize)
		sealed := c.Seal(nil, pt, []byte("12345678"))
		i := uint64(0)
		seal := testing.AllocsPerRun(1000, func() {
			// The AD lives on this stack frame: it must not escape.
			var ts [8]byte
			binary.BigEndian.PutUint64(ts[:], i)
			i++
			c.Seal(dst, pt, ts[:])
		})
		open := testing.AllocsPerRun(1000, func() {
			ts := [8]byte{'1', '2', '3', '4', '5', '6', '7', '8'}
			if _, err := c.Open(dst, sealed, ts[:]); err != nil {
				panic(err)
			}
		})
		if seal != 0 || open != 0 {
			t.Errorf("len %d: Seal %v allocs, Open %v allocs; want 0", n, seal, open)
		}
	}
}

// TestConcurrent shares one Cipher between goroutines at sizes below and
// above a CTR batch of eight blocks; run it with -race.
func TestConcurrent(t *testing.T) { forEachImpl(t, testConcurrent) }

func testConcurrent(t *testing.T) {
	c := newTestCipher(t, 32)
	sizes := []int{0, 15, 64, 127, 128, 300, 512, 513, 3000, 16384}
	want := make([][]byte, len(sizes))
	for i, n := range sizes {
		want[i] = c.Seal(nil, pattern(n), []byte("12345678"))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			dst := make([]byte, 0, 16384+TagSize)
			for iter := range 30 {
				i := (g + iter) % len(sizes)
				sealed := c.Seal(dst[:0], pattern(sizes[i]), []byte("12345678"))
				if !bytes.Equal(sealed, want[i]) {
					errs <- fmt.Errorf("goroutine %d: Seal of %d bytes differs", g, sizes[i])
					return
				}
				pt, err := c.Open(nil, sealed, []byte("12345678"))
				if err != nil || !bytes.Equal(pt, pattern(sizes[i])) {
					errs <- fmt.Errorf("goroutine %d: Open of %d bytes: %v", g, sizes[i], err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func FuzzOpen(f *testing.F) {
	c, _ := New(make([]byte, 32))
	f.Add([]byte{}, []byte{})
	f.Add(make([]byte, 16), []byte("12345678"))
	f.Add(c.Seal(nil, []byte("hello"), []byte("ad")), []byte("ad"))
	f.Add(pattern(700), pattern(8))
	f.Fuzz(func(t *testing.T, data, ad []byte) {
		if pt, err := c.Open(nil, data, ad); err == nil {
			// Only a real forgery could get here.
			if !bytes.Equal(c.Seal(nil, pt, ad), data) {
				t.Fatalf("Open accepted %x, which Seal does not produce", data)
			}
		}
		sealed := c.Seal(nil, data, ad)
		pt, err := c.Open(nil, sealed, ad)
		if err != nil || !bytes.Equal(pt, data) {
			t.Fatalf("round trip of %x failed: %v", data, err)
		}
	})
}

var benchAD = []byte("\x00\x00\x01\x8f\x12\x34\x56\x78")

func benchCipher(b *testing.B) *Cipher {
	// E4 uses New(key||key) with a 32-byte key: AES-256 for CMAC and CTR.
	key := bytes.Repeat([]byte{0x42}, 32)
	c, err := New(append(key, key...))
	if err != nil {
		b.Fatal(err)
	}
	return c
}

var benchSizes = []int{64, 1024, 16384}

func BenchmarkSeal(b *testing.B) {
	c := benchCipher(b)
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			pt := pattern(n)
			dst := make([]byte, 0, n+TagSize)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				c.Seal(dst, pt, benchAD)
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	c := benchCipher(b)
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			sealed := c.Seal(nil, pattern(n), benchAD)
			dst := make([]byte, 0, n)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Open(dst, sealed, benchAD); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// serialChain is the baseline: one latency-bound AES-256 chain over msg,
// the least work any CBC-MAC over msg can do without assembly.
func serialChain(block cipher.Block, x *[16]byte, msg []byte) {
	for i := 0; i < len(msg); i += 16 {
		subtle.XORBytes(x[:], x[:], msg[i:i+16])
		block.Encrypt(x[:], x[:])
	}
}

func BenchmarkSerialChain16K(b *testing.B) {
	block, err := aes.NewCipher(bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		b.Fatal(err)
	}
	msg := pattern(16384)
	var x [16]byte
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		serialChain(block, &x, msg)
	}
}

// BenchmarkChainCBC16K runs the same chain as BenchmarkSerialChain16K
// through a reused cipher.NewCBCEncrypter (reset with SetIV), writing into
// a 512-byte scratch buffer. It documents why CMAC does not use that path:
// it is not faster than the plain Encrypt loop.
func BenchmarkChainCBC16K(b *testing.B) {
	block, err := aes.NewCipher(bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		b.Fatal(err)
	}
	msg := pattern(16384)
	var zero [16]byte
	mode := cipher.NewCBCEncrypter(block, zero[:])
	setIV, ok := mode.(interface{ SetIV([]byte) })
	if !ok {
		b.Skip("CBC encrypter cannot be reset")
	}
	scratch := make([]byte, 512)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		setIV.SetIV(zero[:])
		for i := 0; i < len(msg); i += len(scratch) {
			mode.CryptBlocks(scratch, msg[i:i+len(scratch)])
		}
	}
}

// BenchmarkSealVsChain16K alternates Seal of 16 KiB with the serial chain
// baseline inside one loop, so that both see the same machine load, and
// reports the ratio of their total times.
func BenchmarkSealVsChain16K(b *testing.B) {
	c := benchCipher(b)
	block, err := aes.NewCipher(bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		b.Fatal(err)
	}
	pt := pattern(16384)
	dst := make([]byte, 0, len(pt)+TagSize)
	var x [16]byte
	var seal, chain time.Duration
	for b.Loop() {
		t0 := time.Now()
		c.Seal(dst, pt, benchAD)
		t1 := time.Now()
		serialChain(block, &x, pt)
		chain += time.Since(t1)
		seal += t1.Sub(t0)
	}
	b.ReportMetric(float64(seal)/float64(chain), "seal/chain")
}

// TestHeaderCacheKeysOnContentAndLength checks that headers that pad to the
// same block are never confused, one message after another on one Cipher
// (an earlier version cached the header accumulator; any future cache must
// keep passing this).
func TestHeaderCacheKeysOnContentAndLength(t *testing.T) {
	forEachImpl(t, testHeaderCacheKeysOnContentAndLength)
}

func testHeaderCacheKeysOnContentAndLength(t *testing.T) {
	key := make([]byte, 64)
	for i := range key {
		key[i] = byte(i)
	}
	c, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	fresh := func(ad []byte) []byte { // a new Cipher has an empty cache
		c2, _ := New(key)
		return c2.Seal(nil, []byte("payload"), ad)
	}
	headers := [][]byte{[]byte("abc"), []byte("abc\x00"), []byte("abd"), {}, make([]byte, 16), make([]byte, 17)}
	for round := range 3 {
		for _, ad := range headers {
			got := c.Seal(nil, []byte("payload"), ad)
			if want := fresh(ad); !bytes.Equal(got, want) {
				t.Fatalf("round %d, header %x: sealed %x, want %x", round, ad, got, want)
			}
			if _, err := c.Open(nil, got, ad); err != nil {
				t.Fatalf("round %d, header %x: %v", round, ad, err)
			}
		}
	}
}
