// Package txhook lets the C2 API layer run code inside the read-write
// transactions of the c2 service: the API writes the audit record of a
// change in the transaction that makes the change, so neither exists
// without the other. It is internal so that the service's exported API
// shows no store transaction: only c2 and its sub-packages can install a
// hook.
package txhook

import (
	"context"

	"github.com/e4-iot/e4kit/c2/store"
)

// Func runs inside a read-write transaction of a c2.Service method, after
// the method's own writes and before the commit. Returning an error rolls
// the whole transaction back and makes the method fail with that error.
type Func func(ctx context.Context, tx store.Tx) error

type key struct{}

// With returns a context whose c2.Service calls run hook in each
// read-write transaction they commit (once per transaction: an import
// commits one per chunk). A method that fails before its transaction, or
// makes none, never calls it.
func With(ctx context.Context, hook Func) context.Context {
	return context.WithValue(ctx, key{}, hook)
}

// Run runs the hook ctx carries, if any; the service calls it last in
// each of its read-write transactions.
func Run(ctx context.Context, tx store.Tx) error {
	hook, _ := ctx.Value(key{}).(Func)
	if hook == nil {
		return nil
	}
	return hook(ctx, tx)
}
