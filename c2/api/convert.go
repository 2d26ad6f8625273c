package api

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/e4"
)

// ResolveClient turns a client reference into an id: 32 hex digits are an
// id, anything else is a name (the id is then e4.IDFromName(name)).
func ResolveClient(ref string) (e4.ID, error) { return ResolveClientIn(e4.V1, ref) }

// ResolveClientIn is ResolveClient for a deployment of the given suite,
// whose ids from names are suite.IDFromName.
func ResolveClientIn(suite *e4.Suite, ref string) (e4.ID, error) {
	if len(ref) == 2*e4.IDLen {
		if b, err := hex.DecodeString(ref); err == nil {
			return e4.ID(b), nil
		}
	}
	if err := checkName(ref); err != nil {
		return e4.ID{}, err
	}
	return suite.IDFromName(ref), nil
}

// parseClient is ResolveClient for a request field, with an
// InvalidArgument status naming the field.
func (h *handlers) parseClient(field, ref string) (e4.ID, error) {
	if ref == "" {
		return e4.ID{}, invalid("%s is empty: give a client name or its 32-hex-digit id", field)
	}
	id, err := ResolveClientIn(h.svc.Suite(), ref)
	if err != nil {
		return e4.ID{}, invalid("%s: %v", field, err)
	}
	return id, nil
}

// parseAfterID parses the "after" of a page of ids: empty or 32 hex
// digits.
func parseAfterID(after string) (e4.ID, error) {
	if after == "" {
		return e4.ID{}, nil
	}
	id, err := e4.ParseID(after)
	if err != nil {
		return e4.ID{}, invalid("after must be a client id (32 hex digits) from the previous page")
	}
	return id, nil
}

// checkName refuses what cannot be a client name.
func checkName(name string) error {
	switch {
	case len(name) > c2.MaxNameLen:
		return errorf("a name is at most %d bytes", c2.MaxNameLen)
	case !utf8.ValidString(name):
		return errorf("a name must be valid UTF-8")
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return errorf("a name must not contain control characters")
	}
	return nil
}

// checkText refuses strings that are not valid UTF-8 or hold control
// characters (filters, cursors).
func checkText(field, s string) error {
	if !utf8.ValidString(s) || strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return invalid("%s must be valid UTF-8 without control characters", field)
	}
	return nil
}

type textError string

func (e textError) Error() string { return string(e) }

func errorf(s string, args ...any) error {
	if len(args) == 0 {
		return textError(s)
	}
	return textError(fmt.Sprintf(s, args...))
}

// limit converts a page size; the service checks its range.
func limit(n int32) int { return int(n) }

// orNil makes an empty byte field absent.
func orNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func millis(ms int64) *timestamppb.Timestamp {
	if ms == 0 {
		return nil
	}
	return timestamppb.New(time.UnixMilli(ms))
}

func clientPB(c c2.ClientInfo) *c2pb.Client {
	return &c2pb.Client{Id: c.ID.String(), Name: c.Name, PublicKey: c.PublicKey, CreatedAt: timestamp(c.CreatedAt)}
}

func topicPB(t c2.TopicInfo) *c2pb.Topic {
	return &c2pb.Topic{Name: t.Name, Hash: t.Hash[:], KeyVersion: t.KeyVersion, CreatedAt: timestamp(t.CreatedAt), RotatedAt: timestamp(t.RotatedAt)}
}

func commandPB(c c2.CommandStatus) *c2pb.Command {
	return &c2pb.Command{
		Id: c.ID, Seq: c.Seq, ClientId: c.Client.String(), Kind: c.Kind, Target: c.Target, State: string(c.State),
		Attempts: int32(min(c.Attempts, 1<<31-1)), LastError: c.LastError, CreatedAt: millis(c.CreatedAt), SentAt: millis(c.SentAt),
	}
}

func idStrings(ids []e4.ID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}
