// Package aesblock is the AES block cipher under E4's AES-SIV, with the
// three operations SIV needs written as whole loops: CBC-MAC over whole
// blocks (the CMAC chain), the same chain for several messages at once
// (interleaved, so that independent chains share the AES unit), and CTR.
//
// A Block takes a round count besides the key: the standard count (10, 12
// or 14 for 16, 24 or 32-byte keys) gives AES; a smaller even count down
// to 10 runs the same key expansion (FIPS-197 section 5.2) for nr+1 round
// keys and nr rounds, the last without MixColumns. E4's fast mode uses
// AES-256 with 10 rounds this way, so every path below serves both modes.
//
// On amd64 (AES-NI, and AVX-512 VAES where present) and arm64 (ARMv8 AES)
// the loops are written in assembly, chosen at run time (build tag purego
// turns the assembly off); every other architecture, and machines without
// the instructions, run the pure-Go implementation. Tests select the
// implementation with SetImplementation so that every one stays covered.
//
// The assembly runs in constant time. The pure-Go code uses lookup tables,
// as crypto/aes's portable code does, and so shares its exposure to cache
// timing on machines without AES instructions.
package aesblock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// BlockSize is the AES block size in bytes.
const BlockSize = 16

// MaxRounds is the largest round count, that of AES-256.
const MaxRounds = 14

// MaxLanes is the largest number of chains MACLanes runs at once.
const MaxLanes = 16

// Implementation names a code path.
type Implementation int32

const (
	// Generic is the pure-Go implementation, available everywhere.
	Generic Implementation = iota + 1
	// Assembly uses the CPU's AES instructions on 128-bit registers
	// (AES-NI on amd64).
	Assembly
	// VAES is Assembly with AVX-512 VAES for the parallel work (CTR and
	// interleaved chains, four blocks per instruction); a single chain
	// gains nothing from it and runs the Assembly code.
	VAES
)

func (i Implementation) String() string {
	switch i {
	case Generic:
		return "generic"
	case Assembly:
		return "assembly"
	case VAES:
		return "vaes"
	}
	return fmt.Sprintf("Implementation(%d)", int32(i))
}

// current is the implementation New gives new Blocks.
var current atomic.Int32

func init() {
	current.Store(int32(Implementations()[0]))
}

// Implementations lists the implementations this machine can run, the
// fastest first.
func Implementations() []Implementation {
	if vaesSupported() {
		return []Implementation{VAES, Assembly, Generic}
	}
	if asmSupported() {
		return []Implementation{Assembly, Generic}
	}
	return []Implementation{Generic}
}

// SetImplementation makes New use impl from now on (Blocks already made
// keep theirs) and returns the previous choice. It is meant for tests,
// which run every vector on every implementation; it panics if impl is not
// available on this machine.
func SetImplementation(impl Implementation) (previous Implementation) {
	ok := false
	for _, i := range Implementations() {
		ok = ok || i == impl
	}
	if !ok {
		panic("aesblock: " + impl.String() + " not available on this machine")
	}
	return Implementation(current.Swap(int32(impl)))
}

// Block is an expanded AES key with its round count. It holds no mutable
// state, so a *Block may be used by any number of goroutines at once.
type Block struct {
	// xk holds the nr+1 round keys, 16 bytes each, in FIPS-197 byte order
	// (each word big-endian), starting at a 16-byte aligned address so
	// that the amd64 code may use them as memory operands.
	xk   []byte
	nr   int
	impl Implementation
}

// StandardRounds returns the AES round count for a key of keyLen bytes.
func StandardRounds(keyLen int) int { return keyLen/4 + 6 }

// New expands a 16, 24 or 32-byte key for the given number of rounds,
// which must be even, at least 10 and at most StandardRounds(len(key)).
func New(key []byte, rounds int) (*Block, error) {
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, errors.New("aesblock: invalid key size")
	}
	if rounds < 10 || rounds > StandardRounds(len(key)) || rounds%2 != 0 {
		return nil, fmt.Errorf("aesblock: %d rounds not supported for a %d-byte key", rounds, len(key))
	}
	b := &Block{nr: rounds, impl: Implementation(current.Load())}
	b.xk = aligned16((rounds + 1) * BlockSize)
	expandKey(b.xk, key, rounds)
	return b, nil
}

// aligned16 returns n zero bytes starting at a 16-byte aligned address.
func aligned16(n int) []byte {
	buf := make([]byte, n+15)
	off := int(-uintptr(unsafe.Pointer(&buf[0])) & 15)
	return buf[off : off+n : off+n]
}

// rcon holds the round constants of the key expansion.
var rcon = [10]uint32{0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1b, 0x36}

// expandKey runs the FIPS-197 key expansion (section 5.2) for nr rounds,
// writing 4*(nr+1) words big-endian into xk.
func expandKey(xk, key []byte, nr int) {
	nk := len(key) / 4
	w := make([]uint32, 4*(nr+1))
	for i := range nk {
		w[i] = binary.BigEndian.Uint32(key[4*i:])
	}
	for i := nk; i < len(w); i++ {
		t := w[i-1]
		switch {
		case i%nk == 0:
			t = subWord(t<<8|t>>24) ^ rcon[i/nk-1]<<24
		case nk > 6 && i%nk == 4:
			t = subWord(t)
		}
		w[i] = w[i-nk] ^ t
	}
	for i, v := range w {
		binary.BigEndian.PutUint32(xk[4*i:], v)
	}
	clear(w)
}

func subWord(w uint32) uint32 {
	return uint32(sbox[w>>24])<<24 | uint32(sbox[w>>16&0xff])<<16 |
		uint32(sbox[w>>8&0xff])<<8 | uint32(sbox[w&0xff])
}

// Rounds returns the number of rounds b runs.
func (b *Block) Rounds() int { return b.nr }

// Implementation returns the code path b runs on.
func (b *Block) Implementation() Implementation { return b.impl }

// Encrypt encrypts one block; dst and src may be the same.
func (b *Block) Encrypt(dst, src *[BlockSize]byte) {
	if b.impl != Generic {
		encryptAsm(b.nr, &b.xk[0], dst, src)
		return
	}
	encryptGo(b.xk, b.nr, dst, src)
}

// MAC runs the CBC-MAC chain over p, whose length must be a multiple of
// the block size: for each block m, x = E(x xor m).
func (b *Block) MAC(x *[BlockSize]byte, p []byte) {
	n := wholeBlocks(len(p))
	if n == 0 {
		return
	}
	if b.impl != Generic {
		macAsm(b.nr, &b.xk[0], x, &p[0], n)
		return
	}
	for ; len(p) > 0; p = p[BlockSize:] {
		xorBlock(x, x, (*[BlockSize]byte)(p))
		encryptGo(b.xk, b.nr, x, x)
	}
}

// MACLanes runs lanes independent CBC-MAC chains under b, each over its
// first n blocks: lane i absorbs p[i][:n*BlockSize] into x[i]. The chains
// are interleaved, so that several chains cost little more than one. Lanes
// i >= lanes are neither read nor written.
func (b *Block) MACLanes(x *[MaxLanes][BlockSize]byte, p *[MaxLanes][]byte, lanes, n int) {
	if lanes < 1 || lanes > MaxLanes {
		panic("aesblock: invalid lane count")
	}
	for i := range lanes {
		if len(p[i]) < n*BlockSize {
			panic("aesblock: lane shorter than n blocks")
		}
	}
	if n == 0 {
		return
	}
	if b.impl == Generic || lanes == 1 {
		for i := range lanes {
			b.MAC(&x[i], p[i][:n*BlockSize])
		}
		return
	}
	// The assembly runs 4, 8 or 16 chains; lanes beyond those asked for
	// repeat lane 0 into scratch chaining values, which are then dropped.
	var ptrs [MaxLanes]*byte
	var xs [MaxLanes][BlockSize]byte
	for i := range MaxLanes {
		ptrs[i] = &p[0][0]
		if i < lanes {
			ptrs[i] = &p[i][0]
			xs[i] = x[i]
		}
	}
	switch {
	case b.impl == VAES && lanes > 8:
		mac16VAES(b.nr, &b.xk[0], &xs, &ptrs, n)
	case b.impl == VAES && lanes > 4:
		mac8VAES(b.nr, &b.xk[0], (*[8][BlockSize]byte)(xs[:8]), (*[8]*byte)(ptrs[:8]), n)
	case lanes <= 4:
		mac4Asm(b.nr, &b.xk[0], (*[8][BlockSize]byte)(xs[:8]), (*[8]*byte)(ptrs[:8]), n)
	default:
		mac8Asm(b.nr, &b.xk[0], (*[8][BlockSize]byte)(xs[:8]), (*[8]*byte)(ptrs[:8]), n)
		if lanes > 8 {
			mac8Asm(b.nr, &b.xk[0], (*[8][BlockSize]byte)(xs[8:]), (*[8]*byte)(ptrs[8:]), n)
		}
	}
	copy(x[:lanes], xs[:lanes])
	clear(xs[:])
}

// CTR XORs src with the AES-CTR keystream that starts at counter block iv
// (a 128-bit big-endian counter, wrapping) into dst, which must be at
// least as long as src. dst and src may overlap only exactly.
func (b *Block) CTR(dst, src []byte, iv *[BlockSize]byte) {
	if len(dst) < len(src) {
		panic("aesblock: output smaller than input")
	}
	if len(src) == 0 {
		return
	}
	ctr := *iv
	n := len(src) / BlockSize
	done := 0
	if b.impl == VAES && n >= 16 {
		// Sixteen blocks at a time while the low 64 bits of the counter
		// do not wrap (always, for SIV, whose counter has bit 63 clear).
		lo := binary.BigEndian.Uint64(ctr[8:])
		if m := n &^ 15; lo+uint64(m) >= lo {
			ctrVAES(b.nr, &b.xk[0], &ctr, &dst[0], &src[0], m)
			binary.BigEndian.PutUint64(ctr[8:], lo+uint64(m))
			done = m
		}
	}
	if rest := n - done; rest > 0 {
		d, s := dst[done*BlockSize:], src[done*BlockSize:n*BlockSize]
		if b.impl == Generic {
			ctrGo(b.xk, b.nr, &ctr, d, s)
		} else {
			ctrAsm(b.nr, &b.xk[0], &ctr, &d[0], &s[0], rest)
		}
	}
	if rest := src[n*BlockSize:]; len(rest) > 0 {
		var ks [BlockSize]byte
		b.Encrypt(&ks, &ctr)
		for i := range rest {
			dst[n*BlockSize+i] = rest[i] ^ ks[i]
		}
		clear(ks[:])
	}
}

// ctrGo is the generic CTR over whole blocks; it advances ctr past them.
func ctrGo(xk []byte, nr int, ctr *[BlockSize]byte, dst, src []byte) {
	hi := binary.BigEndian.Uint64(ctr[:8])
	lo := binary.BigEndian.Uint64(ctr[8:])
	var ks [BlockSize]byte
	for i := 0; i < len(src); i += BlockSize {
		binary.BigEndian.PutUint64(ks[:8], hi)
		binary.BigEndian.PutUint64(ks[8:], lo)
		encryptGo(xk, nr, &ks, &ks)
		xorBlock((*[BlockSize]byte)(dst[i:]), (*[BlockSize]byte)(src[i:]), &ks)
		lo++
		if lo == 0 {
			hi++
		}
	}
	binary.BigEndian.PutUint64(ctr[:8], hi)
	binary.BigEndian.PutUint64(ctr[8:], lo)
	clear(ks[:])
}

func wholeBlocks(n int) int {
	if n%BlockSize != 0 {
		panic("aesblock: input not a multiple of the block size")
	}
	return n / BlockSize
}

func xorBlock(dst, a, b *[BlockSize]byte) {
	x := binary.NativeEndian.Uint64(a[:8]) ^ binary.NativeEndian.Uint64(b[:8])
	y := binary.NativeEndian.Uint64(a[8:]) ^ binary.NativeEndian.Uint64(b[8:])
	binary.NativeEndian.PutUint64(dst[:8], x)
	binary.NativeEndian.PutUint64(dst[8:], y)
}
