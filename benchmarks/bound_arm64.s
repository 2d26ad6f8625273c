//go:build arm64

#include "textflag.h"

// func boundChainAsm(xk *[15][16]byte, x *[16]byte, n int)
//
// Round keys rk0..rk14 sit in V16..V30. Each encryption is 13 AESE+AESMC
// pairs, AESE with rk13, and the xor of rk14; the state carries x xor rk14
// (the xor of one encryption is folded into the first AESE of the next by
// keeping rk0 xor rk14 in V31), so a block costs the AES instructions and
// nothing else.
TEXT ·boundChainAsm(SB), NOSPLIT, $0-24
	MOVD   xk+0(FP), R0
	MOVD   x+8(FP), R1
	MOVD   n+16(FP), R2
	CBZ    R2, done
	VLD1.P 64(R0), [V16.B16, V17.B16, V18.B16, V19.B16]
	VLD1.P 64(R0), [V20.B16, V21.B16, V22.B16, V23.B16]
	VLD1.P 64(R0), [V24.B16, V25.B16, V26.B16, V27.B16]
	VLD1   (R0), [V28.B16, V29.B16, V30.B16]
	VEOR   V16.B16, V30.B16, V31.B16
	VLD1   (R1), [V0.B16]
	AESE   V16.B16, V0.B16
	AESMC  V0.B16, V0.B16
	B      rest

loop:
	AESE  V31.B16, V0.B16
	AESMC V0.B16, V0.B16

rest:
	AESE  V17.B16, V0.B16
	AESMC V0.B16, V0.B16
	AESE  V18.B16, V0.B16
	AESMC V0.B16, V0.B16
	AESE  V19.B16, V0.B16
	AESMC V0.B16, V0.B16
	AESE  V20.B16, V0.B16
	AESMC V0.B16, V0.B16
	AESE  V21.B16, V0.B16
	AESMC V0.B16, V0.B16
	AESE  V22.B16, V0.B16
	AESMC V0.B16, V0.B16
	AESE  V23.B16, V0.B16
	AESMC V0.B16, V0.B16
	AESE  V24.B16, V0.B16
	AESMC V0.B16, V0.B16
	AESE  V25.B16, V0.B16
	AESMC V0.B16, V0.B16
	AESE  V26.B16, V0.B16
	AESMC V0.B16, V0.B16
	AESE  V27.B16, V0.B16
	AESMC V0.B16, V0.B16
	AESE  V28.B16, V0.B16
	AESMC V0.B16, V0.B16
	AESE  V29.B16, V0.B16
	SUBS  $1, R2
	BNE   loop
	VEOR  V30.B16, V0.B16, V0.B16
	VST1  [V0.B16], (R1)

done:
	RET
