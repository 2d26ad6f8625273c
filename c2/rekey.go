package c2

import (
	"context"
	"errors"
	"fmt"

	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// settingRekey records a master-key rekey in progress: the id of the new
// master key while values are being re-sealed, empty once it is done.
const settingRekey = "rekey"

// rekeyPage is how many rows one re-sealing transaction rewrites.
const rekeyPage = 500

// sealedSettings are the settings that hold sealed values (settingSealCheck
// is re-sealed last, on its own).
var sealedSettings = []string{settingC2Key, settingC2Signer}

// RekeyProgress reports a rekey: how many values it re-sealed so far, and
// how many it found already under the new key (from an interrupted run).
type RekeyProgress struct {
	Resealed, AlreadyNew int
}

// Rekey re-seals every sealed value of st (client keys, topic keys, the
// C2 key pair, the payloads of outbox commands in any state) under
// newKey, then the check value C2 opens at start: from then on the
// database opens with newKey only, and a C2 started with oldKey is refused.
//
// Rekey runs offline: every C2 on st must be stopped, or values it seals
// under the old key meanwhile would be lost. New refuses to start while a
// rekey is in progress. Values are re-sealed in transactions of rekeyPage
// rows and each value carries the id of its key, so a rekey interrupted at
// any point (a crash, SIGKILL) is resumed by running Rekey again with the
// same two keys; a run with another new key is refused until it is done.
// progress, if not nil, is called after each transaction.
func Rekey(ctx context.Context, st store.Store, oldKey, newKey []byte, progress func(RekeyProgress)) (RekeyProgress, error) {
	r := &rekeyer{st: st, newID: seal.IDOf(newKey), progress: progress}
	if r.newID == seal.IDOf(oldKey) {
		return RekeyProgress{}, fmt.Errorf("%w: the new master key is the old one", ErrInvalidArgument)
	}
	var err error
	if r.keys, err = seal.NewKeyring(newKey, oldKey); err != nil {
		return RekeyProgress{}, err
	}
	done, err := r.begin(ctx)
	if err != nil || done {
		return r.count, err
	}
	for _, pass := range []func(context.Context) error{r.clients, r.keyChanges, r.topics, r.commands, r.finish} {
		if err := pass(ctx); err != nil {
			return r.count, err
		}
	}
	return r.count, nil
}

type rekeyer struct {
	st       store.Store
	keys     *seal.Keyring // seals under the new key, opens under both
	newID    seal.KeyID
	count    RekeyProgress
	progress func(RekeyProgress)
}

// begin records the rekey in the database, or finds the one an earlier run
// started. It reports done when the database is already under the new key.
func (r *rekeyer) begin(ctx context.Context) (done bool, err error) {
	err = r.st.Update(ctx, func(tx store.Tx) error {
		marker, err := tx.GetSetting(settingRekey)
		if err != nil && !isNotFound(err) {
			return err
		}
		check, err := tx.GetSetting(settingSealCheck)
		if isNotFound(err) {
			return fmt.Errorf("%w: the database holds no C2 deployment (it was never started)", ErrInvalidArgument)
		} else if err != nil {
			return err
		}
		if len(marker) > 0 && string(marker) != r.newID.String() {
			return fmt.Errorf("c2: a rekey to the master key %s is in progress; run it again with that key to finish it", marker)
		}
		// The check value is re-sealed last: until then it proves the old
		// key is the right one, on a resumed run too.
		if _, err := r.keys.Open(check, "setting/"+settingSealCheck); err != nil {
			return fmt.Errorf("c2: the old master key does not open this database: %w", err)
		}
		if len(marker) > 0 {
			return nil
		}
		if id, _ := seal.KeyIDOf(check); id == r.newID {
			done = true
			return nil
		}
		return tx.PutSetting(settingRekey, []byte(r.newID.String()))
	})
	return done, err
}

// reseal returns value sealed under the new key, or nil when it already is.
func (r *rekeyer) reseal(sealed []byte, binding string) ([]byte, error) {
	if id, err := seal.KeyIDOf(sealed); err == nil && id == r.newID {
		// Opened anyway: a value must not be counted as re-sealed unless it
		// really opens under the new key.
		if _, err := r.keys.Open(sealed, binding); err != nil {
			return nil, fmt.Errorf("%s: %w", binding, err)
		}
		r.count.AlreadyNew++
		return nil, nil
	}
	plain, err := r.keys.Open(sealed, binding)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", binding, err)
	}
	defer clear(plain)
	r.count.Resealed++
	return r.keys.Seal(plain, binding)
}

// page runs one re-sealing transaction and reports progress once it
// committed (the counts of a rolled-back attempt are dropped).
func (r *rekeyer) page(ctx context.Context, fn func(tx store.Tx) error) error {
	before := r.count
	err := r.st.Update(ctx, func(tx store.Tx) error {
		r.count = before
		return fn(tx)
	})
	if err != nil {
		r.count = before
		return err
	}
	if r.progress != nil {
		r.progress(r.count)
	}
	return nil
}

func (r *rekeyer) clients(ctx context.Context) error {
	var after e4.ID
	for more := true; more; {
		err := r.page(ctx, func(tx store.Tx) error {
			page, err := tx.ListClients(after, rekeyPage)
			if err != nil {
				return err
			}
			more = len(page) == rekeyPage
			for _, c := range page {
				after = c.ID
				if len(c.SealedKey) == 0 {
					continue // PK mode: the public key is not sealed
				}
				sealed, err := r.reseal(c.SealedKey, clientKeyBinding(c.ID))
				if err != nil || sealed == nil {
					if err != nil {
						return err
					}
					continue
				}
				if err := tx.UpdateClientKey(c.ID, sealed, c.PublicKey); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("re-sealing client keys: %w", err)
		}
	}
	return nil
}

// keyChanges re-seals the previous client keys C2 keeps while a device has
// not confirmed a client-key change (see keychange.go).
func (r *rekeyer) keyChanges(ctx context.Context) error {
	var after e4.ID
	for more := true; more; {
		err := r.page(ctx, func(tx store.Tx) error {
			page, err := tx.ListKeyChanges(after, rekeyPage)
			if err != nil {
				return err
			}
			more = len(page) == rekeyPage
			for _, ds := range page {
				after = ds.ClientID
				sealed, err := r.reseal(ds.PrevSealedKey, clientKeyBinding(ds.ClientID))
				if err != nil {
					return err
				}
				if sealed == nil {
					continue
				}
				ds.PrevSealedKey = sealed
				if err := tx.PutDeviceState(ds); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("re-sealing previous client keys: %w", err)
		}
	}
	return nil
}

func (r *rekeyer) topics(ctx context.Context) error {
	after := ""
	for more := true; more; {
		err := r.page(ctx, func(tx store.Tx) error {
			page, err := tx.ListTopics(after, rekeyPage)
			if err != nil {
				return err
			}
			more = len(page) == rekeyPage
			for _, t := range page {
				after = t.Name
				if err := r.resealTopic(tx, t); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("re-sealing topic keys: %w", err)
		}
	}
	return nil
}

// resealTopic re-seals a topic's key and the previous key it keeps, if
// any (bound to its own version), and writes the ones it re-sealed.
func (r *rekeyer) resealTopic(tx store.Tx, t store.Topic) error {
	current, err := r.reseal(t.SealedKey, topicKeyBinding(t.Name, t.KeyVersion))
	if err != nil {
		return err
	}
	var prev []byte
	if t.PrevSealedKey != nil {
		if prev, err = r.reseal(t.PrevSealedKey, topicKeyBinding(t.Name, t.KeyVersion-1)); err != nil {
			return err
		}
	}
	if current == nil && prev == nil {
		return nil
	}
	if current == nil {
		current = t.SealedKey
	}
	if prev == nil {
		prev = t.PrevSealedKey
	}
	return tx.UpdateTopicKey(t.Name, current, prev, t.KeyVersion, t.RotatedAt)
}

func (r *rekeyer) commands(ctx context.Context) error {
	var after int64
	for more := true; more; {
		err := r.page(ctx, func(tx store.Tx) error {
			page, err := tx.ListCommands(store.CommandFilter{}, after, rekeyPage)
			if err != nil {
				return err
			}
			more = len(page) == rekeyPage
			for _, c := range page {
				after = c.Seq
				sealed, err := r.reseal(c.SealedPayload, commandBinding(c.ID, c.ClientID))
				if err != nil {
					return err
				}
				if sealed == nil {
					continue
				}
				if err := tx.UpdateCommandPayload(c.ID, sealed); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("re-sealing outbox commands: %w", err)
		}
	}
	return nil
}

// finish re-seals the sealed settings and, last, the check value, and
// clears the marker, in one transaction: until it commits the old key still
// opens the check value (and New refuses because of the marker); after it,
// only the new key does.
func (r *rekeyer) finish(ctx context.Context) error {
	return r.page(ctx, func(tx store.Tx) error {
		for _, name := range append(sealedSettings, settingSealCheck) {
			value, err := tx.GetSetting(name)
			if isNotFound(err) {
				continue // SK mode has no C2 key pair
			} else if err != nil {
				return err
			}
			sealed, err := r.reseal(value, "setting/"+name)
			if err != nil {
				return err
			}
			if sealed != nil {
				if err := tx.PutSetting(name, sealed); err != nil {
					return err
				}
			}
		}
		return tx.PutSetting(settingRekey, []byte{})
	})
}

// checkNoRekey refuses to open a database whose rekey was interrupted:
// some values are under the old key and some under the new one.
func checkNoRekey(tx store.Tx) error {
	marker, err := tx.GetSetting(settingRekey)
	if errors.Is(err, store.ErrNotFound) || (err == nil && len(marker) == 0) {
		return nil
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("c2: a master-key rekey to key %s was interrupted: run e4 c2 rekey again with the same old and new keys to finish it before starting C2", marker)
}
