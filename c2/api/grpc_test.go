package api_test

import (
	"bytes"
	"encoding/hex"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/e4"
)

// TestGRPCOperations drives the service through gRPC with an operate
// token: clients, topics, memberships, rotation, commands, messages.
func TestGRPCOperations(t *testing.T) {
	c := newTestC2(t, options{})
	cl := c.client()
	ctx := as(c.token("ops", "operate"))

	added, err := cl.AddClient(ctx, &c2pb.AddClientRequest{Name: "thermostat-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(added.Key) != e4.KeyLen || added.Client.Id != e4.IDFromName("thermostat-1").String() {
		t.Fatalf("AddClient: %+v", added)
	}
	given := bytes.Repeat([]byte{7}, e4.KeyLen)
	res, err := cl.AddClient(ctx, &c2pb.AddClientRequest{Name: "thermostat-2", Key: given})
	if err != nil || len(res.Key) != 0 {
		t.Fatalf("AddClient with a key: %v, returned key %x", err, res.GetKey())
	}
	_, err = cl.AddClient(ctx, &c2pb.AddClientRequest{Name: "thermostat-1"})
	wantCode(t, "second AddClient", err, codes.AlreadyExists)
	_, err = cl.AddClient(ctx, &c2pb.AddClientRequest{Name: "short-key", Key: []byte{1, 2, 3}})
	wantCode(t, "AddClient with a 3-byte key", err, codes.InvalidArgument)
	_, err = cl.AddClient(ctx, &c2pb.AddClientRequest{Name: "pk", PublicKey: bytes.Repeat([]byte{1}, 32)})
	wantCode(t, "AddClient with a public key in SK mode", err, codes.FailedPrecondition)

	if _, err := cl.AddTopic(ctx, &c2pb.AddTopicRequest{Topic: "plant/line-1/temp"}); err != nil {
		t.Fatal(err)
	}
	_, err = cl.AddTopic(ctx, &c2pb.AddTopicRequest{Topic: "plant/+/temp"})
	wantCode(t, "wildcard topic", err, codes.InvalidArgument)
	_, err = cl.AddTopic(ctx, &c2pb.AddTopicRequest{})
	wantCode(t, "empty topic", err, codes.InvalidArgument)

	for _, name := range []string{"thermostat-1", e4.IDFromName("thermostat-2").String()} {
		if _, err := cl.AddMember(ctx, &c2pb.MemberRequest{Client: name, Topic: "plant/line-1/temp"}); err != nil {
			t.Fatalf("AddMember %s: %v", name, err)
		}
	}
	is, err := cl.IsMember(ctx, &c2pb.MemberRequest{Client: "thermostat-1", Topic: "plant/line-1/temp"})
	if err != nil || !is.Member {
		t.Fatalf("IsMember: %v %v", is, err)
	}
	members, err := cl.ListMembers(ctx, &c2pb.ListMembersRequest{Topic: "plant/line-1/temp"})
	if err != nil || members.Total != 2 || len(members.Clients) != 2 {
		t.Fatalf("ListMembers: %v %v", members, err)
	}
	topic, err := cl.GetTopic(ctx, &c2pb.TopicRequest{Topic: "plant/line-1/temp"})
	if err != nil || topic.Members != 2 || topic.KeyVersion != 1 {
		t.Fatalf("GetTopic: %v %v", topic, err)
	}
	rot, err := cl.RotateTopic(ctx, &c2pb.TopicRequest{Topic: "plant/line-1/temp"})
	if err != nil || rot.Commands != 2 {
		t.Fatalf("RotateTopic: %v %v", rot, err)
	}
	cmds, err := cl.ListCommands(ctx, &c2pb.ListCommandsRequest{Target: "plant/line-1/temp"})
	if err != nil || cmds.Total != 4 {
		t.Fatalf("ListCommands: %v %v", cmds, err)
	}
	one, err := cl.GetCommand(ctx, &c2pb.GetCommandRequest{Id: cmds.Commands[0].Id})
	if err != nil || one.Kind != "SetTopicKey" {
		t.Fatalf("GetCommand: %v %v", one, err)
	}
	_, err = cl.ListCommands(ctx, &c2pb.ListCommandsRequest{State: "lost"})
	wantCode(t, "unknown command state", err, codes.InvalidArgument)
	superseded, err := cl.ListCommands(ctx, &c2pb.ListCommandsRequest{State: "superseded"})
	if err != nil {
		t.Fatalf("ListCommands of superseded commands: %v", err)
	}
	for _, c := range superseded.Commands {
		if c.State != "superseded" {
			t.Fatalf("ListCommands of superseded commands lists %v", c)
		}
	}

	list, err := cl.ListClients(ctx, &c2pb.ListClientsRequest{Limit: 1})
	if err != nil || list.Total != 2 || len(list.Clients) != 1 {
		t.Fatalf("ListClients: %v %v", list, err)
	}
	next, err := cl.ListClients(ctx, &c2pb.ListClientsRequest{After: list.Clients[0].Id, Limit: 10})
	if err != nil || len(next.Clients) != 1 || next.Clients[0].Id == list.Clients[0].Id {
		t.Fatalf("second page: %v %v", next, err)
	}
	_, err = cl.ListClients(ctx, &c2pb.ListClientsRequest{Limit: 100001})
	wantCode(t, "oversized page", err, codes.InvalidArgument)

	protected, err := cl.ProtectMessage(ctx, &c2pb.ProtectMessageRequest{Topic: "plant/line-1/temp", Payload: []byte("21.5")})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := cl.UnprotectMessage(ctx, &c2pb.UnprotectMessageRequest{Topic: "plant/line-1/temp", Protected: protected.Protected})
	if err != nil || string(plain.Payload) != "21.5" {
		t.Fatalf("UnprotectMessage: %q %v", plain.GetPayload(), err)
	}
	protected.Protected[len(protected.Protected)-1] ^= 1
	_, err = cl.UnprotectMessage(ctx, &c2pb.UnprotectMessageRequest{Topic: "plant/line-1/temp", Protected: protected.Protected})
	wantCode(t, "tampered message", err, codes.InvalidArgument)

	newKey, err := cl.NewClientKey(ctx, &c2pb.NewClientKeyRequest{Client: "thermostat-1"})
	if err != nil || len(newKey.Key) != e4.KeyLen {
		t.Fatalf("NewClientKey: %v %v", newKey, err)
	}
	if _, err := cl.RemoveMember(ctx, &c2pb.MemberRequest{Client: "thermostat-1", Topic: "plant/line-1/temp"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.ResetClient(ctx, &c2pb.ClientRequest{Client: "thermostat-2"}); err != nil {
		t.Fatal(err)
	}
	of, err := cl.ListTopicsOfClient(ctx, &c2pb.ListTopicsOfClientRequest{Client: "thermostat-2"})
	if err != nil || of.Total != 0 {
		t.Fatalf("topics after reset: %v %v", of, err)
	}
	if _, err := cl.RemoveClient(ctx, &c2pb.ClientRequest{Client: "thermostat-1"}); err != nil {
		t.Fatal(err)
	}
	_, err = cl.GetClient(ctx, &c2pb.GetClientRequest{Client: "thermostat-1"})
	wantCode(t, "GetClient after removal", err, codes.NotFound)
	if _, err := cl.RemoveTopic(ctx, &c2pb.TopicRequest{Topic: "plant/line-1/temp"}); err != nil {
		t.Fatal(err)
	}
	_, err = cl.SendPubKey(ctx, &c2pb.PubKeyRequest{Target: "thermostat-2", Source: "thermostat-2"})
	wantCode(t, "SendPubKey in SK mode", err, codes.FailedPrecondition)
	_, err = cl.GetC2Key(ctx, &c2pb.Empty{})
	wantCode(t, "GetC2Key in SK mode", err, codes.FailedPrecondition)

	info, err := cl.GetInfo(ctx, &c2pb.Empty{})
	if err != nil || info.Mode != e4.SymKey.String() || info.Clients != 1 {
		t.Fatalf("GetInfo: %v %v", info, err)
	}
	health, err := cl.GetHealth(ctx, &c2pb.Empty{})
	if err != nil || !health.Ok {
		t.Fatalf("GetHealth: %v %v", health, err)
	}
}

// TestScopesAndTokens: calls without a valid token are Unauthenticated,
// calls outside the token's scope PermissionDenied; revoked and expired
// tokens stop working.
func TestScopesAndTokens(t *testing.T) {
	c := newTestC2(t, options{})
	cl := c.client()
	reader := c.token("reader", "read")
	operator := c.token("operator", "operate")

	unauthenticated := map[string]func() error{
		"no token": func() error {
			_, err := cl.ListClients(t.Context(), &c2pb.ListClientsRequest{})
			return err
		},
		"unknown token": func() error {
			_, err := cl.ListClients(as("e4c2_nonsense"), &c2pb.ListClientsRequest{})
			return err
		},
		"not a token": func() error {
			_, err := cl.ListClients(as("hunter2"), &c2pb.ListClientsRequest{})
			return err
		},
	}
	for what, call := range unauthenticated {
		wantCode(t, what, call(), codes.Unauthenticated)
	}
	if _, err := cl.ListClients(as(reader), &c2pb.ListClientsRequest{}); err != nil {
		t.Fatalf("read token listing: %v", err)
	}
	_, err := cl.AddTopic(as(reader), &c2pb.AddTopicRequest{Topic: "a"})
	wantCode(t, "read token adding", err, codes.PermissionDenied)
	_, err = cl.CreateToken(as(operator), &c2pb.CreateTokenRequest{Name: "x", Scope: "admin"})
	wantCode(t, "operate token creating a token", err, codes.PermissionDenied)
	_, err = cl.ListAudit(as(operator), &c2pb.ListAuditRequest{})
	wantCode(t, "operate token reading the audit log", err, codes.PermissionDenied)
	_, err = cl.RotateC2Key(as(operator), &c2pb.Empty{})
	wantCode(t, "operate token rotating the C2 key", err, codes.PermissionDenied)

	_, err = cl.CreateToken(as(c.admin), &c2pb.CreateTokenRequest{Name: "reader", Scope: "read"})
	wantCode(t, "duplicate token name", err, codes.AlreadyExists)
	for _, bad := range []*c2pb.CreateTokenRequest{
		{Name: "", Scope: "read"}, {Name: "a b", Scope: "read"}, {Name: "x", Scope: "root"},
		{Name: "x", Scope: "read", TtlSeconds: -1}, {Name: strings.Repeat("x", 65), Scope: "read"},
	} {
		_, err = cl.CreateToken(as(c.admin), bad)
		wantCode(t, "CreateToken "+bad.String(), err, codes.InvalidArgument)
	}
	tokens, err := cl.ListTokens(as(c.admin), &c2pb.Empty{})
	if err != nil || len(tokens.Tokens) != 3 {
		t.Fatalf("ListTokens: %v %v", tokens, err)
	}
	if _, err := cl.RevokeToken(as(c.admin), &c2pb.RevokeTokenRequest{Name: "reader"}); err != nil {
		t.Fatal(err)
	}
	_, err = cl.ListClients(as(reader), &c2pb.ListClientsRequest{})
	wantCode(t, "revoked token", err, codes.Unauthenticated)
	_, err = cl.RevokeToken(as(c.admin), &c2pb.RevokeTokenRequest{Name: "nobody"})
	wantCode(t, "revoking an unknown token", err, codes.NotFound)

	short, err := cl.CreateToken(as(c.admin), &c2pb.CreateTokenRequest{Name: "short", Scope: "read", TtlSeconds: 1})
	if err != nil || short.Token.ExpiresAt == nil {
		t.Fatalf("CreateToken with a TTL: %v %v", short, err)
	}
	if !short.Token.ExpiresAt.AsTime().After(short.Token.CreatedAt.AsTime()) {
		t.Fatalf("token expires at %v, created at %v", short.Token.ExpiresAt.AsTime(), short.Token.CreatedAt.AsTime())
	}
}

// TestHealthAndReflection: the standard health service answers without
// a token (for load balancers); reflection needs one.
func TestHealthAndReflection(t *testing.T) {
	c := newTestC2(t, options{})
	conn := c.conn()
	res, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: c2pb.C2_ServiceDesc.ServiceName})
	if err != nil || res.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", res, err)
	}
	refl := reflectionpb.NewServerReflectionClient(conn)
	listServices := func(token string) ([]string, error) {
		ctx := t.Context()
		if token != "" {
			ctx = as(token)
		}
		stream, err := refl.ServerReflectionInfo(ctx)
		if err != nil {
			return nil, err
		}
		// A stream the server already refused reports io.EOF on Send;
		// its status comes with Recv.
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && err != io.EOF {
			return nil, err
		}
		resp, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		stream.CloseSend()
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.Name)
		}
		return names, nil
	}
	_, err = listServices("")
	wantCode(t, "reflection without a token", err, codes.Unauthenticated)
	names, err := listServices(c.admin)
	if err != nil || !strings.Contains(strings.Join(names, ","), c2pb.C2_ServiceDesc.ServiceName) {
		t.Fatalf("reflection: %v %v", names, err)
	}
}

// TestImportClients streams an import's progress and returns the keys C2
// generated, once.
func TestImportClients(t *testing.T) {
	c := newTestC2(t, options{})
	var csv strings.Builder
	csv.WriteString("name,key\n")
	for i := range 25 {
		csv.WriteString("device-" + string(rune('a'+i)) + ",")
		if i%2 == 0 {
			csv.WriteString(hex.EncodeToString(bytes.Repeat([]byte{byte(i + 1)}, e4.KeyLen)))
		}
		csv.WriteString("\n")
	}
	stream, err := c.client().ImportClients(as(c.token("ops", "operate")), &c2pb.ImportClientsRequest{Format: "csv", Data: []byte(csv.String())})
	if err != nil {
		t.Fatal(err)
	}
	var generated int
	var last *c2pb.ImportClientsProgress
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		generated += len(msg.Generated)
		last = msg
	}
	if last == nil || !last.Done || last.Imported != 25 || generated != 12 {
		t.Fatalf("import: last message %v, %d generated keys (want 25 imported, 12 generated)", last, generated)
	}
	bad, err := c.client().ImportClients(as(c.admin), &c2pb.ImportClientsRequest{Format: "xml", Data: []byte("<x/>")})
	if err == nil {
		_, err = bad.Recv()
	}
	wantCode(t, "import in an unknown format", err, codes.InvalidArgument)
}
