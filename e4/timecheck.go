package e4

import (
	"encoding/binary"
	"math"
	"time"
)

// Config tunes a Client. The zero value gives E4 v1 behaviour: a 10-minute
// validity window, no clock skew for messages, a 60-minute key transition,
// the replay cache on, and no persistence; commands from C2 may be dated up
// to 2 minutes ahead (see CommandFutureSkew).
type Config struct {
	// Store persists the client state after every change. Nil keeps the
	// state in memory only.
	Store Store

	// Now is the clock. Nil means time.Now. Tests inject a fixed clock.
	Now func() time.Time

	// MaxAge is the validity window: older messages are refused.
	// Zero means DefaultMaxAge (10 minutes).
	MaxAge time.Duration

	// MaxFutureSkew lets messages dated up to this much in the future
	// through, for senders whose clock runs ahead. Whole seconds count.
	// Zero (the v1 behaviour) refuses any future timestamp.
	MaxFutureSkew time.Duration

	// CommandFutureSkew lets commands from C2 (not messages) through when
	// dated up to this much in the future. C2 dates the commands it sends
	// to one client strictly increasingly, which can run its timestamps a
	// little ahead of the clock. Zero means DefaultCommandFutureSkew (2
	// minutes); a negative value allows no more than MaxFutureSkew.
	CommandFutureSkew time.Duration

	// KeyTransition is how long a replaced topic key still decrypts
	// messages after the new key arrived. Zero means DefaultKeyTransition.
	KeyTransition time.Duration

	// NoClock switches the timestamp checks off, for devices without a
	// reliable clock. Replay protection still works, bounded by the
	// replay cache size.
	NoClock bool

	// Suite is the deployment's suite of primitives (see Suite); nil means
	// V1. It must be the suite C2 runs: nothing in a message says which
	// suite protected it.
	Suite *Suite

	// DiagnoseSuite makes a message or command that fails authentication
	// cost one more decryption per other known suite, under the same key,
	// to tell a sender set up in another mode (ErrSuiteMismatch, naming
	// both suites) from a wrong key or an altered message. Off by default:
	// it doubles the work an attacker can cause with forged messages, and
	// the plain error already names the receiver's suite. For debugging a
	// deployment.
	DiagnoseSuite bool

	// ReplayCacheSize is the number of accepted messages remembered to
	// refuse replays. Zero means DefaultReplayCacheSize; a negative value
	// switches replay protection off.
	ReplayCacheSize int
}

func (cfg *Config) now() time.Time {
	if cfg.Now != nil {
		return cfg.Now()
	}
	return time.Now()
}

// now is the client's clock: Config.Now if set, else the cheap wall clock.
func (c *Client) now() time.Time {
	if c.cfg.Now != nil {
		return c.cfg.Now()
	}
	return c.clock.now()
}

func (cfg *Config) maxAge() time.Duration {
	if cfg.MaxAge > 0 {
		return cfg.MaxAge
	}
	return DefaultMaxAge
}

func (cfg *Config) keyTransition() time.Duration {
	if cfg.KeyTransition > 0 {
		return cfg.KeyTransition
	}
	return DefaultKeyTransition
}

// readTimestamp decodes the 8-byte little-endian timestamp of a message.
func readTimestamp(b []byte) uint64 { return binary.LittleEndian.Uint64(b[:TimestampLen]) }

// checkTimestamp applies the validity window to a message timestamp, exactly
// as E4 v1 does with a full-precision clock: the message is too old when
// ts < now - maxAge and in the future when ts > now + skew. It returns the
// oldest timestamp still acceptable, which the replay cache uses to forget.
func (cfg *Config) checkTimestamp(ts uint64, now time.Time) (oldestValid uint64, err error) {
	return cfg.checkTimestampSkew(ts, now, cfg.MaxFutureSkew)
}

// checkTimestampSkew is checkTimestamp with the allowed future skew given.
func (cfg *Config) checkTimestampSkew(ts uint64, now time.Time, maxSkew time.Duration) (oldestValid uint64, err error) {
	if ts > math.MaxInt64 {
		// v1 reads the field as signed: the top bit makes it a date
		// before 1970, never a wrap into the future.
		return 0, ErrTimestampTooOld
	}
	if cfg.NoClock {
		return 0, nil
	}
	nowSec := now.Unix()
	skew := int64(maxSkew / time.Second)
	if int64(ts) > nowSec && int64(ts)-nowSec > skew {
		return 0, ErrTimestampInFuture
	}
	age := time.Duration(nowSec-int64(ts))*time.Second + time.Duration(now.Nanosecond())
	if int64(ts) < nowSec && age > cfg.maxAge() {
		return 0, ErrTimestampTooOld
	}
	oldest := nowSec - int64(cfg.maxAge()/time.Second)
	if oldest < 0 {
		oldest = 0
	}
	return uint64(oldest), nil
}
