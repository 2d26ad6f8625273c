package storetest

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/e4-iot/e4kit/c2/store"
)

// testUpdateCommandPayload: a command's sealed payload can be replaced in
// any state (as a master-key rekey does) and nothing else of it changes;
// an unknown id is ErrNotFound and an empty payload is refused.
func testUpdateCommandPayload(t *testing.T, s store.Store) {
	r := rand.New(rand.NewPCG(7, 7))
	c := insertClients(t, s, r, 1)[0]
	pending, sent := newCommand(r, c, "SetTopicKey", "a"), newCommand(r, c, "SetTopicKey", "b")
	enqueue(t, s, pending, sent)
	ids := claim(t, s, "d1", 0, 1)
	ok(t, "MarkSent", s.MarkSent(t.Context(), "d1", ids, base))
	pending, sent = sent, pending // the first one enqueued was claimed and sent
	for _, id := range []store.CommandID{pending.ID, sent.ID} {
		before := getCommand(t, s, id)
		update(t, s, func(tx store.Tx) error { return tx.UpdateCommandPayload(id, []byte("re-sealed")) })
		after := getCommand(t, s, id)
		if !bytes.Equal(after.SealedPayload, []byte("re-sealed")) {
			t.Fatalf("payload %q after the update", after.SealedPayload)
		}
		after.SealedPayload = before.SealedPayload
		if !sameCommand(before, after) {
			t.Fatalf("the update changed more than the payload:\n%+v\n%+v", before, after)
		}
	}
	update(t, s, func(tx store.Tx) error {
		wantErr(t, "UpdateCommandPayload of an unknown id", tx.UpdateCommandPayload(randomCommandID(r), []byte("x")), store.ErrNotFound)
		wantFailure(t, "UpdateCommandPayload with no payload", tx.UpdateCommandPayload(pending.ID, nil))
		return nil
	})
}

func sameCommand(a, b store.Command) bool {
	return a.ID == b.ID && a.Seq == b.Seq && a.ClientID == b.ClientID && a.Kind == b.Kind && a.Target == b.Target &&
		bytes.Equal(a.SealedPayload, b.SealedPayload) && a.State == b.State && a.Attempts == b.Attempts &&
		a.NextAttemptAt.Equal(b.NextAttemptAt) && a.LastError == b.LastError && a.CreatedAt.Equal(b.CreatedAt) && a.SentAt.Equal(b.SentAt)
}
