package c2

import (
	"context"

	"github.com/e4-iot/e4kit/c2/store"
)

// TxHook runs inside a read-write transaction of a Service method, after
// the method's own writes and before the commit. Returning an error rolls
// the whole transaction back and makes the method fail with that error.
// The API layer uses it to write the audit record of a change in the
// transaction that makes the change, so neither exists without the other.
type TxHook func(ctx context.Context, tx store.Tx) error

type txHookKey struct{}

// WithTxHook returns a context whose Service calls run hook in each
// read-write transaction they commit (once per transaction: an import
// commits one per chunk). A method that fails before its transaction, or
// makes none, never calls it.
func WithTxHook(ctx context.Context, hook TxHook) context.Context {
	return context.WithValue(ctx, txHookKey{}, hook)
}

// runTxHook runs the hook ctx carries, if any.
func runTxHook(ctx context.Context, tx store.Tx) error {
	hook, _ := ctx.Value(txHookKey{}).(TxHook)
	if hook == nil {
		return nil
	}
	return hook(ctx, tx)
}
