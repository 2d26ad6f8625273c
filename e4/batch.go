package e4

import (
	"encoding/binary"
	"time"

	"github.com/e4-iot/e4kit/e4/siv"
)

// BatchMessage is one message of ProtectBatch or UnprotectBatch.
type BatchMessage struct {
	// Topic is the topic the message is published on or was received on.
	Topic string
	// In is the payload to protect, or the protected message received.
	In []byte
	// Dst is what the result is appended to, as the dst of Protect and
	// Unprotect. The Dst of different messages must not share memory with
	// each other or with any In.
	Dst []byte
	// Out is set to what Protect or Unprotect returns: Dst with the result
	// appended, or Dst unchanged on error.
	Out []byte
	// Err is set to this message's error, nil on success.
	Err error
}

// batchRun is how many symmetric-key messages are processed together.
const batchRun = 16

// UnprotectBatch unprotects msgs in order, each exactly as Unprotect would
// (same Out, same Err, replay check included): one bad message fails alone.
// In symmetric-key mode it runs the AES-SIV of up to sixteen consecutive
// messages at once, interleaving their CMAC chains, which a receiver of
// many messages gets several times the throughput of one-at-a-time from
// (BenchmarkUnprotectBatchVsSingle1K). Messages on the control topic are
// commands and are applied one at a time, in their place in the order, so
// that messages after a key change see the new key. In public-key mode
// each message runs Unprotect, whose cost is the Ed25519 check.
//
// The clock is read once per run of up to sixteen messages rather than once
// per message.
func (c *Client) UnprotectBatch(msgs []BatchMessage) {
	for len(msgs) > 0 {
		n := 0
		for n < len(msgs) && n < batchRun && msgs[n].Topic != c.controlTopic {
			n++
		}
		if n == 0 || c.mode != SymKey {
			m := &msgs[0]
			m.Out, m.Err = c.Unprotect(m.Dst, m.In, m.Topic)
			msgs = msgs[1:]
			continue
		}
		c.openSKBatch(msgs[:n])
		msgs = msgs[n:]
	}
}

// openSKBatch runs openSK's checks, in its order, over up to batchRun
// data messages, with the decryptions under the topics' current keys done
// together by siv.OpenBatch.
func (c *Client) openSKBatch(msgs []BatchMessage) {
	var (
		items   [batchRun]siv.BatchItem
		idx     [batchRun]int
		tcs     [batchRun]topicCiphers
		ts, old [batchRun]uint64
	)
	now := c.now()
	k := 0
	var last topicCiphers
	for i := range msgs {
		m := &msgs[i]
		m.Out, m.Err = m.Dst, nil
		// A run usually holds many messages of one topic: look it up once.
		if i == 0 || m.Topic != msgs[i-1].Topic {
			last = c.lookupTopic(m.Topic)
		}
		tc := last
		if tc.current == nil {
			m.Err = ErrTopicKeyNotFound
			continue
		}
		if len(m.In) < SKOverhead {
			m.Err = ErrInvalidLength
			continue
		}
		t := readTimestamp(m.In)
		oldest, err := c.cfg.checkTimestamp(t, now)
		if err != nil {
			m.Err = err
			continue
		}
		items[k] = siv.BatchItem{Cipher: tc.current, Dst: m.Dst, In: m.In[TimestampLen:], AD: m.In[:TimestampLen]}
		idx[k], tcs[k], ts[k], old[k] = i, tc, t, oldest
		k++
	}
	siv.OpenBatch(items[:k])
	var opened [batchRun]bool
	for j := range k {
		if items[j].Err == nil {
			opened[j] = true
			continue
		}
		m := &msgs[idx[j]]
		out, err := tcs[j].openPrevious(m.Dst, m.In[:TimestampLen], m.In[TimestampLen:], now)
		if err != nil {
			m.Err = c.messageAuthError(tcs[j].hash, m.In[:TimestampLen], m.In[TimestampLen:])
			continue
		}
		items[j].Out, opened[j] = out, true
	}
	c.checkReplayRun(msgs, &items, &idx, &tcs, &ts, &old, &opened, k)
}

// checkReplayRun is checkReplay for the opened messages of a run, in
// order, under one lock of the replay cache.
func (c *Client) checkReplayRun(msgs []BatchMessage, items *[batchRun]siv.BatchItem, idx *[batchRun]int,
	tcs *[batchRun]topicCiphers, ts, old *[batchRun]uint64, opened *[batchRun]bool, k int) {
	if c.replay != nil {
		c.replay.mu.Lock()
		defer c.replay.mu.Unlock()
	}
	var noSender ID
	for j := range k {
		if !opened[j] {
			continue
		}
		m := &msgs[idx[j]]
		fp := fingerprint(&tcs[j].hash, &noSender, m.In[TimestampLen:SKOverhead])
		if c.replay == nil || c.replay.acceptLocked(fp, ts[j], old[j]) {
			m.Out = items[j].Out
			continue
		}
		clear(items[j].Out[len(m.Dst):])
		m.Err = ErrReplay
	}
}

// openPrevious is the second half of topicCiphers.open, for a message the
// current key did not open: it tries the previous key while a key
// transition is open, and otherwise fails with ErrAuthentication.
func (tc *topicCiphers) openPrevious(dst, ad, sealed []byte, now time.Time) ([]byte, error) {
	if tc.previous != nil && now.Before(tc.prevUntil) {
		if out, err := tc.previous.Open(dst, sealed, ad); err == nil {
			return out, nil
		}
	}
	return dst, ErrAuthentication
}

// ProtectBatch protects msgs in order, each exactly as Protect would (same
// Out and Err at the same clock reading). In symmetric-key mode it seals
// up to sixteen messages at once with their CMAC chains interleaved; in
// public-key mode each message runs Protect, whose cost is the Ed25519
// signature. The clock is read once per run of up to sixteen messages.
func (c *Client) ProtectBatch(msgs []BatchMessage) {
	if c.mode != SymKey {
		for i := range msgs {
			m := &msgs[i]
			m.Out, m.Err = c.Protect(m.Dst, m.In, m.Topic)
		}
		return
	}
	for len(msgs) > 0 {
		n := min(len(msgs), batchRun)
		c.sealSKBatch(msgs[:n])
		msgs = msgs[n:]
	}
}

// sealSKBatch is sealSK over up to batchRun messages.
func (c *Client) sealSKBatch(msgs []BatchMessage) {
	var items [batchRun]siv.BatchItem
	var idx [batchRun]int
	ts := uint64(c.now().Unix())
	k := 0
	var cipher *siv.Cipher
	var err error
	for i := range msgs {
		m := &msgs[i]
		m.Out, m.Err = m.Dst, nil
		if i == 0 || m.Topic != msgs[i-1].Topic {
			cipher, err = c.topicCipher(m.Topic)
		}
		if err != nil {
			m.Err = err
			continue
		}
		start := len(m.Dst)
		dst := binary.LittleEndian.AppendUint64(m.Dst, ts)
		items[k] = siv.BatchItem{Cipher: cipher, Dst: dst, In: m.In, AD: dst[start : start+TimestampLen]}
		idx[k] = i
		k++
	}
	siv.SealBatch(items[:k])
	for j := range k {
		msgs[idx[j]].Out = items[j].Out
	}
}
