package e4

import (
	"encoding/binary"
	"testing"
	"time"
)

// TestBatchAllocations checks that SK ProtectBatch and UnprotectBatch
// (replay check included) allocate nothing for a full run of sixteen
// 1 KiB messages, as Protect and Unprotect do (TestProtectAllocations). It
// runs under -race too: the batch path keeps its state on the stack.
func TestBatchAllocations(t *testing.T) {
	clk := newClock(1764000000)
	c, sender := pairForMode(t, SymKey, clk)
	const runs, size = 50, 1024
	msgs := make([]BatchMessage, 16)
	for i := range msgs {
		msgs[i] = BatchMessage{Topic: testTopic, In: make([]byte, size), Dst: make([]byte, 0, size+SKOverhead)}
	}
	if n := testing.AllocsPerRun(runs, func() { sender.ProtectBatch(msgs) }); n != 0 {
		t.Errorf("SK ProtectBatch of 16 x %d B: %v allocations, want 0", size, n)
	}
	// Each run needs sixteen messages the replay cache has not seen yet;
	// AllocsPerRun makes one warm-up run besides the counted ones.
	wire := make([][]byte, 0, (runs+1)*len(msgs))
	payload := make([]byte, size)
	for i := range cap(wire) {
		binary.LittleEndian.PutUint64(payload, uint64(i))
		p, err := ProtectSymKey(nil, payload, testKeyA, time.Unix(clk.unix.Load(), 0))
		if err != nil {
			t.Fatal(err)
		}
		wire = append(wire, p)
	}
	for i := range msgs {
		msgs[i].Dst = make([]byte, 0, size)
	}
	next := 0
	if n := testing.AllocsPerRun(runs, func() {
		for i := range msgs {
			msgs[i].In = wire[next]
			next++
		}
		c.UnprotectBatch(msgs)
		for i := range msgs {
			if msgs[i].Err != nil {
				t.Fatal(msgs[i].Err)
			}
		}
	}); n != 0 {
		t.Errorf("SK UnprotectBatch of 16 x %d B with replay check: %v allocations, want 0", size, n)
	}
}
