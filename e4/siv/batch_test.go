package siv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
)

// TestBatchWycheproof runs every Wycheproof AES-SIV vector through
// OpenBatch and SealBatch, in batches of seven that mix keys, valid and
// invalid vectors, and requires exactly the file's verdicts and outputs.
func TestBatchWycheproof(t *testing.T) { forEachImpl(t, testBatchWycheproof) }

func testBatchWycheproof(t *testing.T) {
	raw, err := os.ReadFile("../testdata/wycheproof/aes_siv_cmac_test.json")
	if err != nil {
		t.Fatal(err)
	}
	var f wycheproofSIV
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	type vec struct {
		id           int
		valid        bool
		pt, ct       []byte
		opens, seals BatchItem
	}
	var vecs []vec
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			c, err := New(unhex(t, tc.Key))
			if err != nil {
				continue // key sizes SIV does not have; TestWycheproof checks them
			}
			ad := unhex(t, tc.AAD)
			pt, ct := unhex(t, tc.Msg), unhex(t, tc.CT)
			vecs = append(vecs, vec{
				id: tc.TcID, valid: tc.Result == "valid", pt: pt, ct: ct,
				opens: BatchItem{Cipher: c, In: ct, AD: ad},
				seals: BatchItem{Cipher: c, In: pt, AD: ad},
			})
		}
	}
	if len(vecs) < 400 {
		t.Fatalf("only %d usable vectors", len(vecs))
	}
	for start := 0; start < len(vecs); start += 7 {
		batch := vecs[start:min(start+7, len(vecs))]
		opens := make([]BatchItem, len(batch))
		seals := make([]BatchItem, 0, len(batch))
		for i, v := range batch {
			opens[i] = v.opens
			if v.valid {
				seals = append(seals, v.seals)
			}
		}
		OpenBatch(opens)
		SealBatch(seals)
		for i, v := range batch {
			if v.valid != (opens[i].Err == nil) || v.valid && !bytes.Equal(opens[i].Out, v.pt) {
				t.Errorf("tc %d: OpenBatch = %x, %v; valid %v", v.id, opens[i].Out, opens[i].Err, v.valid)
			}
			if !v.valid && opens[i].Out != nil {
				t.Errorf("tc %d: failed item has output %x", v.id, opens[i].Out)
			}
		}
		k := 0
		for _, v := range batch {
			if v.valid {
				if !bytes.Equal(seals[k].Out, v.ct) {
					t.Errorf("tc %d: SealBatch = %x, want %x", v.id, seals[k].Out, v.ct)
				}
				k++
			}
		}
	}
}

// TestBatchMatchesSingle compares SealBatch and OpenBatch with Seal and
// Open one at a time on random batches: several keys (all key sizes, the
// 10-round mode, E4's key||key), lengths on both sides of every block and
// batch boundary, every kind of associated data, and forged, truncated and
// wrong-key items among good ones.
func TestBatchMatchesSingle(t *testing.T) { forEachImpl(t, testBatchMatchesSingle) }

func testBatchMatchesSingle(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	e4Key := append(pattern(32), pattern(32)...)
	var ciphers []*Cipher
	for _, k := range [][]byte{pattern(32), pattern(48), pattern(64), e4Key, e4Key} {
		c, err := New(k)
		if err != nil {
			t.Fatal(err)
		}
		ciphers = append(ciphers, c)
	}
	fast, err := NewRounds(e4Key, 10)
	if err != nil {
		t.Fatal(err)
	}
	ciphers = append(ciphers, fast)
	lengths := []int{0, 1, 15, 16, 17, 31, 32, 33, 64, 100, 1000, 1024, 1040, 4096}
	ads := [][]byte{nil, {}, []byte("12345678"), pattern(15), pattern(16), pattern(17), pattern(40)}
	for round := range 60 {
		n := 1 + r.IntN(20)
		items := make([]BatchItem, n)
		want := make([][]byte, n)
		for i := range items {
			c := ciphers[r.IntN(len(ciphers))]
			if round%2 == 0 {
				c = ciphers[3] // one key for all: the fully interleaved case
			}
			pt := pattern(lengths[r.IntN(len(lengths))])
			ad := ads[r.IntN(len(ads))]
			dst := []byte(fmt.Sprint(i)) // Out must keep the prefix
			items[i] = BatchItem{Cipher: c, Dst: dst, In: pt, AD: ad}
			want[i] = c.Seal(bytes.Clone(dst), pt, ad)
		}
		SealBatch(items)
		opens := make([]BatchItem, n)
		bad := make([]bool, n)
		for i := range items {
			if !bytes.Equal(items[i].Out, want[i]) || items[i].Err != nil {
				t.Fatalf("round %d item %d: SealBatch differs from Seal", round, i)
			}
			in := items[i].Out[len(items[i].Dst):]
			c := items[i].Cipher
			switch r.IntN(6) {
			case 0: // forged
				in = bytes.Clone(in)
				in[r.IntN(len(in))] ^= 1 << r.IntN(8)
				bad[i] = true
			case 1: // truncated below the tag
				in = in[:r.IntN(TagSize)]
				bad[i] = true
			case 2: // another key
				if c != ciphers[0] {
					c, bad[i] = ciphers[0], true
				}
			}
			dst := make([]byte, 2, 2+len(in)+8)
			copy(dst, "ab")
			opens[i] = BatchItem{Cipher: c, Dst: dst, In: in, AD: items[i].AD}
		}
		OpenBatch(opens)
		for i, o := range opens {
			single, err := o.Cipher.Open(bytes.Clone(o.Dst), o.In, o.AD)
			if (err == nil) == bad[i] || (o.Err == nil) != (err == nil) || !bytes.Equal(o.Out, single) {
				t.Fatalf("round %d item %d (bad %v): OpenBatch = %x, %v; Open = %x, %v", round, i, bad[i], o.Out, o.Err, single, err)
			}
			if o.Err != nil {
				if o.Out != nil || o.Err != ErrOpen {
					t.Fatalf("round %d item %d: failed item returned %x, %v", round, i, o.Out, o.Err)
				}
				if spare := o.Dst[:cap(o.Dst)][2:]; !bytes.Equal(spare, make([]byte, len(spare))) {
					t.Fatalf("round %d item %d: plaintext left in dst after failure", round, i)
				}
			}
		}
	}
}

// TestBatchInPlace opens a batch with each plaintext written over its own
// ciphertext, as Open allows.
func TestBatchInPlace(t *testing.T) {
	c := newTestCipher(t, 64)
	ad := []byte("12345678")
	var items []BatchItem
	var pts [][]byte
	for _, n := range []int{0, 5, 64, 1024, 1024, 333} {
		pt := pattern(n)
		sealed := c.Seal(nil, pt, ad)
		items = append(items, BatchItem{Cipher: c, Dst: sealed[TagSize:TagSize], In: sealed, AD: ad})
		pts = append(pts, pt)
	}
	OpenBatch(items)
	for i, it := range items {
		if it.Err != nil || !bytes.Equal(it.Out, pts[i]) {
			t.Fatalf("item %d: %x, %v", i, it.Out, it.Err)
		}
	}
}

func TestBatchAllocs(t *testing.T) {
	c := newTestCipher(t, 64)
	ad := []byte("12345678")
	seals := make([]BatchItem, 8)
	opens := make([]BatchItem, 8)
	for i := range seals {
		pt := pattern(1024)
		seals[i] = BatchItem{Cipher: c, Dst: make([]byte, 0, 1024+TagSize), In: pt, AD: ad}
		opens[i] = BatchItem{Cipher: c, Dst: make([]byte, 0, 1024), In: c.Seal(nil, pt, ad), AD: ad}
	}
	if a := testing.AllocsPerRun(100, func() { SealBatch(seals); OpenBatch(opens) }); a != 0 {
		t.Errorf("%v allocations per SealBatch+OpenBatch of 8 x 1 KiB, want 0", a)
	}
}

func BenchmarkOpenBatch(b *testing.B) {
	c := benchCipher(b)
	ad := benchAD
	for _, n := range []int{64, 1024, 16384} {
		for _, batch := range []int{1, 4, 8} {
			b.Run(fmt.Sprintf("%d/x%d", n, batch), func(b *testing.B) {
				items := make([]BatchItem, batch)
				for i := range items {
					items[i] = BatchItem{Cipher: c, Dst: make([]byte, 0, n), In: c.Seal(nil, pattern(n), ad), AD: ad}
				}
				b.SetBytes(int64(n * batch))
				b.ReportAllocs()
				for b.Loop() {
					OpenBatch(items)
				}
			})
		}
	}
}

func BenchmarkSealBatch(b *testing.B) {
	c := benchCipher(b)
	for _, n := range []int{64, 1024, 16384} {
		for _, batch := range []int{1, 8} {
			b.Run(fmt.Sprintf("%d/x%d", n, batch), func(b *testing.B) {
				items := make([]BatchItem, batch)
				pt := pattern(n)
				dst := make([][]byte, batch)
				for i := range dst {
					dst[i] = make([]byte, 0, n+TagSize)
				}
				b.SetBytes(int64(n * batch))
				b.ReportAllocs()
				for b.Loop() {
					for i := range items {
						items[i] = BatchItem{Cipher: c, Dst: dst[i], In: pt, AD: benchAD}
					}
					SealBatch(items)
				}
			})
		}
	}
}
