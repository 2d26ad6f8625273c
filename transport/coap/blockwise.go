package coap

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/coap/internal/msgid"
)

// The adapter's own block-wise transfers (RFC 7959), on connections where
// go-coap's block-wise layer is off, so that payloads up to
// MaxDatagramPayload can travel in one datagram.

// putBlocks publishes payload block by block (Block1): one confirmable PUT
// per block, all under one token so that the broker tells concurrent
// uploads apart. The broker may ask for smaller blocks in its 2.31
// Continue; the next block then starts where the last one ended, at the
// smaller size.
func (t *Transport) putBlocks(ctx context.Context, conn *udpclient.Conn, path []message.Option, payload []byte) error {
	token, err := message.GetToken()
	if err != nil {
		return fmt.Errorf("coap: making a token: %w", err)
	}
	szx := t.szx
	for offset := 0; ; {
		end := min(offset+int(szx.Size()), len(payload))
		more := end < len(payload)
		if err := t.takeID(ctx, msgid.ControlReserve); err != nil {
			return err
		}
		resp, err := putBlock(ctx, conn, token, path, payload, offset, end, szx)
		if err != nil {
			return err
		}
		code := resp.Code()
		switch {
		case code == codes.Continue && more:
			szx = min(szx, agreedSZX(resp, message.Block1, szx))
			conn.ReleaseMessage(resp)
			offset = end
		case (code == codes.Changed || code == codes.Created) && !more:
			conn.ReleaseMessage(resp)
			return nil
		default:
			err := statusError(code, resp)
			conn.ReleaseMessage(resp)
			return err
		}
	}
}

// putBlock sends payload[offset:end] as one block of a PUT and returns the
// broker's answer, to be released.
func putBlock(ctx context.Context, conn *udpclient.Conn, token message.Token, path []message.Option, payload []byte, offset, end int, szx blockwise.SZX) (*pool.Message, error) {
	block, err := blockwise.EncodeBlockOption(szx, int64(offset)/szx.Size(), end < len(payload))
	if err != nil {
		return nil, fmt.Errorf("coap: block %d of a %d-byte payload: %w", offset, len(payload), err)
	}
	req, err := conn.NewPutRequest(ctx, "", message.AppOctets, bytes.NewReader(payload[offset:end]), path...)
	if err != nil {
		return nil, fmt.Errorf("coap: building the request: %w", err)
	}
	defer conn.ReleaseMessage(req)
	req.SetToken(token)
	req.SetOptionUint32(message.Block1, block)
	if offset == 0 {
		// Size1 lets the broker refuse a payload too large at once.
		req.SetOptionUint32(message.Size1, uint32(len(payload)))
	}
	return conn.Do(req)
}

// agreedSZX returns the block size in the Block option id of resp, or def
// if it has none.
func agreedSZX(resp *pool.Message, id message.OptionID, def blockwise.SZX) blockwise.SZX {
	v, err := resp.GetOptionUint32(id)
	if err != nil {
		return def
	}
	szx, _, _, err := blockwise.DecodeBlockOption(v)
	if err != nil || szx > blockwise.SZX1024 {
		return def
	}
	return szx
}

// errNotBlockwise says that a message is not the first block of a larger
// body.
var errNotBlockwise = errors.New("not block-wise")

// firstBlock returns the block size of a message that holds the first
// block of a larger body (Block2 with num 0 and more blocks to come), or
// errNotBlockwise.
func firstBlock(m *pool.Message) (blockwise.SZX, error) {
	v, err := m.GetOptionUint32(message.Block2)
	if err != nil {
		return 0, errNotBlockwise
	}
	szx, num, more, err := blockwise.DecodeBlockOption(v)
	switch {
	case err != nil || szx > blockwise.SZX1024:
		return 0, fmt.Errorf("malformed Block2 option %#x", v)
	case !more:
		return 0, errNotBlockwise
	case num != 0:
		return 0, fmt.Errorf("notification starts with block %d", num)
	}
	return szx, nil
}

// bodyOf returns the whole body of a notification: its payload, completed,
// if it holds only the first block, by GETs of the other blocks of the
// observed path (RFC 7959 §2.6) on conn. Every block must carry the ETag
// of the first, if any: blocks of two representations must not mix.
func (s *subscription) bodyOf(conn *udpclient.Conn, m *pool.Message) ([]byte, error) {
	body, err := m.ReadBody()
	if err != nil {
		return nil, err
	}
	szx, err := firstBlock(m)
	if errors.Is(err, errNotBlockwise) {
		return body, nil
	}
	if err != nil {
		return nil, err
	}
	etag, _ := m.ETag() // nil without one
	if size, err := m.GetOptionUint32(message.Size2); err == nil && int64(size) > int64(s.t.cfg.MaxPayload) {
		s.finishRefused(conn, etag, len(body), szx, int64(size))
		return nil, fmt.Errorf("%d-byte notification, at most %d: %w", size, s.t.cfg.MaxPayload, transport.ErrTooLarge)
	}
	payload := body // ReadBody copies
	szx = min(szx, s.t.szx)
	for more := true; more; {
		if len(payload)%int(szx.Size()) != 0 {
			return nil, fmt.Errorf("block ending at byte %d is not a whole block", len(payload))
		}
		var block []byte
		block, szx, more, err = s.fetchBlock(conn, etag, len(payload), szx)
		if err != nil {
			return nil, err
		}
		payload = append(payload, block...)
		if len(payload) > s.t.cfg.MaxPayload {
			if more {
				s.finishRefused(conn, etag, len(payload), szx, 0)
			}
			return nil, fmt.Errorf("notification over %d bytes: %w", s.t.cfg.MaxPayload, transport.ErrTooLarge)
		}
	}
	return payload, nil
}

// maxSkippedBlocks bounds the blocks finishRefused reads to end a refused
// transfer whose size it does not know.
const maxSkippedBlocks = 1 << 16

// finishRefused ends the transfer of a notification refused for its size,
// keeping none of it: a broker sends the observation nothing more until
// the last block was fetched (ours does). With the size known (Size2) it
// fetches the last block only, else it reads the rest, one block after the
// other, and discards them. offset is where the blocks still to fetch
// start.
func (s *subscription) finishRefused(conn *udpclient.Conn, etag []byte, offset int, szx blockwise.SZX, size int64) {
	szx = min(szx, s.t.szx)
	blockSize := szx.Size()
	if size > 0 {
		last := (size - 1) / blockSize * blockSize
		if last >= int64(offset) {
			if _, _, more, err := s.fetchBlock(conn, etag, int(last), szx); err == nil && !more {
				return
			}
		}
	}
	for range maxSkippedBlocks {
		_, got, more, err := s.fetchBlock(conn, etag, offset, szx)
		if err != nil || !more {
			return
		}
		offset += int(got.Size())
		szx = got
	}
}

// fetchBlock GETs the block at offset of the observed representation and
// returns its bytes, the block size the server used and whether more
// blocks follow.
func (s *subscription) fetchBlock(conn *udpclient.Conn, etag []byte, offset int, szx blockwise.SZX) ([]byte, blockwise.SZX, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.t.cfg.Timeout)
	defer cancel()
	option, err := blockwise.EncodeBlockOption(szx, int64(offset)/szx.Size(), false)
	if err != nil {
		return nil, 0, false, fmt.Errorf("block at byte %d: %w", offset, err)
	}
	if err := s.t.takeID(ctx, msgid.ControlReserve); err != nil {
		return nil, 0, false, err
	}
	req, err := conn.NewGetRequest(ctx, "", s.path...)
	if err != nil {
		return nil, 0, false, err
	}
	defer conn.ReleaseMessage(req)
	req.SetOptionUint32(message.Block2, option)
	resp, err := conn.Do(req)
	if err != nil {
		return nil, 0, false, fmt.Errorf("fetching the block at byte %d: %w", offset, err)
	}
	defer conn.ReleaseMessage(resp)
	if resp.Code() != codes.Content {
		return nil, 0, false, fmt.Errorf("fetching the block at byte %d: %w", offset, statusError(resp.Code(), resp))
	}
	v, err := resp.GetOptionUint32(message.Block2)
	if err != nil {
		return nil, 0, false, fmt.Errorf("the block at byte %d came without Block2", offset)
	}
	got, num, more, err := blockwise.DecodeBlockOption(v)
	if err != nil || got > szx || num*got.Size() != int64(offset) {
		return nil, 0, false, fmt.Errorf("asked for the block at byte %d, got Block2 %#x", offset, v)
	}
	if tag, _ := resp.ETag(); !bytes.Equal(tag, etag) {
		return nil, 0, false, fmt.Errorf("the representation changed during the transfer (ETag %x, then %x)", etag, tag)
	}
	block, err := resp.ReadBody() // a copy
	if err != nil {
		return nil, 0, false, err
	}
	return block, got, more, nil
}
