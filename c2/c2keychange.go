package c2

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
)

// In public-key mode a device's command key is made from C2's key pair, so
// a rotation of that pair (RotateC2Key, SetC2Key) is to PK devices what a
// client-key change is to SK devices: one that missed the SetC2Key would
// be locked out. C2 keeps its previous pair; until a device shows it holds
// the new public key (an acknowledgement of the SetC2Key, or anything
// under the new command key), commands reach it under both command keys,
// and one that shows it still holds the previous key is sent the SetC2Key
// again. Devices that do not acknowledge get both for ClientKeyGrace.

// prevC2Key is C2's key pair before its last rotation.
type prevC2Key struct {
	private, public []byte
	rotatedAt       time.Time
}

func (s *Service) loadPrevC2Key(tx store.Tx) (*prevC2Key, error) {
	private, err := s.openSetting(tx, settingC2KeyPrev)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	public, err := x25519Public(private)
	if err != nil {
		return nil, err
	}
	raw, err := tx.GetSetting(settingC2KeyRotated)
	if err != nil {
		return nil, err
	}
	sec, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("c2: setting %s: %w", settingC2KeyRotated, err)
	}
	return &prevC2Key{private: private, public: public, rotatedAt: time.Unix(sec, 0).UTC()}, nil
}

func (s *Service) savePrevC2Key(tx store.Tx, private []byte, at time.Time) error {
	if err := s.putSealedSetting(tx, settingC2KeyPrev, private); err != nil {
		return err
	}
	return tx.PutSetting(settingC2KeyRotated, []byte(strconv.FormatInt(at.Unix(), 10)))
}

// c2KeyChange returns the C2-key change pending for client c, or nil: none
// was made, c joined after it, or its device holds the new key. The caller
// holds pairMu.
func (s *Service) c2KeyChange(tx store.Tx, c store.Client, now time.Time) (*keyChange, error) {
	prev := s.prevPK
	if prev == nil || c.CreatedAt.After(prev.rotatedAt) {
		return nil, nil
	}
	ds, err := tx.GetDeviceState(c.ID)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(ds.C2KeyAcked, s.pk.public) {
		return nil, nil
	}
	current, err := s.commandKey(c)
	if err != nil {
		return nil, err
	}
	old, err := e4.C2CommandKey(prev.private, c.PublicKey)
	if err != nil {
		return nil, err
	}
	grace := s.dispatcher.cfg.ClientKeyGrace
	return &keyChange{prev: old, current: current, expired: !ds.Acknowledges() && now.After(prev.rotatedAt.Add(grace))}, nil
}

// c2KeyChanges returns the C2-key changes pending for clients.
func (s *Service) c2KeyChanges(tx store.Tx, clients []e4.ID, now time.Time) (map[e4.ID]*keyChange, error) {
	s.pairMu.RLock()
	defer s.pairMu.RUnlock()
	out := make(map[e4.ID]*keyChange)
	if s.prevPK == nil {
		return out, nil
	}
	for _, id := range clients {
		if _, done := out[id]; done {
			continue
		}
		c, err := tx.GetClient(id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		k, err := s.c2KeyChange(tx, c, now)
		if err != nil {
			return nil, err
		}
		if k != nil {
			out[id] = k
		}
	}
	return out, nil
}

// learnC2Key updates what C2 knows of the C2 key a PK device holds from a
// message under its previous command key (underPrev: it missed the
// SetC2Key, which is sent again) or under the current one (it holds the
// new key). The caller holds pairMu.
func (s *Service) learnC2Key(tx store.Tx, ev *events, ds *store.DeviceState, c store.Client, underPrev bool) error {
	if !underPrev {
		ds.C2KeyAcked = s.pk.public
		return nil
	}
	pending, err := tx.HasPendingCommand(c.ID, c2Target, command.SetC2Key.String())
	if err != nil || pending {
		return err
	}
	cmd, err := command.NewSetC2Key(s.pk.public)
	if err != nil {
		return err
	}
	old, err := e4.C2CommandKey(s.prevPK.private, c.PublicKey)
	if err != nil {
		return err
	}
	ev.add(EventC2KeyRotated, &c.ID, "", "SetC2Key sent again: the device still holds C2's previous key")
	return s.enqueue(tx, ev, outgoing{client: c, cmd: cmd, target: c2Target, key: old})
}

// c2Target is the outbox target of SetC2Key commands.
const c2Target = "c2"
