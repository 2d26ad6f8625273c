package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/internal/span"
)

// automationSettings is c2.automation of the configuration of "e4 c2
// serve" (c2.AutomationConfig; zero takes the default).
type automationSettings struct {
	Disabled       bool          `yaml:"disabled"`
	Budget         float64       `yaml:"budget"`
	CoalesceLeaves time.Duration `yaml:"coalesce_leaves"`
	StuckAfter     time.Duration `yaml:"stuck_after"`
	Tick           time.Duration `yaml:"tick"`
	Lease          time.Duration `yaml:"lease"`
	IdleAfter      time.Duration `yaml:"idle_after"`
}

func (a automationSettings) config() c2.AutomationConfig {
	return c2.AutomationConfig{Disabled: a.Disabled, Budget: a.Budget, CoalesceLeaves: a.CoalesceLeaves,
		StuckAfter: a.StuckAfter, Tick: a.Tick, Lease: a.Lease, IdleAfter: a.IdleAfter}
}

// policyExamples are the examples of "e4 c2 policy"; the CLI test runs
// each of them, in order, against a running C2.
const policyExamples = `  e4 c2 policy add firmware-weekly --exact fleet/firmware --every 1w --jitter 1h
  e4 c2 policy add analytics-weekly --filter 'analytics/#' --every 1w --jitter 1h --ramp 100 --pause-behind 500
  e4 c2 policy add keys-age --kind client --all --max-age 90d
  e4 c2 policy add forged --filter 'fleet/#' --on-event anomaly:auth_failed --threshold 3 --window 1m
  e4 c2 policy add idle-member --all --on-event device_idle
  e4 c2 policy add gcm-budget --filter 'meters/#' --max-messages 1000000000
  e4 c2 policy list
  e4 c2 policy show firmware-weekly
  e4 c2 policy preview --within 1w
  e4 c2 policy preview --topic fleet/firmware
  e4 c2 policy pause analytics-weekly --reason "firmware freeze"
  e4 c2 policy resume analytics-weekly
  e4 c2 policy rotations --policy firmware-weekly
  e4 c2 policy remove forged`

func newC2PolicyCommand(f *c2Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Rotate keys automatically: rotation policies, their preview and outcomes",
		Long: `policy manages the rotation policies C2 follows by itself (see the README's
"Automatic rotation"). A policy selects targets (topics by --exact name,
--prefix, MQTT --filter or --all; client keys with --kind client; C2's key
pair with --kind c2) and has one trigger: --every (a crypto period: one
rotation per period, at a phase proper to each target), --max-age (a key
older than that), --on-event (that many events about a topic within
--window), or --max-messages (a message budget: the monitor of "e4 c2 serve
--monitor" counted that many valid messages under the topic's current key).
Durations take Go units (90m, 36h) or days and weeks (7d, 1w).
Changing policies needs an admin token; reading them, read.`,
		Example: policyExamples,
		Args:    cobra.NoArgs,
	}
	cmd.AddCommand(newC2PolicyAddCommand(f), newC2PolicyListCommand(f), newC2PolicyShowCommand(f),
		newC2PolicyRemoveCommand(f), newC2PolicyPauseCommand(f), newC2PolicyResumeCommand(f),
		newC2PolicyPreviewCommand(f), newC2PolicyRotationsCommand(f))
	return cmd
}

// parseSpan parses a policy duration (see package span).
func parseSpan(s string) (time.Duration, error) {
	d, err := span.Parse(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want such as 90m, 36h, 7d or 1w", s)
	}
	return d, nil
}

// spanFlag is a duration flag that takes days and weeks.
type spanFlag struct{ d time.Duration }

func (s *spanFlag) String() string {
	if s.d == 0 {
		return ""
	}
	return s.d.String()
}

func (s *spanFlag) Set(v string) (err error) {
	s.d, err = parseSpan(v)
	return err
}

func (s *spanFlag) Type() string { return "duration" }

func wholeSeconds(d time.Duration) int64 { return int64(d / time.Second) }

func newC2PolicyAddCommand(f *c2Flags) *cobra.Command {
	var (
		kind                          string
		exact, prefix, filter         string
		all                           bool
		every, maxAge, jitter, window spanFlag
		onEvent                       string
		threshold, ramp, pauseBehind  int64
		maxMessages                   int64
	)
	cmd := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a rotation policy (admin)",
		Example: `  e4 c2 policy add firmware-weekly --exact fleet/firmware --every 1w --jitter 1h
  e4 c2 policy add keys-age --kind client --all --max-age 90d
  e4 c2 policy add meters-budget --prefix meters/ --max-messages 1000000000`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			selector, pattern, err := policySelector(exact, prefix, filter, all)
			if err != nil {
				return err
			}
			if threshold == 0 && onEvent != "" {
				threshold = 1
			}
			p := &c2pb.RotationPolicy{
				Name: args[0], Kind: kind, Selector: selector, Pattern: pattern,
				PeriodSeconds: wholeSeconds(every.d), MaxAgeSeconds: wholeSeconds(maxAge.d), JitterSeconds: wholeSeconds(jitter.d),
				OnEvent: onEvent, Threshold: threshold, WindowSeconds: wholeSeconds(window.d), Ramp: ramp, PauseBehind: pauseBehind,
				MaxMessages: maxMessages,
			}
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				got, err := s.client.AddPolicy(ctx, p)
				if err != nil {
					return err
				}
				return s.printRecord(got, policyHeader, policyRow(got))
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&kind, "kind", "topic", "what the policy rotates: topic, client (SK mode) or c2 (PK mode)")
	fl.StringVar(&exact, "exact", "", "select the topic (or client name or id) with this exact name")
	fl.StringVar(&prefix, "prefix", "", "select the topics (or client names) starting with this")
	fl.StringVar(&filter, "filter", "", "select the topics matching this MQTT filter (+, #)")
	fl.BoolVar(&all, "all", false, "select every target of the kind")
	fl.Var(&every, "every", "crypto period: rotate each target once per period (such as 1w)")
	fl.Var(&maxAge, "max-age", "rotate a key older than this (such as 90d)")
	fl.Var(&jitter, "jitter", "bound of the deterministic delay added to each due time (at most half the period)")
	fl.StringVar(&onEvent, "on-event", "", "rotate a topic on events: a kind, optionally :detail (such as anomaly:auth_failed, which the monitor reports for forged messages)")
	fl.Int64Var(&threshold, "threshold", 0, "events within --window that trigger a rotation (default 1)")
	fl.Var(&window, "window", "the window of --threshold (such as 1m)")
	fl.Int64Var(&maxMessages, "max-messages", 0, "message budget: rotate a topic once the monitor (serve --monitor) counted this many valid messages under its key")
	fl.Int64Var(&ramp, "ramp", 0, "rotations in the policy's first minute, doubling each minute (0: no ramp)")
	fl.Int64Var(&pauseBehind, "pause-behind", 0, "pause the policy when its stuck rotations leave this many devices behind (0: never)")
	return cmd
}

// policySelector turns the selector flags into a selector and pattern.
func policySelector(exact, prefix, filter string, all bool) (string, string, error) {
	var chosen []string
	selector, pattern := "", ""
	for _, c := range []struct {
		name, value string
	}{{"exact", exact}, {"prefix", prefix}, {"filter", filter}} {
		if c.value != "" {
			chosen = append(chosen, "--"+c.name)
			selector, pattern = c.name, c.value
		}
	}
	if all {
		chosen = append(chosen, "--all")
		selector, pattern = "all", ""
	}
	if len(chosen) != 1 {
		return "", "", fmt.Errorf("give one of --exact, --prefix, --filter or --all (got %d)", len(chosen))
	}
	return selector, pattern, nil
}

var policyHeader = []string{"POLICY", "KIND", "SELECTS", "TRIGGER", "STATE"}

func policyRow(p *c2pb.RotationPolicy) []string {
	selects := p.Selector
	if p.Pattern != "" {
		selects += " " + p.Pattern
	}
	var trigger string
	switch {
	case p.PeriodSeconds > 0:
		trigger = "every " + spanOf(p.PeriodSeconds)
	case p.MaxAgeSeconds > 0:
		trigger = "max age " + spanOf(p.MaxAgeSeconds)
	case p.MaxMessages > 0:
		trigger = fmt.Sprintf("after %d messages", p.MaxMessages)
	default:
		trigger = fmt.Sprintf("%d× %s", p.Threshold, p.OnEvent)
		if p.WindowSeconds > 0 {
			trigger += " in " + spanOf(p.WindowSeconds)
		}
	}
	if p.JitterSeconds > 0 {
		trigger += " ±" + spanOf(p.JitterSeconds)
	}
	state := "running"
	if p.PausedReason != "" {
		state = "paused: " + p.PausedReason
	}
	return []string{p.Name, p.Kind, selects, trigger, state}
}

// spanOf renders seconds in the largest whole unit.
func spanOf(sec int64) string { return span.Format(time.Duration(sec) * time.Second) }

func newC2PolicyListCommand(f *c2Flags) *cobra.Command {
	var after string
	var limit int32
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List rotation policies by name",
		Example: `  e4 c2 policy list`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				res, err := s.client.ListPolicies(ctx, &c2pb.ListPoliciesRequest{After: after, Limit: limit})
				if err != nil {
					return err
				}
				if s.f.json {
					return s.printJSON(res)
				}
				rows := make([][]string, len(res.Policies))
				for i, p := range res.Policies {
					rows[i] = policyRow(p)
				}
				return s.table(policyHeader, rows)
			})
		},
	}
	cmd.Flags().StringVar(&after, "after", "", "list after this policy name (the next page)")
	cmd.Flags().Int32Var(&limit, "limit", 100, "page size, 1 to 10000")
	return cmd
}

func newC2PolicyShowCommand(f *c2Flags) *cobra.Command {
	return &cobra.Command{
		Use:     "show NAME",
		Short:   "Show a rotation policy",
		Example: `  e4 c2 policy show firmware-weekly`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				p, err := s.client.GetPolicy(ctx, &c2pb.PolicyRequest{Name: args[0]})
				if err != nil {
					return err
				}
				created := ""
				if p.CreatedAt != nil {
					created = p.CreatedAt.AsTime().Format(time.RFC3339) + " by " + p.CreatedBy
				}
				return s.printRecord(p, append(policyHeader, "CREATED"), append(policyRow(p), created))
			})
		},
	}
}

func newC2PolicyRemoveCommand(f *c2Flags) *cobra.Command {
	return &cobra.Command{
		Use:     "remove NAME",
		Short:   "Remove a rotation policy (admin)",
		Example: `  e4 c2 policy remove forged`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				if _, err := s.client.RemovePolicy(ctx, &c2pb.PolicyRequest{Name: args[0]}); err != nil {
					return err
				}
				return s.done("policy %s removed", args[0])
			})
		},
	}
}

func newC2PolicyPauseCommand(f *c2Flags) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:     "pause NAME",
		Short:   "Stop a policy's rotations until it is resumed (admin)",
		Example: `  e4 c2 policy pause analytics-weekly --reason "firmware freeze"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				p, err := s.client.PausePolicy(ctx, &c2pb.PausePolicyRequest{Name: args[0], Reason: reason})
				if err != nil {
					return err
				}
				return s.printRecord(p, policyHeader, policyRow(p))
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (shown in policy list)")
	return cmd
}

func newC2PolicyResumeCommand(f *c2Flags) *cobra.Command {
	return &cobra.Command{
		Use:     "resume NAME",
		Short:   "Resume a paused policy; keys overdue rotate once, within the budget (admin)",
		Example: `  e4 c2 policy resume analytics-weekly`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				p, err := s.client.ResumePolicy(ctx, &c2pb.PolicyRequest{Name: args[0]})
				if err != nil {
					return err
				}
				return s.printRecord(p, policyHeader, policyRow(p))
			})
		},
	}
}

func newC2PolicyPreviewCommand(f *c2Flags) *cobra.Command {
	var (
		within spanFlag
		topic  string
		limit  int32
	)
	within.d = 24 * time.Hour
	cmd := &cobra.Command{
		Use:   "preview",
		Short: "Show what rotates next, or when one target is next due",
		Example: `  e4 c2 policy preview --within 1w
  e4 c2 policy preview --topic fleet/firmware`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &c2pb.PreviewRotationsRequest{WithinSeconds: wholeSeconds(within.d), Limit: limit}
			if topic != "" {
				req.Kind, req.Target = "topic", topic
			}
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				res, err := s.client.PreviewRotations(ctx, req)
				if err != nil {
					return err
				}
				if s.f.json {
					return s.printJSON(res)
				}
				rows := make([][]string, len(res.Rotations))
				for i, r := range res.Rotations {
					rows[i] = []string{plannedDue(r), r.Kind, r.Target, r.Policy, plannedReason(r)}
				}
				if err := s.table([]string{"DUE", "KIND", "TARGET", "POLICY", "REASON"}, rows); err != nil {
					return err
				}
				if topic != "" && len(rows) == 0 {
					fmt.Fprintf(s.errOut, "no running policy covers %s\n", topic)
				}
				return nil
			})
		},
	}
	cmd.Flags().Var(&within, "within", "how far ahead to look (such as 24h, 1w)")
	cmd.Flags().StringVar(&topic, "topic", "", "show when this topic is next due")
	cmd.Flags().Int32Var(&limit, "limit", 100, "at most this many rotations, 1 to 10000")
	return cmd
}

// plannedDue renders a planned rotation's due time; a message budget not
// spent yet has none.
func plannedDue(r *c2pb.PlannedRotation) string {
	if r.DueAt == nil {
		return "at the budget"
	}
	return r.DueAt.AsTime().Format(time.RFC3339)
}

// plannedReason renders a planned rotation's reason, with the count of a
// topic under a message budget.
func plannedReason(r *c2pb.PlannedRotation) string {
	if r.MaxMessages == 0 {
		return r.Reason
	}
	return fmt.Sprintf("%s (%d of %d messages)", r.Reason, r.Messages, r.MaxMessages)
}

func newC2PolicyRotationsCommand(f *c2Flags) *cobra.Command {
	var (
		req   c2pb.ListRotationsRequest
		limit int32
	)
	cmd := &cobra.Command{
		Use:     "rotations",
		Short:   "List every key rotation (by policy or not) and its outcome",
		Example: `  e4 c2 policy rotations --policy firmware-weekly --state stuck`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req.Limit = limit
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				res, err := s.client.ListRotations(ctx, &req)
				if err != nil {
					return err
				}
				if s.f.json {
					return s.printJSON(res)
				}
				rows := make([][]string, len(res.Rotations))
				for i, r := range res.Rotations {
					rows[i] = []string{strconv.FormatInt(r.Id, 10), r.FiredAt.AsTime().Format(time.RFC3339), r.Kind, r.Target,
						r.Policy, r.Reason, r.State, strconv.FormatInt(r.Commands, 10), r.Detail}
				}
				return s.table([]string{"ID", "FIRED", "KIND", "TARGET", "POLICY", "REASON", "STATE", "COMMANDS", "DETAIL"}, rows)
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&req.Kind, "kind", "", "only this kind: topic, client or c2")
	fl.StringVar(&req.Target, "target", "", "only this target")
	fl.StringVar(&req.Policy, "policy", "", "only this policy's rotations")
	fl.StringVar(&req.State, "state", "", "only this state: started, converged, stuck, superseded, failed")
	fl.Int64Var(&req.After, "after", 0, "list after this rotation id (the next page)")
	fl.Int32Var(&limit, "limit", 100, "page size, 1 to 10000")
	return cmd
}
