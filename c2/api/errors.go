package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/e4"
)

// errorCodes maps the service's sentinel errors (and the e4 ones its
// message calls return) to gRPC codes, first match wins.
var errorCodes = []struct {
	err  error
	code codes.Code
}{
	{c2.ErrInvalidArgument, codes.InvalidArgument},
	{c2.ErrNotFound, codes.NotFound},
	{c2.ErrExists, codes.AlreadyExists},
	{c2.ErrWrongMode, codes.FailedPrecondition},
	{c2.ErrNotEnabled, codes.FailedPrecondition},
	{c2.ErrUnavailable, codes.Unavailable},
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{e4.ErrPubKeyNotFound, codes.NotFound},
	{e4.ErrTopicKeyNotFound, codes.NotFound},
	{e4.ErrUnsupportedOperation, codes.FailedPrecondition},
	{e4.ErrAuthentication, codes.InvalidArgument},
	{e4.ErrInvalidLength, codes.InvalidArgument},
	{e4.ErrTimestampTooOld, codes.InvalidArgument},
	{e4.ErrTimestampInFuture, codes.InvalidArgument},
	{e4.ErrReplay, codes.InvalidArgument},
	{e4.ErrInvalidCommand, codes.InvalidArgument},
	{e4.ErrInvalidKey, codes.InvalidArgument},
	{e4.ErrInvalidPassword, codes.InvalidArgument},
}

// toStatus turns an error of the service layer into a gRPC status error.
// An error it does not know is Internal, logged with its text, and
// reported without it (it may say more about the server than a caller
// needs); the tests make sure no input leads there.
func toStatus(log *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, m := range errorCodes {
		if errors.Is(err, m.err) {
			return status.Error(m.code, err.Error())
		}
	}
	log.Error("unexpected error", "method", method, "err", err)
	return status.Error(codes.Internal, "internal error (see the C2 log)")
}

// invalid is an InvalidArgument status with a message saying what is
// wrong.
func invalid(format string, args ...any) error {
	return status.Error(codes.InvalidArgument, fmt.Sprintf(format, args...))
}
