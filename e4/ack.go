package e4

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/e4-iot/e4kit/e4/command"
)

// Command acknowledgements are this project's extension to E4 v1 (the
// protocol has none, so C2 cannot know which key a device really holds).
// After a device applies or refuses an authentic command, it publishes on
// AckTopic(id) the SK-format protection, under the key that protected the
// command, of
//
//	AckVersion (1 byte) || AckStatus (1 byte) || first 16 bytes of SHA-256(protected command)
//
// Only C2 and the device know that key, so an acknowledgement cannot be
// forged, and the digest ties it to one command as sent. Devices that do not
// implement it are unaffected: the wire format of commands is unchanged.

// AckVersion is the version byte of acknowledgements.
const AckVersion = 1

// AckDigestLen is the length of the command digest in an acknowledgement.
const AckDigestLen = 16

const ackLen = 2 + AckDigestLen

// AckStatus says what a device did with a command.
type AckStatus byte

// The statuses of an acknowledgement.
const (
	// AckApplied: the command took effect.
	AckApplied AckStatus = 0
	// AckRefused: the command was authentic but refused (stale, invalid,
	// not for this mode); sending it again will not help.
	AckRefused AckStatus = 1
)

// AckTopicSuffix ends the topic acknowledgements are published on.
const AckTopicSuffix = "/ack"

// AckTopic returns the topic a client acknowledges commands on:
// its control topic followed by "/ack".
func AckTopic(id ID) string { return ControlTopic(id) + AckTopicSuffix }

// CommandDigest returns the digest that identifies a protected command in
// its acknowledgement.
func CommandDigest(protected []byte) [AckDigestLen]byte {
	sum := sha256.Sum256(protected)
	return [AckDigestLen]byte(sum[:AckDigestLen])
}

// HandleCommandAck is HandleCommand that also returns the acknowledgement
// to publish on AckTopic. ack is nil when the input was not an authentic
// command: nothing is acknowledged to an unknown sender. An exact repeat of
// the last command applied to its item (a broker's duplicate, or C2 sending
// again because an acknowledgement was lost) is reported with ErrReplay and
// acknowledged as applied again, which it is; a refused command sent again
// is refused again.
func (c *Client) HandleCommandAck(protected []byte) (cmd command.Code, ack []byte, err error) {
	c.mu.RLock()
	cipher := c.commandCipher
	c.mu.RUnlock()
	cmd, err = c.HandleCommand(protected)
	status := AckApplied
	switch {
	case err == nil, errors.Is(err, ErrReplay):
	case errors.Is(err, ErrStaleCommand), errors.Is(err, ErrInvalidCommand), errors.Is(err, ErrUnsupportedOperation), errors.Is(err, ErrInvalidKey):
		status = AckRefused
	default:
		return cmd, nil, err // unauthentic, too old, or not saved
	}
	// Acknowledge under the key that opened the command: a SetIDKey or
	// SetC2Key has already replaced it for what follows.
	digest := CommandDigest(protected)
	plain := append([]byte{AckVersion, byte(status)}, digest[:]...)
	return cmd, sealSK(nil, cipher, plain, uint64(c.now().Unix())), err
}

// OpenAck checks an acknowledgement with the command key C2 used for the
// command and returns the command digest and status. cfg (nil for the
// defaults) sets the time checks.
func OpenAck(ack, commandKey []byte, cfg *Config) (digest [AckDigestLen]byte, status AckStatus, err error) {
	return V1.OpenAck(ack, commandKey, cfg)
}

// decodeAck checks and reads an opened acknowledgement.
func decodeAck(plain []byte) (digest [AckDigestLen]byte, status AckStatus, err error) {
	if len(plain) != ackLen || plain[0] != AckVersion {
		return digest, 0, fmt.Errorf("%w: not a version %d acknowledgement", ErrInvalidCommand, AckVersion)
	}
	if AckStatus(plain[1]) > AckRefused {
		return digest, 0, fmt.Errorf("%w: unknown acknowledgement status %d", ErrInvalidCommand, plain[1])
	}
	return [AckDigestLen]byte(plain[2:]), AckStatus(plain[1]), nil
}
