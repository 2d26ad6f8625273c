//go:build amd64 || arm64

package benchmarks

import (
	"crypto/aes"

	"golang.org/x/sys/cpu"
)

// boundIsAssembly says whether the bound runs the AES instructions
// directly; without them it is crypto/aes's Encrypt in a loop.
var boundIsAssembly = cpu.X86.HasAES || cpu.ARM64.HasAES

func newBound(key []byte) *bound {
	b := &bound{xk: expandAES256(key)}
	if !boundIsAssembly {
		c, _ := aes.NewCipher(key)
		b.slow = func(x *[16]byte, n int) {
			for range n {
				c.Encrypt(x[:], x[:])
			}
		}
	}
	return b
}

// chain replaces x by AES-256 applied to it n times.
func (b *bound) chain(x *[16]byte, n int) {
	if b.slow != nil {
		b.slow(x, n)
		return
	}
	boundChainAsm(&b.xk, x, n)
}

//go:noescape
func boundChainAsm(xk *[15][16]byte, x *[16]byte, n int)
