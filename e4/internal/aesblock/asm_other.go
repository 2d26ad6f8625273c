//go:build (!amd64 && !arm64) || purego

package aesblock

// asmSupported reports whether the assembly implementation can run here.
func asmSupported() bool { return false }

// The assembly entry points are never called where asmSupported is false.

func encryptAsm(nr int, xk *byte, dst, src *[BlockSize]byte) { panic("unreachable") }

func macAsm(nr int, xk *byte, x *[BlockSize]byte, p *byte, n int) { panic("unreachable") }

func vaesSupported() bool { return false }

func mac4Asm(nr int, xk *byte, x *[8][BlockSize]byte, p *[8]*byte, n int) { panic("unreachable") }

func mac8Asm(nr int, xk *byte, x *[8][BlockSize]byte, p *[8]*byte, n int) { panic("unreachable") }

func mac8VAES(nr int, xk *byte, x *[8][BlockSize]byte, p *[8]*byte, n int) { panic("unreachable") }

func mac16VAES(nr int, xk *byte, x *[16][BlockSize]byte, p *[16]*byte, n int) {
	panic("unreachable")
}

func ctrVAES(nr int, xk *byte, ctr *[BlockSize]byte, dst, src *byte, n int) { panic("unreachable") }

func ctrAsm(nr int, xk *byte, ctr *[BlockSize]byte, dst, src *byte, n int) { panic("unreachable") }
