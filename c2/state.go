package c2

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// C2 keeps, beside what it wants each device to hold (the keys of its
// topics, in PK mode the public keys of its links), what the device
// showed it holds: the topic key version it acknowledged, learned from its
// acknowledgements (e4.HandleCommandAck) and its sync requests
// (e4.SyncRequest). The methods below read that state; they are counts and
// keyset pages, cheap at any fleet size.

// KeyInUse says which client key C2 protects a device's commands under.
type KeyInUse string

// The values of KeyInUse.
const (
	// KeyCurrent: the device holds the client's key.
	KeyCurrent KeyInUse = "current"
	// KeyUnconfirmed: a client-key change is not confirmed; commands go
	// out under both the previous and the new key.
	KeyUnconfirmed KeyInUse = "previous-or-new"
	// KeyPrevious: the device showed it still holds the previous key; the
	// SetIDKey was sent again and commands go out under both keys.
	KeyPrevious KeyInUse = "previous"
)

// ClientState is what C2 knows of one device.
type ClientState struct {
	ID e4.ID
	// AckMode is the operator's setting (SetAcknowledges); Acknowledges
	// whether the device is expected to acknowledge (declared, or learned
	// from its first acknowledgement or sync request).
	AckMode      AckMode
	Acknowledges bool
	// LastSeen is when C2 last heard from the device (an acknowledgement
	// or a sync request), LastSync its last sync request; zero: never.
	LastSeen, LastSync time.Time
	// Topics counts its memberships, TopicsBehind those whose current key
	// it has not acknowledged (for a device that does not acknowledge,
	// every one: C2 cannot know).
	Topics, TopicsBehind int64
	// PubKeys counts its links (PK mode: the clients whose public keys it
	// should hold), PubKeysBehind those whose current key it has not
	// acknowledged. C2KeyCurrent: it acknowledged C2's current public key.
	PubKeys, PubKeysBehind int64
	C2KeyCurrent           bool
	// PendingCommands counts its commands waiting in the outbox.
	PendingCommands int64
	// KeyInUse says which key protects its commands: in SK mode its
	// client key, in PK mode the command key made from C2's key pair
	// (KeyUnconfirmed after RotateC2Key until the device shows it holds
	// C2's new public key).
	KeyInUse     KeyInUse
	KeyChangedAt time.Time // start of a change not confirmed; else zero
	// Stalled is set while its queue is stuck, with the reason.
	Stalled       bool
	StalledReason string
	StalledAt     time.Time
}

// TopicKeyState is one topic of a client: the key version C2 wants the
// device to hold and the one it acknowledged (0: none).
type TopicKeyState struct {
	Topic        string
	WantVersion  uint64
	AckedVersion uint64
	AckedAt      time.Time
	Behind       bool
}

// TopicState sums up a topic's members against its current key.
type TopicState struct {
	Name      string
	Version   uint64
	RotatedAt time.Time
	Members   int64
	// Acknowledged counts the members that acknowledged Version; Behind
	// the others, of which BehindNotAcknowledging are devices that do not
	// acknowledge (their state is unknown, not necessarily behind).
	Acknowledged, Behind, BehindNotAcknowledging int64
	// Converged: every member acknowledged Version.
	Converged bool
}

// String renders the state like "version 7: 9950 of 10000 members
// acknowledged; 50 behind".
func (t TopicState) String() string {
	return fmt.Sprintf("version %d: %d of %d members acknowledged; %d behind", t.Version, t.Acknowledged, t.Members, t.Behind)
}

// BehindClient is a member of a topic that has not acknowledged its
// current key.
type BehindClient struct {
	ID           e4.ID
	AckedVersion uint64 // 0: none
	AckedAt      time.Time
	Acknowledges bool
	LastSeen     time.Time
}

// FleetState sums up every device.
type FleetState struct {
	Clients int64
	// Acknowledging and NotAcknowledging count devices known or declared
	// to acknowledge or not; the others were never heard from.
	Acknowledging, NotAcknowledging int64
	Stalled                         int64
	KeyChangesPending               int64
	// MembershipsBehind counts memberships whose device has not
	// acknowledged the current key; ClientsBehind the clients with any.
	MembershipsBehind, ClientsBehind int64
	PendingCommands                  int64
}

// ClientState returns what C2 knows of a client's device.
func (s *Service) ClientState(ctx context.Context, id e4.ID) (ClientState, error) {
	st := ClientState{ID: id}
	err := s.view(ctx, func(tx store.Tx) error {
		ds, err := tx.GetDeviceState(id)
		if err != nil {
			return fmt.Errorf("client %s: %w", id, err)
		}
		if st.Topics, err = tx.CountTopicsOfClient(id); err != nil {
			return err
		}
		if st.TopicsBehind, err = tx.CountMembersBehind(id); err != nil {
			return err
		}
		if st.PendingCommands, err = tx.CountCommands(store.CommandFilter{ClientID: &id, State: store.CommandPending}); err != nil {
			return err
		}
		if s.cfg.Mode == e4.PubKey {
			if st.PubKeys, st.PubKeysBehind, err = tx.CountLinksBehind(id); err != nil {
				return err
			}
			pair, err := s.c2Keys()
			if err != nil {
				return err
			}
			st.C2KeyCurrent = bytes.Equal(ds.C2KeyAcked, pair.public)
		}
		fillClientState(&st, ds)
		if s.cfg.Mode == e4.PubKey {
			c, err := tx.GetClient(id)
			if err != nil {
				return err
			}
			s.pairMu.RLock()
			prev := s.prevPK
			s.pairMu.RUnlock()
			if prev != nil && !st.C2KeyCurrent && !c.CreatedAt.After(prev.rotatedAt) {
				st.KeyInUse, st.KeyChangedAt = KeyUnconfirmed, prev.rotatedAt
			}
		}
		return nil
	})
	return st, err
}

func fillClientState(st *ClientState, ds store.DeviceState) {
	st.AckMode, st.Acknowledges = AckMode(ds.AckMode), ds.Acknowledges()
	st.LastSeen, st.LastSync = ds.LastSeen, ds.LastSync
	st.KeyInUse = KeyCurrent
	if ds.PrevSealedKey != nil {
		st.KeyInUse, st.KeyChangedAt = KeyUnconfirmed, ds.KeyChangedAt
		if ds.KeyState == store.KeyOld {
			st.KeyInUse = KeyPrevious
		}
	}
	st.Stalled, st.StalledReason, st.StalledAt = ds.StalledReason != "", ds.StalledReason, ds.StalledAt
}

// ClientTopicStates lists a client's topics with the key version wanted
// and acknowledged, by name after after.
func (s *Service) ClientTopicStates(ctx context.Context, id e4.ID, after string, limit int) ([]TopicKeyState, error) {
	limit, err := checkLimit(limit)
	if err != nil {
		return nil, err
	}
	var list []store.MemberState
	err = s.view(ctx, func(tx store.Tx) (err error) {
		list, err = tx.MemberStates(id, after, limit)
		return err
	})
	out := make([]TopicKeyState, len(list))
	for i, m := range list {
		out[i] = TopicKeyState{Topic: m.Topic, WantVersion: m.WantVersion, AckedVersion: m.AckedVersion, AckedAt: m.AckedAt, Behind: m.Behind()}
	}
	return out, err
}

// TopicState sums up a topic's members against its current key.
func (s *Service) TopicState(ctx context.Context, name string) (TopicState, error) {
	st := TopicState{Name: name}
	err := s.view(ctx, func(tx store.Tx) error {
		t, err := getTopic(tx, name)
		if err != nil {
			return err
		}
		c, err := tx.TopicCounts(name)
		if err != nil {
			return err
		}
		st.Version, st.RotatedAt, st.Members, st.Acknowledged = c.Version, t.RotatedAt, c.Members, c.Current
		st.Behind = c.Members - c.Current
		st.BehindNotAcknowledging = st.Behind - c.BehindAcknowledging
		st.Converged = c.Members > 0 && st.Behind == 0
		return nil
	})
	return st, err
}

// TopicBehind lists the members of a topic that have not acknowledged its
// current key, by id after after.
func (s *Service) TopicBehind(ctx context.Context, name string, after e4.ID, limit int) ([]BehindClient, error) {
	limit, err := checkLimit(limit)
	if err != nil {
		return nil, err
	}
	var list []store.BehindMember
	err = s.view(ctx, func(tx store.Tx) (err error) {
		if _, err := getTopic(tx, name); err != nil {
			return err
		}
		list, err = tx.TopicBehind(name, after, limit)
		return err
	})
	out := make([]BehindClient, len(list))
	for i, b := range list {
		out[i] = BehindClient{ID: b.ClientID, AckedVersion: b.AckedVersion, AckedAt: b.AckedAt, Acknowledges: b.Acknowledges, LastSeen: b.LastSeen}
	}
	return out, err
}

// FleetState sums up every device.
func (s *Service) FleetState(ctx context.Context) (FleetState, error) {
	var f FleetState
	err := s.view(ctx, func(tx store.Tx) error {
		c, err := tx.FleetCounts()
		if err != nil {
			return err
		}
		f = FleetState{
			Clients: c.Clients, Acknowledging: c.Acknowledging, NotAcknowledging: c.NotAcknowledging,
			Stalled: c.Stalled, KeyChangesPending: c.KeyChangesPending,
			MembershipsBehind: c.MembershipsBehind, ClientsBehind: c.ClientsBehind,
		}
		f.PendingCommands, err = tx.CountCommands(store.CommandFilter{State: store.CommandPending})
		return err
	})
	return f, err
}

// ParseAckMode parses "auto", "yes" or "no".
func ParseAckMode(s string) (AckMode, error) {
	switch m := AckMode(s); m {
	case AckAuto, AckYes, AckNo:
		return m, nil
	}
	return "", fmt.Errorf("%w: acknowledgement mode %q is not auto, yes or no", ErrInvalidArgument, s)
}

// SetAcknowledges declares whether a client's device acknowledges
// commands: AckNo for devices that cannot (E4 v1 reference devices), so
// C2 neither waits for nor repairs on their acknowledgements; AckYes to
// count on them before the first one; AckAuto to learn it.
func (s *Service) SetAcknowledges(ctx context.Context, id e4.ID, mode AckMode) error {
	if _, err := ParseAckMode(string(mode)); err != nil {
		return err
	}
	return s.update(ctx, func(tx store.Tx, ev *events) error {
		ds, err := tx.GetDeviceState(id)
		if err != nil {
			return fmt.Errorf("client %s: %w", id, err)
		}
		ds.AckMode = store.AckMode(mode)
		ev.add(EventAckModeSet, &id, "", string(mode))
		return tx.PutDeviceState(ds)
	})
}
