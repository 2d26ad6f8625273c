//go:build !purego

#include "textflag.h"

// ARMv8 AES: AESE xors the round key and runs SubBytes and ShiftRows,
// AESMC runs MixColumns, so round i is AESE rk[i]; AESMC, the last round
// is AESE rk[nr-1] and the output xor is rk[nr]. Round keys are in
// FIPS-197 byte order, which is what AESE expects in memory order.
// The loops keep rk0..rk[nr] in V16..V(16+nr).

// LOAD_KEYS loads rk0..rk[nr] (nr in R0, keys at R1) into V16.., reading
// only the keys that exist. It advances R1.
#define LOAD_KEYS \
	VLD1.P 64(R1), [V16.B16, V17.B16, V18.B16, V19.B16]; \
	VLD1.P 64(R1), [V20.B16, V21.B16, V22.B16, V23.B16]; \
	VLD1.P 48(R1), [V24.B16, V25.B16, V26.B16]; \
	CMP    $12, R0; \
	BLT    keys_done; \
	VLD1.P 32(R1), [V27.B16, V28.B16]; \
	BEQ    keys_done; \
	VLD1   (R1), [V29.B16, V30.B16]; \
keys_done:

// func encryptAsm(nr int, xk *byte, dst, src *[16]byte)
TEXT ·encryptAsm(SB), NOSPLIT, $0-32
	MOVD nr+0(FP), R0
	MOVD xk+8(FP), R1
	MOVD dst+16(FP), R2
	MOVD src+24(FP), R3
	VLD1 (R3), [V0.B16]
	SUB  $1, R0

enc_round:
	VLD1.P 16(R1), [V1.B16]
	AESE   V1.B16, V0.B16
	AESMC  V0.B16, V0.B16
	SUBS   $1, R0
	BNE    enc_round
	VLD1.P 16(R1), [V1.B16]
	AESE   V1.B16, V0.B16
	VLD1   (R1), [V1.B16]
	VEOR   V1.B16, V0.B16, V0.B16
	VST1   [V0.B16], (R2)
	RET

#define RMC1(K) \
	AESE  K.B16, V0.B16; \
	AESMC V0.B16, V0.B16

// MAC1_START absorbs the next message block (at R3, advanced) into V0,
// which carries chain xor K_last (in KL): the block and K_last are folded
// into the first round key (t = m xor K_last xor rk0, computed off the
// chain), so the chain's critical path is the AES instructions alone.
#define MAC1_START(KL) \
	VLD1.P 16(R3), [V1.B16]; \
	VEOR   KL.B16, V1.B16, V1.B16; \
	VEOR   V16.B16, V1.B16, V1.B16; \
	RMC1(V1); \
	RMC1(V17); \
	RMC1(V18); \
	RMC1(V19); \
	RMC1(V20); \
	RMC1(V21); \
	RMC1(V22); \
	RMC1(V23); \
	RMC1(V24)

// func macAsm(nr int, xk *byte, x *[16]byte, p *byte, n int)
TEXT ·macAsm(SB), NOSPLIT, $0-40
	MOVD nr+0(FP), R0
	MOVD xk+8(FP), R1
	MOVD x+16(FP), R2
	MOVD p+24(FP), R3
	MOVD n+32(FP), R4
	LOAD_KEYS
	VLD1 (R2), [V0.B16]
	CMP  $12, R0
	BLT  mac10
	BEQ  mac12
	VEOR V30.B16, V0.B16, V0.B16

mac14_loop:
	MAC1_START(V30)
	RMC1(V25)
	RMC1(V26)
	RMC1(V27)
	RMC1(V28)
	AESE V29.B16, V0.B16
	SUBS $1, R4
	BNE  mac14_loop
	VEOR V30.B16, V0.B16, V0.B16
	B    mac_done

mac12:
	VEOR V28.B16, V0.B16, V0.B16

mac12_loop:
	MAC1_START(V28)
	RMC1(V25)
	RMC1(V26)
	AESE V27.B16, V0.B16
	SUBS $1, R4
	BNE  mac12_loop
	VEOR V28.B16, V0.B16, V0.B16
	B    mac_done

mac10:
	VEOR V26.B16, V0.B16, V0.B16

mac10_loop:
	MAC1_START(V26)
	AESE V25.B16, V0.B16
	SUBS $1, R4
	BNE  mac10_loop
	VEOR V26.B16, V0.B16, V0.B16

mac_done:
	VST1 [V0.B16], (R2)
	RET

// Interleaved chains: states in V0..V7, message blocks in V8..V15. The
// states carry chain xor K_last (V31) as in macAsm.

#define RMC4(K) \
	AESE  K.B16, V0.B16; \
	AESMC V0.B16, V0.B16; \
	AESE  K.B16, V1.B16; \
	AESMC V1.B16, V1.B16; \
	AESE  K.B16, V2.B16; \
	AESMC V2.B16, V2.B16; \
	AESE  K.B16, V3.B16; \
	AESMC V3.B16, V3.B16

#define RMC8_HI(K) \
	AESE  K.B16, V4.B16; \
	AESMC V4.B16, V4.B16; \
	AESE  K.B16, V5.B16; \
	AESMC V5.B16, V5.B16; \
	AESE  K.B16, V6.B16; \
	AESMC V6.B16, V6.B16; \
	AESE  K.B16, V7.B16; \
	AESMC V7.B16, V7.B16

#define LAST4(K) \
	AESE K.B16, V0.B16; \
	AESE K.B16, V1.B16; \
	AESE K.B16, V2.B16; \
	AESE K.B16, V3.B16

#define LAST8_HI(K) \
	AESE K.B16, V4.B16; \
	AESE K.B16, V5.B16; \
	AESE K.B16, V6.B16; \
	AESE K.B16, V7.B16

// LANE(i, S, M) loads the next block of lane i (base pointer at 8*i(R3),
// offset R5) and folds it, K_last (V31) and rk0 into M, the lane's own
// first round key, as in macAsm.
#define LANE(i, S, M) \
	MOVD (8*i)(R3), R6; \
	ADD  R5, R6, R6; \
	VLD1 (R6), [M.B16]; \
	VEOR V31.B16, M.B16, M.B16; \
	VEOR V16.B16, M.B16, M.B16

// FIRST4 and FIRST8_HI run round 0 with each lane's own key V8..V15.
#define FIRST4 \
	AESE  V8.B16, V0.B16; \
	AESMC V0.B16, V0.B16; \
	AESE  V9.B16, V1.B16; \
	AESMC V1.B16, V1.B16; \
	AESE  V10.B16, V2.B16; \
	AESMC V2.B16, V2.B16; \
	AESE  V11.B16, V3.B16; \
	AESMC V3.B16, V3.B16

#define FIRST8_HI \
	AESE  V12.B16, V4.B16; \
	AESMC V4.B16, V4.B16; \
	AESE  V13.B16, V5.B16; \
	AESMC V5.B16, V5.B16; \
	AESE  V14.B16, V6.B16; \
	AESMC V6.B16, V6.B16; \
	AESE  V15.B16, V7.B16; \
	AESMC V7.B16, V7.B16

// SET_KLAST puts rk[nr] in V31.
#define SET_KLAST \
	CMP  $12, R0; \
	BLT  kl10; \
	BEQ  kl12; \
	VMOV V30.B16, V31.B16; \
	B    kl_done; \
kl12: \
	VMOV V28.B16, V31.B16; \
	B    kl_done; \
kl10: \
	VMOV V26.B16, V31.B16; \
kl_done:

// func mac4Asm(nr int, xk *byte, x *[8][16]byte, p *[8]*byte, n int)
TEXT ·mac4Asm(SB), NOSPLIT, $0-40
	MOVD nr+0(FP), R0
	MOVD xk+8(FP), R1
	MOVD x+16(FP), R2
	MOVD p+24(FP), R3
	MOVD n+32(FP), R4
	MOVD $0, R5
	LOAD_KEYS
	SET_KLAST
	VLD1 (R2), [V0.B16, V1.B16, V2.B16, V3.B16]
	VEOR V31.B16, V0.B16, V0.B16
	VEOR V31.B16, V1.B16, V1.B16
	VEOR V31.B16, V2.B16, V2.B16
	VEOR V31.B16, V3.B16, V3.B16

m4_block:
	LANE(0, V0, V8)
	LANE(1, V1, V9)
	LANE(2, V2, V10)
	LANE(3, V3, V11)
	FIRST4
	RMC4(V17)
	RMC4(V18)
	RMC4(V19)
	RMC4(V20)
	RMC4(V21)
	RMC4(V22)
	RMC4(V23)
	RMC4(V24)
	CMP $12, R0
	BLT m4_last10
	RMC4(V25)
	RMC4(V26)
	BEQ m4_last12
	RMC4(V27)
	RMC4(V28)
	LAST4(V29)
	B   m4_next

m4_last12:
	LAST4(V27)
	B m4_next

m4_last10:
	LAST4(V25)

m4_next:
	ADD  $16, R5
	SUBS $1, R4
	BNE  m4_block
	VEOR V31.B16, V0.B16, V0.B16
	VEOR V31.B16, V1.B16, V1.B16
	VEOR V31.B16, V2.B16, V2.B16
	VEOR V31.B16, V3.B16, V3.B16
	VST1 [V0.B16, V1.B16, V2.B16, V3.B16], (R2)
	RET

// func mac8Asm(nr int, xk *byte, x *[8][16]byte, p *[8]*byte, n int)
TEXT ·mac8Asm(SB), NOSPLIT, $0-40
	MOVD nr+0(FP), R0
	MOVD xk+8(FP), R1
	MOVD x+16(FP), R2
	MOVD p+24(FP), R3
	MOVD n+32(FP), R4
	MOVD $0, R5
	LOAD_KEYS
	SET_KLAST
	MOVD   R2, R7
	VLD1.P 64(R7), [V0.B16, V1.B16, V2.B16, V3.B16]
	VLD1   (R7), [V4.B16, V5.B16, V6.B16, V7.B16]
	VEOR   V31.B16, V0.B16, V0.B16
	VEOR   V31.B16, V1.B16, V1.B16
	VEOR   V31.B16, V2.B16, V2.B16
	VEOR   V31.B16, V3.B16, V3.B16
	VEOR   V31.B16, V4.B16, V4.B16
	VEOR   V31.B16, V5.B16, V5.B16
	VEOR   V31.B16, V6.B16, V6.B16
	VEOR   V31.B16, V7.B16, V7.B16

m8_block:
	LANE(0, V0, V8)
	LANE(1, V1, V9)
	LANE(2, V2, V10)
	LANE(3, V3, V11)
	LANE(4, V4, V12)
	LANE(5, V5, V13)
	LANE(6, V6, V14)
	LANE(7, V7, V15)
	FIRST4
	FIRST8_HI
	RMC4(V17)
	RMC8_HI(V17)
	RMC4(V18)
	RMC8_HI(V18)
	RMC4(V19)
	RMC8_HI(V19)
	RMC4(V20)
	RMC8_HI(V20)
	RMC4(V21)
	RMC8_HI(V21)
	RMC4(V22)
	RMC8_HI(V22)
	RMC4(V23)
	RMC8_HI(V23)
	RMC4(V24)
	RMC8_HI(V24)
	CMP $12, R0
	BLT m8_last10
	RMC4(V25)
	RMC8_HI(V25)
	RMC4(V26)
	RMC8_HI(V26)
	BEQ m8_last12
	RMC4(V27)
	RMC8_HI(V27)
	RMC4(V28)
	RMC8_HI(V28)
	LAST4(V29)
	LAST8_HI(V29)
	B   m8_next

m8_last12:
	LAST4(V27)
	LAST8_HI(V27)
	B m8_next

m8_last10:
	LAST4(V25)
	LAST8_HI(V25)

m8_next:
	ADD  $16, R5
	SUBS $1, R4
	BNE  m8_block
	VEOR V31.B16, V0.B16, V0.B16
	VEOR V31.B16, V1.B16, V1.B16
	VEOR V31.B16, V2.B16, V2.B16
	VEOR V31.B16, V3.B16, V3.B16
	VEOR V31.B16, V4.B16, V4.B16
	VEOR V31.B16, V5.B16, V5.B16
	VEOR V31.B16, V6.B16, V6.B16
	VEOR V31.B16, V7.B16, V7.B16
	MOVD R2, R7
	VST1.P [V0.B16, V1.B16, V2.B16, V3.B16], 64(R7)
	VST1   [V4.B16, V5.B16, V6.B16, V7.B16], (R7)
	RET

// CTR_BLOCK(S) sets S to the counter (hi R8, lo R9 as numbers, big-endian
// in memory) and increments the counter.
#define CTR_BLOCK(S) \
	REV  R8, R10; \
	REV  R9, R11; \
	VMOV R10, S.D[0]; \
	VMOV R11, S.D[1]; \
	ADDS $1, R9, R9; \
	ADC  ZR, R8, R8

// func ctrAsm(nr int, xk *byte, ctr *[16]byte, dst, src *byte, n int)
TEXT ·ctrAsm(SB), NOSPLIT, $0-48
	MOVD nr+0(FP), R0
	MOVD xk+8(FP), R1
	MOVD ctr+16(FP), R2
	MOVD dst+24(FP), R3
	MOVD src+32(FP), R4
	MOVD n+40(FP), R5
	LOAD_KEYS
	SET_KLAST
	MOVD (R2), R8
	MOVD 8(R2), R9
	REV  R8, R8
	REV  R9, R9
	CMP  $4, R5
	BLT  ctr_tail

ctr_loop4:
	CTR_BLOCK(V0)
	CTR_BLOCK(V1)
	CTR_BLOCK(V2)
	CTR_BLOCK(V3)
	RMC4(V16)
	RMC4(V17)
	RMC4(V18)
	RMC4(V19)
	RMC4(V20)
	RMC4(V21)
	RMC4(V22)
	RMC4(V23)
	RMC4(V24)
	CMP $12, R0
	BLT c4_last10
	RMC4(V25)
	RMC4(V26)
	BEQ c4_last12
	RMC4(V27)
	RMC4(V28)
	LAST4(V29)
	B   c4_out

c4_last12:
	LAST4(V27)
	B c4_out

c4_last10:
	LAST4(V25)

c4_out:
	VEOR   V31.B16, V0.B16, V0.B16
	VEOR   V31.B16, V1.B16, V1.B16
	VEOR   V31.B16, V2.B16, V2.B16
	VEOR   V31.B16, V3.B16, V3.B16
	VLD1.P 64(R4), [V8.B16, V9.B16, V10.B16, V11.B16]
	VEOR   V8.B16, V0.B16, V0.B16
	VEOR   V9.B16, V1.B16, V1.B16
	VEOR   V10.B16, V2.B16, V2.B16
	VEOR   V11.B16, V3.B16, V3.B16
	VST1.P [V0.B16, V1.B16, V2.B16, V3.B16], 64(R3)
	SUB    $4, R5
	CMP    $4, R5
	BGE    ctr_loop4

ctr_tail:
	CBZ R5, ctr_done

ctr_loop1:
	CTR_BLOCK(V0)
	RMC1(V16)
	RMC1(V17)
	RMC1(V18)
	RMC1(V19)
	RMC1(V20)
	RMC1(V21)
	RMC1(V22)
	RMC1(V23)
	RMC1(V24)
	CMP $12, R0
	BLT c1_last10
	RMC1(V25)
	RMC1(V26)
	BEQ c1_last12
	RMC1(V27)
	RMC1(V28)
	AESE V29.B16, V0.B16
	B    c1_out

c1_last12:
	AESE V27.B16, V0.B16
	B    c1_out

c1_last10:
	AESE V25.B16, V0.B16

c1_out:
	VEOR   V31.B16, V0.B16, V0.B16
	VLD1.P 16(R4), [V8.B16]
	VEOR   V8.B16, V0.B16, V0.B16
	VST1.P [V0.B16], 16(R3)
	SUBS   $1, R5
	BNE    ctr_loop1

ctr_done:
	REV  R8, R8
	REV  R9, R9
	MOVD R8, (R2)
	MOVD R9, 8(R2)
	RET
