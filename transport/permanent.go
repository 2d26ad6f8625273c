package transport

import "errors"

// permanentError marks an error that retrying the same operation cannot
// fix: the broker refused the topic (an ACL), the payload is too large, a
// CoAP 4.xx answer. Callers such as C2's dispatcher stop retrying it.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as permanent: retrying the operation that failed
// with it cannot succeed. It returns nil for nil and err unchanged when it
// is already marked.
func Permanent(err error) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	return permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// Permanent, or is ErrTooLarge or ErrInvalidTopic, which no retry fixes.
// Every other error is taken as transient (a broker down, a timeout).
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	var p permanentError
	return errors.As(err, &p) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrInvalidTopic)
}
