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
func mac4Asm(nr int, xk *byte, x *[MaxLanes][BlockSize]byte, p *[MaxLanes]*byte, n int)

// mac8Asm runs the chains of lanes 0-7 over n blocks each, interleaved.
//
//go:noescape
func mac8Asm(nr int, xk *byte, x *[MaxLanes][BlockSize]byte, p *[MaxLanes]*byte, n int)

// ctrAsm XORs n blocks of src with the CTR keystream from ctr into dst and
// advances ctr by n.
//
//go:noescape
func ctrAsm(nr int, xk *byte, ctr *[BlockSize]byte, dst, src *byte, n int)
