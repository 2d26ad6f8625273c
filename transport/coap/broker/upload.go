package broker

import (
	"errors"
	"math"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// maxUploads is how many block-wise publications one connection may have
// in progress at once: each may hold up to MaxPayload bytes.
const maxUploads = 16

// upload is a publication being received block by block (RFC 7959 Block1).
type upload struct {
	token   string     // its key in connState.uploads
	topic   string     // where it is published
	code    codes.Code // PUT or POST
	payload []byte     // received so far
	expires time.Time  // when it is dropped if no block comes
}

// block1 is one received block of a publication.
type block1 struct {
	szx    blockwise.SZX
	num    int64
	more   bool
	offset int64
	body   []byte
}

// errIncomplete is a block that does not continue what was received: RFC
// 7959 §2.9.2 answers it with 4.08 Request Entity Incomplete.
var errIncomplete = errors.New("block does not continue the upload")

// receiveBlock takes one block of a publication: it answers 2.31 Continue
// or, at the last block, publishes the whole body and answers 2.04.
func (b *Broker) receiveBlock(w *responseWriter, r *pool.Message, topic string) {
	blk, code, err := readBlock1(r)
	if err != nil {
		b.respond(w, code, err.Error())
		return
	}
	if size, err := r.GetOptionUint32(message.Size1); err == nil && int64(size) > int64(b.opts.MaxPayload) ||
		blk.offset+int64(len(blk.body)) > int64(b.opts.MaxPayload) {
		b.dropUpload(w.Conn(), r.Token())
		b.refuseTooLarge(w)
		return
	}
	payload, err := b.appendBlock(w.Conn(), r, topic, blk)
	switch {
	case errors.Is(err, errIncomplete):
		b.respond(w, codes.RequestEntityIncomplete, err.Error())
		return
	case err != nil:
		b.respond(w, codes.ServiceUnavailable, err.Error())
		return
	case blk.more:
		// A smaller block size here asks the client to go on with it.
		b.respond(w, codes.Continue, "")
		setBlock1(w, min(blk.szx, b.szx), blk.num, true)
		return
	}
	b.publish(topic, payload)
	b.respond(w, codes.Changed, "")
	setBlock1(w, blk.szx, blk.num, false)
}

// readBlock1 decodes the Block1 option and body of r; a block that says
// more follow must be whole. An error comes with the code to answer.
func readBlock1(r *pool.Message) (block1, codes.Code, error) {
	v, _ := r.GetOptionUint32(message.Block1) // the caller checked it is there
	szx, num, more, err := blockwise.DecodeBlockOption(v)
	if err != nil || szx > blockwise.SZX1024 {
		return block1{}, codes.BadOption, errors.New("malformed Block1")
	}
	body, err := r.ReadBody()
	if err != nil {
		return block1{}, codes.BadRequest, errors.New("unreadable body")
	}
	if more && int64(len(body)) != szx.Size() {
		return block1{}, codes.BadRequest, errors.New("a block before the last is not whole")
	}
	return block1{szx: szx, num: num, more: more, offset: num * szx.Size(), body: body}, 0, nil
}

func setBlock1(w *responseWriter, szx blockwise.SZX, num int64, more bool) {
	v, err := blockwise.EncodeBlockOption(szx, num, more)
	if err == nil { // num came decoded from a valid option
		w.Message().SetOptionUint32(message.Block1, v)
	}
}

// refuseTooLarge answers 4.13 with the largest payload accepted in Size1
// (RFC 7959 §4).
func (b *Broker) refuseTooLarge(w *responseWriter) {
	b.respond(w, codes.RequestEntityTooLarge, "payload too large")
	w.Message().SetOptionUint32(message.Size1, uint32(min(int64(b.opts.MaxPayload), math.MaxUint32)))
}

// appendBlock adds blk to the upload it continues and returns the whole
// payload once blk is the last block. A block the broker already holds
// (a late retransmission, or a client going on at the smaller block size
// the broker asked for, counting from an earlier block) adds only what is
// new.
func (b *Broker) appendBlock(cc *udpclient.Conn, r *pool.Message, topic string, blk block1) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cs := b.conns[cc]
	if cs == nil {
		return nil, errors.New("connection gone")
	}
	now := time.Now()
	u, err := cs.uploadFor(string(r.Token()), topic, r.Code(), blk.offset, now)
	if err != nil {
		return nil, err
	}
	if u == nil {
		if u, err = cs.startUpload(r, topic, now); err != nil {
			return nil, err
		}
	}
	have := int64(len(u.payload))
	end := blk.offset + int64(len(blk.body))
	if blk.offset > have || (!blk.more && end < have) {
		delete(cs.uploads, u.token)
		return nil, errIncomplete
	}
	if end > have {
		u.payload = append(u.payload, blk.body[have-blk.offset:]...)
	}
	u.expires = now.Add(b.opts.TransferTimeout)
	if blk.more {
		return nil, nil
	}
	delete(cs.uploads, u.token)
	return u.payload, nil
}

// uploadFor returns the live upload a block at offset continues: the one
// of its token or, for a client that changed tokens (RFC 9175 §3.3), the
// only one of the same topic and method that has offset bytes. A first
// block (offset 0) starts anew: nil.
func (cs *connState) uploadFor(token, topic string, code codes.Code, offset int64, now time.Time) (*upload, error) {
	if offset == 0 {
		return nil, nil
	}
	if u := cs.uploads[token]; u != nil && u.expires.After(now) && u.topic == topic && u.code == code {
		return u, nil
	}
	var found *upload
	for _, u := range cs.uploads {
		if u.expires.After(now) && u.topic == topic && u.code == code && int64(len(u.payload)) == offset {
			if found != nil {
				return nil, errIncomplete // ambiguous
			}
			found = u
		}
	}
	if found == nil {
		return nil, errIncomplete
	}
	delete(cs.uploads, found.token)
	found.token = token
	cs.uploads[token] = found
	return found, nil
}

// startUpload records a new upload (replacing one of the same token),
// within maxUploads per connection.
func (cs *connState) startUpload(r *pool.Message, topic string, now time.Time) (*upload, error) {
	token := string(r.Token())
	delete(cs.uploads, token)
	for key, u := range cs.uploads {
		if !u.expires.After(now) {
			delete(cs.uploads, key)
		}
	}
	if len(cs.uploads) >= maxUploads {
		return nil, errors.New("too many uploads in progress")
	}
	u := &upload{token: token, topic: topic, code: r.Code()}
	if size, err := r.GetOptionUint32(message.Size1); err == nil {
		u.payload = make([]byte, 0, size) // Size1 was checked against MaxPayload
	}
	cs.uploads[token] = u
	return u, nil
}

// dropUpload forgets the upload of token on cc, if any.
func (b *Broker) dropUpload(cc *udpclient.Conn, token []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cs := b.conns[cc]; cs != nil {
		delete(cs.uploads, string(token))
	}
}
