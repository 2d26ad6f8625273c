//go:build !amd64 && !arm64

package benchmarks

import "crypto/aes"

// boundIsAssembly says whether the bound runs the AES instructions
// directly; here it is crypto/aes's Encrypt in a loop.
const boundIsAssembly = false

func newBound(key []byte) *bound {
	b := &bound{xk: expandAES256(key)}
	c, _ := aes.NewCipher(key)
	b.slow = func(x *[16]byte, n int) {
		for range n {
			c.Encrypt(x[:], x[:])
		}
	}
	return b
}

// chain replaces x by AES-256 applied to it n times.
func (b *bound) chain(x *[16]byte, n int) { b.slow(x, n) }
