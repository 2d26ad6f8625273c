package api

import (
	"context"
	"math"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

// Automation policies: the rotation policies, the preview of what rotates
// next and the record of what rotated.

// maxPolicySeconds bounds the durations of a policy (100 years), so that
// they fit a time.Duration.
const maxPolicySeconds = 100 * 365 * 24 * 3600

func seconds(field string, v int64) (time.Duration, error) {
	if v < 0 || v > maxPolicySeconds {
		return 0, invalid("%s: %d is outside 0..%d", field, v, int64(maxPolicySeconds))
	}
	return time.Duration(v) * time.Second, nil
}

// policyFromPB converts a policy request; the service checks the rest.
func policyFromPB(req *c2pb.RotationPolicy) (c2.Policy, error) {
	p := c2.Policy{
		Name: req.Name, Kind: c2.TargetKind(req.Kind), Selector: c2.Selector(req.Selector), Pattern: req.Pattern,
		OnEvent: req.OnEvent, Threshold: req.Threshold, Ramp: req.Ramp, PauseBehind: req.PauseBehind,
		MaxMessages: req.MaxMessages,
	}
	if err := checkName(req.Name); err != nil {
		return p, invalid("name: %v", err)
	}
	for field, s := range map[string]string{"kind": req.Kind, "selector": req.Selector, "pattern": req.Pattern, "on_event": req.OnEvent} {
		if err := checkText(field, s); err != nil {
			return p, err
		}
	}
	var err error
	for _, d := range []struct {
		field string
		v     int64
		into  *time.Duration
	}{
		{"period_seconds", req.PeriodSeconds, &p.Period}, {"max_age_seconds", req.MaxAgeSeconds, &p.MaxAge},
		{"jitter_seconds", req.JitterSeconds, &p.Jitter}, {"window_seconds", req.WindowSeconds, &p.Window},
	} {
		if *d.into, err = seconds(d.field, d.v); err != nil {
			return p, err
		}
	}
	if p.Threshold < 0 || p.Ramp < 0 || p.PauseBehind < 0 || p.MaxMessages < 0 {
		return p, invalid("threshold, ramp, pause_behind and max_messages cannot be negative")
	}
	return p, nil
}

func policyPB(p c2.Policy) *c2pb.RotationPolicy {
	return &c2pb.RotationPolicy{
		Name: p.Name, Kind: string(p.Kind), Selector: string(p.Selector), Pattern: p.Pattern,
		PeriodSeconds: int64(p.Period / time.Second), MaxAgeSeconds: int64(p.MaxAge / time.Second),
		JitterSeconds: int64(p.Jitter / time.Second), OnEvent: p.OnEvent, Threshold: p.Threshold,
		WindowSeconds: int64(p.Window / time.Second), Ramp: p.Ramp, PauseBehind: p.PauseBehind,
		PausedReason: p.PausedReason, CreatedBy: p.CreatedBy,
		CreatedAt: timestamp(p.CreatedAt), StartedAt: timestamp(p.StartedAt), MaxMessages: p.MaxMessages,
	}
}

func (h *handlers) AddPolicy(ctx context.Context, req *c2pb.RotationPolicy) (*c2pb.RotationPolicy, error) {
	p, err := policyFromPB(req)
	if err != nil {
		return nil, err
	}
	p.CreatedBy = callerOf(ctx).actor
	p, err = h.svc.AddPolicy(ctx, p)
	if err != nil {
		return nil, err
	}
	return policyPB(p), nil
}

func policyName(name string) error {
	if err := checkName(name); err != nil {
		return invalid("name: %v", err)
	}
	return nil
}

func (h *handlers) GetPolicy(ctx context.Context, req *c2pb.PolicyRequest) (*c2pb.RotationPolicy, error) {
	if err := policyName(req.Name); err != nil {
		return nil, err
	}
	p, err := h.svc.GetPolicy(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	return policyPB(p), nil
}

func (h *handlers) ListPolicies(ctx context.Context, req *c2pb.ListPoliciesRequest) (*c2pb.ListPoliciesResponse, error) {
	if err := checkText("after", req.After); err != nil {
		return nil, err
	}
	list, err := h.svc.ListPolicies(ctx, req.After, limit(req.Limit))
	if err != nil {
		return nil, err
	}
	out := &c2pb.ListPoliciesResponse{Policies: make([]*c2pb.RotationPolicy, len(list))}
	for i, p := range list {
		out.Policies[i] = policyPB(p)
	}
	return out, nil
}

func (h *handlers) RemovePolicy(ctx context.Context, req *c2pb.PolicyRequest) (*c2pb.Empty, error) {
	if err := policyName(req.Name); err != nil {
		return nil, err
	}
	return &c2pb.Empty{}, h.svc.RemovePolicy(ctx, req.Name)
}

func (h *handlers) PausePolicy(ctx context.Context, req *c2pb.PausePolicyRequest) (*c2pb.RotationPolicy, error) {
	if err := policyName(req.Name); err != nil {
		return nil, err
	}
	if err := checkText("reason", req.Reason); err != nil {
		return nil, err
	}
	reason := req.Reason
	if reason == "" {
		reason = "paused by " + callerOf(ctx).actor
	}
	if err := h.svc.PausePolicy(ctx, req.Name, reason); err != nil {
		return nil, err
	}
	return h.GetPolicy(ctx, &c2pb.PolicyRequest{Name: req.Name})
}

func (h *handlers) ResumePolicy(ctx context.Context, req *c2pb.PolicyRequest) (*c2pb.RotationPolicy, error) {
	if err := policyName(req.Name); err != nil {
		return nil, err
	}
	if err := h.svc.ResumePolicy(ctx, req.Name); err != nil {
		return nil, err
	}
	return h.GetPolicy(ctx, req)
}

func plannedPB(p c2.PlannedRotation) *c2pb.PlannedRotation {
	return &c2pb.PlannedRotation{Kind: string(p.Kind), Target: p.Target, DueAt: timestamp(p.DueAt), Policy: p.Policy, Reason: p.Reason,
		Messages: p.Messages, MaxMessages: p.MaxMessages}
}

func (h *handlers) PreviewRotations(ctx context.Context, req *c2pb.PreviewRotationsRequest) (*c2pb.PreviewRotationsResponse, error) {
	if req.Kind != "" || req.Target != "" {
		if err := checkText("target", req.Target); err != nil {
			return nil, err
		}
		switch c2.TargetKind(req.Kind) {
		case c2.TargetTopic, c2.TargetClient, c2.TargetC2:
		default:
			return nil, invalid("kind %q: want topic, client or c2", req.Kind)
		}
		plan, ok, err := h.svc.NextRotation(ctx, c2.TargetKind(req.Kind), req.Target)
		if err != nil {
			return nil, err
		}
		out := &c2pb.PreviewRotationsResponse{}
		if ok {
			out.Rotations = append(out.Rotations, plannedPB(plan))
		} else if plan.MaxMessages > 0 {
			// A message budget not spent yet: no due time, the count so far.
			out.Rotations = append(out.Rotations, plannedPB(plan))
		}
		return out, nil
	}
	within := int64(24 * 3600)
	if req.WithinSeconds != 0 {
		within = req.WithinSeconds
	}
	d, err := seconds("within_seconds", within)
	if err != nil {
		return nil, err
	}
	list, err := h.svc.PreviewRotations(ctx, h.svc.Now().Add(d), limit(req.Limit))
	if err != nil {
		return nil, err
	}
	out := &c2pb.PreviewRotationsResponse{Rotations: make([]*c2pb.PlannedRotation, len(list))}
	for i, p := range list {
		out.Rotations[i] = plannedPB(p)
	}
	return out, nil
}

func (h *handlers) ListRotations(ctx context.Context, req *c2pb.ListRotationsRequest) (*c2pb.ListRotationsResponse, error) {
	for field, s := range map[string]string{"kind": req.Kind, "target": req.Target, "policy": req.Policy, "state": req.State} {
		if err := checkText(field, s); err != nil {
			return nil, err
		}
	}
	if req.After < 0 || req.After == math.MaxInt64 {
		return nil, invalid("after %d is out of range", req.After)
	}
	f := c2.RotationFilter{Kind: c2.TargetKind(req.Kind), Target: req.Target, Policy: req.Policy, State: c2.RotationState(req.State)}
	list, err := h.svc.ListRotations(ctx, f, req.After, limit(req.Limit))
	if err != nil {
		return nil, err
	}
	out := &c2pb.ListRotationsResponse{Rotations: make([]*c2pb.Rotation, len(list))}
	for i, r := range list {
		out.Rotations[i] = &c2pb.Rotation{
			Id: r.ID, Kind: string(r.Kind), Target: r.Target, Policy: r.Policy, Reason: r.Reason,
			DueAt: timestamp(r.DueAt), FiredAt: timestamp(r.FiredAt), Version: r.Version, Commands: r.Commands,
			State: string(r.State), Behind: r.Behind, Detail: r.Detail, SettledAt: timestamp(r.SettledAt), Owner: r.Owner,
		}
	}
	return out, nil
}
