package benchmarks

import (
	"crypto/aes"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4/siv"
)

// TestBoundIsAES256 checks that the bound computes AES-256, n times over,
// so that it is the chain it claims to be.
func TestBoundIsAES256(t *testing.T) {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i*7 + 1)
	}
	c, _ := aes.NewCipher(key)
	b := newBound(key)
	for _, n := range []int{0, 1, 2, 5, 1024} {
		x := [16]byte{1, 2, 3, 4, 5}
		want := x
		for range n {
			c.Encrypt(want[:], want[:])
		}
		b.chain(&x, n)
		if x != want {
			t.Fatalf("%d encryptions: %x, want %x", n, x, want)
		}
	}
}

// BenchmarkBoundAESChain16K is the bound of every CMAC over 16 KiB: 1024
// dependent AES-256 encryptions in assembly (see bound), in the same run.
func BenchmarkBoundAESChain16K(b *testing.B) {
	if !boundIsAssembly {
		b.Log("no AES instructions: the bound is crypto/aes's Encrypt in a loop")
	}
	bd := newBound(topicKey)
	var x [16]byte
	b.SetBytes(16384)
	b.ReportAllocs()
	for b.Loop() {
		bd.chain(&x, 1024)
	}
}

// BenchmarkCMAC16K is E4's AES-CMAC over 16 KiB: the S2V of a 16 KiB
// message apart from its one header block.
func BenchmarkCMAC16K(b *testing.B) {
	c, err := siv.NewCMAC(topicKey)
	if err != nil {
		b.Fatal(err)
	}
	msg := repeat(1, 16384)
	var tag [16]byte
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		c.Sum(&tag, msg)
	}
}

// BenchmarkCMACVsBound16K alternates CMAC over 16 KiB with the bound chain
// of 1024 blocks in one loop, so both see the same machine load, and
// reports the ratio of their total times (cmac/bound).
func BenchmarkCMACVsBound16K(b *testing.B) {
	c, err := siv.NewCMAC(topicKey)
	if err != nil {
		b.Fatal(err)
	}
	bd := newBound(topicKey)
	msg := repeat(1, 16384)
	var tag, x [16]byte
	var cmac, chain time.Duration
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		c.Sum(&tag, msg)
		t1 := time.Now()
		bd.chain(&x, 1024)
		chain += time.Since(t1)
		cmac += t1.Sub(t0)
	}
	b.ReportMetric(float64(cmac)/float64(chain), "cmac/bound")
}
