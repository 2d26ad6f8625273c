package api

import (
	"bytes"
	"context"
	"time"

	"google.golang.org/grpc"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// handlers implements c2pb.C2Server over the service layer. Errors it
// returns are plain service errors or status errors; the interceptors map
// the former.
type handlers struct {
	c2pb.UnimplementedC2Server
	svc     *c2.Service
	st      store.Store
	hub     *EventHub
	auth    *authenticator
	streams *streamTracker
	now     func() time.Time
	version string
	// stopping is closed when the server shuts down; event streams end.
	stopping chan struct{}
}

// generatedKeysPerMessage bounds the keys in one ImportClients message.
const generatedKeysPerMessage = 1000

func (h *handlers) AddClient(ctx context.Context, req *c2pb.AddClientRequest) (*c2pb.AddClientResponse, error) {
	n := c2.NewClient{Name: req.Name, Key: orNil(req.Key), Password: req.Password, PublicKey: orNil(req.PublicKey)}
	if req.Id != "" {
		id, err := e4.ParseID(req.Id)
		if err != nil {
			return nil, invalid("id must be 32 hex digits")
		}
		n.ID = &id
	}
	added, err := h.svc.AddClient(ctx, n)
	if err != nil {
		return nil, err
	}
	return &c2pb.AddClientResponse{Client: clientPB(added.ClientInfo), Key: added.Key}, nil
}

func (h *handlers) GetClient(ctx context.Context, req *c2pb.GetClientRequest) (*c2pb.Client, error) {
	id, err := h.parseClient("client", req.Client)
	if err != nil {
		return nil, err
	}
	c, err := h.svc.GetClient(ctx, id)
	if err != nil {
		return nil, err
	}
	return clientPB(c), nil
}

func (h *handlers) ListClients(ctx context.Context, req *c2pb.ListClientsRequest) (*c2pb.ListClientsResponse, error) {
	after, err := parseAfterID(req.After)
	if err != nil {
		return nil, err
	}
	list, err := h.svc.ListClients(ctx, after, limit(req.Limit))
	if err != nil {
		return nil, err
	}
	total, err := h.svc.CountClients(ctx)
	if err != nil {
		return nil, err
	}
	out := &c2pb.ListClientsResponse{Total: total, Clients: make([]*c2pb.Client, len(list))}
	for i, c := range list {
		out.Clients[i] = clientPB(c)
	}
	return out, nil
}

func (h *handlers) RemoveClient(ctx context.Context, req *c2pb.ClientRequest) (*c2pb.Empty, error) {
	id, err := h.parseClient("client", req.Client)
	if err != nil {
		return nil, err
	}
	return &c2pb.Empty{}, h.svc.RemoveClient(ctx, id)
}

func (h *handlers) ResetClient(ctx context.Context, req *c2pb.ClientRequest) (*c2pb.Empty, error) {
	id, err := h.parseClient("client", req.Client)
	if err != nil {
		return nil, err
	}
	return &c2pb.Empty{}, h.svc.ResetClient(ctx, id)
}

func (h *handlers) NewClientKey(ctx context.Context, req *c2pb.NewClientKeyRequest) (*c2pb.NewClientKeyResponse, error) {
	id, err := h.parseClient("client", req.Client)
	if err != nil {
		return nil, err
	}
	key := orNil(req.Key)
	if req.GenerateKeyPair {
		if key != nil || req.PublicKey != nil {
			return nil, invalid("generate_key_pair makes C2 generate the key pair: give no key or public_key")
		}
		pub, err := h.svc.NewClientKeyPair(ctx, id)
		if err != nil {
			return nil, err
		}
		return &c2pb.NewClientKeyResponse{PublicKey: pub}, nil
	}
	if h.svc.Mode() == e4.PubKey {
		if key != nil {
			return nil, invalid("this deployment is in public-key mode: give the device's new public_key, not a key")
		}
		if key = orNil(req.PublicKey); key == nil {
			return nil, invalid("public_key is required in public-key mode (the device makes its own key pair)")
		}
	} else if req.PublicKey != nil {
		return nil, invalid("this deployment is in symmetric-key mode: give a key, or nothing to have C2 generate one")
	}
	generated, err := h.svc.NewClientKey(ctx, id, key)
	if err != nil {
		return nil, err
	}
	return &c2pb.NewClientKeyResponse{Key: generated}, nil
}

func (h *handlers) ImportClients(req *c2pb.ImportClientsRequest, stream grpc.ServerStreamingServer[c2pb.ImportClientsProgress]) error {
	format := c2.ImportFormat(req.Format)
	if format != c2.ImportCSV && format != c2.ImportJSON {
		return invalid("format must be csv or json, not %q", clip(req.Format, 40))
	}
	if len(req.Data) == 0 {
		return invalid("data is empty: send the file's content")
	}
	ctx := stream.Context()
	progress := func(done int) {
		// A failed send means the caller left; the import goes on to the
		// end of its current chunk and the error below reports it.
		_ = stream.Send(&c2pb.ImportClientsProgress{Imported: int64(done)})
	}
	res, err := h.svc.ImportClients(ctx, bytes.NewReader(req.Data), format, progress)
	if err != nil {
		// The clients committed before the failure stay: their keys go
		// out (done unset) before the error, or they would be lost.
		if len(res.Generated) > 0 {
			if serr := sendGeneratedKeys(stream, res, false); serr != nil {
				return serr
			}
		}
		return err
	}
	return sendGeneratedKeys(stream, res, true)
}

// sendGeneratedKeys streams the keys an import generated, a bounded number
// per message (at least one message).
func sendGeneratedKeys(stream grpc.ServerStreamingServer[c2pb.ImportClientsProgress], res c2.ImportResult, done bool) error {
	generated := make([]*c2pb.GeneratedKey, 0, len(res.Generated))
	for id, key := range res.Generated {
		generated = append(generated, &c2pb.GeneratedKey{ClientId: id.String(), Key: key})
	}
	for {
		n := min(len(generated), generatedKeysPerMessage)
		msg := &c2pb.ImportClientsProgress{Imported: int64(res.Imported), Done: done, Generated: generated[:n]}
		if err := stream.Send(msg); err != nil {
			return err
		}
		generated = generated[n:]
		if len(generated) == 0 {
			return nil
		}
	}
}
