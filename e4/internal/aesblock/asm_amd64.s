//go:build !purego

#include "textflag.h"

// Round keys are 16-byte aligned (see aligned16), so they serve directly as
// memory operands of PXOR and AESENC.

// func encryptAsm(nr int, xk *byte, dst, src *[16]byte)
TEXT ·encryptAsm(SB), NOSPLIT, $0-32
	MOVQ  nr+0(FP), CX
	MOVQ  xk+8(FP), AX
	MOVQ  dst+16(FP), DX
	MOVQ  src+24(FP), BX
	MOVOU (BX), X0
	PXOR  (AX), X0
	ADDQ  $16, AX
	DECQ  CX

enc_round:
	AESENC (AX), X0
	ADDQ   $16, AX
	DECQ   CX
	JNZ    enc_round
	AESENCLAST (AX), X0
	MOVOU      X0, (DX)
	RET

// The single chain keeps every round key in a register and carries
// x xor rk0 from block to block. The message is folded into the last round
// key: AESENCLAST with rk[nr] xor rk0 xor m(next) leaves E(block) xor rk0
// xor m(next), the next block's state after its first AddRoundKey, so the
// chain's critical path is the AES instructions alone, as in the bound
// (benchmarks/bound_amd64.s). The key for the next block (X15) is computed
// off that path.
#define MAC_ROUNDS_1_9 \
	AESENC X1, X0; \
	AESENC X2, X0; \
	AESENC X3, X0; \
	AESENC X4, X0; \
	AESENC X5, X0; \
	AESENC X6, X0; \
	AESENC X7, X0; \
	AESENC X8, X0; \
	AESENC X9, X0

// MAC_NEXT_KEY(K) sets X15 = K xor the next message block, advancing SI.
#define MAC_NEXT_KEY(K) \
	MOVOU (SI), X15; \
	PXOR  K, X15; \
	ADDQ  $16, SI

// func macAsm(nr int, xk *byte, x *[16]byte, p *byte, n int)
TEXT ·macAsm(SB), NOSPLIT, $0-40
	MOVQ  nr+0(FP), CX
	MOVQ  xk+8(FP), AX
	MOVQ  x+16(FP), DX
	MOVQ  p+24(FP), SI
	MOVQ  n+32(FP), BX
	MOVOU (DX), X0
	PXOR  (AX), X0
	MOVOU (SI), X15
	PXOR  X15, X0
	ADDQ  $16, SI
	DECQ  BX
	MOVOU 16(AX), X1
	MOVOU 32(AX), X2
	MOVOU 48(AX), X3
	MOVOU 64(AX), X4
	MOVOU 80(AX), X5
	MOVOU 96(AX), X6
	MOVOU 112(AX), X7
	MOVOU 128(AX), X8
	MOVOU 144(AX), X9
	CMPQ  CX, $12
	JB    mac10
	JE    mac12
	MOVOU 160(AX), X10
	MOVOU 176(AX), X11
	MOVOU 192(AX), X12
	MOVOU 208(AX), X13
	MOVOU 224(AX), X14
	PXOR  (AX), X14
	TESTQ BX, BX
	JZ    mac14_last

mac14_loop:
	MAC_NEXT_KEY(X14)
	MAC_ROUNDS_1_9
	AESENC     X10, X0
	AESENC     X11, X0
	AESENC     X12, X0
	AESENC     X13, X0
	AESENCLAST X15, X0
	DECQ       BX
	JNZ        mac14_loop

mac14_last:
	MAC_ROUNDS_1_9
	AESENC     X10, X0
	AESENC     X11, X0
	AESENC     X12, X0
	AESENC     X13, X0
	AESENCLAST X14, X0
	JMP        mac_done

mac12:
	MOVOU 160(AX), X10
	MOVOU 176(AX), X11
	MOVOU 192(AX), X12
	PXOR  (AX), X12
	TESTQ BX, BX
	JZ    mac12_last

mac12_loop:
	MAC_NEXT_KEY(X12)
	MAC_ROUNDS_1_9
	AESENC     X10, X0
	AESENC     X11, X0
	AESENCLAST X15, X0
	DECQ       BX
	JNZ        mac12_loop

mac12_last:
	MAC_ROUNDS_1_9
	AESENC     X10, X0
	AESENC     X11, X0
	AESENCLAST X12, X0
	JMP        mac_done

mac10:
	MOVOU 160(AX), X10
	PXOR  (AX), X10
	TESTQ BX, BX
	JZ    mac10_last

mac10_loop:
	MAC_NEXT_KEY(X10)
	MAC_ROUNDS_1_9
	AESENCLAST X15, X0
	DECQ       BX
	JNZ        mac10_loop

mac10_last:
	MAC_ROUNDS_1_9
	AESENCLAST X10, X0

mac_done:
	PXOR  (AX), X0
	MOVOU X0, (DX)
	RET

// LANE_XOR(i, X) absorbs the next block of lane i (base pointer at 8*i(BX),
// offset SI) into state X.
#define LANE_XOR(i, X) \
	MOVQ  (8*i)(BX), R12; \
	MOVOU (R12)(SI*1), X11; \
	PXOR  X11, X

// LANE_LAST(i, X) is the last round of lane i's block with the lane's
// next message block folded into the key: X9 holds rk[nr] xor rk0.
#define LANE_LAST(i, X) \
	MOVQ       (8*i)(BX), R12; \
	MOVOU      (R12)(SI*1), X11; \
	PXOR       X9, X11; \
	AESENCLAST X11, X

#define ROUND4 \
	MOVOU  (AX)(DX*1), X8; \
	AESENC X8, X0; \
	AESENC X8, X1; \
	AESENC X8, X2; \
	AESENC X8, X3

#define ROUND8_HI \
	AESENC X8, X4; \
	AESENC X8, X5; \
	AESENC X8, X6; \
	AESENC X8, X7

// Interleaved chains: the states live in X0-X3 (X0-X7), each round key is
// loaded once per round and applied to all of them, so their AESENCs
// overlap. As in macAsm the states carry x xor rk0 and each lane's next
// message block is folded into its last round key (X9 = rk[nr] xor rk0).

// func mac4Asm(nr int, xk *byte, x *[8][16]byte, p *[8]*byte, n int)
TEXT ·mac4Asm(SB), NOSPLIT, $0-40
	MOVQ  nr+0(FP), CX
	SHLQ  $4, CX
	MOVQ  xk+8(FP), AX
	MOVQ  x+16(FP), DI
	MOVQ  p+24(FP), BX
	MOVQ  n+32(FP), R13
	XORQ  SI, SI
	MOVOU (AX), X10
	MOVOU (AX)(CX*1), X9
	PXOR  X10, X9
	MOVOU 0(DI), X0
	MOVOU 16(DI), X1
	MOVOU 32(DI), X2
	MOVOU 48(DI), X3
	PXOR  X10, X0
	PXOR  X10, X1
	PXOR  X10, X2
	PXOR  X10, X3
	LANE_XOR(0, X0)
	LANE_XOR(1, X1)
	LANE_XOR(2, X2)
	LANE_XOR(3, X3)
	ADDQ  $16, SI
	DECQ  R13
	JZ    mac4_last

mac4_block:
	MOVQ $16, DX

mac4_round:
	ROUND4
	ADDQ $16, DX
	CMPQ DX, CX
	JB   mac4_round
	LANE_LAST(0, X0)
	LANE_LAST(1, X1)
	LANE_LAST(2, X2)
	LANE_LAST(3, X3)
	ADDQ $16, SI
	DECQ R13
	JNZ  mac4_block

mac4_last:
	MOVQ $16, DX

mac4_lround:
	ROUND4
	ADDQ       $16, DX
	CMPQ       DX, CX
	JB         mac4_lround
	AESENCLAST X9, X0
	AESENCLAST X9, X1
	AESENCLAST X9, X2
	AESENCLAST X9, X3
	PXOR       X10, X0
	PXOR       X10, X1
	PXOR       X10, X2
	PXOR       X10, X3
	MOVOU      X0, 0(DI)
	MOVOU      X1, 16(DI)
	MOVOU      X2, 32(DI)
	MOVOU      X3, 48(DI)
	RET

// func mac8Asm(nr int, xk *byte, x *[8][16]byte, p *[8]*byte, n int)
TEXT ·mac8Asm(SB), NOSPLIT, $0-40
	MOVQ  nr+0(FP), CX
	SHLQ  $4, CX
	MOVQ  xk+8(FP), AX
	MOVQ  x+16(FP), DI
	MOVQ  p+24(FP), BX
	MOVQ  n+32(FP), R13
	XORQ  SI, SI
	MOVOU (AX), X10
	MOVOU (AX)(CX*1), X9
	PXOR  X10, X9
	MOVOU 0(DI), X0
	MOVOU 16(DI), X1
	MOVOU 32(DI), X2
	MOVOU 48(DI), X3
	MOVOU 64(DI), X4
	MOVOU 80(DI), X5
	MOVOU 96(DI), X6
	MOVOU 112(DI), X7
	PXOR  X10, X0
	PXOR  X10, X1
	PXOR  X10, X2
	PXOR  X10, X3
	PXOR  X10, X4
	PXOR  X10, X5
	PXOR  X10, X6
	PXOR  X10, X7
	LANE_XOR(0, X0)
	LANE_XOR(1, X1)
	LANE_XOR(2, X2)
	LANE_XOR(3, X3)
	LANE_XOR(4, X4)
	LANE_XOR(5, X5)
	LANE_XOR(6, X6)
	LANE_XOR(7, X7)
	ADDQ  $16, SI
	DECQ  R13
	JZ    mac8_last

mac8_block:
	MOVQ $16, DX

mac8_round:
	ROUND4
	ROUND8_HI
	ADDQ $16, DX
	CMPQ DX, CX
	JB   mac8_round
	LANE_LAST(0, X0)
	LANE_LAST(1, X1)
	LANE_LAST(2, X2)
	LANE_LAST(3, X3)
	LANE_LAST(4, X4)
	LANE_LAST(5, X5)
	LANE_LAST(6, X6)
	LANE_LAST(7, X7)
	ADDQ $16, SI
	DECQ R13
	JNZ  mac8_block

mac8_last:
	MOVQ $16, DX

mac8_lround:
	ROUND4
	ROUND8_HI
	ADDQ       $16, DX
	CMPQ       DX, CX
	JB         mac8_lround
	AESENCLAST X9, X0
	AESENCLAST X9, X1
	AESENCLAST X9, X2
	AESENCLAST X9, X3
	AESENCLAST X9, X4
	AESENCLAST X9, X5
	AESENCLAST X9, X6
	AESENCLAST X9, X7
	PXOR       X10, X0
	PXOR       X10, X1
	PXOR       X10, X2
	PXOR       X10, X3
	PXOR       X10, X4
	PXOR       X10, X5
	PXOR       X10, X6
	PXOR       X10, X7
	MOVOU      X0, 0(DI)
	MOVOU      X1, 16(DI)
	MOVOU      X2, 32(DI)
	MOVOU      X3, 48(DI)
	MOVOU      X4, 64(DI)
	MOVOU      X5, 80(DI)
	MOVOU      X6, 96(DI)
	MOVOU      X7, 112(DI)
	RET

// CTR_BLOCK(X) loads the counter (hi R9, lo R10, as numbers) into X in
// big-endian byte order, xors in rk0 (X15) and increments the counter.
#define CTR_BLOCK(X) \
	MOVQ   R9, R11; \
	BSWAPQ R11; \
	MOVQ   R11, X; \
	MOVQ   R10, R11; \
	BSWAPQ R11; \
	PINSRQ $1, R11, X; \
	PXOR   X15, X; \
	ADDQ   $1, R10; \
	ADCQ   $0, R9

#define CTR_OUT(off, X) \
	MOVOU off(SI), X8; \
	PXOR  X8, X; \
	MOVOU X, off(DI)

// func ctrAsm(nr int, xk *byte, ctr *[16]byte, dst, src *byte, n int)
TEXT ·ctrAsm(SB), NOSPLIT, $0-48
	MOVQ   nr+0(FP), CX
	SHLQ   $4, CX
	MOVQ   xk+8(FP), AX
	MOVQ   ctr+16(FP), R8
	MOVQ   dst+24(FP), DI
	MOVQ   src+32(FP), SI
	MOVQ   n+40(FP), BX
	MOVQ   0(R8), R9
	BSWAPQ R9
	MOVQ   8(R8), R10
	BSWAPQ R10
	MOVOU  (AX), X15
	CMPQ   BX, $8
	JB     ctr_tail

ctr_loop8:
	CTR_BLOCK(X0)
	CTR_BLOCK(X1)
	CTR_BLOCK(X2)
	CTR_BLOCK(X3)
	CTR_BLOCK(X4)
	CTR_BLOCK(X5)
	CTR_BLOCK(X6)
	CTR_BLOCK(X7)
	MOVQ $16, DX

ctr_round8:
	MOVOU  (AX)(DX*1), X8
	AESENC X8, X0
	AESENC X8, X1
	AESENC X8, X2
	AESENC X8, X3
	AESENC X8, X4
	AESENC X8, X5
	AESENC X8, X6
	AESENC X8, X7
	ADDQ   $16, DX
	CMPQ   DX, CX
	JB     ctr_round8
	MOVOU      (AX)(DX*1), X8
	AESENCLAST X8, X0
	AESENCLAST X8, X1
	AESENCLAST X8, X2
	AESENCLAST X8, X3
	AESENCLAST X8, X4
	AESENCLAST X8, X5
	AESENCLAST X8, X6
	AESENCLAST X8, X7
	CTR_OUT(0, X0)
	CTR_OUT(16, X1)
	CTR_OUT(32, X2)
	CTR_OUT(48, X3)
	CTR_OUT(64, X4)
	CTR_OUT(80, X5)
	CTR_OUT(96, X6)
	CTR_OUT(112, X7)
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $8, BX
	CMPQ BX, $8
	JAE  ctr_loop8

ctr_tail:
	// Four blocks side by side when at least four remain (a 64-byte
	// message is exactly four), then one at a time.
	CMPQ BX, $4
	JB   ctr_tail1
	CTR_BLOCK(X0)
	CTR_BLOCK(X1)
	CTR_BLOCK(X2)
	CTR_BLOCK(X3)
	MOVQ $16, DX

ctr_round4:
	MOVOU  (AX)(DX*1), X8
	AESENC X8, X0
	AESENC X8, X1
	AESENC X8, X2
	AESENC X8, X3
	ADDQ   $16, DX
	CMPQ   DX, CX
	JB     ctr_round4
	MOVOU      (AX)(DX*1), X8
	AESENCLAST X8, X0
	AESENCLAST X8, X1
	AESENCLAST X8, X2
	AESENCLAST X8, X3
	CTR_OUT(0, X0)
	CTR_OUT(16, X1)
	CTR_OUT(32, X2)
	CTR_OUT(48, X3)
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $4, BX

ctr_tail1:
	TESTQ BX, BX
	JZ    ctr_done

ctr_loop1:
	CTR_BLOCK(X0)
	MOVQ $16, DX

ctr_round1:
	AESENC (AX)(DX*1), X0
	ADDQ   $16, DX
	CMPQ   DX, CX
	JB     ctr_round1
	AESENCLAST (AX)(DX*1), X0
	CTR_OUT(0, X0)
	ADDQ $16, SI
	ADDQ $16, DI
	DECQ BX
	JNZ  ctr_loop1

ctr_done:
	BSWAPQ R9
	MOVQ   R9, 0(R8)
	BSWAPQ R10
	MOVQ   R10, 8(R8)
	RET
