//go:build !purego

package aesblock

import "golang.org/x/sys/cpu"

// asmSupported reports whether the assembly implementation can run here:
// it needs AES-NI, and SSE4.1 for PINSRQ in the CTR counter setup.
func asmSupported() bool { return cpu.X86.HasAES && cpu.X86.HasSSE41 }

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

// vaesSupported reports whether the AVX-512 VAES code can run here: it
// needs VAES on 512-bit registers (with AVX-512 F, VL and BW for the
// moves, inserts and byte shuffles around it).
func vaesSupported() bool {
	return asmSupported() && cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL &&
		cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VAES
}

// mac8VAES runs the chains of lanes 0-7 in two 512-bit registers.
//
//go:noescape
func mac8VAES(nr int, xk *byte, x *[8][BlockSize]byte, p *[8]*byte, n int)

// mac16VAES runs the chains of lanes 0-15 in four 512-bit registers.
//
//go:noescape
func mac16VAES(nr int, xk *byte, x *[16][BlockSize]byte, p *[16]*byte, n int)

// ctrVAES is ctrAsm sixteen blocks at a time; n must be a multiple of 16
// and the counter's low 64 bits must not wrap within n blocks. It does not
// advance ctr.
//
//go:noescape
func ctrVAES(nr int, xk *byte, ctr *[BlockSize]byte, dst, src *byte, n int)
