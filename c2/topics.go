package c2

import (
	"context"
	"fmt"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
)

// TopicInfo describes a topic without its key.
type TopicInfo struct {
	Name       string
	Hash       e4.TopicHash
	KeyVersion uint64
	CreatedAt  time.Time
	RotatedAt  time.Time
}

func topicInfo(t store.Topic) TopicInfo {
	return TopicInfo{Name: t.Name, Hash: t.Hash, KeyVersion: t.KeyVersion, CreatedAt: t.CreatedAt, RotatedAt: t.RotatedAt}
}

// memberPage is how many members a rotation loads at a time.
const memberPage = 1000

// AddTopic creates a topic with a random key. Clients get the key when
// they are added to the topic.
func (s *Service) AddTopic(ctx context.Context, name string) (TopicInfo, error) {
	if err := checkTopic(name); err != nil {
		return TopicInfo{}, err
	}
	key, err := newSymmetricKey()
	if err != nil {
		return TopicInfo{}, err
	}
	now := s.now().UTC()
	t := store.Topic{Name: name, Hash: s.Suite().HashTopic(name), KeyVersion: 1, CreatedAt: now, RotatedAt: now}
	if t.SealedKey, err = s.keys.Seal(key, topicKeyBinding(name, 1)); err != nil {
		return TopicInfo{}, err
	}
	err = s.update(ctx, func(tx store.Tx, ev *events) error {
		if err := tx.InsertTopic(t); err != nil {
			return fmt.Errorf("topic %q: %w", name, err)
		}
		if err := scheduleNewTopic(tx, name, now); err != nil {
			return err
		}
		ev.add(EventTopicAdded, nil, name, "")
		return nil
	})
	return topicInfo(t), err
}

// GetTopic returns a topic.
func (s *Service) GetTopic(ctx context.Context, name string) (TopicInfo, error) {
	var t store.Topic
	err := s.view(ctx, func(tx store.Tx) (err error) {
		t, err = getTopic(tx, name)
		return err
	})
	return topicInfo(t), err
}

// RemoveTopic deletes a topic and sends RemoveTopic to its members.
func (s *Service) RemoveTopic(ctx context.Context, name string) error {
	cmd := command.NewRemoveTopic(s.Suite().HashTopic(name))
	return s.update(ctx, func(tx store.Tx, ev *events) error {
		if _, err := getTopic(tx, name); err != nil {
			return err
		}
		if err := s.supersede(tx, nil, name, command.SetTopicKey); err != nil {
			return err
		}
		err := s.forEachMember(tx, name, func(c store.Client) error {
			return s.enqueue(tx, ev, outgoing{client: c, cmd: cmd, target: name})
		})
		if err != nil {
			return err
		}
		ev.add(EventTopicRemoved, nil, name, "")
		return tx.DeleteTopic(name)
	})
}

// ListTopics lists topics by name after the given name ("" for the first
// page).
func (s *Service) ListTopics(ctx context.Context, after string, limit int) ([]TopicInfo, error) {
	limit, err := checkLimit(limit)
	if err != nil {
		return nil, err
	}
	var list []store.Topic
	err = s.view(ctx, func(tx store.Tx) (err error) {
		list, err = tx.ListTopics(after, limit)
		return err
	})
	out := make([]TopicInfo, len(list))
	for i, t := range list {
		out[i] = topicInfo(t)
	}
	return out, err
}

// CountTopics counts topics.
func (s *Service) CountTopics(ctx context.Context) (n int64, err error) {
	err = s.view(ctx, func(tx store.Tx) error {
		n, err = tx.CountTopics()
		return err
	})
	return n, err
}

// RotateTopic gives a topic a new key and sends it to every member; it
// returns how many commands were queued. Devices keep accepting the old key
// for their key-transition period, so messages in flight are not lost.
// Commands with an older key of the topic that were not sent yet are
// superseded: a device gets the newest key once, not every rotation.
func (s *Service) RotateTopic(ctx context.Context, name string) (int, error) {
	var n int
	err := s.update(ctx, func(tx store.Tx, ev *events) (err error) {
		if n, err = s.rotateTopic(tx, ev, name, false); err != nil {
			return err
		}
		return s.recordTopicRotation(tx, name, reasonManual, n)
	})
	return n, err
}

// rotateTopic gives a topic a new key and queues it for every member. A
// rotation that follows a removal (afterRemoval) sends each member
// RemoveTopic before SetTopicKey: the device drops the old key at once
// instead of accepting it for its key-transition period, so the removed
// device cannot keep writing to the others under it. The commands' strictly
// increasing timestamps make the device apply both.
func (s *Service) rotateTopic(tx store.Tx, ev *events, name string, afterRemoval bool) (int, error) {
	t, err := getTopic(tx, name)
	if err != nil {
		return 0, err
	}
	key, err := newSymmetricKey()
	if err != nil {
		return 0, err
	}
	version := t.KeyVersion + 1
	sealed, err := s.keys.Seal(key, topicKeyBinding(name, version))
	if err != nil {
		return 0, err
	}
	// The replaced key stays, sealed as it was, for the monitor to tell
	// lagging devices from forgeries during the transition window; a
	// rotation after a removal revokes it, so it is not kept at all.
	prev := t.SealedKey
	if afterRemoval {
		prev = nil
	}
	if err := tx.UpdateTopicKey(name, sealed, prev, version, s.now().UTC()); err != nil {
		return 0, err
	}
	cmd, err := command.NewSetTopicKey(key, s.Suite().HashTopic(name))
	if err != nil {
		return 0, err
	}
	if err := s.supersede(tx, nil, name, command.SetTopicKey); err != nil {
		return 0, err
	}
	remove := command.NewRemoveTopic(s.Suite().HashTopic(name))
	var n int
	err = s.forEachMemberPage(tx, name, func(page []store.Client) error {
		out := make([]outgoing, 0, 2*len(page))
		for _, c := range page {
			if afterRemoval {
				out = append(out, outgoing{client: c, cmd: remove, target: name})
			}
			out = append(out, outgoing{client: c, cmd: cmd, target: name})
		}
		n += len(out)
		return s.enqueue(tx, ev, out...)
	})
	ev.add(EventTopicRotated, nil, name, fmt.Sprintf("version %d, %d members", version, n))
	return n, err
}

// forEachMember calls fn with every member of topic.
func (s *Service) forEachMember(tx store.Tx, topic string, fn func(store.Client) error) error {
	return s.forEachMemberPage(tx, topic, func(page []store.Client) error {
		for _, c := range page {
			if err := fn(c); err != nil {
				return err
			}
		}
		return nil
	})
}

// forEachMemberPage calls fn with the members of topic, a page at a time.
func (s *Service) forEachMemberPage(tx store.Tx, topic string, fn func([]store.Client) error) error {
	var after e4.ID
	for {
		ids, err := tx.ClientsOfTopic(topic, after, memberPage)
		if err != nil {
			return err
		}
		page := make([]store.Client, 0, len(ids))
		for _, id := range ids {
			c, err := getClient(tx, id)
			if err != nil {
				return err
			}
			page = append(page, c)
		}
		if err := fn(page); err != nil {
			return err
		}
		if len(ids) < memberPage {
			return nil
		}
		after = ids[len(ids)-1]
	}
}
