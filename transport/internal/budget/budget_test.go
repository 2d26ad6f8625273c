package budget

import (
	"testing"
	"testing/synctest"
)

func TestReserveWaitsForRoom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(10)
		done := make(chan struct{})
		if !b.Reserve(8, done) {
			t.Fatal("first reserve refused")
		}
		got := make(chan bool, 1)
		go func() { got <- b.Reserve(5, done) }()
		synctest.Wait()
		if len(got) != 0 {
			t.Fatal("reserved 13 bytes of a 10-byte budget")
		}
		b.Release(8)
		if !<-got || b.Used() != 5 {
			t.Fatalf("after a release: Used() = %d", b.Used())
		}
		// A message larger than the whole budget passes alone.
		b.Release(5)
		if !b.Reserve(50, done) {
			t.Fatal("an oversized message never passes")
		}
		go func() { got <- b.Reserve(1, done) }()
		synctest.Wait()
		close(done)
		if <-got {
			t.Fatal("Reserve succeeded after done")
		}
	})
}
