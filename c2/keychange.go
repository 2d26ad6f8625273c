package c2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
)

// A client-key change (SetIDKey, SK mode) must not lock a device out: a
// device that missed the SetIDKey still holds the previous key. Until the
// device shows it holds the new key (an acknowledgement or a sync request
// under it), C2 protects each command under both keys, the previous one
// first; the device applies the copy it can open and drops the other as
// unauthentic. A device that shows it still holds the previous key is sent
// the SetIDKey again. For a device that does not acknowledge, C2 stops
// using the previous key after DispatchConfig.ClientKeyGrace.

// ErrKeyChangePending reports a client-key change asked for while the
// previous one is not confirmed by the device yet.
var ErrKeyChangePending = errors.New("c2: the device has not confirmed its previous client-key change")

// keyChange is a client-key change pending for one client, as the
// dispatcher needs it.
type keyChange struct {
	prev, current []byte
	// expired: the grace of a device that does not acknowledge is over.
	expired bool
}

// sendKey is one key a command is protected under.
type sendKey struct {
	key     []byte
	prev    bool // the key the device held before the change
	current bool // the key after the change (during a change only)
}

// keysFor returns the keys to protect cmd under: stored (the key sealed
// with the command) without a change, or for the SetIDKey itself, which
// only the previous key opens; both keys during a change.
func (k *keyChange) keysFor(cmd, stored []byte, now time.Time) []sendKey {
	switch code := command.Code(cmd[0]); {
	case k == nil:
		return []sendKey{{key: stored}}
	case code == command.SetIDKey || code == command.SetC2Key:
		return []sendKey{{key: stored, prev: bytes.Equal(stored, k.prev)}}
	case k.expired:
		return []sendKey{{key: k.current, current: true}}
	}
	return []sendKey{{key: k.prev, prev: true}, {key: k.current, current: true}}
}

// keyChanges returns the key changes pending for clients: client-key
// changes in SK mode, C2-key changes in PK mode.
func (s *Service) keyChanges(ctx context.Context, clients []e4.ID, now time.Time) (map[e4.ID]*keyChange, error) {
	if s.cfg.Mode == e4.PubKey {
		var out map[e4.ID]*keyChange
		err := s.view(ctx, func(tx store.Tx) (err error) {
			out, err = s.c2KeyChanges(tx, clients, now)
			return err
		})
		return out, err
	}
	wanted := make(map[e4.ID]bool, len(clients))
	for _, id := range clients {
		wanted[id] = true
	}
	out := make(map[e4.ID]*keyChange)
	grace := s.dispatcher.cfg.ClientKeyGrace
	err := s.view(ctx, func(tx store.Tx) error {
		return forEachKeyChange(tx, func(ds store.DeviceState) error {
			if !wanted[ds.ClientID] {
				return nil
			}
			c, err := tx.GetClient(ds.ClientID)
			if err != nil {
				return err
			}
			k, err := s.openKeyChange(c, ds)
			if err != nil {
				return err
			}
			k.expired = !ds.Acknowledges() && now.After(ds.KeyChangedAt.Add(grace))
			out[ds.ClientID] = k
			return nil
		})
	})
	return out, err
}

// forEachKeyChange calls fn with every device state that has a key change
// pending.
func forEachKeyChange(tx store.Tx, fn func(store.DeviceState) error) error {
	var after e4.ID
	for {
		page, err := tx.ListKeyChanges(after, memberPage)
		if err != nil {
			return err
		}
		for _, ds := range page {
			if err := fn(ds); err != nil {
				return err
			}
		}
		if len(page) < memberPage {
			return nil
		}
		after = page[len(page)-1].ClientID
	}
}

func (s *Service) openKeyChange(c store.Client, ds store.DeviceState) (*keyChange, error) {
	current, err := s.keys.Open(c.SealedKey, clientKeyBinding(c.ID))
	if err != nil {
		return nil, err
	}
	prev, err := s.keys.Open(ds.PrevSealedKey, clientKeyBinding(c.ID))
	if err != nil {
		return nil, err
	}
	return &keyChange{prev: prev, current: current}, nil
}

// learnKeyInUse updates a pending key change from a message the device
// protected (or acknowledged) under its previous key (underPrev) or under
// the new one. Under the previous key, the device missed the SetIDKey: it
// is sent again unless one is already waiting.
func (s *Service) learnKeyInUse(tx store.Tx, ev *events, ds *store.DeviceState, underPrev bool) error {
	if !underPrev {
		ds.PrevSealedKey, ds.KeyState, ds.KeyChangedAt = nil, store.KeySettled, time.Time{}
		ev.add(EventClientKeyConfirmed, &ds.ClientID, "", "")
		return nil
	}
	ds.KeyState = store.KeyOld
	pending, err := tx.HasPendingCommand(ds.ClientID, ds.ClientID.String(), command.SetIDKey.String())
	if err != nil || pending {
		return err
	}
	c, err := getClient(tx, ds.ClientID)
	if err != nil {
		return err
	}
	k, err := s.openKeyChange(c, *ds)
	if err != nil {
		return err
	}
	cmd, err := command.NewSetIDKey(k.current)
	if err != nil {
		return err
	}
	ev.add(EventClientKeyNew, &c.ID, "", "sent again: the device still holds its previous key")
	return s.enqueue(tx, ev, outgoing{client: c, cmd: cmd, target: c.ID.String(), key: k.prev})
}

// beginKeyChange records a client-key change: the device holds prevSealed
// until it shows otherwise.
func beginKeyChange(tx store.Tx, id e4.ID, prevSealed []byte, now time.Time) error {
	ds, err := tx.GetDeviceState(id)
	if err != nil {
		return err
	}
	if ds.PrevSealedKey != nil {
		return fmt.Errorf("%w: client %s: %w", ErrInvalidArgument, id, ErrKeyChangePending)
	}
	ds.PrevSealedKey, ds.KeyState, ds.KeyChangedAt = prevSealed, store.KeyChanging, now
	return tx.PutDeviceState(ds)
}

// expireKeyChanges ends the changes of devices that do not acknowledge
// once their grace is over: C2 then uses only the new key.
func (s *Service) expireKeyChanges(ctx context.Context, now time.Time, grace time.Duration) error {
	if s.cfg.Mode != e4.SymKey {
		return nil
	}
	var expired []store.DeviceState
	err := s.view(ctx, func(tx store.Tx) error {
		expired = expired[:0]
		return forEachKeyChange(tx, func(ds store.DeviceState) error {
			if !ds.Acknowledges() && now.After(ds.KeyChangedAt.Add(grace)) {
				expired = append(expired, ds)
			}
			return nil
		})
	})
	if err != nil || len(expired) == 0 {
		return err
	}
	return s.update(ctx, func(tx store.Tx, ev *events) error {
		for _, old := range expired {
			ds, err := tx.GetDeviceState(old.ClientID)
			if errors.Is(err, store.ErrNotFound) || (err == nil && ds.PrevSealedKey == nil) {
				continue // removed, or confirmed meanwhile
			}
			if err != nil {
				return err
			}
			ds.PrevSealedKey, ds.KeyState, ds.KeyChangedAt = nil, store.KeySettled, time.Time{}
			ev.add(EventClientKeyConfirmed, &ds.ClientID, "", "assumed: the device does not acknowledge and its grace is over")
			if err := tx.PutDeviceState(ds); err != nil {
				return err
			}
		}
		return nil
	})
}
