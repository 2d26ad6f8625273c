package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// admitHTTP authenticates an HTTP request from its headers before
// anything reads its body: a caller without valid credentials gets 401
// (429 past its address's failure budget) and its body is never read. The
// gRPC service behind the gateway checks the scope. The OpenAPI document
// needs no credentials.
func (g *guard) admitHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == OpenAPIPath {
			next.ServeHTTP(w, r)
			return
		}
		p := presented{authorization: r.Header.Values("Authorization"), cert: httpCertificate(r), remote: r.RemoteAddr}
		if _, err := g.gate(r.Context(), p, r.Method+" "+clip(r.URL.Path, 80)); err != nil {
			if r.Body != http.NoBody {
				// The body stays unread: do not keep the connection for it.
				w.Header().Set("Connection", "close")
			}
			st := status.Convert(err)
			writeError(w, runtime.HTTPStatusFromCode(st.Code()), st.Code(), st.Message())
			return
		}
		next.ServeHTTP(w, r)
	})
}

// readBody receives an admitted request's body before the gateway sees
// it: at most MaxRequestBytes (413 beyond), within BodyReadTimeout (408
// beyond: a slow sender cannot hold the connection), counted in the
// in-flight budget until the request is answered (429 when it is spent).
// The read deadline is lifted once the body is in, so that responses
// (event streams) last as long as they need.
func (g *guard) readBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > g.maxRequest {
			tooLarge(w, r.ContentLength, g.maxRequest)
			return
		}
		size := g.maxRequest // unknown length (chunked): the most it may be
		if r.ContentLength >= 0 {
			size = r.ContentLength
		}
		if !g.budget.tryAcquire(size) {
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusTooManyRequests, codes.ResourceExhausted, "too many large requests in flight: retry later")
			return
		}
		defer g.budget.release(size)
		body, err := g.receive(w, r)
		if err != nil {
			g.bodyError(w, err)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

// receive reads r's body under the body deadline.
func (g *guard) receive(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(g.bodyTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.maxRequest))
	if err == nil {
		err = rc.SetReadDeadline(time.Time{})
		if errors.Is(err, http.ErrNotSupported) {
			err = nil
		}
	}
	return body, err
}

// bodyError answers a body that could not be received.
func (g *guard) bodyError(w http.ResponseWriter, err error) {
	w.Header().Set("Connection", "close")
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		tooLarge(w, -1, tooBig.Limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		writeError(w, http.StatusRequestTimeout, codes.DeadlineExceeded,
			fmt.Sprintf("the request body was not received within %v", g.bodyTimeout))
	default:
		writeError(w, http.StatusBadRequest, codes.InvalidArgument, "the request body could not be read")
	}
}

func tooLarge(w http.ResponseWriter, size, limit int64) {
	msg := fmt.Sprintf("the request body is over the limit of %d bytes", limit)
	if size >= 0 {
		msg = fmt.Sprintf("the request body is %d bytes, the limit is %d", size, limit)
	}
	writeError(w, http.StatusRequestEntityTooLarge, codes.InvalidArgument, msg)
}
