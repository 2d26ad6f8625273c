package c2

import (
	"errors"
	"fmt"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
)

// Group topics (Config.GroupTopics, PK mode): the members of a topic
// exchange public keys, so they accept each other's messages without an
// operator linking them. A member joining a topic is linked both ways with
// every other member (LinkClients: the key is sent now and again when it
// changes); a member leaving is unlinked both ways (each forgets the
// other's key, RemovePubKey) from every member it no longer shares a topic
// with. Links between two clients that share a topic are kept, whoever
// made them; a link an operator made between two members is removed with
// the last topic they share.

// joinGroup links a new member of topic with the other members.
func (s *Service) joinGroup(tx store.Tx, ev *events, joined store.Client, topic string) error {
	if !s.groupTopics() {
		return nil
	}
	return s.forEachOtherMember(tx, topic, joined.ID, func(other store.Client) error {
		if err := s.linkOnce(tx, ev, joined, other); err != nil {
			return err
		}
		return s.linkOnce(tx, ev, other, joined)
	})
}

// leaveGroup unlinks a former member of topic from the members it shares
// no topic with any more.
func (s *Service) leaveGroup(tx store.Tx, ev *events, left store.Client, topic string) error {
	if !s.groupTopics() {
		return nil
	}
	return s.forEachOtherMember(tx, topic, left.ID, func(other store.Client) error {
		shared, err := shareATopic(tx, left.ID, other.ID)
		if err != nil || shared {
			return err
		}
		if err := s.unlinkIfLinked(tx, ev, left, other); err != nil {
			return err
		}
		return s.unlinkIfLinked(tx, ev, other, left)
	})
}

func (s *Service) groupTopics() bool { return s.cfg.GroupTopics && s.cfg.Mode == e4.PubKey }

// linkOnce links source to target (sending target source's key) unless
// they are linked already.
func (s *Service) linkOnce(tx store.Tx, ev *events, source, target store.Client) error {
	err := tx.AddLink(source.ID, target.ID)
	if isExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("link %s -> %s: %w", source.ID, target.ID, err)
	}
	cmd, err := command.NewSetPubKey(source.PublicKey, source.ID)
	if err != nil {
		return err
	}
	ev.add(EventPubKeyChanged, &target.ID, "", "set "+source.ID.String()+" (group topic)")
	return s.enqueue(tx, ev, outgoing{client: target, cmd: cmd, target: source.ID.String()})
}

// unlinkIfLinked removes the link from source to target, if there is one,
// and makes target forget source's key.
func (s *Service) unlinkIfLinked(tx store.Tx, ev *events, source, target store.Client) error {
	err := tx.RemoveLink(source.ID, target.ID)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("link %s -> %s: %w", source.ID, target.ID, err)
	}
	ev.add(EventPubKeyChanged, &target.ID, "", "removed "+source.ID.String()+" (group topic)")
	return s.enqueue(tx, ev, outgoing{client: target, cmd: command.NewRemovePubKey(source.ID), target: source.ID.String()})
}

// forEachOtherMember calls fn with every member of topic but one.
func (s *Service) forEachOtherMember(tx store.Tx, topic string, except e4.ID, fn func(store.Client) error) error {
	var after e4.ID
	for {
		ids, err := tx.ClientsOfTopic(topic, after, memberPage)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if id == except {
				continue
			}
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

// shareATopic reports whether two clients are members of a common topic.
func shareATopic(tx store.Tx, a, b e4.ID) (bool, error) {
	after := ""
	for {
		topics, err := tx.TopicsOfClient(a, after, memberPage)
		if err != nil {
			return false, err
		}
		for _, t := range topics {
			if ok, err := tx.IsMember(b, t); err != nil || ok {
				return ok, err
			}
		}
		if len(topics) < memberPage {
			return false, nil
		}
		after = topics[len(topics)-1]
	}
}

func isExists(err error) bool { return errors.Is(err, store.ErrExists) }
