//go:build !purego

package aesblock

import "golang.org/x/sys/cpu"

// asmSupported reports whether the assembly implementation can run here:
// it needs the ARMv8 AES instructions.
func asmSupported() bool { return cpu.ARM64.HasAES }

// vaesSupported is false: VAES is an amd64 extension.
func vaesSupported() bool { return false }

// encryptAsm encrypts one block with nr rounds under the round keys at xk.
//
//go:noescape
func encryptAsm(nr int, xk *byte, dst, src *[BlockSize]byte)

// macAsm runs the CBC-MAC chain over n blocks at p, updating x.
//
//go:noescape
func macAsm(nr int, xk *byte, x *[BlockSize]byte, p *byte, n int)

// mac4Asm runs the chains of lanes 0-3 over n blocks each, interleaved.
//
//go:noescape
func mac4Asm(nr int, xk *byte, x *[8][BlockSize]byte, p *[8]*byte, n int)

// mac8Asm runs the chains of lanes 0-7 over n blocks each, interleaved.
//
//go:noescape
func mac8Asm(nr int, xk *byte, x *[8][BlockSize]byte, p *[8]*byte, n int)

// ctrAsm XORs n blocks of src with the CTR keystream from ctr into dst and
// advances ctr by n.
//
//go:noescape
func ctrAsm(nr int, xk *byte, ctr *[BlockSize]byte, dst, src *byte, n int)

// The VAES entry points exist on amd64 only.

func mac8VAES(nr int, xk *byte, x *[8][BlockSize]byte, p *[8]*byte, n int) { panic("unreachable") }

func mac16VAES(nr int, xk *byte, x *[16][BlockSize]byte, p *[16]*byte, n int) {
	panic("unreachable")
}

func ctrVAES(nr int, xk *byte, ctr *[BlockSize]byte, dst, src *byte, n int) { panic("unreachable") }
