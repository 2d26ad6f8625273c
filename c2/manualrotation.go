package c2

import (
	"github.com/e4-iot/e4kit/c2/store"
)

// Rotations the scheduler did not fire (an operator's RotateTopic,
// RotateC2Key or NewClientKey, a topic rotated because a member left or
// joined) are recorded too, in their own transaction, with no policy and
// their trigger as reason: the scheduler settles them like its own, so
// the rotation list shows every rotation and its outcome.

// The reasons of rotations outside the scheduler.
const (
	reasonManual      = "manual"
	reasonMemberAdded = string(EventMemberAdded)
)

// recordRotationTx records, in tx, a rotation made outside the scheduler
// at the service's clock: one insert. A store without automatic rotation
// records nothing.
func (s *Service) recordRotationTx(tx store.Tx, kind store.TargetKind, target, reason string, version uint64, commands int64) error {
	ptx, ok := tx.(store.PolicyTx)
	if !ok {
		return nil
	}
	now := s.now().UTC()
	_, err := ptx.InsertRotation(store.Rotation{
		Kind: kind, Target: target, Reason: reason, DueAt: now, FiredAt: now,
		Version: version, Commands: commands, State: store.RotationStarted, Owner: s.sched.cfg.Owner,
	})
	return err
}

// recordTopicRotation records the rotation of topic that rotateTopic just
// made, with the commands it queued.
func (s *Service) recordTopicRotation(tx store.Tx, topic, reason string, commands int) error {
	t, err := tx.GetTopic(topic)
	if err != nil {
		return err
	}
	return s.recordRotationTx(tx, store.TargetTopic, topic, reason, t.KeyVersion, int64(commands))
}
