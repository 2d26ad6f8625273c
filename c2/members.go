package c2

import (
	"context"
	"fmt"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
)

// AddMember adds client to topic and sends it the topic key
// (SetTopicKey). With RotateOnAdd the topic is rotated first, so the new
// member never holds a key that protected earlier traffic.
func (s *Service) AddMember(ctx context.Context, topic string, client e4.ID) error {
	return s.update(ctx, func(tx store.Tx, ev *events) error {
		return s.addMember(tx, ev, client, topic)
	})
}

func (s *Service) addMember(tx store.Tx, ev *events, id e4.ID, topic string) error {
	c, err := getClient(tx, id)
	if err != nil {
		return err
	}
	if _, err := getTopic(tx, topic); err != nil {
		return err
	}
	if err := tx.AddMember(id, topic); err != nil {
		return fmt.Errorf("client %s in topic %q: %w", id, topic, err)
	}
	if err := s.joinGroup(tx, ev, c, topic); err != nil {
		return err
	}
	if s.cfg.RotateOnAdd {
		// The rotation reaches the new member too, as it is a member now.
		n, err := s.rotateTopic(tx, ev, topic, false)
		if err != nil {
			return err
		}
		ev.add(EventMemberAdded, &c.ID, topic, "")
		return s.recordTopicRotation(tx, topic, reasonMemberAdded, n)
	}
	t, err := getTopic(tx, topic)
	if err != nil {
		return err
	}
	cmd, err := s.setTopicKeyCommand(t)
	if err != nil {
		return err
	}
	ev.add(EventMemberAdded, &c.ID, topic, "")
	if err := s.supersede(tx, &c.ID, topic, command.SetTopicKey); err != nil {
		return err
	}
	return s.enqueue(tx, ev, outgoing{client: c, cmd: cmd, target: topic})
}

// setTopicKeyCommand returns the SetTopicKey command of a topic's current
// key.
func (s *Service) setTopicKeyCommand(t store.Topic) ([]byte, error) {
	key, err := s.topicKey(t)
	if err != nil {
		return nil, err
	}
	return command.NewSetTopicKey(key, s.Suite().HashTopic(t.Name))
}

// AddMembers adds many clients to a topic in one transaction; it fails
// without change if any of them is unknown or already a member. The topic is
// rotated at most once even with RotateOnAdd.
func (s *Service) AddMembers(ctx context.Context, topic string, clients []e4.ID) error {
	return s.update(ctx, func(tx store.Tx, ev *events) error {
		t, err := getTopic(tx, topic)
		if err != nil {
			return err
		}
		for _, id := range clients {
			c, err := getClient(tx, id)
			if err != nil {
				return err
			}
			if err := tx.AddMember(id, topic); err != nil {
				return fmt.Errorf("client %s in topic %q: %w", id, topic, err)
			}
			if err := s.joinGroup(tx, ev, c, topic); err != nil {
				return err
			}
			ev.add(EventMemberAdded, &id, topic, "")
		}
		if s.cfg.RotateOnAdd {
			n, err := s.rotateTopic(tx, ev, topic, false)
			if err != nil {
				return err
			}
			return s.recordTopicRotation(tx, topic, reasonMemberAdded, n)
		}
		cmd, err := s.setTopicKeyCommand(t)
		if err != nil {
			return err
		}
		out := make([]outgoing, 0, len(clients))
		for _, id := range clients {
			c, err := getClient(tx, id)
			if err != nil {
				return err
			}
			out = append(out, outgoing{client: c, cmd: cmd, target: topic})
		}
		return s.enqueue(tx, ev, out...)
	})
}

// RemoveMember removes client from topic, sends it RemoveTopic and,
// unless KeepTopicKeyOnRemove, rotates the topic for the remaining members,
// who are sent RemoveTopic then SetTopicKey so that they refuse the old key
// at once (messages in flight under it are lost; see rotateTopic).
func (s *Service) RemoveMember(ctx context.Context, topic string, id e4.ID) error {
	return s.update(ctx, func(tx store.Tx, ev *events) error {
		c, err := getClient(tx, id)
		if err != nil {
			return err
		}
		if err := tx.RemoveMember(id, topic); err != nil {
			return fmt.Errorf("client %s in topic %q: %w", id, topic, err)
		}
		if err := s.supersede(tx, &c.ID, topic, command.SetTopicKey); err != nil {
			return err
		}
		if err := s.leaveGroup(tx, ev, c, topic); err != nil {
			return err
		}
		if err := s.enqueue(tx, ev, outgoing{client: c, cmd: command.NewRemoveTopic(s.Suite().HashTopic(topic)), target: topic}); err != nil {
			return err
		}
		ev.add(EventMemberRemoved, &c.ID, topic, "")
		if s.cfg.KeepTopicKeyOnRemove {
			return nil
		}
		if s.cfg.Automation.CoalesceLeaves > 0 {
			return s.deferLeaveRotation(tx, topic)
		}
		n, err := s.rotateTopic(tx, ev, topic, true)
		if err != nil {
			return err
		}
		return s.recordTopicRotation(tx, topic, eventLeave, n)
	})
}

// IsMember reports whether client id is in topic.
func (s *Service) IsMember(ctx context.Context, topic string, id e4.ID) (ok bool, err error) {
	err = s.view(ctx, func(tx store.Tx) error {
		ok, err = tx.IsMember(id, topic)
		return err
	})
	return ok, err
}

// TopicsOfClient lists the topics of a client after the given name.
func (s *Service) TopicsOfClient(ctx context.Context, id e4.ID, after string, limit int) ([]string, error) {
	limit, err := checkLimit(limit)
	if err != nil {
		return nil, err
	}
	var list []string
	err = s.view(ctx, func(tx store.Tx) error {
		if _, err := getClient(tx, id); err != nil {
			return err
		}
		list, err = tx.TopicsOfClient(id, after, limit)
		return err
	})
	return list, err
}

// CountTopicsOfClient counts the topics of a client.
func (s *Service) CountTopicsOfClient(ctx context.Context, id e4.ID) (n int64, err error) {
	err = s.view(ctx, func(tx store.Tx) error {
		if _, err := getClient(tx, id); err != nil {
			return err
		}
		n, err = tx.CountTopicsOfClient(id)
		return err
	})
	return n, err
}

// ClientsOfTopic lists the members of a topic after the given id.
func (s *Service) ClientsOfTopic(ctx context.Context, topic string, after e4.ID, limit int) ([]e4.ID, error) {
	limit, err := checkLimit(limit)
	if err != nil {
		return nil, err
	}
	var list []e4.ID
	err = s.view(ctx, func(tx store.Tx) error {
		if _, err := getTopic(tx, topic); err != nil {
			return err
		}
		list, err = tx.ClientsOfTopic(topic, after, limit)
		return err
	})
	return list, err
}

// CountClientsOfTopic counts the members of a topic.
func (s *Service) CountClientsOfTopic(ctx context.Context, topic string) (n int64, err error) {
	err = s.view(ctx, func(tx store.Tx) error {
		if _, err := getTopic(tx, topic); err != nil {
			return err
		}
		n, err = tx.CountClientsOfTopic(topic)
		return err
	})
	return n, err
}
