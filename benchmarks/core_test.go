package benchmarks

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
)

const topic = "benchmarks/topic"

var (
	topicKey  = repeat(0x5a, e4.KeyLen)
	clientKey = repeat(0x3c, e4.KeyLen)
	c2Public  = repeat(9, 32) // the X25519 base point, a valid public key
	// payloadSizes are the payloads of every protect, unprotect and
	// baseline benchmark: a sensor reading, a typical message, a large one.
	payloadSizes = []int{64, 1024, 16384}
)

func repeat(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

// clockConfig is the configuration of every benchmarked client: the real
// clock, as on a device (the S2V header cache then hits for every message of
// the same second, as it would in production).
func clockConfig() *e4.Config { return &e4.Config{} }

func skClient(b *testing.B) *e4.Client {
	c, err := e4.NewSymKeyClient(e4.IDFromName("bench"), clientKey, clockConfig())
	if err != nil {
		b.Fatal(err)
	}
	if err := c.SetTopicKey(topicKey, topic); err != nil {
		b.Fatal(err)
	}
	return c
}

func BenchmarkSKProtect(b *testing.B) {
	for _, size := range payloadSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			c := skClient(b)
			payload := repeat(1, size)
			dst := make([]byte, 0, size+e4.SKOverhead)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Protect(dst[:0], payload, topic); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// distinctMessages returns n protected messages that differ from each other,
// so that the receiver's replay check accepts each one once.
func distinctMessages(b *testing.B, n, size int, protect func(payload []byte) ([]byte, error)) [][]byte {
	msgs := make([][]byte, n)
	payload := repeat(1, size)
	for i := range msgs {
		binary.LittleEndian.PutUint64(payload, uint64(i))
		m, err := protect(payload)
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = m
	}
	return msgs
}

// poolSize keeps each pool within the replay cache's initial size (4096
// entries), so that the cache neither grows nor evicts while it is measured:
// a steady-state receiver. It also keeps a pool within 4 MiB, so that
// building it stays short under an emulator, where the large payloads cost
// the most.
func poolSize(size int) int {
	const maxEntries, maxBytes = 4096, 4 << 20
	return min(maxEntries, maxBytes/size)
}

// benchUnprotect measures Unprotect, replay check included, cycling through
// distinct messages and replacing the receiver (untimed) when all were seen.
func benchUnprotect(b *testing.B, size int, msgs [][]byte, newReceiver func() *e4.Client) {
	c := newReceiver()
	dst := make([]byte, 0, size)
	next := 0
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if next == len(msgs) {
			b.StopTimer()
			c, next = newReceiver(), 0
			b.StartTimer()
		}
		if _, err := c.Unprotect(dst[:0], msgs[next], topic); err != nil {
			b.Fatal(err)
		}
		next++
	}
}

func BenchmarkSKUnprotect(b *testing.B) {
	for _, size := range payloadSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			msgs := distinctMessages(b, poolSize(size), size, func(p []byte) ([]byte, error) {
				return e4.ProtectSymKey(nil, p, topicKey, time.Now())
			})
			benchUnprotect(b, size, msgs, func() *e4.Client { return skClient(b) })
		})
	}
}

func pkPair(b *testing.B) (sender *e4.Client, newReceiver func() *e4.Client) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	_, recvPriv, _ := ed25519.GenerateKey(nil)
	sender, err := e4.NewPubKeyClient(e4.IDFromName("sender"), priv, c2Public, clockConfig())
	if err != nil {
		b.Fatal(err)
	}
	if err := sender.SetTopicKey(topicKey, topic); err != nil {
		b.Fatal(err)
	}
	return sender, func() *e4.Client {
		r, err := e4.NewPubKeyClient(e4.IDFromName("receiver"), recvPriv, c2Public, clockConfig())
		if err != nil {
			b.Fatal(err)
		}
		if err := r.SetTopicKey(topicKey, topic); err != nil {
			b.Fatal(err)
		}
		if err := r.SetPubKey(sender.ID(), pub); err != nil {
			b.Fatal(err)
		}
		return r
	}
}

func BenchmarkPKProtect(b *testing.B) {
	for _, size := range payloadSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			sender, _ := pkPair(b)
			payload := repeat(1, size)
			dst := make([]byte, 0, size+e4.PKOverhead)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := sender.Protect(dst[:0], payload, topic); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPKUnprotect(b *testing.B) {
	for _, size := range payloadSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			sender, newReceiver := pkPair(b)
			msgs := distinctMessages(b, min(512, poolSize(size)), size, func(p []byte) ([]byte, error) {
				return sender.Protect(nil, p, topic)
			})
			benchUnprotect(b, size, msgs, newReceiver)
		})
	}
}

// Baselines.

func BenchmarkBaselineAESGCMSeal(b *testing.B) {
	block, _ := aes.NewCipher(topicKey)
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, gcm.NonceSize())
	for _, size := range payloadSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			payload := repeat(1, size)
			dst := make([]byte, 0, size+gcm.Overhead())
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				gcm.Seal(dst[:0], nonce, payload, nil)
			}
		})
	}
}

// BenchmarkBaselineSerialChain16K encrypts 1024 AES-256 blocks, each one
// depending on the previous, through crypto/aes's Block.Encrypt: the chain
// as plain Go can run it, which E4's CMAC ran at before it moved to
// assembly. The true bound is BenchmarkBoundAESChain16K.
func BenchmarkBaselineSerialChain16K(b *testing.B) {
	block, _ := aes.NewCipher(topicKey)
	data := repeat(1, 16384)
	var state [aes.BlockSize]byte
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		for i := 0; i < len(data); i += aes.BlockSize {
			subtle.XORBytes(state[:], state[:], data[i:i+aes.BlockSize])
			block.Encrypt(state[:], state[:])
		}
	}
}

func BenchmarkBaselineEd25519Sign(b *testing.B) {
	_, priv, _ := ed25519.GenerateKey(nil)
	for _, size := range payloadSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			msg := repeat(1, size)
			b.ReportAllocs()
			for b.Loop() {
				ed25519.Sign(priv, msg)
			}
		})
	}
}

func BenchmarkBaselineEd25519Verify(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	for _, size := range payloadSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			msg := repeat(1, size)
			sig := ed25519.Sign(priv, msg)
			b.ReportAllocs()
			for b.Loop() {
				if !ed25519.Verify(pub, msg, sig) {
					b.Fatal("verify failed")
				}
			}
		})
	}
}
