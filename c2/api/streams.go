package api

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// streamTracker knows the open streams of each token, so that revoking
// the token, or its expiry, ends them: a stream is authorized once, when
// it opens, and would otherwise outlive its token.
// It also bounds the streams one caller keeps open at once: each holds a
// subscription and its queue for as long as it lasts.
type streamTracker struct {
	mu      sync.Mutex
	streams map[*trackedStream]struct{}
	open    map[string]int // by actor
}

// maxStreamsPerCaller bounds the streams (gRPC and SSE) one token or
// certificate has open at once.
const maxStreamsPerCaller = 64

type trackedStream struct {
	id     identity
	cancel context.CancelCauseFunc
}

func newStreamTracker() *streamTracker {
	return &streamTracker{streams: make(map[*trackedStream]struct{}), open: make(map[string]int)}
}

// track registers a stream of id and returns its context, which ends
// with an Unauthenticated cause when id's token is revoked or expires
// (certificates are not revoked), and the function that forgets the
// stream when it ends. It refuses a stream past maxStreamsPerCaller.
func (t *streamTracker) track(ctx context.Context, id identity) (context.Context, func(), error) {
	ctx, cancel := context.WithCancelCause(ctx)
	s := &trackedStream{id: id, cancel: cancel}
	t.mu.Lock()
	if t.open[id.actor] >= maxStreamsPerCaller {
		t.mu.Unlock()
		cancel(nil)
		return ctx, nil, status.Errorf(codes.ResourceExhausted, "%s has %d streams open, the most one caller may: close one first", id.actor, maxStreamsPerCaller)
	}
	t.open[id.actor]++
	t.streams[s] = struct{}{}
	t.mu.Unlock()
	return ctx, func() {
		t.mu.Lock()
		delete(t.streams, s)
		if t.open[id.actor]--; t.open[id.actor] <= 0 {
			delete(t.open, id.actor)
		}
		t.mu.Unlock()
		cancel(nil)
	}, nil
}

// endToken ends the streams of the token named name.
func (t *streamTracker) endToken(name string, why error) {
	t.endWhere(func(s *trackedStream) bool { return s.id.token != "" && s.id.tokenName == name }, why)
}

func (t *streamTracker) endWhere(match func(*trackedStream) bool, why error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for s := range t.streams {
		if match(s) {
			s.cancel(streamEnded(why)) // its untrack function forgets it
		}
	}
}

// streamEnded is the status a stream ends with when its token no longer
// holds.
func streamEnded(why error) error {
	return status.Errorf(codes.Unauthenticated, "%v: the stream ends", why)
}

// sweep ends the streams whose token expired by now, or was revoked (by
// another replica too: auth checks the store once its cache expires).
func (t *streamTracker) sweep(ctx context.Context, now time.Time, auth *authenticator) {
	t.mu.Lock()
	tokens := make(map[string]identity)
	for s := range t.streams {
		if s.id.token != "" {
			tokens[s.id.token] = s.id
		}
	}
	t.mu.Unlock()
	for hash, id := range tokens {
		why := errExpired
		if id.expires.IsZero() || now.Before(id.expires) {
			_, err := auth.checkHash(ctx, hash, false)
			if err == nil || !isRefusal(err) {
				continue // still valid, or the store cannot tell now
			}
			why = err
		}
		t.endWhere(func(s *trackedStream) bool { return s.id.token == hash }, why)
	}
}

// isRefusal reports whether err says a token is no longer valid.
func isRefusal(err error) bool {
	return errors.Is(err, errRevoked) || errors.Is(err, errExpired) || errors.Is(err, errUnknownToken)
}
