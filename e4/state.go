package e4

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/e4-iot/e4kit/e4/siv"
	"github.com/e4-iot/e4kit/e4/store"
)

// stateVersion is the version of the serialized client state. LoadClient
// refuses a higher one rather than guess at fields it does not know, and
// reads every lower one. Version 2 added the command marks (see order.go);
// a version-1 state has only topics_reset_at and per-topic changed_at.
const stateVersion = 2

// suiteStateVersion is the version of a state saved by a client of another
// suite than V1 (which names its suite): a build that knows no suites reads
// up to version 2 and so refuses it, rather than run it as V1.
const suiteStateVersion = 3

// savedState is the serialized form of a client (JSON inside the store's
// checksummed envelope). Byte slices encode as base64.
type savedState struct {
	Version       int           `json:"version"`
	Mode          string        `json:"mode"`
	Suite         string        `json:"suite,omitempty"` // absent for V1
	ID            []byte        `json:"id"`
	Key           []byte        `json:"key"` // SK: client key; PK: Ed25519 private key
	C2Public      []byte        `json:"c2_public,omitempty"`
	TopicsResetAt uint64        `json:"topics_reset_at,omitempty"` // version 1; marks.reset_topics since
	Topics        []savedTopic  `json:"topics"`
	Signers       []savedSigner `json:"signers,omitempty"`
	Marks         *savedMarks   `json:"marks,omitempty"`
}

type savedTopic struct {
	Hash      []byte `json:"hash"`
	Key       []byte `json:"key,omitempty"` // absent for a removed topic
	PrevKey   []byte `json:"prev_key,omitempty"`
	PrevUntil int64  `json:"prev_until,omitempty"` // Unix nanoseconds
	ChangedAt uint64 `json:"changed_at"`
	Digest    []byte `json:"digest,omitempty"` // of the last command; absent for a local change
}

type savedSigner struct {
	ID        []byte `json:"id"`
	PublicKey []byte `json:"public_key,omitempty"` // absent for a removed sender
	ChangedAt uint64 `json:"changed_at,omitempty"`
	Digest    []byte `json:"digest,omitempty"`
}

// savedMarks holds the marks of the four commands that have no item.
type savedMarks struct {
	ResetTopics  savedMark `json:"reset_topics"`
	ResetPubKeys savedMark `json:"reset_pubkeys"`
	SetIDKey     savedMark `json:"set_id_key"`
	SetC2Key     savedMark `json:"set_c2_key"`
}

type savedMark struct {
	At     uint64 `json:"at,omitempty"`
	Digest []byte `json:"digest,omitempty"`
}

func saveMark(m mark) savedMark {
	if m.isLocal() {
		return savedMark{At: m.at}
	}
	return savedMark{At: m.at, Digest: append([]byte(nil), m.digest[:]...)}
}

func loadMark(at uint64, digest []byte) (mark, error) {
	m := mark{at: at}
	switch len(digest) {
	case 0:
	case AckDigestLen:
		m.digest = [AckDigestLen]byte(digest)
	default:
		return m, errors.New("command digest has the wrong length")
	}
	return m, nil
}

// persist saves the state if the client has a Store. Every change calls it
// after releasing the write lock, so saves may run concurrently; they are
// serialized by saveMu and each snapshots the state once it holds saveMu, so
// the last save is never older than any change whose persist has started,
// and a change that returned is in the store. A save whose snapshot would be
// no newer than the last completed one is skipped.
func (c *Client) persist() error {
	if c.cfg.Store == nil {
		return nil
	}
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	c.mu.RLock()
	gen := c.generation
	if gen == c.savedGeneration {
		c.mu.RUnlock()
		return nil
	}
	blob, err := json.Marshal(c.snapshot())
	c.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStore, err)
	}
	defer clear(blob)
	if err := c.cfg.Store.Save(blob); err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	c.savedGeneration = gen
	return nil
}

// changed counts a change to the persisted state; the caller holds the
// write lock.
func (c *Client) changed() { c.generation++ }

// snapshot copies the state into its serialized form; the caller holds mu.
func (c *Client) snapshot() *savedState {
	s := &savedState{Version: stateVersion, Mode: c.mode.String(), ID: c.id[:], C2Public: c.c2Public,
		Marks: &savedMarks{ResetTopics: saveMark(c.resetTopics), ResetPubKeys: saveMark(c.resetPubKeys),
			SetIDKey: saveMark(c.idKeyOrder), SetC2Key: saveMark(c.c2KeyOrder)}}
	if c.suite != V1 {
		s.Version, s.Suite = suiteStateVersion, c.suite.name
	}
	if c.mode == SymKey {
		s.Key = c.symKey[:]
	} else {
		s.Key = c.signKey
	}
	for h, t := range c.topics {
		m := saveMark(t.order)
		st := savedTopic{Hash: append([]byte(nil), h[:]...), ChangedAt: m.At, Digest: m.Digest}
		if t.current != nil {
			st.Key = append([]byte(nil), t.key[:]...)
		}
		if t.hasPrevKey {
			st.PrevKey = append([]byte(nil), t.prevKey[:]...)
			st.PrevUntil = t.prevUntil.UnixNano()
		}
		s.Topics = append(s.Topics, st)
	}
	for id, m := range c.signerOrder {
		sm := saveMark(m)
		ss := savedSigner{ID: append([]byte(nil), id[:]...), ChangedAt: sm.At, Digest: sm.Digest}
		if v := c.signers[id]; v != nil {
			ss.PublicKey = v.public
		}
		s.Signers = append(s.Signers, ss)
	}
	for id, v := range c.signers {
		if _, ordered := c.signerOrder[id]; !ordered {
			s.Signers = append(s.Signers, savedSigner{ID: append([]byte(nil), id[:]...), PublicKey: v.public})
		}
	}
	// Sorted, so that the same state always saves as the same bytes.
	slices.SortFunc(s.Topics, func(a, b savedTopic) int { return bytes.Compare(a.Hash, b.Hash) })
	slices.SortFunc(s.Signers, func(a, b savedSigner) int { return bytes.Compare(a.ID, b.ID) })
	return s
}

// LoadClient restores a client from cfg.Store, which must hold a state saved
// by a client of this package. The client runs the suite the state names;
// a Config.Suite other than nil must be that suite (ErrSuiteMismatch). A missing state is reported with an error
// wrapping store.ErrNotFound; a damaged one with store.ErrCorrupt; one from a
// newer version with store.ErrNewerVersion.
func LoadClient(cfg *Config) (*Client, error) {
	if cfg == nil || cfg.Store == nil {
		return nil, errors.New("e4: LoadClient needs a Config with a Store")
	}
	blob, err := cfg.Store.Load()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStore, err)
	}
	defer clear(blob)
	var s savedState
	if err := json.Unmarshal(blob, &s); err != nil {
		return nil, fmt.Errorf("%w: %w: client state: %v", ErrStore, store.ErrCorrupt, err)
	}
	if s.Version > suiteStateVersion {
		return nil, fmt.Errorf("%w: %w: client state version %d, this build reads up to %d", ErrStore, store.ErrNewerVersion, s.Version, suiteStateVersion)
	}
	saved, err := SuiteByName(s.Suite)
	if err != nil {
		return nil, fmt.Errorf("%w: %w: client state: %w", ErrStore, store.ErrCorrupt, err)
	}
	if cfg.Suite == nil {
		withSuite := *cfg
		withSuite.Suite = saved
		cfg = &withSuite
	} else if cfg.Suite != saved {
		return nil, suiteMismatchInStore(saved, cfg.Suite)
	}
	c, err := restore(&s, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w: client state: %w", ErrStore, store.ErrCorrupt, err)
	}
	c.savedGeneration = c.generation // the store holds this state
	return c, nil
}

// restore rebuilds a client from a decoded state, validating every field.
func restore(s *savedState, cfg *Config) (*Client, error) {
	if s.Version < 1 || len(s.ID) != IDLen {
		return nil, errors.New("missing version or id")
	}
	var c *Client
	switch s.Mode {
	case "sk":
		c = newClient(ID(s.ID), SymKey, cfg)
		if err := c.setSymKey(s.Key); err != nil {
			return nil, err
		}
	case "pk":
		c = newClient(ID(s.ID), PubKey, cfg)
		if err := c.setSignKey(s.Key); err != nil {
			return nil, err
		}
		if err := c.setC2Key(s.C2Public); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown mode %q", s.Mode)
	}
	if err := c.restoreMarks(s); err != nil {
		return nil, err
	}
	for _, st := range s.Topics {
		t, err := c.restoreTopic(&st)
		if err != nil {
			return nil, err
		}
		c.topics[TopicHash(st.Hash)] = t
	}
	for _, ss := range s.Signers {
		if err := c.restoreSigner(&ss); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// restoreMarks reads the singleton marks: a version-1 state only has the
// timestamp of the last ResetTopics.
func (c *Client) restoreMarks(s *savedState) error {
	if s.Marks == nil {
		c.resetTopics = mark{at: s.TopicsResetAt}
		return nil
	}
	var err error
	for _, m := range []struct {
		dst *mark
		src savedMark
	}{
		{&c.resetTopics, s.Marks.ResetTopics}, {&c.resetPubKeys, s.Marks.ResetPubKeys},
		{&c.idKeyOrder, s.Marks.SetIDKey}, {&c.c2KeyOrder, s.Marks.SetC2Key},
	} {
		if *m.dst, err = loadMark(m.src.At, m.src.Digest); err != nil {
			return err
		}
	}
	return nil
}

// restoreSigner reads one sender: a key and its mark, or a tombstone.
func (c *Client) restoreSigner(ss *savedSigner) error {
	if len(ss.ID) != IDLen {
		return errors.New("signer id has the wrong length")
	}
	m, err := loadMark(ss.ChangedAt, ss.Digest)
	if err != nil {
		return err
	}
	id := ID(ss.ID)
	held := false
	if ss.PublicKey != nil {
		// A key older versions accepted but CheckPublicKey now refuses (a
		// small-order point) is not trusted again: it is loaded as removed
		// rather than failing the whole state.
		if err := c.setPubKey(ss.PublicKey, id); err != nil && !errors.Is(err, ErrInvalidKey) {
			return err
		}
		_, held = c.signers[id]
	}
	if m != (mark{}) || !held {
		c.signerOrder[id] = m
	}
	return nil
}

func (c *Client) restoreTopic(st *savedTopic) (*topicKeys, error) {
	if len(st.Hash) != TopicHashLen {
		return nil, errors.New("topic hash has the wrong length")
	}
	order, err := loadMark(st.ChangedAt, st.Digest)
	if err != nil {
		return nil, err
	}
	t := &topicKeys{hash: TopicHash(st.Hash), order: order}
	if st.Key != nil {
		cipher, err := c.topicCipherFor(st.Key)
		if err != nil {
			return nil, err
		}
		t.current, t.key = cipher, [KeyLen]byte(st.Key)
	}
	if st.PrevKey != nil {
		cipher, err := c.topicCipherFor(st.PrevKey)
		if err != nil {
			return nil, err
		}
		t.previous, t.prevKey, t.hasPrevKey = cipher, [KeyLen]byte(st.PrevKey), true
		t.prevUntil = time.Unix(0, st.PrevUntil)
	}
	return t, nil
}

func (c *Client) topicCipherFor(key []byte) (*siv.Cipher, error) {
	if err := checkSymKey(key); err != nil {
		return nil, err
	}
	return c.suite.newTopicCipher(key)
}
