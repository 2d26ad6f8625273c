package storetest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// Benchmark helpers. Each takes a store (or a way to open one) so that every
// backend measures the same work; the figures go into ns/op and custom
// metrics (clients/s, commands/s).

// benchClient makes a client the size of a real one: a 16-byte id, a name,
// and a sealed 32-byte key (nonce + key + tag + header).
func benchClient(r *rand.Rand, i int) store.Client {
	key := make([]byte, 62)
	for j := range key {
		key[j] = byte(r.Uint32())
	}
	return store.Client{ID: randomID(r), Name: fmt.Sprintf("device-%07d", i), SealedKey: key, CreatedAt: base}
}

// Populate inserts n clients in Updates of chunk clients each (a batch
// import) and returns their ids sorted.
func Populate(tb testing.TB, s store.Store, n, chunk int) []e4.ID {
	tb.Helper()
	r := rand.New(rand.NewPCG(uint64(n), uint64(chunk)))
	ids := make([]e4.ID, 0, n)
	batch := make([]store.Client, 0, chunk)
	for i := 0; i < n; i += chunk {
		batch = batch[:0]
		for j := i; j < min(n, i+chunk); j++ {
			c := benchClient(r, j)
			batch = append(batch, c)
			ids = append(ids, c.ID)
		}
		if err := s.Update(context.Background(), func(tx store.Tx) error { return tx.InsertClients(batch) }); err != nil {
			tb.Fatalf("importing clients %d to %d: %v", i, i+len(batch), err)
		}
	}
	slices.SortFunc(ids, func(a, b e4.ID) int { return bytes.Compare(a[:], b[:]) })
	return ids
}

// BenchInsertClients measures a batch import of n clients into a fresh
// store per iteration, chunk clients per Update, and reports clients/s.
func BenchInsertClients(b *testing.B, open func(b *testing.B) store.Store, n, chunk int) {
	var elapsed time.Duration
	for b.Loop() {
		b.StopTimer()
		s := open(b)
		b.StartTimer()
		start := time.Now()
		Populate(b, s, n, chunk)
		elapsed += time.Since(start)
		b.StopTimer()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/elapsed.Seconds(), "clients/s")
}

// BenchGetClient measures a View reading one client at random among ids.
func BenchGetClient(b *testing.B, s store.Store, ids []e4.ID) {
	r := rand.New(rand.NewPCG(1, 2))
	for b.Loop() {
		id := ids[r.IntN(len(ids))]
		err := s.View(context.Background(), func(tx store.Tx) error {
			_, err := tx.GetClient(id)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchListClients measures a View reading a page of pageSize clients
// from a random place.
func BenchListClients(b *testing.B, s store.Store, ids []e4.ID, pageSize int) {
	r := rand.New(rand.NewPCG(3, 4))
	for b.Loop() {
		after := ids[r.IntN(len(ids)-pageSize)]
		err := s.View(context.Background(), func(tx store.Tx) error {
			page, err := tx.ListClients(after, pageSize)
			if err == nil && len(page) != pageSize {
				err = fmt.Errorf("page of %d clients, want %d", len(page), pageSize)
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchCountClients measures a View counting clients, checking the count.
func BenchCountClients(b *testing.B, s store.Store, want int64) {
	for b.Loop() {
		err := s.View(context.Background(), func(tx store.Tx) error {
			n, err := tx.CountClients()
			if err == nil && n != want {
				err = fmt.Errorf("CountClients = %d, want %d", n, want)
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// benchCommands makes n commands for distinct clients, as a topic key
// rotation does.
func benchCommands(r *rand.Rand, n int) []store.Command {
	cmds := make([]store.Command, n)
	payload := make([]byte, 120)
	for i := range cmds {
		cmds[i] = store.Command{
			ID: randomCommandID(r), ClientID: randomID(r), Kind: "SetTopicKey", Target: "benchmarks/topic",
			SealedPayload: payload, NextAttemptAt: base, CreatedAt: base,
		}
	}
	return cmds
}

// BenchEnqueue measures EnqueueCommands of batch commands in one Update;
// an op is one command.
func BenchEnqueue(b *testing.B, s store.Store, batch int) {
	r := rand.New(rand.NewPCG(5, 6))
	var elapsed time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; {
		b.StopTimer()
		cmds := benchCommands(r, min(batch, b.N-done))
		b.StartTimer()
		start := time.Now()
		if err := s.Update(context.Background(), func(tx store.Tx) error { return tx.EnqueueCommands(cmds) }); err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
		done += len(cmds)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "commands/s")
}

// BenchDispatch measures dispatching: commands are enqueued enqueueBatch
// at a time (not timed), then claimed claimBatch at a time and marked sent
// (timed) by dispatchers goroutines, several stores standing for replicas.
// An op is one command; commands/s is claim + MarkSent throughput.
func BenchDispatch(b *testing.B, stores []store.Store, enqueueBatch, claimBatch, dispatchers int) {
	r := rand.New(rand.NewPCG(7, 8))
	var elapsed time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(enqueueBatch, b.N-done)
		cmds := benchCommands(r, n)
		b.StopTimer()
		if err := stores[0].Update(context.Background(), func(tx store.Tx) error { return tx.EnqueueCommands(cmds) }); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		claimed := ConcurrentDispatch(b, stores[0], dispatchers, n, claimBatch, stores[1:]...)
		elapsed += time.Since(start)
		if len(claimed) != n {
			b.Fatalf("dispatched %d of %d commands", len(claimed), n)
		}
		done += n
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "commands/s")
}
