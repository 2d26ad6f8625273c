package monitor

import "testing"

// BenchmarkTallyAdd: what counting adds to the check of a valid message,
// all workers on one topic (the contended case), with a report taking the
// counts every 10,000 messages. Compare with BenchmarkCheck's monitor
// (run both: go test -run '^$' -bench 'TallyAdd|Check/64B' ./c2/monitor/).
func BenchmarkTallyAdd(b *testing.B) {
	tl := newTally(DefaultMaxTopics)
	st := &topicState{name: "bench/a", version: 1}
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			tl.add(st)
			if i%10000 == 9999 {
				tl.take()
			}
		}
	})
}
