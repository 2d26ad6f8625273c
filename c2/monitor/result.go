package monitor

// Result is what the monitor concluded about one message.
type Result int

// The results, in the order of their counters. Their names are the values
// of the label "result" of e4_monitor_messages_total.
const (
	// Valid: authentic under the topic's current key, inside the validity
	// window, not seen before.
	Valid Result = iota
	// PreviousKey: authentic only under the key the last rotation replaced,
	// inside the transition window: a device that has not received (or
	// applied) the new key yet.
	PreviousKey
	// AuthFailed: it looks like an E4 message (its timestamp is plausible)
	// but no key of the topic opens it, or its signature is wrong (PK), or
	// it opens only under a previous key whose transition window is over
	// (C2 does not keep a key revoked at a member removal at all, so no
	// key opens a message under it): a forgery, a tampered message, or a
	// sender with a wrong or withdrawn key.
	AuthFailed
	// Replay: an authentic message already seen within the validity window.
	Replay
	// TooOld: authentic, but dated before the validity window.
	TooOld
	// Future: authentic, but dated after now plus the allowed skew: the
	// sender's clock runs ahead (see e4_monitor_clock_skew_seconds).
	Future
	// NotE4: too short for an E4 message, or not authentic with a timestamp
	// no E4 sender would write (plaintext or garbage on a protected topic).
	NotE4
	// UnknownSigner (PK mode): a plausible message whose sender id is no
	// client C2 knows (and not C2 itself).
	UnknownSigner

	numResults
)

var resultNames = [numResults]string{
	Valid: "valid", PreviousKey: "previous_key", AuthFailed: "auth_failed", Replay: "replay",
	TooOld: "too_old", Future: "future", NotE4: "not_e4", UnknownSigner: "unknown_signer",
}

// String returns the result's name, as in the metric label.
func (r Result) String() string {
	if r >= 0 && r < numResults {
		return resultNames[r]
	}
	return "unknown"
}

// Results lists every result, in counter order.
func Results() []Result {
	out := make([]Result, numResults)
	for i := range out {
		out[i] = Result(i)
	}
	return out
}

// ParseResult returns the result named name.
func ParseResult(name string) (Result, bool) {
	for r, n := range resultNames {
		if n == name {
			return Result(r), true
		}
	}
	return 0, false
}
