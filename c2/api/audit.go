package api

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/internal/txhook"
	"github.com/e4-iot/e4kit/c2/store"
)

// auditor writes audit records to the store and to the log.
type auditor struct {
	st  store.Store
	log *slog.Logger
	now func() time.Time
}

// auditCall is the audit state of one call.
type auditCall struct {
	a      *auditor
	rec    store.AuditRecord
	mu     sync.Mutex
	inTxOK int // records written by the hook (committed or not)
}

type auditCallKey struct{}

// begin prepares the record of a call and returns a context whose
// service transactions write it (txhook.With).
func (a *auditor) begin(ctx context.Context, id identity, method, target, remote string) (context.Context, *auditCall) {
	call := &auditCall{a: a, rec: store.AuditRecord{
		Actor: id.actor, Action: shortMethod(method), Target: target, Remote: remote,
	}}
	ctx = context.WithValue(ctx, auditCallKey{}, call)
	return txhook.With(ctx, call.inTx), call
}

// auditInTx writes the record of the call ctx carries in tx. Handlers that
// run their own transactions (tokens) call it; the service calls it
// through the hook.
func auditInTx(ctx context.Context, tx store.Tx) error {
	call, _ := ctx.Value(auditCallKey{}).(*auditCall)
	if call == nil {
		return status.Error(codes.Internal, "api: a change without audit state")
	}
	return call.inTx(ctx, tx)
}

// inTx is the transaction hook (txhook.Func): it writes the success record in the transaction
// of the change. If it cannot, the change is rolled back (fail-closed).
func (c *auditCall) inTx(_ context.Context, tx store.Tx) error {
	rec := c.record("ok", "")
	if err := insertAudit(tx, rec); err != nil {
		// %w twice: the store must still see its own error (a serialization
		// failure is retried), the API the service sentinel.
		return fmt.Errorf("%w: the audit record cannot be written, so the change was not made: %w", c2.ErrUnavailable, err)
	}
	c.mu.Lock()
	c.inTxOK++
	c.mu.Unlock()
	return nil
}

func (c *auditCall) record(outcome, detail string) store.AuditRecord {
	rec := c.rec
	rec.Time = c.a.now().UTC()
	rec.Outcome, rec.Detail = outcome, detail
	return rec
}

func insertAudit(tx store.Tx, rec store.AuditRecord) error {
	a, ok := tx.(store.AccessTx)
	if !ok {
		return fmt.Errorf("the store (%T) keeps no audit log", tx)
	}
	_, err := a.InsertAudit(rec)
	return err
}

// finish settles the record once the handler returned err (a status
// error). A success that wrote no record in a transaction (a call that
// changes nothing in the database, such as ProtectMessage) is recorded
// now, and fails if that is impossible; a failure is recorded in its own
// transaction. It returns the error the caller gets.
func (c *auditCall) finish(ctx context.Context, err error) error {
	c.mu.Lock()
	written := c.inTxOK
	c.mu.Unlock()
	if err == nil && written > 0 {
		c.a.logLine(c.record("ok", ""))
		return nil
	}
	outcome, detail := "ok", ""
	if err != nil {
		st := status.Convert(err)
		outcome, detail = st.Code().String(), st.Message()
	}
	rec := c.record(outcome, detail)
	werr := c.a.st.Update(context.WithoutCancel(ctx), func(tx store.Tx) error { return insertAudit(tx, rec) })
	if werr != nil {
		c.a.log.Error("audit record not written", "action", rec.Action, "actor", rec.Actor, "err", werr)
		if err == nil {
			return status.Error(codes.Unavailable, "the audit record cannot be written, so the call is refused")
		}
		return err
	}
	c.a.logLine(rec)
	return err
}

// logLine writes a record as one structured log line.
func (a *auditor) logLine(rec store.AuditRecord) {
	a.log.LogAttrs(context.Background(), slog.LevelInfo, "audit",
		slog.String("actor", rec.Actor), slog.String("action", rec.Action), slog.String("target", rec.Target),
		slog.String("outcome", rec.Outcome), slog.String("detail", rec.Detail), slog.String("remote", rec.Remote),
		slog.Time("at", rec.Time))
}

// shortMethod turns "/e4kit.c2.v1.C2/AddClient" into "AddClient".
func shortMethod(full string) string {
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[i+1:]
	}
	return full
}

// targetFields are the request fields that say what a call is about.
// Only these are audited: never keys, passwords, payloads or file data.
var targetFields = []protoreflect.Name{"client", "source", "target", "topic", "name", "id", "clients", "format"}

// auditTarget describes what a request is about, as "field=value" pairs.
func auditTarget(req any) string {
	m, ok := req.(proto.Message)
	if !ok {
		return ""
	}
	r := m.ProtoReflect()
	fields := r.Descriptor().Fields()
	var parts []string
	for _, name := range targetFields {
		fd := fields.ByName(name)
		if fd == nil || fd.Kind() != protoreflect.StringKind || !r.Has(fd) {
			continue
		}
		if fd.IsList() {
			parts = append(parts, fmt.Sprintf("%s=%d", name, r.Get(fd).List().Len()))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=%s", name, clip(r.Get(fd).String(), 300)))
	}
	return strings.Join(parts, " ")
}

// clip shortens s to at most n bytes.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
