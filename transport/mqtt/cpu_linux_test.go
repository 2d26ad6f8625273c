package mqtt_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/transporttest"
)

// BenchmarkThroughputCPU says where the CPU time of BenchmarkThroughput's
// 1 KiB QoS 0 case goes: b.N messages bare, then b.N through E4, three
// times, each on fresh connections, and per message the wall time and the
// CPU time of the Mosquitto process and of this process (both clients, the
// decorator and the crypto):
//
//	go test -run '^$' -bench ThroughputCPU -benchtime 50000x ./transport/mqtt/
//
// When the two processes' CPU per message, spread over the machine's
// cores, comes close to the wall time per message, the run is CPU-bound,
// and E4's share of the CPU sets the ratio.
func BenchmarkThroughputCPU(b *testing.B) {
	m := testbroker.StartMosquitto(b, nil)
	var totals [2]cpuSample
	for range 3 {
		for i, sides := range []e4Sides{noE4, bothE4} {
			pair := newBenchPair(b, m.URL(), sides) // fresh: see transporttest.Throughput
			before := takeCPUSample(b, m.PID())
			_, err := transporttest.Throughput(b.Context(), pair.throughput(), transporttest.ThroughputConfig{
				Size: 1024, Options: []transport.PublishOption{transport.WithQoS(transport.AtMostOnce)}}, b.N)
			if err != nil {
				b.Fatal(err)
			}
			totals[i] = totals[i].add(takeCPUSample(b, m.PID()).minus(before))
		}
	}
	for i, name := range []string{"bare", "e4"} {
		perMessage := func(d time.Duration) float64 { return d.Seconds() * 1e6 / float64(3*b.N) }
		b.ReportMetric(perMessage(totals[i].wall), name+"-wall-µs/msg")
		b.ReportMetric(perMessage(totals[i].broker), name+"-broker-cpu-µs/msg")
		b.ReportMetric(perMessage(totals[i].self), name+"-client-cpu-µs/msg")
	}
}

// cpuSample is the CPU time used so far by the broker and this process,
// and the wall time.
type cpuSample struct{ wall, broker, self time.Duration }

func takeCPUSample(b *testing.B, brokerPID int) cpuSample {
	b.Helper()
	broker, err := processCPU(brokerPID)
	if err != nil {
		b.Fatal(err)
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	self := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return cpuSample{wall: time.Duration(time.Now().UnixNano()), broker: broker, self: self}
}

func (s cpuSample) minus(o cpuSample) cpuSample {
	return cpuSample{wall: s.wall - o.wall, broker: s.broker - o.broker, self: s.self - o.self}
}

func (s cpuSample) add(o cpuSample) cpuSample {
	return cpuSample{wall: s.wall + o.wall, broker: s.broker + o.broker, self: s.self + o.self}
}

// processCPU reads a process's user and system time from /proc/PID/stat
// (fields 14 and 15, in clock ticks of 10 ms on Linux).
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after it
	// start past its closing parenthesis.
	i := strings.LastIndexByte(string(b), ')')
	fields := strings.Fields(string(b)[i+1:])
	if i < 0 || len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	var ticks int64
	for _, f := range fields[11:13] { // utime, stime
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}
