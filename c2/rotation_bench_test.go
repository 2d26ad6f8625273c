package c2

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport/loopback"
)

// BenchmarkRotationDispatch rotates a topic of 2,000 members over the
// loopback transport and waits until the dispatcher sent every command:
// the cost of C2's side of a rotation (store, sealing, dating, dispatch)
// without a network.
func BenchmarkRotationDispatch(b *testing.B) {
	const members = 2000
	ctx := context.Background()
	broker := loopback.NewBroker()
	env := newTestService(b, e4.SymKey, broker.Connect())
	var csv strings.Builder
	csv.WriteString("name\n")
	for i := range members {
		fmt.Fprintf(&csv, "dev-%d\n", i)
	}
	if _, err := env.svc.ImportClients(ctx, strings.NewReader(csv.String()), ImportCSV, nil); err != nil {
		b.Fatal(err)
	}
	ids := make([]e4.ID, members)
	for i := range ids {
		ids[i] = e4.IDFromName(fmt.Sprintf("dev-%d", i))
	}
	if _, err := env.svc.AddTopic(ctx, "fleet"); err != nil {
		b.Fatal(err)
	}
	if err := env.svc.AddMembers(ctx, "fleet", ids); err != nil {
		b.Fatal(err)
	}
	env.waitIdle(b)
	b.ResetTimer()
	for b.Loop() {
		if _, err := env.svc.RotateTopic(ctx, "fleet"); err != nil {
			b.Fatal(err)
		}
		env.waitIdle(b)
	}
	b.ReportMetric(float64(members*b.N)/b.Elapsed().Seconds(), "commands/s")
}
