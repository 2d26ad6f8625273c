package c2

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
)

// NewClient describes a client to add. Name or ID identifies it (the id of
// a named client is e4.IDFromName(Name); both may be given if they agree).
// In SK mode give Key or Password, or neither to have C2 generate a key. In
// PK mode give the device's PublicKey, or a Password from which the device
// derives its Ed25519 key; C2 never receives a device's private key.
type NewClient struct {
	Name      string
	ID        *e4.ID
	Key       []byte
	Password  string
	PublicKey []byte
}

// ClientInfo describes a client without its key.
type ClientInfo struct {
	ID        e4.ID
	Name      string
	PublicKey []byte // PK mode only
	CreatedAt time.Time
}

// AddedClient is the result of AddClient. Key is the symmetric key C2
// generated or derived (SK mode), returned once so the device can be
// provisioned; it is nil when the caller supplied the key.
type AddedClient struct {
	ClientInfo
	Key []byte
}

func clientInfo(c store.Client) ClientInfo {
	return ClientInfo{ID: c.ID, Name: c.Name, PublicKey: c.PublicKey, CreatedAt: c.CreatedAt}
}

// resolveID returns the id of a new client and checks its name and id:
// the all-zero id is reserved (it starts the first page of a list).
func (s *Service) resolveID(n NewClient) (e4.ID, error) {
	if n.ID != nil && *n.ID == (e4.ID{}) {
		return e4.ID{}, fmt.Errorf("%w: the all-zero client id is reserved", ErrInvalidArgument)
	}
	if n.Name != "" {
		if err := checkName("client", n.Name); err != nil {
			return e4.ID{}, err
		}
		id := s.Suite().IDFromName(n.Name)
		if n.ID != nil && *n.ID != id {
			return e4.ID{}, fmt.Errorf("%w: id %s is not the id of name %q (%s)", ErrInvalidArgument, n.ID, n.Name, id)
		}
		return id, nil
	}
	if n.ID == nil {
		return e4.ID{}, fmt.Errorf("%w: a client needs a name or an id", ErrInvalidArgument)
	}
	return *n.ID, nil
}

// buildClient turns a request into a store row, sealing its key.
func (s *Service) buildClient(n NewClient) (store.Client, []byte, error) {
	id, err := s.resolveID(n)
	if err != nil {
		return store.Client{}, nil, err
	}
	c := store.Client{ID: id, Name: n.Name, CreatedAt: s.now().UTC()}
	if s.cfg.Mode == e4.PubKey {
		c.PublicKey, err = s.devicePublicKey(n)
		return c, nil, err
	}
	key, generated, err := s.deviceSymmetricKey(n)
	if err != nil {
		return store.Client{}, nil, err
	}
	if c.SealedKey, err = s.keys.Seal(key, clientKeyBinding(id)); err != nil {
		return store.Client{}, nil, err
	}
	if generated {
		return c, key, nil
	}
	return c, nil, nil
}

func (s *Service) deviceSymmetricKey(n NewClient) (key []byte, generated bool, err error) {
	switch {
	case n.PublicKey != nil:
		return nil, false, fmt.Errorf("%w: a public key is for public-key mode; this deployment is symmetric-key", ErrWrongMode)
	case n.Key != nil && n.Password != "":
		return nil, false, fmt.Errorf("%w: give a key or a password, not both", ErrInvalidArgument)
	case n.Key != nil:
		return n.Key, false, checkSymmetricKey(n.Key)
	case n.Password != "":
		key, err := e4.KeyFromPassword(n.Password)
		if err != nil {
			return nil, false, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
		}
		return key, true, nil
	}
	key, err = newSymmetricKey()
	return key, true, err
}

func (s *Service) devicePublicKey(n NewClient) ([]byte, error) {
	switch {
	case n.Key != nil:
		return nil, fmt.Errorf("%w: a symmetric key is for symmetric-key mode; this deployment is public-key", ErrWrongMode)
	case n.PublicKey != nil && n.Password != "":
		return nil, fmt.Errorf("%w: give a public key or a password, not both", ErrInvalidArgument)
	case n.PublicKey != nil:
		return n.PublicKey, checkPublicKey(n.PublicKey)
	case n.Password != "":
		priv, err := e4.Ed25519KeyFromPassword(n.Password)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
		}
		return []byte(priv.Public().(ed25519.PublicKey)), nil
	}
	return nil, fmt.Errorf("%w: in public-key mode a client needs its public key or a password", ErrInvalidArgument)
}

// AddClient adds a client.
func (s *Service) AddClient(ctx context.Context, n NewClient) (AddedClient, error) {
	c, key, err := s.buildClient(n)
	if err != nil {
		return AddedClient{}, err
	}
	err = s.update(ctx, func(tx store.Tx, ev *events) error {
		if err := tx.InsertClient(c); err != nil {
			return fmt.Errorf("client %s: %w", c.ID, err)
		}
		ev.add(EventClientAdded, &c.ID, "", c.Name)
		return nil
	})
	return AddedClient{ClientInfo: clientInfo(c), Key: key}, err
}

// GetClient returns a client.
func (s *Service) GetClient(ctx context.Context, id e4.ID) (ClientInfo, error) {
	var c store.Client
	err := s.view(ctx, func(tx store.Tx) (err error) {
		c, err = getClient(tx, id)
		return err
	})
	return clientInfo(c), err
}

func getClient(tx store.Tx, id e4.ID) (store.Client, error) {
	c, err := tx.GetClient(id)
	if err != nil {
		return c, fmt.Errorf("client %s: %w", id, err)
	}
	return c, nil
}

func getTopic(tx store.Tx, name string) (store.Topic, error) {
	t, err := tx.GetTopic(name)
	if err != nil {
		return t, fmt.Errorf("topic %q: %w", name, err)
	}
	return t, nil
}

// ListClients lists clients by id after the given id (zero for the first
// page).
func (s *Service) ListClients(ctx context.Context, after e4.ID, limit int) ([]ClientInfo, error) {
	limit, err := checkLimit(limit)
	if err != nil {
		return nil, err
	}
	var list []store.Client
	err = s.view(ctx, func(tx store.Tx) (err error) {
		list, err = tx.ListClients(after, limit)
		return err
	})
	out := make([]ClientInfo, len(list))
	for i, c := range list {
		out[i] = clientInfo(c)
	}
	return out, err
}

// CountClients counts clients.
func (s *Service) CountClients(ctx context.Context) (n int64, err error) {
	err = s.view(ctx, func(tx store.Tx) error {
		n, err = tx.CountClients()
		return err
	})
	return n, err
}

// RemoveClient deletes a client. It is sent ResetTopics (so an honest
// device forgets its topic keys) and, unless KeepTopicKeyOnRemove, every
// topic it was in gets a new key for the remaining members.
func (s *Service) RemoveClient(ctx context.Context, id e4.ID) error {
	return s.update(ctx, func(tx store.Tx, ev *events) error {
		c, err := s.resetMemberships(tx, ev, id)
		if err != nil {
			return err
		}
		ev.add(EventClientRemoved, &c.ID, "", c.Name)
		return tx.DeleteClient(id)
	})
}

// ResetClient removes a client from every topic and sends it ResetTopics;
// its former topics are rotated unless KeepTopicKeyOnRemove.
func (s *Service) ResetClient(ctx context.Context, id e4.ID) error {
	return s.update(ctx, func(tx store.Tx, ev *events) error {
		_, err := s.resetMemberships(tx, ev, id)
		return err
	})
}

// resetMemberships removes a client from all its topics, queues
// ResetTopics for it and, unless KeepTopicKeyOnRemove, rotates those topics
// for the members that remain.
func (s *Service) resetMemberships(tx store.Tx, ev *events, id e4.ID) (store.Client, error) {
	c, err := getClient(tx, id)
	if err != nil {
		return c, err
	}
	topics, err := tx.RemoveAllMemberships(id)
	if err != nil {
		return c, err
	}
	// Nothing queued for it before still matters: it forgets every topic.
	if err := s.supersede(tx, &id, ""); err != nil {
		return c, err
	}
	if err := s.enqueue(tx, ev, outgoing{client: c, cmd: command.NewResetTopics(), target: id.String()}); err != nil {
		return c, err
	}
	for _, topic := range topics {
		if err := s.leaveGroup(tx, ev, c, topic); err != nil {
			return c, err
		}
		ev.add(EventMemberRemoved, &c.ID, topic, "reset")
		if s.cfg.KeepTopicKeyOnRemove {
			continue
		}
		if s.cfg.Automation.CoalesceLeaves > 0 {
			if err := s.deferLeaveRotation(tx, topic); err != nil {
				return c, err
			}
			continue
		}
		n, err := s.rotateTopic(tx, ev, topic, true)
		if err != nil {
			return c, err
		}
		if err := s.recordTopicRotation(tx, topic, eventLeave, n); err != nil {
			return c, err
		}
	}
	return c, nil
}

// NewClientKey gives a client a fresh key. In SK mode C2 generates the key
// (or uses key when given), sends it with SetIDKey protected under the old
// key, and returns it. Until the device shows it holds the new key (see
// ClientState.KeyInUse), commands reach it under both keys, so a device
// offline during the change is not locked out; a second change before
// that fails with ErrKeyChangePending. In PK mode the device generates its own key pair:
// pass its new public key as key; C2 records it and sends it to every
// client linked from this one.
func (s *Service) NewClientKey(ctx context.Context, id e4.ID, key []byte) ([]byte, error) {
	if s.cfg.Mode == e4.PubKey {
		return nil, s.setClientPublicKey(ctx, id, key)
	}
	generated := key == nil
	if generated {
		var err error
		if key, err = newSymmetricKey(); err != nil {
			return nil, err
		}
	} else if err := checkSymmetricKey(key); err != nil {
		return nil, err
	}
	cmd, err := command.NewSetIDKey(key)
	if err != nil {
		return nil, err
	}
	err = s.update(ctx, func(tx store.Tx, ev *events) error {
		if err := s.newClientKeyTx(tx, ev, id, key, cmd); err != nil {
			return err
		}
		return s.recordRotationTx(tx, store.TargetClient, id.String(), reasonManual, 0, 1)
	})
	if err != nil || !generated {
		return nil, err
	}
	return key, nil
}

// newClientKeyTx is NewClientKey in SK mode inside tx; cmd is the
// SetIDKey of key.
func (s *Service) newClientKeyTx(tx store.Tx, ev *events, id e4.ID, key, cmd []byte) error {
	c, err := getClient(tx, id)
	if err != nil {
		return err
	}
	now := s.now().UTC()
	// Enqueued before the key changes: it is protected under the key the
	// device still holds. Until the device shows it holds the new key,
	// later commands go out under both (see keychange.go).
	if err := beginKeyChange(tx, id, c.SealedKey, now); err != nil {
		return err
	}
	if err := s.enqueue(tx, ev, outgoing{client: c, cmd: cmd, target: id.String()}); err != nil {
		return err
	}
	sealed, err := s.keys.Seal(key, clientKeyBinding(id))
	if err != nil {
		return err
	}
	ev.add(EventClientKeyNew, &c.ID, "", "")
	if err := tx.UpdateClientKey(id, sealed, nil); err != nil {
		return err
	}
	return setClientKeyTime(tx, id, now)
}

// setClientKeyTime records when a client's key was made, for key-age
// policies.
func setClientKeyTime(tx store.Tx, id e4.ID, at time.Time) error {
	if ptx, ok := tx.(store.PolicyTx); ok {
		return ptx.SetClientKeyCreatedAt(id, at)
	}
	return nil
}

func (s *Service) setClientPublicKey(ctx context.Context, id e4.ID, pub []byte) error {
	if err := checkPublicKey(pub); err != nil {
		return err
	}
	cmd, err := command.NewSetPubKey(pub, id)
	if err != nil {
		return err
	}
	return s.update(ctx, func(tx store.Tx, ev *events) error {
		c, err := getClient(tx, id)
		if err != nil {
			return err
		}
		if err := tx.UpdateClientKey(id, nil, pub); err != nil {
			return err
		}
		if err := setClientKeyTime(tx, id, s.now().UTC()); err != nil {
			return err
		}
		ev.add(EventClientKeyNew, &c.ID, "", "")
		return s.forEachLinkTarget(tx, id, func(target store.Client) error {
			return s.enqueue(tx, ev, outgoing{client: target, cmd: cmd, target: id.String()})
		})
	})
}
