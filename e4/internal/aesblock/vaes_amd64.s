//go:build !purego

#include "textflag.h"

// AVX-512 VAES: each ZMM register holds four AES blocks, and one VAESENC
// runs a round on all four. Round key i is broadcast to Z(16+i); the
// states carry x xor rk0 and Z31 holds rk[nr] xor rk0 in the MAC code, as
// in the SSE code.

// LOAD_KEYS broadcasts rk0..rk[nr] (nr in CX) into Z16..Z(16+nr), reading
// only the nr+1 keys that exist.
#define LOAD_KEYS \
	VBROADCASTI32X4 0(AX), Z16; \
	VBROADCASTI32X4 16(AX), Z17; \
	VBROADCASTI32X4 32(AX), Z18; \
	VBROADCASTI32X4 48(AX), Z19; \
	VBROADCASTI32X4 64(AX), Z20; \
	VBROADCASTI32X4 80(AX), Z21; \
	VBROADCASTI32X4 96(AX), Z22; \
	VBROADCASTI32X4 112(AX), Z23; \
	VBROADCASTI32X4 128(AX), Z24; \
	VBROADCASTI32X4 144(AX), Z25; \
	VBROADCASTI32X4 160(AX), Z26; \
	CMPQ CX, $12; \
	JB   keys_done; \
	VBROADCASTI32X4 176(AX), Z27; \
	VBROADCASTI32X4 192(AX), Z28; \
	JE   keys_done; \
	VBROADCASTI32X4 208(AX), Z29; \
	VBROADCASTI32X4 224(AX), Z30; \
keys_done:

#define ROUND2(K) \
	VAESENC K, Z0, Z0; \
	VAESENC K, Z1, Z1

#define ROUND4(K) \
	VAESENC K, Z0, Z0; \
	VAESENC K, Z1, Z1; \
	VAESENC K, Z2, Z2; \
	VAESENC K, Z3, Z3

#define LAST2(K) \
	VAESENCLAST K, Z0, Z0; \
	VAESENCLAST K, Z1, Z1

#define LAST4(K) \
	VAESENCLAST K, Z0, Z0; \
	VAESENCLAST K, Z1, Z1; \
	VAESENCLAST K, Z2, Z2; \
	VAESENCLAST K, Z3, Z3

// LOAD_LANES(g, T) loads the next block of lanes 4g..4g+3 (base pointers
// in the array at BX, offset SI) into T.
#define LOAD_LANES(g, T) \
	MOVQ         (8*(4*g))(BX), R12; \
	VMOVDQU      (R12)(SI*1), X10; \
	VMOVDQU64    Z10, T; \
	MOVQ         (8*(4*g+1))(BX), R12; \
	VINSERTI32X4 $1, (R12)(SI*1), T, T; \
	MOVQ         (8*(4*g+2))(BX), R12; \
	VINSERTI32X4 $2, (R12)(SI*1), T, T; \
	MOVQ         (8*(4*g+3))(BX), R12; \
	VINSERTI32X4 $3, (R12)(SI*1), T, T

// LAST_FOLD(g, Z, T) is the last round of group g with each lane's next
// message block folded into its key (Z31 = rk[nr] xor rk0), as in macAsm.
#define LAST_FOLD(g, Z, T) \
	LOAD_LANES(g, T); \
	VPXORQ      Z31, T, T; \
	VAESENCLAST T, Z, Z

// FOLD_LAST sets Z31 = rk[nr] xor rk0.
#define FOLD_LAST \
	MOVQ            CX, DX; \
	SHLQ            $4, DX; \
	VBROADCASTI32X4 (AX)(DX*1), Z31; \
	VPXORQ          Z16, Z31, Z31

// MIDDLE_ROUNDS2 and MIDDLE_ROUNDS4 run rounds 1..nr-1 (nr in CX) on two
// or four groups; they use the labels given, which must be unique.
#define MIDDLE_ROUNDS2(done) \
	ROUND2(Z17); \
	ROUND2(Z18); \
	ROUND2(Z19); \
	ROUND2(Z20); \
	ROUND2(Z21); \
	ROUND2(Z22); \
	ROUND2(Z23); \
	ROUND2(Z24); \
	ROUND2(Z25); \
	CMPQ CX, $12; \
	JB   done; \
	ROUND2(Z26); \
	ROUND2(Z27); \
	JE   done; \
	ROUND2(Z28); \
	ROUND2(Z29); \
done:

#define MIDDLE_ROUNDS4(done) \
	ROUND4(Z17); \
	ROUND4(Z18); \
	ROUND4(Z19); \
	ROUND4(Z20); \
	ROUND4(Z21); \
	ROUND4(Z22); \
	ROUND4(Z23); \
	ROUND4(Z24); \
	ROUND4(Z25); \
	CMPQ CX, $12; \
	JB   done; \
	ROUND4(Z26); \
	ROUND4(Z27); \
	JE   done; \
	ROUND4(Z28); \
	ROUND4(Z29); \
done:

// func mac8VAES(nr int, xk *byte, x *[8][16]byte, p *[8]*byte, n int)
TEXT ·mac8VAES(SB), NOSPLIT, $0-40
	MOVQ nr+0(FP), CX
	MOVQ xk+8(FP), AX
	MOVQ x+16(FP), DI
	MOVQ p+24(FP), BX
	MOVQ n+32(FP), R13
	XORQ SI, SI
	LOAD_KEYS
	FOLD_LAST
	VMOVDQU64 0(DI), Z0
	VMOVDQU64 64(DI), Z1
	VPXORQ    Z16, Z0, Z0
	VPXORQ    Z16, Z1, Z1
	LOAD_LANES(0, Z12)
	LOAD_LANES(1, Z13)
	VPXORQ    Z12, Z0, Z0
	VPXORQ    Z13, Z1, Z1
	ADDQ      $16, SI
	DECQ      R13
	JZ        m8_last

m8_block:
	MIDDLE_ROUNDS2(m8_mid)
	LAST_FOLD(0, Z0, Z12)
	LAST_FOLD(1, Z1, Z13)
	ADDQ $16, SI
	DECQ R13
	JNZ  m8_block

m8_last:
	MIDDLE_ROUNDS2(m8_lmid)
	LAST2(Z31)
	VPXORQ    Z16, Z0, Z0
	VPXORQ    Z16, Z1, Z1
	VMOVDQU64 Z0, 0(DI)
	VMOVDQU64 Z1, 64(DI)
	VZEROUPPER
	RET

// func mac16VAES(nr int, xk *byte, x *[16][16]byte, p *[16]*byte, n int)
TEXT ·mac16VAES(SB), NOSPLIT, $0-40
	MOVQ nr+0(FP), CX
	MOVQ xk+8(FP), AX
	MOVQ x+16(FP), DI
	MOVQ p+24(FP), BX
	MOVQ n+32(FP), R13
	XORQ SI, SI
	LOAD_KEYS
	FOLD_LAST
	VMOVDQU64 0(DI), Z0
	VMOVDQU64 64(DI), Z1
	VMOVDQU64 128(DI), Z2
	VMOVDQU64 192(DI), Z3
	VPXORQ    Z16, Z0, Z0
	VPXORQ    Z16, Z1, Z1
	VPXORQ    Z16, Z2, Z2
	VPXORQ    Z16, Z3, Z3
	LOAD_LANES(0, Z12)
	LOAD_LANES(1, Z13)
	LOAD_LANES(2, Z14)
	LOAD_LANES(3, Z15)
	VPXORQ    Z12, Z0, Z0
	VPXORQ    Z13, Z1, Z1
	VPXORQ    Z14, Z2, Z2
	VPXORQ    Z15, Z3, Z3
	ADDQ      $16, SI
	DECQ      R13
	JZ        m16_last

m16_block:
	MIDDLE_ROUNDS4(m16_mid)
	LAST_FOLD(0, Z0, Z12)
	LAST_FOLD(1, Z1, Z13)
	LAST_FOLD(2, Z2, Z14)
	LAST_FOLD(3, Z3, Z15)
	ADDQ $16, SI
	DECQ R13
	JNZ  m16_block

m16_last:
	MIDDLE_ROUNDS4(m16_lmid)
	LAST4(Z31)
	VPXORQ    Z16, Z0, Z0
	VPXORQ    Z16, Z1, Z1
	VPXORQ    Z16, Z2, Z2
	VPXORQ    Z16, Z3, Z3
	VMOVDQU64 Z0, 0(DI)
	VMOVDQU64 Z1, 64(DI)
	VMOVDQU64 Z2, 128(DI)
	VMOVDQU64 Z3, 192(DI)
	VZEROUPPER
	RET

// byteswap reverses the bytes of each 128-bit lane (VPSHUFB control).
DATA byteswap<>+0(SB)/8, $0x08090a0b0c0d0e0f
DATA byteswap<>+8(SB)/8, $0x0001020304050607
GLOBL byteswap<>(SB), RODATA|NOPTR, $16

// laneoffs adds 0, 1, 2, 3 to the low quadword of the four lanes.
DATA laneoffs<>+0(SB)/8, $0
DATA laneoffs<>+8(SB)/8, $0
DATA laneoffs<>+16(SB)/8, $1
DATA laneoffs<>+24(SB)/8, $0
DATA laneoffs<>+32(SB)/8, $2
DATA laneoffs<>+40(SB)/8, $0
DATA laneoffs<>+48(SB)/8, $3
DATA laneoffs<>+56(SB)/8, $0
GLOBL laneoffs<>(SB), RODATA|NOPTR, $64

// four adds 4 to the low quadword of every lane.
DATA four<>+0(SB)/8, $4
DATA four<>+8(SB)/8, $0
GLOBL four<>(SB), RODATA|NOPTR, $16

#define CTR_XOR(off, Z) \
	VPXORQ    off(SI), Z, Z; \
	VMOVDQU64 Z, off(DI)

// func ctrVAES(nr int, xk *byte, ctr *[16]byte, dst, src *byte, n int)
//
// n is a multiple of 16 and the low 64 bits of the counter do not wrap
// within n blocks (the caller checks), so each lane's counter is its low
// quadword plus an offset: the counters are kept byte-swapped (as little-
// endian numbers) in Z8 and swapped back for encryption.
TEXT ·ctrVAES(SB), NOSPLIT, $0-48
	MOVQ nr+0(FP), CX
	MOVQ xk+8(FP), AX
	MOVQ ctr+16(FP), R8
	MOVQ dst+24(FP), DI
	MOVQ src+32(FP), SI
	MOVQ n+40(FP), BX
	LOAD_KEYS
	VBROADCASTI32X4 byteswap<>(SB), Z11
	VBROADCASTI32X4 four<>(SB), Z9
	VBROADCASTI32X4 (R8), Z8
	VPSHUFB         Z11, Z8, Z8
	VPADDQ          laneoffs<>(SB), Z8, Z8

ctr16_loop:
	VPSHUFB Z11, Z8, Z0
	VPADDQ  Z9, Z8, Z8
	VPSHUFB Z11, Z8, Z1
	VPADDQ  Z9, Z8, Z8
	VPSHUFB Z11, Z8, Z2
	VPADDQ  Z9, Z8, Z8
	VPSHUFB Z11, Z8, Z3
	VPADDQ  Z9, Z8, Z8
	VPXORQ  Z16, Z0, Z0
	VPXORQ  Z16, Z1, Z1
	VPXORQ  Z16, Z2, Z2
	VPXORQ  Z16, Z3, Z3
	ROUND4(Z17)
	ROUND4(Z18)
	ROUND4(Z19)
	ROUND4(Z20)
	ROUND4(Z21)
	ROUND4(Z22)
	ROUND4(Z23)
	ROUND4(Z24)
	ROUND4(Z25)
	CMPQ CX, $12
	JB   ctr_last10
	ROUND4(Z26)
	ROUND4(Z27)
	JE   ctr_last12
	ROUND4(Z28)
	ROUND4(Z29)
	LAST4(Z30)
	JMP  ctr_out

ctr_last12:
	LAST4(Z28)
	JMP ctr_out

ctr_last10:
	LAST4(Z26)

ctr_out:
	CTR_XOR(0, Z0)
	CTR_XOR(64, Z1)
	CTR_XOR(128, Z2)
	CTR_XOR(192, Z3)
	ADDQ $256, SI
	ADDQ $256, DI
	SUBQ $16, BX
	JNZ  ctr16_loop
	VZEROUPPER
	RET
