package benchmarks

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/binary"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
)

// commandPoolSize keeps every pool of commands within the replay cache's
// initial size, as poolSize does for messages.
const commandPoolSize = 4096

// distinctCommands returns n protected commands built by build(i), each
// different from the others so that the replay check accepts each once.
func distinctCommands(b *testing.B, n int, commandKey []byte, build func(i int) ([]byte, error)) [][]byte {
	now := time.Now()
	cmds := make([][]byte, n)
	for i := range cmds {
		cmd, err := build(i)
		if err != nil {
			b.Fatal(err)
		}
		if cmds[i], err = e4.ProtectCommand(cmd, commandKey, now); err != nil {
			b.Fatal(err)
		}
	}
	return cmds
}

// benchHandleCommand measures HandleCommand, replay check included, cycling
// through distinct commands and replacing the client (untimed) when all were
// applied.
func benchHandleCommand(b *testing.B, cmds [][]byte, want command.Code, newClient func() *e4.Client) {
	c := newClient()
	next := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if next == len(cmds) {
			b.StopTimer()
			c, next = newClient(), 0
			b.StartTimer()
		}
		got, err := c.HandleCommand(cmds[next])
		if err != nil || got != want {
			b.Fatalf("HandleCommand = %v, %v; want %v", got, err, want)
		}
		next++
	}
}

// commandedTopic is the topic the SetTopicKey commands key. It is not the
// topic skClient keys locally: that key is dated by the client's clock, a
// second after the commands may be, and the client would refuse them as
// older than its state.
const commandedTopic = "benchmarks/commanded"

// BenchmarkCommandSetTopicKey applies SetTopicKey commands to an SK client:
// each one installs a new key for the same topic, which builds a cipher and
// keeps the previous one for the key transition.
//
// A device refuses a command for a topic that is not newer than the last one
// it applied there, and timestamps have whole seconds: the commands are
// dated one second apart, from the epoch on, to a client that does not check
// the age of what it receives (Config.NoClock), so the pool is not too old or
// too far ahead however long the benchmark runs.
func BenchmarkCommandSetTopicKey(b *testing.B) {
	cmds := make([][]byte, commandPoolSize)
	for i := range cmds {
		key := repeat(0x77, e4.KeyLen)
		binary.LittleEndian.PutUint64(key, uint64(i))
		cmd, err := command.NewSetTopicKey(key, e4.HashTopic(commandedTopic))
		if err != nil {
			b.Fatal(err)
		}
		if cmds[i], err = e4.ProtectCommand(cmd, clientKey, time.Unix(int64(i+1), 0)); err != nil {
			b.Fatal(err)
		}
	}
	benchHandleCommand(b, cmds, command.SetTopicKey, func() *e4.Client {
		c, err := e4.NewSymKeyClient(e4.IDFromName("bench"), clientKey, &e4.Config{NoClock: true})
		if err != nil {
			b.Fatal(err)
		}
		return c
	})
}

// BenchmarkCommandSetPubKey applies SetPubKey commands to a PK client, under
// the command key derived from X25519 with C2: each one decodes and stores
// a sender's Ed25519 public key.
func BenchmarkCommandSetPubKey(b *testing.B) {
	c2, err := ecdh.X25519().GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(nil)
	commandKey, err := e4.C2CommandKey(c2.Bytes(), pub)
	if err != nil {
		b.Fatal(err)
	}
	senderPub, _, _ := ed25519.GenerateKey(nil)
	cmds := distinctCommands(b, commandPoolSize, commandKey, func(i int) ([]byte, error) {
		var sender e4.ID
		binary.LittleEndian.PutUint64(sender[:], uint64(i))
		return command.NewSetPubKey(senderPub, sender)
	})
	benchHandleCommand(b, cmds, command.SetPubKey, func() *e4.Client {
		c, err := e4.NewPubKeyClient(e4.IDFromName("bench"), priv, c2.PublicKey().Bytes(), clockConfig())
		if err != nil {
			b.Fatal(err)
		}
		return c
	})
}

// BenchmarkHashTopic hashes a topic name of typical length, what a client
// does once per new topic name (later lookups hit its name cache).
func BenchmarkHashTopic(b *testing.B) {
	name := "building-7/floor-3/room-12/temperature"
	b.ReportAllocs()
	for b.Loop() {
		e4.HashTopic(name)
	}
}

// BenchmarkKeyFromPassword derives a key as E4 v1 does: Argon2i, 64 MiB,
// 4 threads, once per device provisioning.
func BenchmarkKeyFromPassword(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e4.KeyFromPassword("correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}
