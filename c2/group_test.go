package c2

import (
	"context"
	"testing"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/transport/loopback"
)

// TestGroupTopicsLinkMembers: with GroupTopics, members of a topic get
// each other's public keys when they join and read each other's messages
// with no manual link; a member leaving is unlinked, both ways, from the
// members it shares no other topic with, and stays linked to one it still
// shares a topic with. Without the option nothing is linked (the reference
// behaviour).
func TestGroupTopicsLinkMembers(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	env := newTestService(t, e4.PubKey, broker.Connect(), func(c *Config) { c.GroupTopics = true })
	svc := env.svc
	c2Pub := must[[]byte](t)(svc.C2PublicKey())
	devs := make(map[string]*device)
	for _, name := range []string{"a", "b", "c"} {
		pub, priv := newEd25519(t)
		must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: name, PublicKey: pub}))
		devs[name] = newPKDevice(t, broker.Connect(), name, priv, c2Pub)
	}
	id := func(name string) e4.ID { return e4.IDFromName(name) }
	links := func(source string) map[e4.ID]bool {
		t.Helper()
		m := make(map[e4.ID]bool)
		for _, target := range must[[]e4.ID](t)(svc.LinkTargets(ctx, id(source), e4.ID{}, 100)) {
			m[target] = true
		}
		return m
	}
	for _, topic := range []string{"group/one", "group/two"} {
		must[TopicInfo](t)(svc.AddTopic(ctx, topic))
	}
	for _, name := range []string{"a", "b"} {
		if err := svc.AddMember(ctx, "group/one", id(name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.AddMembers(ctx, "group/two", []e4.ID{id("a"), id("c")}); err != nil {
		t.Fatal(err)
	}
	if err := svc.AddMember(ctx, "group/one", id("c")); err != nil {
		t.Fatal(err)
	}
	// a: SetTopicKey x2 + keys of b and c; b: SetTopicKey + keys of a and c.
	devs["a"].waitCommands(4)
	devs["b"].waitCommands(3)
	devs["c"].waitCommands(4)
	if l := links("a"); !l[id("b")] || !l[id("c")] || !links("b")[id("a")] || !links("c")[id("b")] {
		t.Fatalf("links after joining: a->%v b->%v c->%v", l, links("b"), links("c"))
	}
	sub := subscribe(t, devs["b"].tr, "group/one")
	if err := devs["a"].tr.Publish(ctx, "group/one", []byte("from a")); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, sub); string(m.Payload) != "from a" {
		t.Fatalf("b read %q", m.Payload)
	}

	env.waitIdle(t)
	before := must[int64](t)(svc.CountCommands(ctx, CommandFilter{Target: id("c").String()}))
	if err := svc.RemoveMember(ctx, "group/one", id("c")); err != nil {
		t.Fatal(err)
	}
	if links("b")[id("c")] || links("c")[id("b")] {
		t.Fatal("b and c share no topic any more but are still linked")
	}
	if !links("a")[id("c")] || !links("c")[id("a")] {
		t.Fatal("a and c still share group/two but were unlinked")
	}
	after := must[int64](t)(svc.CountCommands(ctx, CommandFilter{Target: id("c").String()}))
	if after-before != 1 { // RemovePubKey(c) to b only
		t.Fatalf("%d commands about c queued by the removal, want 1", after-before)
	}
	cmds := devs["b"].waitCommands(4)
	if cmds[3] != command.RemovePubKey {
		t.Fatalf("b applied %v", cmds)
	}

	// RemoveClient unlinks too.
	if err := svc.RemoveClient(ctx, id("a")); err != nil {
		t.Fatal(err)
	}
	if links("b")[id("a")] || links("c")[id("a")] {
		t.Fatal("a removed, still linked")
	}

	plain := newTestService(t, e4.PubKey, nil)
	pub, _ := newEd25519(t)
	pub2, _ := newEd25519(t)
	must[AddedClient](t)(plain.svc.AddClient(ctx, NewClient{Name: "x", PublicKey: pub}))
	must[AddedClient](t)(plain.svc.AddClient(ctx, NewClient{Name: "y", PublicKey: pub2}))
	must[TopicInfo](t)(plain.svc.AddTopic(ctx, "t"))
	if err := plain.svc.AddMembers(ctx, "t", []e4.ID{id("x"), id("y")}); err != nil {
		t.Fatal(err)
	}
	if l := must[[]e4.ID](t)(plain.svc.LinkTargets(ctx, id("x"), e4.ID{}, 10)); len(l) != 0 {
		t.Fatalf("links without GroupTopics: %v", l)
	}
}
