package api

import (
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// grpc-go reports a request it cannot decode as Internal, before any
// interceptor runs. A malformed request is the caller's fault, so the
// server decodes with lenientCodec: a message that does not decode is left
// empty and noted here, and the interceptors refuse it with
// InvalidArgument before the handler sees it.
var undecodable sync.Map // message pointer -> decoding error

// lenientCodec is the proto codec, except that it never fails Unmarshal
// (see undecodable).
type lenientCodec struct{ encoding.CodecV2 }

func newLenientCodec() lenientCodec { return lenientCodec{encoding.GetCodecV2("proto")} }

// Unmarshal decodes data into v, or notes why it cannot.
func (c lenientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if err := c.CodecV2.Unmarshal(data, v); err != nil {
		undecodable.Store(v, err)
	}
	return nil
}

// decodingError returns (and forgets) the error of a message that did
// not decode, as an InvalidArgument status.
func decodingError(m any) error {
	err, ok := undecodable.LoadAndDelete(m)
	if !ok {
		return nil
	}
	return status.Errorf(codes.InvalidArgument, "the request is not a valid protobuf message of this method: %v", err)
}
