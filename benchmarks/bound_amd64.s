//go:build amd64

#include "textflag.h"

// func boundChainAsm(xk *[15][16]byte, x *[16]byte, n int)
//
// Round keys 1-13 sit in X1-X13; X14 holds rk14 xor rk0, so that
// AESENCLAST leaves E(x) xor rk0, the state the next encryption starts its
// first round from: 14 AES instructions a block and nothing else.
TEXT ·boundChainAsm(SB), NOSPLIT, $0-24
	MOVQ  xk+0(FP), AX
	MOVQ  x+8(FP), DX
	MOVQ  n+16(FP), BX
	TESTQ BX, BX
	JZ    done
	MOVOU (AX), X15
	MOVOU (DX), X0
	PXOR  X15, X0
	MOVOU 16(AX), X1
	MOVOU 32(AX), X2
	MOVOU 48(AX), X3
	MOVOU 64(AX), X4
	MOVOU 80(AX), X5
	MOVOU 96(AX), X6
	MOVOU 112(AX), X7
	MOVOU 128(AX), X8
	MOVOU 144(AX), X9
	MOVOU 160(AX), X10
	MOVOU 176(AX), X11
	MOVOU 192(AX), X12
	MOVOU 208(AX), X13
	MOVOU 224(AX), X14
	PXOR  X15, X14

loop:
	AESENC     X1, X0
	AESENC     X2, X0
	AESENC     X3, X0
	AESENC     X4, X0
	AESENC     X5, X0
	AESENC     X6, X0
	AESENC     X7, X0
	AESENC     X8, X0
	AESENC     X9, X0
	AESENC     X10, X0
	AESENC     X11, X0
	AESENC     X12, X0
	AESENC     X13, X0
	AESENCLAST X14, X0
	DECQ       BX
	JNZ        loop
	PXOR       X15, X0
	MOVOU      X0, (DX)

done:
	RET
