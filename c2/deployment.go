package c2

import (
	"context"
	"errors"

	"github.com/e4-iot/e4kit/c2/store"
)

// Initialized reports whether a C2 service was ever opened on st (New
// records the crypto mode and a sealed check value on first start). A
// caller that knows a deployment existed can refuse to start on an empty
// database instead of silently creating a new deployment.
func Initialized(ctx context.Context, st store.Store) (bool, error) {
	var found bool
	err := st.View(ctx, func(tx store.Tx) error {
		_, err := tx.GetSetting(settingSealCheck)
		switch {
		case err == nil:
			found = true
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		return nil
	})
	return found, err
}
