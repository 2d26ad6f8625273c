package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/internal/testbroker"
	coapbroker "github.com/e4-iot/e4kit/transport/coap/broker"
)

// The product's two-key example: one key to decrypt firmware and
// configuration updates, one to encrypt data for the analytics back-end.
var fleetTopics = []string{"fleet/firmware", "fleet/analytics"}

// fleetSize is the number of simulated devices of TestFleetCatchesUp per
// mode: 10,000 in SK mode and 2,000 in PK mode (each PK device is added on
// its own, with its own key pair). Under the race detector, the only way CI
// runs, a fifth of that: the same scenario and checks, on a fleet the
// instrumented simulator and C2 handle in time. E4KIT_FLEET_SIZE overrides
// the SK size for a run by hand.
func fleetSize(mode e4.Mode) int {
	n := 10000
	if mode == e4.PubKey {
		n = 2000
	} else if v, err := strconv.Atoi(os.Getenv("E4KIT_FLEET_SIZE")); err == nil && v > 0 {
		return v
	}
	if raceEnabled {
		n /= 5
	}
	return n
}

// TestFleetCatchesUp: a fleet on the two-key example, 30% of it offline
// through three rotations of each topic (and, in SK mode, a change of its
// client key), then every absent device reconnects at once. All of them
// converge; each returning device receives at most one command per item it
// missed; a device that stayed online and acknowledged is sent nothing
// twice; one in twenty devices never acknowledges, and nothing stalls.
func TestFleetCatchesUp(t *testing.T) {
	for _, mode := range []e4.Mode{e4.SymKey, e4.PubKey} {
		t.Run(mode.String(), func(t *testing.T) {
			// One connection stands in for the whole fleet: let Mosquitto
			// queue more than its default 1000 messages for it.
			url := testbroker.StartMosquitto(t, &testbroker.MosquittoOptions{LargeQueues: true}).URL()
			fleetCatchesUp(t, url, mode, fleetSize(mode))
		})
	}
}

// smallFleet is the fleet of TestFleetCatchesUpOverAMQPAndCoAP: 500
// devices, 100 under the race detector.
var smallFleet = map[bool]int{false: 500, true: 100}[raceEnabled]

// TestFleetCatchesUpOverAMQPAndCoAP runs the same scenario, on a smaller
// fleet, over RabbitMQ and over our CoAP broker.
func TestFleetCatchesUpOverAMQPAndCoAP(t *testing.T) {
	brokers := map[string]func(*testing.T) string{
		"amqp-rabbitmq": func(t *testing.T) string { return testbroker.StartRabbitMQ(t, nil).AMQPURL() },
		"coap-e4broker": func(t *testing.T) string {
			addr := fmt.Sprintf("127.0.0.1:%d", testbroker.FreePort(t, "udp"))
			b, err := coapbroker.Start(addr, nil)
			mustDo(t, err)
			t.Cleanup(func() { b.Close() })
			return "coap://" + addr
		},
	}
	for name, start := range brokers {
		t.Run(name, func(t *testing.T) {
			url := start(t)
			for _, mode := range []e4.Mode{e4.SymKey, e4.PubKey} {
				t.Run(mode.String(), func(t *testing.T) { fleetCatchesUp(t, url, mode, smallFleet) })
			}
		})
	}
}

// fleetRun is a C2 child dispatching to a simulated fleet, with the
// parent's service editing the state of the same database.
type fleetRun struct {
	t       *testing.T
	svc     *c2.Service
	fleet   *simFleet
	devices []*simDevice
	path    string
	master  []byte
	url     string
	mode    e4.Mode
}

func setUpFleet(t *testing.T, url string, mode e4.Mode, n int) *fleetRun {
	ctx := context.Background()
	r := &fleetRun{t: t, path: filepath.Join(t.TempDir(), "c2.db"), master: newMaster(t), url: url, mode: mode}
	st, err := sqlite.Open(ctx, r.path)
	mustDo(t, err)
	t.Cleanup(func() { st.Close() })
	keys, err := seal.NewKeyring(r.master)
	mustDo(t, err)
	r.svc, err = c2.New(ctx, c2.Config{Mode: mode, Store: st, Keyring: keys})
	mustDo(t, err)
	r.fleet = newSimFleet(t, url)
	ids := make([]e4.ID, n)
	clients := r.registerFleet(n)
	for i, c := range clients {
		ids[i] = c.ID()
		r.devices = append(r.devices, r.fleet.add(c, i%20 == 7))
	}
	for _, topic := range fleetTopics {
		_, err := r.svc.AddTopic(ctx, topic)
		mustDo(t, err)
		mustDo(t, r.svc.AddMembers(ctx, topic, ids))
	}
	r.fleet.serve()
	return r
}

// registerFleet adds n clients to C2: by import in SK mode (keys generated
// by C2), one by one in PK mode (each device makes its key pair).
func (r *fleetRun) registerFleet(n int) []*e4.Client {
	t, ctx := r.t, context.Background()
	prefix := fmt.Sprintf("fleet-%s-%d", r.mode, time.Now().UnixNano())
	if r.mode == e4.PubKey {
		out := make([]*e4.Client, n)
		for i := range n {
			out[i] = registerDevice(t, r.svc, fmt.Sprintf("%s-%05d", prefix, i))
		}
		return out
	}
	var csv strings.Builder
	csv.WriteString("name\n")
	for i := range n {
		fmt.Fprintf(&csv, "%s-%05d\n", prefix, i)
	}
	res, err := r.svc.ImportClients(ctx, strings.NewReader(csv.String()), c2.ImportCSV, nil)
	mustDo(t, err)
	out := make([]*e4.Client, n)
	for i := range n {
		id := e4.IDFromName(fmt.Sprintf("%s-%05d", prefix, i))
		c, err := e4.NewSymKeyClient(id, res.Generated[id], nil)
		mustDo(t, err)
		out[i] = c
	}
	return out
}

// waitConverged waits until every device of devs holds the current key of
// every fleet topic and returns how long that took.
func (r *fleetRun) waitConverged(devs []*simDevice, limit time.Duration, what string) time.Duration {
	start := time.Now()
	protect := func(topic string, payload []byte) ([]byte, error) {
		return r.svc.ProtectMessage(context.Background(), topic, payload)
	}
	var holding int
	deadline := start.Add(limit)
	for {
		holding = holdsAll(r.t, protect, devs, fleetTopics)
		if holding == len(devs) {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			r.explainBehind(devs)
			pending, _ := r.svc.CountCommands(context.Background(), pendingCommands)
			r.t.Fatalf("after %v: %s: %d of %d devices hold the current keys; %d commands pending",
				limit, what, holding, len(devs), pending)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *fleetRun) rotateAll() {
	for _, topic := range fleetTopics {
		_, err := r.svc.RotateTopic(context.Background(), topic)
		mustDo(r.t, err)
	}
}

func fleetCatchesUp(t *testing.T, url string, mode e4.Mode, n int) {
	ctx := context.Background()
	r := setUpFleet(t, url, mode, n)
	child := startFleetChild(t, r.path, r.master, url, mode)
	r.waitConverged(r.devices, 120*time.Second, "every device receives its first keys")

	// The figure to compare with: one rotation with every device online.
	r.rotateAll()
	online := r.waitConverged(r.devices, 120*time.Second, "every device follows a rotation")
	t.Logf("%s: %d devices online: a rotation of both topics converged in %v", mode, n, online.Round(time.Millisecond))

	var away, stayed []*simDevice
	for i, d := range r.devices {
		if i%10 < 3 {
			d.online.Store(false)
			away = append(away, d)
		} else {
			stayed = append(stayed, d)
		}
	}
	for _, d := range r.devices {
		d.resetCounts()
	}
	for range 3 {
		r.rotateAll()
	}
	newKeys := make(map[e4.ID][]byte)
	if mode == e4.SymKey {
		for _, d := range away {
			key, err := r.svc.NewClientKey(ctx, d.client.ID(), nil)
			mustDo(t, err)
			newKeys[d.client.ID()] = key
		}
	}
	r.waitConverged(stayed, 120*time.Second, "the devices that stayed online follow three rotations")
	// Everything was sent while the absent devices were away.
	eventually(t, 120*time.Second, "C2 sends every command of the rotations and key changes", func() bool {
		n, err := r.svc.CountCommands(ctx, pendingCommands)
		return err == nil && n == 0
	})
	for _, d := range stayed {
		for cmd, got := range d.counts() {
			if cmd != command.SetTopicKey || got > 3*len(fleetTopics) {
				t.Fatalf("device %s stayed online and got %d %v during three rotations of %d topics", d.client.ID(), got, cmd, len(fleetTopics))
			}
		}
	}

	// C2 has not heard from the absent devices: it must still reach them
	// under the client key they hold.
	for id := range newKeys {
		state, err := r.svc.ClientState(ctx, id)
		mustDo(t, err)
		if state.KeyInUse == c2.KeyCurrent {
			t.Fatalf("device %s has been away since its key change, and C2 counts the new key as confirmed: %+v", id, state)
		}
	}

	// Everyone who was away comes back at once.
	for _, d := range r.devices {
		d.resetCounts()
	}
	cpuBefore := processCPU(t, child.Process.Pid)
	back := time.Now()
	r.fleet.reconnect(away, 256)
	topicsAt := r.waitConverged(away, 180*time.Second, "every returning device catches up")
	eventually(t, 60*time.Second, "every returning device holds its new client key", func() bool {
		return holdingNewKeys(t, r.fleet, newKeys) == len(newKeys)
	})
	converged := time.Since(back)
	cpu := processCPU(t, child.Process.Pid) - cpuBefore

	var commands int
	for _, d := range away {
		for cmd, got := range d.counts() {
			commands += got
			limit := 1
			if cmd == command.SetTopicKey {
				limit = len(fleetTopics)
			}
			if got > limit {
				t.Errorf("returning device %s received %d %v; it missed %d item(s) of that kind", d.client.ID(), got, cmd, limit)
			}
		}
	}
	for _, d := range stayed {
		if got := d.counts(); len(got) != 0 {
			t.Fatalf("device %s was online and acknowledged, and was sent %v during the catch-up", d.client.ID(), got)
		}
	}
	time.Sleep(500 * time.Millisecond) // the child writes its counters every 200 ms
	t.Logf("%s: C2's counters: %+v", mode, childStats(t, r.path))
	t.Logf("%s: %d returning devices converged in %v (topic keys in %v); %.2f commands per returning device; C2 CPU %v",
		mode, len(away), converged.Round(time.Millisecond), topicsAt.Round(time.Millisecond), float64(commands)/float64(len(away)), cpu)
	if refused := r.fleet.refused.Load(); refused != 0 {
		t.Errorf("devices refused %d commands", refused)
	}
}

// processCPU returns the user and system CPU time a process used so far.
func processCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	mustDo(t, err)
	// Fields after the command name, which is in parentheses and may hold spaces.
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("reading CPU time of process %d: %v %v", pid, err1, err2)
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond
}

// TestFirstStartAfterSetup follows the README's order: the client and its
// membership are created and the topic rotated while the device has never
// connected (the broker drops those commands: nobody is subscribed), then
// the device starts for the first time and holds the current key within
// seconds, because it asks C2 for what it misses.
func TestFirstStartAfterSetup(t *testing.T) {
	networks := map[string]func(*testing.T) *network{
		"mqtt-mosquitto": mosquittoNetwork,
		"amqp-rabbitmq":  rabbitNetwork,
		"coap-e4broker":  coapNetwork,
	}
	for name, open := range networks {
		t.Run(name, func(t *testing.T) {
			net := open(t)
			for _, mode := range []e4.Mode{e4.SymKey, e4.PubKey} {
				t.Run(mode.String(), func(t *testing.T) { firstStartAfterSetup(t, net, mode) })
			}
		})
	}
}

func firstStartAfterSetup(t *testing.T, net *network, mode e4.Mode) {
	ctx := context.Background()
	node := startC2(t, dbPath(t), newMaster(t), mode, net.dial(t))
	svc := node.svc
	name := fmt.Sprintf("late-%s-%s", net.name, mode)
	client := registerDevice(t, svc, name)
	const readme = "plant/late/telemetry"
	_, err := svc.AddTopic(ctx, readme)
	mustDo(t, err)
	mustDo(t, svc.AddMember(ctx, readme, client.ID()))
	_, err = svc.RotateTopic(ctx, readme)
	mustDo(t, err)
	eventually(t, 30*time.Second, "C2 has sent every command to nobody", func() bool {
		n, err := svc.CountCommands(ctx, pendingCommands)
		return err == nil && n == 0
	})
	if client.HasTopicKey(readme) {
		t.Fatal("the device holds the key before it ever connected")
	}

	d := connectDevice(t, net, name, client)
	if mode == e4.PubKey {
		// C2 signs what holdsCurrentKey reads with its own key, which the
		// device only gets now (it was sent to nobody as well, and is no
		// key of the device's state that a sync request asks for).
		mustDo(t, svc.SendC2SignerKey(ctx, client.ID()))
	}
	eventually(t, 10*time.Second, "the device holds the current key after its first start", func() bool {
		return holdsCurrentKey(svc, d, readme)
	})
}

// TestCatchUpSurvivesC2KillAndBrokerRestart: while 600 returning devices
// catch up, C2 is killed with SIGKILL and the broker restarted; a new C2
// finishes and every device converges.
func TestCatchUpSurvivesC2KillAndBrokerRestart(t *testing.T) {
	const n = 2000
	m := testbroker.StartMosquitto(t, &testbroker.MosquittoOptions{LargeQueues: true})
	r := setUpFleet(t, m.URL(), e4.SymKey, n)
	child := startChild(t, r.path, r.master, m.URL(), e4.SymKey) // slowed publishes
	r.waitConverged(r.devices, 120*time.Second, "every device receives its first keys")

	var away []*simDevice
	for i, d := range r.devices {
		if i%10 < 3 {
			d.online.Store(false)
			away = append(away, d)
		}
	}
	for range 3 {
		r.rotateAll()
	}
	r.fleet.reconnect(away, 256)
	protect := func(topic string, payload []byte) ([]byte, error) {
		return r.svc.ProtectMessage(context.Background(), topic, payload)
	}
	eventually(t, 60*time.Second, "a tenth of the returning devices catch up", func() bool {
		return holdsAll(t, protect, away, fleetTopics) >= len(away)/10
	})
	child.Process.Kill()
	child.Wait()
	if done := holdsAll(t, protect, away, fleetTopics); done == len(away) {
		t.Fatal("the catch-up finished before the kill: the test interrupted nothing")
	} else {
		t.Logf("killed C2 with %d of %d returning devices caught up", done, len(away))
	}
	mustDo(t, m.Restart(context.Background()))
	startFleetChild(t, r.path, r.master, m.URL(), e4.SymKey)
	// Every device sends a sync request when its connection comes back.
	r.fleet.awaitConnected()
	r.fleet.reconnect(r.devices, 256)
	r.waitConverged(r.devices, 180*time.Second, "every device converges after the kill and the broker restart")
}

// explainBehind logs what C2 and the device say of a few devices that do
// not hold the current keys.
func (r *fleetRun) explainBehind(devs []*simDevice) {
	ctx := context.Background()
	shown := 0
	for _, d := range devs {
		var missing []string
		for _, topic := range fleetTopics {
			msg, err := r.svc.ProtectMessage(ctx, topic, fmt.Appendf(nil, "probe %d", probeSeq.Add(1)))
			mustDo(r.t, err)
			if _, err := d.client.Unprotect(nil, msg, topic); err != nil {
				missing = append(missing, fmt.Sprintf("%s (%v)", topic, err))
			}
		}
		if len(missing) == 0 {
			continue
		}
		state, err := r.svc.ClientState(ctx, d.client.ID())
		r.t.Logf("device %s (no ack: %v, online: %v) misses %v; applied %v; C2 says %+v (%v)",
			d.client.ID(), d.noAck, d.online.Load(), missing, d.counts(), state, err)
		if shown++; shown == 5 {
			return
		}
	}
}

// holdingNewKeys counts the devices that hold the client key C2 gave them:
// C2 opens their sync request with it.
func holdingNewKeys(t *testing.T, f *simFleet, newKeys map[e4.ID][]byte) (n int) {
	t.Helper()
	for id, key := range newKeys {
		req, err := f.devices[e4.ControlTopic(id)].client.SyncRequest()
		mustDo(t, err)
		if _, err := e4.OpenSyncRequest(req, key, nil); err == nil {
			n++
		}
	}
	return n
}
