package c2

import "github.com/e4-iot/e4kit/c2/store"

// Conversions between the automation types of the service's API
// (policytypes.go) and the store's.

func (p Policy) toStore() store.Policy {
	return store.Policy{
		Name: p.Name, Kind: store.TargetKind(p.Kind), Selector: store.Selector(p.Selector), Pattern: p.Pattern,
		Period: p.Period, MaxAge: p.MaxAge, Jitter: p.Jitter,
		OnEvent: p.OnEvent, Threshold: p.Threshold, Window: p.Window,
		MaxMessages: p.MaxMessages, Ramp: p.Ramp, PauseBehind: p.PauseBehind, PausedReason: p.PausedReason,
		CreatedBy: p.CreatedBy, CreatedAt: p.CreatedAt, StartedAt: p.StartedAt,
	}
}

func policyFromStore(p store.Policy) Policy {
	return Policy{
		Name: p.Name, Kind: TargetKind(p.Kind), Selector: Selector(p.Selector), Pattern: p.Pattern,
		Period: p.Period, MaxAge: p.MaxAge, Jitter: p.Jitter,
		OnEvent: p.OnEvent, Threshold: p.Threshold, Window: p.Window,
		MaxMessages: p.MaxMessages, Ramp: p.Ramp, PauseBehind: p.PauseBehind, PausedReason: p.PausedReason,
		CreatedBy: p.CreatedBy, CreatedAt: p.CreatedAt, StartedAt: p.StartedAt,
	}
}

func (f RotationFilter) toStore() store.RotationFilter {
	return store.RotationFilter{
		Kind: store.TargetKind(f.Kind), Target: f.Target, Policy: f.Policy, State: store.RotationState(f.State),
		FiredBefore: f.FiredBefore, FiredSince: f.FiredSince,
	}
}

func rotationFromStore(r store.Rotation) Rotation {
	return Rotation{
		ID: r.ID, Kind: TargetKind(r.Kind), Target: r.Target, Policy: r.Policy, Reason: r.Reason,
		DueAt: r.DueAt, FiredAt: r.FiredAt, Version: r.Version, Commands: r.Commands,
		State: RotationState(r.State), Behind: r.Behind, Detail: r.Detail, SettledAt: r.SettledAt, Owner: r.Owner,
	}
}

// convertAll converts a list with one of the functions above.
func convertAll[From, To any](list []From, conv func(From) To) []To {
	if list == nil {
		return nil
	}
	out := make([]To, len(list))
	for i, v := range list {
		out[i] = conv(v)
	}
	return out
}
