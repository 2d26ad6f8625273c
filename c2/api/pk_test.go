package api_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/e4"
)

func newPublicKey(t *testing.T) []byte {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// TestPublicKeyMode drives the public-key operations: links, key
// distribution, C2's key pair and its rotation.
func TestPublicKeyMode(t *testing.T) {
	c := newTestC2(t, options{mode: e4.PubKey})
	cl := c.client()
	ops := as(c.token("ops", "operate"))
	for _, name := range []string{"cam", "screen"} {
		res, err := cl.AddClient(ops, &c2pb.AddClientRequest{Name: name, PublicKey: newPublicKey(t)})
		if err != nil || len(res.Key) != 0 || len(res.Client.PublicKey) != ed25519.PublicKeySize {
			t.Fatalf("AddClient %s: %v %v", name, res, err)
		}
	}
	_, err := cl.AddClient(ops, &c2pb.AddClientRequest{Name: "zero", PublicKey: make([]byte, 32)})
	wantCode(t, "all-zero public key", err, codes.InvalidArgument)
	_, err = cl.AddClient(ops, &c2pb.AddClientRequest{Name: "sym", Key: make([]byte, e4.KeyLen)})
	wantCode(t, "symmetric key in PK mode", err, codes.FailedPrecondition)

	if _, err := cl.LinkClients(ops, &c2pb.LinkRequest{Source: "cam", Target: "screen"}); err != nil {
		t.Fatal(err)
	}
	_, err = cl.LinkClients(ops, &c2pb.LinkRequest{Source: "cam", Target: "cam"})
	wantCode(t, "self link", err, codes.InvalidArgument)
	links, err := cl.ListLinks(ops, &c2pb.ListLinksRequest{Client: "cam"})
	if err != nil || len(links.Clients) != 1 || links.Clients[0] != e4.IDFromName("screen").String() {
		t.Fatalf("ListLinks: %v %v", links, err)
	}
	if _, err := cl.NewClientKey(ops, &c2pb.NewClientKeyRequest{Client: "cam", PublicKey: newPublicKey(t)}); err != nil {
		t.Fatal(err)
	}
	_, err = cl.NewClientKey(ops, &c2pb.NewClientKeyRequest{Client: "cam"})
	wantCode(t, "new key without the device's public key", err, codes.InvalidArgument)
	for what, call := range map[string]func() error{
		"SendPubKey": func() error {
			_, err := cl.SendPubKey(ops, &c2pb.PubKeyRequest{Target: "screen", Source: "cam"})
			return err
		},
		"RemovePubKey": func() error {
			_, err := cl.RemovePubKey(ops, &c2pb.PubKeyRequest{Target: "screen", Source: "cam"})
			return err
		},
		"ResetPubKeys": func() error {
			_, err := cl.ResetPubKeys(ops, &c2pb.ClientRequest{Client: "screen"})
			return err
		},
		"SendC2SignerKey": func() error {
			_, err := cl.SendC2SignerKey(ops, &c2pb.ClientRequest{Client: "screen"})
			return err
		},
	} {
		if err := call(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	_, err = cl.UnlinkClients(ops, &c2pb.LinkRequest{Source: "cam", Target: "screen"})
	wantCode(t, "unlinking a link RemovePubKey removed", err, codes.NotFound)

	before, err := cl.GetC2Key(ops, &c2pb.Empty{})
	if err != nil || len(before.PublicKey) != 32 || before.SignerId != e4.IDFromName("e4kit-c2").String() {
		t.Fatalf("GetC2Key: %v %v", before, err)
	}
	rot, err := cl.RotateC2Key(as(c.admin), &c2pb.Empty{})
	if err != nil || rot.Commands != 2 {
		t.Fatalf("RotateC2Key: %v %v", rot, err)
	}
	after, err := cl.GetC2Key(ops, &c2pb.Empty{})
	if err != nil || string(after.PublicKey) == string(before.PublicKey) {
		t.Fatalf("C2 key unchanged by the rotation (%v)", err)
	}
}
