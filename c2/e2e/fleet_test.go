package e2e

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/dial"
)

// simDevice is one simulated E4 device of a simFleet: a real e4 client
// whose network is the fleet's shared connection.
type simDevice struct {
	client *e4.Client
	// noAck devices never acknowledge, like reference E4 devices.
	noAck bool
	// online devices hear their commands; the fleet discards what the
	// broker carries for an offline one, as a broker does for a device
	// that is away without a persistent session.
	online atomic.Bool

	mu       sync.Mutex
	received map[command.Code]int // commands applied since the last resetCounts
}

func (d *simDevice) count(cmd command.Code) {
	d.mu.Lock()
	d.received[cmd]++
	d.mu.Unlock()
}

// counts returns the commands applied since the last resetCounts.
func (d *simDevice) counts() map[command.Code]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[command.Code]int, len(d.received))
	for k, v := range d.received {
		out[k] = v
	}
	return out
}

func (d *simDevice) resetCounts() {
	d.mu.Lock()
	clear(d.received)
	d.mu.Unlock()
}

// simFleet is many simulated devices sharing one broker connection, so
// that tens of thousands of them fit in one test process. Commands are
// applied by a few workers, each device always on the same worker so its
// commands are applied in the order the broker delivered them.
type simFleet struct {
	t        *testing.T
	tr       transport.Transport
	devices  map[string]*simDevice // by control topic; fixed once serving
	workers  []chan *transport.Message
	refused  atomic.Int64
	wrongKey atomic.Int64 // commands under a key the device does not hold
}

const simWorkers = 8

// newSimFleet connects the fleet to brokerURL; devices are added with add
// before serve is called.
func newSimFleet(t *testing.T, brokerURL string) *simFleet {
	t.Helper()
	tr, err := dial.Open(context.Background(), brokerURL, dial.Options{})
	mustDo(t, err)
	t.Cleanup(func() { tr.Close() })
	return &simFleet{t: t, tr: tr, devices: make(map[string]*simDevice)}
}

func (f *simFleet) add(c *e4.Client, noAck bool) *simDevice {
	d := &simDevice{client: c, noAck: noAck, received: make(map[command.Code]int)}
	d.online.Store(true)
	f.devices[c.ControlTopic()] = d
	return d
}

// serve subscribes to every control topic and applies commands until the
// test ends.
func (f *simFleet) serve() {
	t := f.t
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := f.tr.Subscribe(ctx, e4.ControlTopicPrefix+"+")
	mustDo(t, err)
	var wg sync.WaitGroup
	for range simWorkers {
		ch := make(chan *transport.Message, 4096)
		f.workers = append(f.workers, ch)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range ch {
				f.apply(ctx, m)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() {
			for _, ch := range f.workers {
				close(ch)
			}
		}()
		for {
			m, err := sub.Receive(ctx)
			if err != nil {
				return
			}
			f.workers[workerOf(m.Topic)] <- m
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func workerOf(topic string) int {
	h := fnv.New32a()
	h.Write([]byte(topic))
	return int(h.Sum32() % simWorkers)
}

// apply hands a command to its device and acknowledges it.
func (f *simFleet) apply(ctx context.Context, m *transport.Message) {
	d := f.devices[m.Topic]
	if d == nil || !d.online.Load() {
		return
	}
	cmd, ack, err := d.client.HandleCommandAck(m.Payload)
	if errors.Is(err, e4.ErrAuthentication) {
		// During a client-key change C2 sends under both keys until the
		// device confirms which one it holds: one of the two fails here.
		f.wrongKey.Add(1)
		return
	}
	if err != nil && ack == nil {
		f.refused.Add(1)
		f.t.Logf("device %s refused a command: %v", d.client.ID(), err)
		return
	}
	if err == nil {
		d.count(cmd)
	}
	if d.noAck {
		return
	}
	if err := f.tr.Publish(ctx, e4.AckTopic(d.client.ID()), ack, transport.WithQoS(transport.AtLeastOnce)); err != nil && ctx.Err() == nil {
		f.t.Logf("device %s: publishing an acknowledgement: %v", d.client.ID(), err)
	}
}

// reconnect brings devices back online, each announcing itself with a
// sync request, at most parallel at once.
func (f *simFleet) reconnect(devices []*simDevice, parallel int) {
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for _, d := range devices {
		d.online.Store(true)
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f.sendSync(context.Background(), d)
		}()
	}
	wg.Wait()
}

// holdsAll reports, for each device, whether it reads a message C2
// protects now on each topic. One probe per topic per call, so the devices'
// replay caches never see a probe twice.
func holdsAll(t *testing.T, protect func(topic string, payload []byte) ([]byte, error), devices []*simDevice, topics []string) (holding int) {
	t.Helper()
	probes := make(map[string][]byte, len(topics))
	for _, topic := range topics {
		msg, err := protect(topic, fmt.Appendf(nil, "probe %d", probeSeq.Add(1)))
		mustDo(t, err)
		probes[topic] = msg
	}
	for _, d := range devices {
		ok := true
		for _, topic := range topics {
			if _, err := d.client.Unprotect(nil, probes[topic], topic); err != nil {
				ok = false
				break
			}
		}
		if ok {
			holding++
		}
	}
	return holding
}

var probeSeq atomic.Int64

// awaitConnected waits until the fleet's connection carries a publish
// again (after a broker restart).
func (f *simFleet) awaitConnected() {
	eventually(f.t, 30*time.Second, "the fleet's connection comes back", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return f.tr.Publish(ctx, "fleet/ping", []byte("ping"), transport.WithQoS(transport.AtLeastOnce)) == nil
	})
}

// sendSync publishes d's sync request.
func (f *simFleet) sendSync(ctx context.Context, d *simDevice) {
	req, err := d.client.SyncRequest()
	if err != nil {
		f.t.Errorf("device %s: %v", d.client.ID(), err)
		return
	}
	if err := f.tr.Publish(ctx, e4.SyncTopic(d.client.ID()), req, transport.WithQoS(transport.AtLeastOnce)); err != nil && ctx.Err() == nil {
		f.t.Errorf("device %s: publishing a sync request: %v", d.client.ID(), err)
	}
}
