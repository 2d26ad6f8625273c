package benchmarks

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/e4-iot/e4kit/e4"
)

// footprintTopics is how many topics each footprint measurement adds: enough
// to average out the growth steps of the client's maps, and below the
// client's topic-name cache limit (4096), which would start over.
const footprintTopics = 1000

// footprintName is a topic name of 23 bytes, typical of sensor topics.
func footprintName(i int) string { return fmt.Sprintf("site/%06d/temperature", i) }

// heapGrowth returns the live heap bytes that add retains, per item. It
// collects twice before each reading because a sync.Pool keeps its objects
// through one collection: the per-cipher scratch state that Protect pools is
// reused memory, not memory a topic holds.
func heapGrowth(items int, add func()) float64 {
	var before, after runtime.MemStats
	collect := func() { runtime.GC(); runtime.GC() }
	collect()
	runtime.ReadMemStats(&before)
	add()
	collect()
	runtime.ReadMemStats(&after)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(items)
}

// BenchmarkFootprintTopicKey reports the heap bytes an SK client holds per
// stored topic key (SetTopicKey): the topic entry with its AES-SIV cipher.
// The topic names are built beforehand, as the client keeps only their hash.
func BenchmarkFootprintTopicKey(b *testing.B) {
	names := make([]string, footprintTopics)
	for i := range names {
		names[i] = footprintName(i)
	}
	var perTopic float64
	for b.Loop() {
		c := skClient(b)
		perTopic = heapGrowth(len(names), func() {
			for _, name := range names {
				if err := c.SetTopicKey(topicKey, name); err != nil {
					b.Fatal(err)
				}
			}
		})
		runtime.KeepAlive(c)
	}
	b.ReportMetric(perTopic, "heap-B/topic")
}

// BenchmarkFootprintCachedTopic reports the heap bytes an SK client holds
// per topic name in its name cache, which Protect and Unprotect fill on the
// first message of a topic. Each name is a fresh 23-byte string, as one
// parsed from the network would be, so the cached copy of the name counts.
func BenchmarkFootprintCachedTopic(b *testing.B) {
	payload := repeat(1, 64)
	dst := make([]byte, 0, len(payload)+e4.SKOverhead)
	var perName float64
	for b.Loop() {
		c := skClient(b)
		for i := range footprintTopics {
			if err := c.SetTopicKey(topicKey, footprintName(i)); err != nil {
				b.Fatal(err)
			}
		}
		perName = heapGrowth(footprintTopics, func() {
			for i := range footprintTopics {
				if _, err := c.Protect(dst[:0], payload, footprintName(i)); err != nil {
					b.Fatal(err)
				}
			}
		})
		runtime.KeepAlive(c)
	}
	b.ReportMetric(perName, "heap-B/name")
}
