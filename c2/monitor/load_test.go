package monitor_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/monitor"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// The load benchmark compares the monitor with a bare subscriber that
// reads the same traffic and does nothing with it. The publisher runs in a
// child process (this test binary, re-executed), so the CPU time this
// process spends (getrusage) is the receiving side's only. Each pass
// publishes b.N fresh E4 messages of one size at the broker's full rate
// (QoS 1, from 16 goroutines), received by one side at a time; the sides
// take turns benchRounds times. Run with:
//
//	go test -run '^$' -bench MonitorVsBare -benchtime 50000x ./c2/monitor/

// publisherEnv makes the test binary a publisher (see TestMain).
const publisherEnv = "E4_MONITOR_BENCH_PUBLISHER"

func TestMain(m *testing.M) {
	if os.Getenv(publisherEnv) != "" {
		if err := runPublisher(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "publisher:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runPublisher reads "N SIZE" lines: it protects N random payloads of SIZE
// bytes, says "ready", waits for "go", publishes them and says "done NS"
// (the nanoseconds publishing took). Its configuration is in the
// environment: broker URL, topic and topic key (hex).
func runPublisher(in io.Reader, out io.Writer) error {
	url, topic := os.Getenv(publisherEnv), os.Getenv(publisherEnv+"_TOPIC")
	key, err := hex.DecodeString(os.Getenv(publisherEnv + "_KEY"))
	if err != nil {
		return err
	}
	ctx := context.Background()
	tr, err := mqtt.Dial(ctx, mqtt.Config{Brokers: []string{url}})
	if err != nil {
		return err
	}
	defer tr.Close()
	lines := bufio.NewScanner(in)
	for lines.Scan() {
		var n, size int
		if _, err := fmt.Sscan(lines.Text(), &n, &size); err != nil {
			return err
		}
		msgs := make([][]byte, n)
		payload := make([]byte, size)
		for i := range msgs {
			_, _ = rand.Read(payload)
			if msgs[i], err = e4.ProtectSymKey(nil, payload, key, time.Now()); err != nil {
				return err
			}
		}
		fmt.Fprintln(out, "ready")
		if !lines.Scan() || lines.Text() != "go" {
			return fmt.Errorf("want go, got %q", lines.Text())
		}
		start := time.Now()
		if err := publishAll(ctx, tr, topic, msgs); err != nil {
			return err
		}
		fmt.Fprintln(out, "done", time.Since(start).Nanoseconds())
	}
	return lines.Err()
}

// publishAll publishes msgs from 16 goroutines, enough to keep the QoS 1
// window of the connection full.
func publishAll(ctx context.Context, tr transport.Transport, topic string, msgs [][]byte) error {
	const workers = 16
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(msgs); i += workers {
				if err := tr.Publish(ctx, topic, msgs[i]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// publisher is the child process.
type publisher struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startPublisher(b testing.TB, url, topic string, key []byte) *publisher {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), publisherEnv+"="+url, publisherEnv+"_TOPIC="+topic, publisherEnv+"_KEY="+hex.EncodeToString(key))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		in.Close()
		_ = cmd.Wait()
	})
	return &publisher{cmd: cmd, in: in, out: bufio.NewScanner(outPipe)}
}

// prepare makes the publisher protect n messages of size bytes.
func (p *publisher) prepare(b testing.TB, n, size int) {
	b.Helper()
	fmt.Fprintf(p.in, "%d %d\n", n, size)
	if !p.out.Scan() || p.out.Text() != "ready" {
		b.Fatalf("publisher: %q", p.out.Text())
	}
}

// publish starts the publication and returns a function that waits for
// its end and returns how long publishing took.
func (p *publisher) publish(b testing.TB) func() time.Duration {
	fmt.Fprintln(p.in, "go")
	return func() time.Duration {
		if !p.out.Scan() {
			b.Fatal("publisher ended")
		}
		ns, err := strconv.ParseInt(strings.TrimPrefix(p.out.Text(), "done "), 10, 64)
		if err != nil {
			b.Fatalf("publisher: %q", p.out.Text())
		}
		return time.Duration(ns)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pass is what one side measured over one pass.
type pass struct {
	received int
	wall     time.Duration // from the start of publishing to the last message received
	cpu      time.Duration // this process's CPU time meanwhile
	publish  time.Duration // the publisher's own time
}

type totals struct{ received, wall, cpu, publish float64 }

func (t *totals) add(p pass) {
	t.received += float64(p.received)
	t.wall += p.wall.Seconds()
	t.cpu += p.cpu.Seconds()
	t.publish += p.publish.Seconds()
}

func (t *totals) rate() float64          { return t.received / t.wall }
func (t *totals) publishRate() float64   { return t.received / t.publish }
func (t *totals) cpuPerMessage() float64 { return t.cpu / t.received * 1e6 }

// measure runs one pass: start publishing, wait until done is closed (all
// n messages received), and measure.
func measure(b testing.TB, pub *publisher, done <-chan struct{}, received func() int) pass {
	b.Helper()
	runtime.GC()
	cpu0, t0 := cpuTime(), time.Now()
	wait := pub.publish(b)
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("received %d messages in 5 minutes", received())
	}
	p := pass{received: received(), wall: time.Since(t0), cpu: cpuTime() - cpu0}
	p.publish = wait()
	return p
}

// countTo returns a counter that closes done at n.
func countTo(n int) (add func(), count func() int, done chan struct{}) {
	var c atomic.Int64
	done = make(chan struct{})
	return func() {
			if c.Add(1) == int64(n) {
				close(done)
			}
		}, func() int { return int(c.Load()) },
		done
}

func bareSide(b testing.TB, url, topic string, pub *publisher, n int) pass {
	tr := dialMQTT(b, url)
	defer tr.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub, err := tr.Subscribe(ctx, topic)
	if err != nil {
		b.Fatal(err)
	}
	add, count, done := countTo(n)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				msg, err := sub.Receive(ctx)
				if err != nil {
					return
				}
				clear(msg.Payload) // as the monitor does
				add()
			}
		})
	}
	p := measure(b, pub, done, count)
	if d := sub.(*mqtt.Subscription).Dropped(); d != 0 {
		b.Fatalf("bare subscriber: %d messages dropped", d)
	}
	return p
}

func monitorSide(b testing.TB, e *env, url, topic string, pub *publisher, n int, edit func(*monitor.Config)) (pass, *monitor.Monitor) {
	tr := dialMQTT(b, url)
	defer tr.Close()
	cfg := monitor.Config{Service: e.svc, Transport: tr, Filters: []string{topic}}
	if edit != nil {
		edit(&cfg)
	}
	m, err := monitor.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	add, count, done := countTo(n)
	m.SetAfterCheck(func(string, monitor.Result, bool) { add() })
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- m.Run(ctx) }()
	<-m.Ready()
	p := measure(b, pub, done, count)
	if d := m.Dropped(); d != 0 {
		b.Fatalf("monitor: %d messages dropped", d)
	}
	if got := m.Counters()[monitor.Valid]; got != uint64(n) {
		b.Fatalf("monitor: %d valid messages of %d (%v)", got, n, m.Counters())
	}
	cancel()
	if err := <-stopped; err != nil {
		b.Fatal(err)
	}
	return p, m
}

// benchRounds is how many passes each side makes per size, taking turns:
// the machine's load changes over a run, so alternating spreads it.
const benchRounds = 4

// BenchmarkMonitorVsBare: throughput and CPU per message of the monitor
// against a bare subscriber on the same traffic, 64 B and 1 KiB messages
// at the broker's full QoS 1 publish rate. Reported: each side's receive
// rate and the publisher's rate (msg/s), each side's CPU per message
// (µs/msg), the ratios monitor/bare, and the heap after the monitor's
// passes (the replay set, at most 262144 messages, is its largest part).
func BenchmarkMonitorVsBare(b *testing.B) {
	broker := testbroker.StartMosquitto(b, &testbroker.MosquittoOptions{LargeQueues: true})
	e := newEnv(b, e4.SymKey)
	const topic = "bench/monitor"
	e.addTopic(topic)
	pub := startPublisher(b, broker.URL(), topic, e.topicKeys(topic).Current)
	for _, size := range []int{64, 1024} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			var bare, mon totals
			var heap uint64
			for range benchRounds {
				pub.prepare(b, b.N, size)
				bare.add(bareSide(b, broker.URL(), topic, pub, b.N))
				pub.prepare(b, b.N, size)
				p, _ := monitorSide(b, e, broker.URL(), topic, pub, b.N, nil)
				mon.add(p)
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				heap = max(heap, ms.HeapInuse)
			}
			b.ReportMetric(bare.rate(), "bare-msg/s")
			b.ReportMetric(mon.rate(), "monitor-msg/s")
			b.ReportMetric((bare.publishRate()+mon.publishRate())/2, "publish-msg/s")
			b.ReportMetric(mon.rate()/bare.rate(), "throughput-ratio")
			b.ReportMetric(bare.cpuPerMessage(), "bare-cpu-µs/msg")
			b.ReportMetric(mon.cpuPerMessage(), "monitor-cpu-µs/msg")
			b.ReportMetric(mon.cpuPerMessage()/bare.cpuPerMessage(), "cpu-ratio")
			b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// TestMonitorUnderLoad: at the broker's full publish rate, the monitor
// reads every message (none dropped, all counted valid), for 64 B and
// 1 KiB messages, and its replay set stays within its capacity.
func TestMonitorUnderLoad(t *testing.T) {
	broker := testbroker.StartMosquitto(t, &testbroker.MosquittoOptions{LargeQueues: true})
	e := newEnv(t, e4.SymKey)
	const topic = "load/monitor"
	e.addTopic(topic)
	pub := startPublisher(t, broker.URL(), topic, e.topicKeys(topic).Current)
	const n, capacity = 20000, 5000
	for _, size := range []int{64, 1024} {
		pub.prepare(t, n, size)
		p, m := monitorSide(t, e, broker.URL(), topic, pub, n, func(c *monitor.Config) { c.ReplayCapacity = capacity })
		if got := m.ReplayLen(); got != capacity {
			t.Errorf("%d B: replay set holds %d messages, want its capacity, %d", size, got, capacity)
		}
		t.Logf("%d B: %d messages in %v (%.0f msg/s), publisher %.0f msg/s", size, p.received, p.wall,
			float64(p.received)/p.wall.Seconds(), float64(p.received)/p.publish.Seconds())
	}
}
