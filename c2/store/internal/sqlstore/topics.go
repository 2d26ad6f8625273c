package sqlstore

import (
	"fmt"
	"sort"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// InsertTopic adds a topic, or fails with ErrExists.
func (t *tx) InsertTopic(tp store.Topic) error {
	if err := checkTopic(tp); err != nil {
		return err
	}
	n, err := t.exec(qInsertTopic, tp.Name, tp.Hash[:], notNil(tp.SealedKey), int64(tp.KeyVersion),
		t.at(tp.CreatedAt), t.at(tp.RotatedAt), orNil(tp.PrevSealedKey))
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: topic %q", store.ErrExists, tp.Name)
	}
	return t.addToCounter("topics", 1)
}

// GetTopic returns a topic or ErrNotFound.
func (t *tx) GetTopic(name string) (store.Topic, error) {
	if err := checkName("topic name", name); err != nil {
		return store.Topic{}, err
	}
	tp, found, err := one(t, scanTopic, qGetTopic, name)
	if err == nil && !found {
		err = fmt.Errorf("%w: topic %q", store.ErrNotFound, name)
	}
	return tp, err
}

// UpdateTopicKey stores a topic's key, its version, the previous key (NULL
// for none) and the time of the rotation.
func (t *tx) UpdateTopicKey(name string, sealedKey, prevSealedKey []byte, version uint64, rotatedAt time.Time) error {
	if err := checkName("topic name", name); err != nil {
		return err
	}
	if err := checkVersion(version); err != nil {
		return err
	}
	n, err := t.exec(qRotateTopic, name, notNil(sealedKey), int64(version), t.at(rotatedAt), orNil(prevSealedKey))
	if err == nil && n == 0 {
		err = fmt.Errorf("%w: topic %q", store.ErrNotFound, name)
	}
	return err
}

// HasPreviousTopicKeys reports whether a topic rotated before
// rotatedBefore keeps its previous key.
func (t *tx) HasPreviousTopicKeys(rotatedBefore time.Time) (bool, error) {
	return t.exists(qHasPrevKeys, t.at(rotatedBefore))
}

// ForgetPreviousTopicKeys clears the previous keys of the topics rotated
// before rotatedBefore.
func (t *tx) ForgetPreviousTopicKeys(rotatedBefore time.Time) (int64, error) {
	return t.exec(qForgetPrevKeys, t.at(rotatedBefore))
}

// DeleteTopic removes a topic; a foreign key removes its memberships.
func (t *tx) DeleteTopic(name string) error {
	if err := checkName("topic name", name); err != nil {
		return err
	}
	n, err := t.exec(qDeleteTopic, name)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: topic %q", store.ErrNotFound, name)
	}
	return t.addToCounter("topics", -1)
}

// ListTopics returns up to limit topics named after after, by name (byte
// order).
func (t *tx) ListTopics(after string, limit int) ([]store.Topic, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	if err := checkText("topic name", after); err != nil {
		return nil, err
	}
	return all(t, scanTopic, qListTopics, after, limit)
}

// CountTopics reads the topic counter.
func (t *tx) CountTopics() (int64, error) { return t.counter("topics") }

// AddMember puts a client in a topic; both must exist.
func (t *tx) AddMember(client e4.ID, topic string) error {
	if err := checkName("topic name", topic); err != nil {
		return err
	}
	if err := t.clientMustExist(client); err != nil {
		return err
	}
	if err := t.topicMustExist(topic); err != nil {
		return err
	}
	n, err := t.exec(qAddMember, client[:], topic)
	if err == nil && n == 0 {
		err = fmt.Errorf("%w: client %s in topic %q", store.ErrExists, client, topic)
	}
	return err
}

// RemoveMember takes a client out of a topic or fails with ErrNotFound.
func (t *tx) RemoveMember(client e4.ID, topic string) error {
	if err := checkName("topic name", topic); err != nil {
		return err
	}
	n, err := t.exec(qRemoveMember, client[:], topic)
	if err == nil && n == 0 {
		err = fmt.Errorf("%w: client %s in topic %q", store.ErrNotFound, client, topic)
	}
	return err
}

// IsMember reports whether a client is in a topic.
func (t *tx) IsMember(client e4.ID, topic string) (bool, error) {
	if err := checkName("topic name", topic); err != nil {
		return false, err
	}
	return t.exists(qIsMember, client[:], topic)
}

// RemoveAllMemberships takes a client out of every topic and returns them
// by name.
func (t *tx) RemoveAllMemberships(client e4.ID) ([]string, error) {
	topics, err := all(t, scanString, qRemoveAllMemberships, client[:])
	if err != nil {
		return nil, err
	}
	if len(topics) == 0 {
		return nil, t.clientMustExist(client)
	}
	sort.Strings(topics)
	return topics, nil
}

// TopicsOfClient lists a client's topics by name.
func (t *tx) TopicsOfClient(client e4.ID, after string, limit int) ([]string, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	if err := checkText("topic name", after); err != nil {
		return nil, err
	}
	topics, err := all(t, scanString, qTopicsOfClient, client[:], after, limit)
	if err == nil && len(topics) == 0 {
		err = t.clientMustExist(client)
	}
	return topics, err
}

// CountTopicsOfClient counts a client's topics.
func (t *tx) CountTopicsOfClient(client e4.ID) (int64, error) {
	n, err := t.count(qCountTopicsOfClient, client[:])
	if err == nil && n == 0 {
		err = t.clientMustExist(client)
	}
	return n, err
}

// ClientsOfTopic lists the members of a topic by id.
func (t *tx) ClientsOfTopic(topic string, after e4.ID, limit int) ([]e4.ID, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	if err := checkName("topic name", topic); err != nil {
		return nil, err
	}
	ids, err := all(t, idScanner("memberships.client_id"), qClientsOfTopic, topic, after[:], limit)
	if err == nil && len(ids) == 0 {
		err = t.topicMustExist(topic)
	}
	return ids, err
}

// CountClientsOfTopic counts the members of a topic.
func (t *tx) CountClientsOfTopic(topic string) (int64, error) {
	if err := checkName("topic name", topic); err != nil {
		return 0, err
	}
	n, err := t.count(qCountClientsOfTopic, topic)
	if err == nil && n == 0 {
		err = t.topicMustExist(topic)
	}
	return n, err
}
