package c2

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
)

// requirePK fails in symmetric-key deployments.
func (s *Service) requirePK() error {
	if s.cfg.Mode != e4.PubKey {
		return fmt.Errorf("%w: public keys exist only in public-key mode", ErrWrongMode)
	}
	return nil
}

// Link names a directed public-key relation between two clients: Target
// holds Source's public key, so Target accepts messages signed by Source.
// The public-key methods take a Link rather than two e4.ID arguments so that
// a swapped source and target cannot be written by accident: the field
// names are at every call site.
type Link struct {
	Source e4.ID // the client whose public key is sent
	Target e4.ID // the client that receives and keeps Source's key
}

// String gives "source -> target".
func (l Link) String() string { return l.Source.String() + " -> " + l.Target.String() }

// SendPubKey sends l.Source's public key to l.Target (SetPubKey), so the
// target accepts messages signed by the source.
func (s *Service) SendPubKey(ctx context.Context, l Link) error {
	if err := s.requirePK(); err != nil {
		return err
	}
	return s.update(ctx, func(tx store.Tx, ev *events) error {
		return s.sendPubKey(tx, ev, l.Target, l.Source)
	})
}

func (s *Service) sendPubKey(tx store.Tx, ev *events, targetID, sourceID e4.ID) error {
	target, err := getClient(tx, targetID)
	if err != nil {
		return err
	}
	source, err := getClient(tx, sourceID)
	if err != nil {
		return err
	}
	cmd, err := command.NewSetPubKey(source.PublicKey, source.ID)
	if err != nil {
		return err
	}
	ev.add(EventPubKeyChanged, &target.ID, "", "set "+source.ID.String())
	return s.enqueue(tx, ev, outgoing{client: target, cmd: cmd, target: source.ID.String()})
}

// RemovePubKey makes l.Target forget l.Source's public key (RemovePubKey)
// and removes the link from source to target if there is one.
func (s *Service) RemovePubKey(ctx context.Context, l Link) error {
	return s.removePubKey(ctx, l.Target, l.Source, false)
}

// removePubKey sends RemovePubKey and drops the link from source to
// target, which must exist when linked is set.
func (s *Service) removePubKey(ctx context.Context, target, source e4.ID, linked bool) error {
	if err := s.requirePK(); err != nil {
		return err
	}
	return s.update(ctx, func(tx store.Tx, ev *events) error {
		c, err := getClient(tx, target)
		if err != nil {
			return err
		}
		err = tx.RemoveLink(source, target)
		if err != nil && (linked || !isNotFound(err)) {
			return fmt.Errorf("link %s -> %s: %w", source, target, err)
		}
		ev.add(EventPubKeyChanged, &c.ID, "", "removed "+source.String())
		return s.enqueue(tx, ev, outgoing{client: c, cmd: command.NewRemovePubKey(source), target: source.String()})
	})
}

// ResetPubKeys makes target forget every public key it holds.
func (s *Service) ResetPubKeys(ctx context.Context, target e4.ID) error {
	if err := s.requirePK(); err != nil {
		return err
	}
	return s.update(ctx, func(tx store.Tx, ev *events) error {
		c, err := getClient(tx, target)
		if err != nil {
			return err
		}
		ev.add(EventPubKeyChanged, &c.ID, "", "reset")
		return s.enqueue(tx, ev, outgoing{client: c, cmd: command.NewResetPubKeys(), target: target.String()})
	})
}

// LinkClients sends l.Source's public key to l.Target now and again
// whenever the source's key changes (NewClientKey).
func (s *Service) LinkClients(ctx context.Context, l Link) error {
	source, target := l.Source, l.Target
	if err := s.requirePK(); err != nil {
		return err
	}
	return s.update(ctx, func(tx store.Tx, ev *events) error {
		if err := s.sendPubKey(tx, ev, target, source); err != nil {
			return err
		}
		if err := tx.AddLink(source, target); err != nil {
			return fmt.Errorf("link %s -> %s: %w", source, target, err)
		}
		return nil
	})
}

// UnlinkClients removes the link and makes l.Target forget l.Source's key.
func (s *Service) UnlinkClients(ctx context.Context, l Link) error {
	return s.removePubKey(ctx, l.Target, l.Source, true)
}

// LinkTargets lists the clients linked from source.
func (s *Service) LinkTargets(ctx context.Context, source, after e4.ID, limit int) ([]e4.ID, error) {
	limit, err := checkLimit(limit)
	if err != nil {
		return nil, err
	}
	var ids []e4.ID
	err = s.view(ctx, func(tx store.Tx) (err error) {
		ids, err = tx.LinkTargets(source, after, limit)
		return err
	})
	return ids, err
}

// SendC2SignerKey sends C2's signing key to a client so it accepts the
// messages C2 protects (ProtectMessage) in public-key mode.
func (s *Service) SendC2SignerKey(ctx context.Context, target e4.ID) error {
	pair, err := s.c2Keys()
	if err != nil {
		return err
	}
	cmd, err := command.NewSetPubKey(pair.signer.Public().(ed25519.PublicKey), pair.signerID)
	if err != nil {
		return err
	}
	return s.update(ctx, func(tx store.Tx, ev *events) error {
		c, err := getClient(tx, target)
		if err != nil {
			return err
		}
		return s.enqueue(tx, ev, outgoing{client: c, cmd: cmd, target: C2SignerName})
	})
}

func (s *Service) forEachLinkTarget(tx store.Tx, source e4.ID, fn func(store.Client) error) error {
	var after e4.ID
	for {
		ids, err := tx.LinkTargets(source, after, memberPage)
		if err != nil {
			return err
		}
		for _, id := range ids {
			c, err := getClient(tx, id)
			if err != nil {
				return err
			}
			if err := fn(c); err != nil {
				return err
			}
		}
		if len(ids) < memberPage {
			return nil
		}
		after = ids[len(ids)-1]
	}
}

// RotateC2Key gives C2 a new key pair and sends the new public key to
// every client (SetC2Key, protected under the old pair), however many there
// are. It returns how many commands were queued. C2 keeps the previous pair
// so that a device that missed the SetC2Key is not locked out: until it
// shows it holds the new key, commands reach it under both (see
// c2keychange.go).
func (s *Service) RotateC2Key(ctx context.Context) (int, error) {
	return s.rotateC2Key(ctx, func(tx store.Tx) error {
		n, err := tx.CountClients()
		if err != nil {
			return err
		}
		return s.recordRotationTx(tx, store.TargetC2, c2ScheduleTarget, reasonManual, 0, n)
	})
}

// rotateC2Key is RotateC2Key; guard, when set, runs first in its
// transaction, and an error from it rolls the rotation back.
func (s *Service) rotateC2Key(ctx context.Context, guard func(tx store.Tx) error) (int, error) {
	current, err := s.c2Keys()
	if err != nil {
		return 0, err
	}
	private, err := newX25519Private()
	if err != nil {
		return 0, err
	}
	next := *current
	next.private = private
	if next.public, err = x25519Public(private); err != nil {
		return 0, err
	}
	cmd, err := command.NewSetC2Key(next.public)
	if err != nil {
		return 0, err
	}
	// Commands are sealed under the key pair current when they are
	// enqueued; hold the write lock so no other command is enqueued with
	// the old pair after the new one is stored.
	s.pairMu.Lock()
	defer s.pairMu.Unlock()
	rotatedAt := s.now().UTC()
	var n int
	err = s.updateLocked(ctx, func(tx store.Tx, ev *events) error {
		n = 0
		if guard != nil {
			if err := guard(tx); err != nil {
				return err
			}
		}
		if err := s.putSealedSetting(tx, settingC2Key, private); err != nil {
			return err
		}
		if err := s.savePrevC2Key(tx, current.private, rotatedAt); err != nil {
			return err
		}
		var after e4.ID
		for {
			page, err := tx.ListClients(after, memberPage)
			if err != nil {
				return err
			}
			out := make([]outgoing, len(page))
			for i, c := range page {
				out[i] = outgoing{client: c, cmd: cmd, target: c2Target}
			}
			if err := s.enqueue(tx, ev, out...); err != nil {
				return err
			}
			n += len(page)
			if len(page) < memberPage {
				break
			}
			after = page[len(page)-1].ID
		}
		ev.add(EventC2KeyRotated, nil, "", fmt.Sprintf("%d clients", n))
		return nil
	})
	if err == nil {
		s.pk = &next
		s.prevPK = &prevC2Key{private: current.private, public: current.public, rotatedAt: rotatedAt}
	}
	return n, err
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
