package c2

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// ProtectMessage protects payload for topic under the topic's current key,
// as a device would. In public-key mode C2 signs it with its own signing key
// (sender id e4.IDFromName(C2SignerName)); devices accept it once they were
// sent that key (SendC2SignerKey).
func (s *Service) ProtectMessage(ctx context.Context, topic string, payload []byte) ([]byte, error) {
	key, err := s.currentTopicKey(ctx, topic)
	if err != nil {
		return nil, err
	}
	if s.cfg.Mode == e4.SymKey {
		return s.Suite().ProtectSymKey(nil, payload, key, s.now())
	}
	pair, err := s.c2Keys()
	if err != nil {
		return nil, err
	}
	return s.Suite().ProtectPubKey(nil, payload, key, pair.signerID, pair.signer, s.now())
}

// UnprotectMessage checks and decrypts a message seen on topic under the
// topic's current key. In public-key mode the sender must be a known client
// (or C2 itself). Errors wrap the e4 sentinels (e4.ErrAuthentication,
// e4.ErrTimestampTooOld, ...).
func (s *Service) UnprotectMessage(ctx context.Context, topic string, protected []byte) ([]byte, error) {
	key, err := s.currentTopicKey(ctx, topic)
	if err != nil {
		return nil, err
	}
	cfg := &e4.Config{Now: s.now}
	if s.cfg.Mode == e4.SymKey {
		return s.Suite().UnprotectSymKey(nil, protected, key, cfg)
	}
	signers, err := s.signerOf(ctx, protected)
	if err != nil {
		return nil, err
	}
	return s.Suite().UnprotectPubKey(nil, protected, key, signers, cfg)
}

// signerOf returns the public key of the sender named in a PK message.
func (s *Service) signerOf(ctx context.Context, protected []byte) (map[e4.ID]ed25519.PublicKey, error) {
	if len(protected) < e4.PKOverhead {
		return nil, e4.ErrInvalidLength
	}
	sender := e4.ID(protected[e4.TimestampLen : e4.TimestampLen+e4.IDLen])
	pair, err := s.c2Keys()
	if err != nil {
		return nil, err
	}
	if sender == pair.signerID {
		return map[e4.ID]ed25519.PublicKey{sender: pair.signer.Public().(ed25519.PublicKey)}, nil
	}
	var c store.Client
	err = s.view(ctx, func(tx store.Tx) (err error) {
		c, err = tx.GetClient(sender)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: sender %s is not a client", e4.ErrPubKeyNotFound, sender)
	}
	if err != nil {
		return nil, err
	}
	return map[e4.ID]ed25519.PublicKey{sender: c.PublicKey}, nil
}

func (s *Service) currentTopicKey(ctx context.Context, topic string) ([]byte, error) {
	if err := checkTopic(topic); err != nil {
		return nil, err
	}
	var t store.Topic
	err := s.view(ctx, func(tx store.Tx) (err error) {
		t, err = getTopic(tx, topic)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.topicKey(t)
}
