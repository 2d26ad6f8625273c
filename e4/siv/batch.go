package siv

import (
	"crypto/subtle"

	"github.com/e4-iot/e4kit/e4/internal/aesblock"
)

// BatchItem is one message of SealBatch or OpenBatch.
type BatchItem struct {
	// Cipher is the key the message is sealed or opened with; items of
	// one batch may use different ciphers.
	Cipher *Cipher
	// Dst is what the output is appended to, as the dst of Seal and Open.
	Dst []byte
	// In is the plaintext (SealBatch) or SIV || ciphertext (OpenBatch).
	In []byte
	// AD is the one associated data string (E4's timestamp): the item is
	// sealed or opened as with Seal(Dst, In, AD) and Open(Dst, In, AD).
	// A nil AD is one empty string, not none.
	AD []byte
	// Out is set to what Seal or Open would return: Dst with the output
	// appended, or nil when Open fails.
	Out []byte
	// Err is set to nil, or ErrOpen when OpenBatch finds the item not
	// authentic. A failed item does not affect the others.
	Err error
}

// batchChunk is how many items are worked on together: the most chains
// aesblock interleaves.
const batchChunk = aesblock.MaxLanes

// SealBatch seals every item as Seal would (items[i].Out is exactly
// Seal(items[i].Dst, items[i].In, items[i].AD)), running the S2V
// chains of up to sixteen items under the same key interleaved, so that
// they share the AES unit instead of each waiting on the latency of its
// own chain. The buffer rules of Seal hold within each item, and items
// must not share memory with each other's output. Like Seal it panics on
// an invalid overlap.
func SealBatch(items []BatchItem) {
	for len(items) > 0 {
		n := min(len(items), batchChunk)
		sealChunk(items[:n])
		items = items[n:]
	}
}

// OpenBatch opens every item as Open would: items[i].Out and items[i].Err
// are what Open(items[i].Dst, items[i].In, items[i].AD) returns, one
// forged item failing alone. The S2V chains of up to sixteen items under
// the same key run interleaved. The buffer rules of Open hold within each
// item, and items must not share memory with each other's output.
func OpenBatch(items []BatchItem) {
	for len(items) > 0 {
		n := min(len(items), batchChunk)
		openChunk(items[:n])
		items = items[n:]
	}
}

// chunk is the working state of up to batchChunk items. It holds no
// pointers into itself (the chains are described by index), which keeps it
// on the stack.
type chunk struct {
	st   [batchChunk]state           // scratch: long headers, CTR counter
	d    [batchChunk][blockSize]byte // S2V accumulators
	x    [batchChunk][blockSize]byte // chaining values; the SIVs at the end
	b    [batchChunk]*aesblock.Block // chain keys; nil for no chain
	last [batchChunk][2 * blockSize]byte
	n    int
}

func (ch *chunk) wipe() {
	for i := range ch.n {
		ch.st[i].wipe()
		clear(ch.x[i][:])
		clear(ch.last[i][:])
	}
}

// headers runs s2vHeaders for every active item, the one-block headers
// (E4's timestamp) as interleaved chains of one block each.
func (ch *chunk) headers(items []BatchItem, active *[batchChunk]bool) {
	var m [batchChunk][blockSize]byte
	var p [batchChunk][]byte
	for i := range items {
		it := &items[i]
		ch.b[i], ch.x[i] = nil, [blockSize]byte{}
		if !active[i] {
			continue
		}
		c, ad := it.Cipher, it.AD
		if len(ad) > blockSize {
			ch.d[i] = c.s2vHeaders(&ch.st[i], [][]byte{ad})
			continue
		}
		copy(m[i][:], ad)
		if len(ad) == blockSize {
			xor16(&m[i], &c.mac.k1)
		} else {
			m[i][len(ad)] = 0x80
			xor16(&m[i], &c.mac.k2)
		}
		ch.b[i], p[i] = c.mac.block, m[i][:]
	}
	runChains(&ch.b, &ch.x, &p, len(items))
	for i := range items {
		if ch.b[i] != nil {
			ch.d[i] = items[i].Cipher.d0
			dbl(&ch.d[i])
			xor16(&ch.d[i], &ch.x[i])
		}
	}
	clear(m[:])
}

// s2vFinals runs s2vFinal for every active item over its plaintext p[i],
// leaving the SIVs in ch.x.
func (ch *chunk) s2vFinals(items []BatchItem, active *[batchChunk]bool, pt *[batchChunk][]byte) {
	var p [batchChunk][]byte
	for i := range items {
		ch.b[i], ch.x[i] = nil, [blockSize]byte{}
		if active[i] {
			ch.b[i], p[i] = items[i].Cipher.mac.block, pt[i][:s2vHead(len(pt[i]))]
		}
	}
	runChains(&ch.b, &ch.x, &p, len(items))
	for i := range items {
		if !active[i] {
			continue
		}
		var n int
		ch.last[i], n = items[i].Cipher.s2vLast(&ch.d[i], pt[i][s2vHead(len(pt[i])):])
		p[i] = ch.last[i][:n]
	}
	runChains(&ch.b, &ch.x, &p, len(items))
}

func sealChunk(items []BatchItem) {
	var ch chunk
	ch.n = len(items)
	var outs, pts [batchChunk][]byte
	var all [batchChunk]bool
	for i := range items {
		all[i] = true
		it := &items[i]
		ret, out := sliceForAppend(it.Dst, TagSize+len(it.In))
		if anyOverlap(out[:TagSize], it.In) || inexactOverlap(out[TagSize:], it.In) {
			panic("siv: invalid buffer overlap")
		}
		it.Out, it.Err, outs[i], pts[i] = ret, nil, out, it.In
	}
	ch.headers(items, &all)
	ch.s2vFinals(items, &all, &pts)
	for i := range items {
		v := ch.x[i]
		copy(outs[i], v[:])
		items[i].Cipher.xorKeyStream(&ch.st[i], &v, outs[i][TagSize:], pts[i])
	}
	ch.wipe()
}

func openChunk(items []BatchItem) {
	var ch chunk
	ch.n = len(items)
	var outs [batchChunk][]byte
	var tags [batchChunk][TagSize]byte
	var valid [batchChunk]bool
	for i := range items {
		it := &items[i]
		it.Out, it.Err = nil, ErrOpen
		if len(it.In) < TagSize {
			continue
		}
		ct := it.In[TagSize:]
		ret, out := sliceForAppend(it.Dst, len(ct))
		if inexactOverlap(out, ct) {
			panic("siv: invalid buffer overlap")
		}
		// As in Open, the tag is copied before anything is written.
		it.Out, outs[i], tags[i], valid[i] = ret, out, [TagSize]byte(it.In), true
	}
	ch.headers(items, &valid)
	for i := range items {
		if valid[i] {
			items[i].Cipher.xorKeyStream(&ch.st[i], &tags[i], outs[i], items[i].In[TagSize:])
		}
	}
	ch.s2vFinals(items, &valid, &outs)
	for i := range items {
		if !valid[i] {
			items[i].Out = nil
			continue
		}
		if subtle.ConstantTimeCompare(ch.x[i][:], tags[i][:]) == 1 {
			items[i].Err = nil
		} else {
			clear(outs[i])
			items[i].Out = nil
		}
	}
	ch.wipe()
}

// runChains runs the CBC-MAC chains i < n with b[i] != nil, absorbing the
// whole blocks p[i] into x[i], interleaving chains under the same key:
// each round takes up to MaxLanes chains that still have data and runs
// them together for as many blocks as the shortest has left. It only
// reads p (progress is kept in done), which keeps the callers' buffers on
// the stack.
func runChains(b *[batchChunk]*aesblock.Block, x *[batchChunk][blockSize]byte, p *[batchChunk][]byte, n int) {
	var done [batchChunk]int
	for {
		first := -1
		for i := range n {
			if b[i] != nil && done[i] < len(p[i]) {
				first = i
				break
			}
		}
		if first < 0 {
			return
		}
		key := b[first]
		var lane [aesblock.MaxLanes]int
		lanes, k := 0, len(p[first])-done[first]
		for i := first; i < n && lanes < aesblock.MaxLanes; i++ {
			if b[i] == key && done[i] < len(p[i]) {
				lane[lanes] = i
				lanes++
				k = min(k, len(p[i])-done[i])
			}
		}
		if lanes == 1 {
			key.MAC(&x[first], p[first][done[first]:])
			done[first] = len(p[first])
			continue
		}
		var xs [aesblock.MaxLanes][blockSize]byte
		var ps [aesblock.MaxLanes][]byte
		for j, i := range lane[:lanes] {
			xs[j], ps[j] = x[i], p[i][done[i]:]
		}
		key.MACLanes(&xs, &ps, lanes, k/blockSize)
		for j, i := range lane[:lanes] {
			x[i] = xs[j]
			done[i] += k
		}
		clear(xs[:])
	}
}
