package c2

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// BenchmarkStateQueries measures the state queries on a topic of 10,000
// members, half of which acknowledged its current key, beside
// CountClientsOfTopic (an indexed count over the same members) as the
// baseline: ns/op of each sub-benchmark divided by the baseline's.
func BenchmarkStateQueries(b *testing.B) {
	const members = 10000
	ctx := context.Background()
	env := newTestService(b, e4.SymKey, nil)
	var csv strings.Builder
	csv.WriteString("name\n")
	ids := make([]e4.ID, members)
	for i := range members {
		fmt.Fprintf(&csv, "dev-%d\n", i)
		ids[i] = e4.IDFromName(fmt.Sprintf("dev-%d", i))
	}
	if _, err := env.svc.ImportClients(ctx, strings.NewReader(csv.String()), ImportCSV, nil); err != nil {
		b.Fatal(err)
	}
	if _, err := env.svc.AddTopic(ctx, "fleet"); err != nil {
		b.Fatal(err)
	}
	if err := env.svc.AddMembers(ctx, "fleet", ids); err != nil {
		b.Fatal(err)
	}
	err := env.st.Update(ctx, func(tx store.Tx) error {
		for _, id := range ids[:members/2] {
			if err := tx.SetTopicAcked(id, "fleet", 1, time.Now()); err != nil {
				return err
			}
			if err := tx.PutDeviceState(store.DeviceState{ClientID: id, AcksSeen: true}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	run := func(name string, fn func() error) {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if err := fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	run("CountClientsOfTopic", func() error { _, err := env.svc.CountClientsOfTopic(ctx, "fleet"); return err })
	run("TopicState", func() error {
		st, err := env.svc.TopicState(ctx, "fleet")
		if err == nil && st.Acknowledged != members/2 {
			err = fmt.Errorf("state %+v", st)
		}
		return err
	})
	run("TopicBehindPage", func() error { _, err := env.svc.TopicBehind(ctx, "fleet", ids[0], 100); return err })
	run("ClientState", func() error { _, err := env.svc.ClientState(ctx, ids[members-1]); return err })
	run("FleetState", func() error { _, err := env.svc.FleetState(ctx); return err })
}
