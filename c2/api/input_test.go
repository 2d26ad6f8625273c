package api_test

import (
	"encoding/hex"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

// zeroID is the all-zero client id, reserved by the store (it starts the
// first page of a list).
const zeroID = "00000000000000000000000000000000"

// TestZeroClientIDRefused: adding or importing a client with the
// all-zero id is the caller's mistake, InvalidArgument / 400 over gRPC
// and HTTP, not an Internal error / 500.
func TestZeroClientIDRefused(t *testing.T) {
	c := newTestC2(t, options{})
	cl := c.client()
	_, err := cl.AddClient(as(c.admin), &c2pb.AddClientRequest{Id: zeroID})
	wantCode(t, "AddClient with the zero id", err, codes.InvalidArgument)
	r := c.do("POST", "/v1/clients", c.admin, `{"id":"`+zeroID+`"}`)
	wantStatus(t, "POST /v1/clients with the zero id", r, http.StatusBadRequest)
	if !strings.Contains(string(r.body), "reserved") {
		t.Fatalf("the refusal does not say why: %s", r.body)
	}
	for format, data := range map[string]string{"csv": "id\n" + zeroID + "\n", "json": `[{"id":"` + zeroID + `"}]`} {
		stream, err := cl.ImportClients(as(c.admin), &c2pb.ImportClientsRequest{Format: format, Data: []byte(data)})
		if err == nil {
			for err == nil {
				_, err = stream.Recv()
			}
		}
		wantCode(t, "ImportClients ("+format+") with the zero id", err, codes.InvalidArgument)
		body := `{"format":"` + format + `","data":"` + hex.EncodeToString([]byte(data)) + `"}`
		wantStatus(t, "POST /v1/clients/import ("+format+") with the zero id", c.do("POST", "/v1/clients/import", c.admin, body), http.StatusBadRequest)
	}
}

// TestImportErrorClipped: a CSV header of a megabyte is refused with a
// message that quotes a few bytes of it, not the whole column.
func TestImportErrorClipped(t *testing.T) {
	c := newTestC2(t, options{})
	data := hex.EncodeToString([]byte(strings.Repeat("x", 1<<20) + "\n"))
	r := c.do("POST", "/v1/clients/import", c.admin, `{"format":"csv","data":"`+data+`"}`)
	wantStatus(t, "a megabyte CSV column", r, http.StatusBadRequest)
	if len(r.body) > 1024 {
		t.Fatalf("the refusal of a megabyte CSV column is %d bytes: it echoes the input", len(r.body))
	}
}
