package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

// The commands about the state of devices: what C2 wants each device to
// hold against what the device acknowledged.

// addStateCommands adds "client state", "client acknowledges", "topic
// state" and "fleet" to the c2 command tree.
func addStateCommands(c2Cmd *cobra.Command, f *c2Flags) {
	for _, sub := range c2Cmd.Commands() {
		switch sub.Name() {
		case "client":
			sub.AddCommand(newC2ClientStateCommand(f), newC2ClientAcknowledgesCommand(f))
		case "topic":
			sub.AddCommand(newC2TopicStateCommand(f))
		}
	}
	c2Cmd.AddCommand(newC2FleetCommand(f))
}

// pageFlags are the flags of a paged listing.
type pageFlags struct {
	after string
	limit int32
	all   bool
}

func (p *pageFlags) register(cmd *cobra.Command, afterWhat string) {
	cmd.Flags().StringVar(&p.after, "after", "", "list after this "+afterWhat+" (from the previous page)")
	cmd.Flags().Int32Var(&p.limit, "limit", 0, "page size, 1 to 10000 (default 100)")
	cmd.Flags().BoolVar(&p.all, "all", false, "list every page")
}

// pageSize is the size of a full page as the server applies it.
func (p *pageFlags) pageSize() int {
	if p.limit == 0 {
		return 100 // the server's default
	}
	return int(p.limit)
}

func newC2ClientStateCommand(f *c2Flags) *cobra.Command {
	var page pageFlags
	cmd := &cobra.Command{
		Use:   "state CLIENT",
		Short: "Show what a client's device holds and misses, when it was last seen, and whether it acknowledges",
		Long: `state shows what C2 knows of a client's device against what it wants the
device to hold: whether it acknowledges commands (and whether that was
declared or learned), when C2 last heard from it (an acknowledgement or a
sync request), which client key its commands go out under (current, or
previous-or-new during a client-key change the device has not confirmed),
whether its queue is stalled, and its topics, a page at a time: the key
version C2 wants it to hold and the one it acknowledged.

STATUS is "holds" (it acknowledged the current key), "outdated" (an older
one), "missing" (none, or it reported it lost it), or "unknown" for a
device that does not acknowledge: C2 cannot know what it holds.`,
		Example: `  e4 c2 client state thermostat-42
  e4 c2 client state thermostat-42 --all --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				st, err := s.clientState(ctx, args[0], &page)
				if err != nil {
					return err
				}
				if s.f.json {
					return s.printJSON(st)
				}
				return s.printClientState(st)
			})
		},
	}
	page.register(cmd, "topic")
	return cmd
}

// clientState fetches a client's state with one page of its topics, or
// every page with --all.
func (s *c2Session) clientState(ctx context.Context, client string, page *pageFlags) (*c2pb.ClientState, error) {
	req := &c2pb.GetClientStateRequest{Client: client, After: page.after, Limit: page.limit}
	st, err := s.client.GetClientState(ctx, req)
	if err != nil {
		return nil, err
	}
	for last := st.TopicStates; page.all && len(last) == page.pageSize(); {
		req.After = last[len(last)-1].Topic
		next, err := s.client.GetClientState(ctx, req)
		if err != nil {
			return nil, err
		}
		last = next.TopicStates
		st.TopicStates = append(st.TopicStates, last...)
	}
	return st, nil
}

func (s *c2Session) printClientState(st *c2pb.ClientState) error {
	stalled := "no"
	if st.Stalled {
		stalled = fmt.Sprintf("since %s: %s", formatTime(st.StalledAt), st.StalledReason)
	}
	key := st.KeyInUse
	if st.KeyChangedAt != nil {
		key += " (client-key change of " + formatTime(st.KeyChangedAt) + " not confirmed)"
	}
	err := s.table([]string{"STATE", "VALUE"}, [][]string{
		{"id", st.Id}, {"name", orDash(st.Name)},
		{"acknowledges", acknowledgesText(st)},
		{"last seen", neverIfDash(formatTime(st.LastSeen))}, {"last sync", neverIfDash(formatTime(st.LastSync))},
		{"topics", fmt.Sprintf("%d, %d behind", st.Topics, st.TopicsBehind)},
		{"pending commands", strconv.FormatInt(st.PendingCommands, 10)},
		{"key in use", key}, {"stalled", stalled},
	})
	if err != nil || len(st.TopicStates) == 0 {
		return err
	}
	fmt.Fprintln(s.out)
	rows := make([][]string, len(st.TopicStates))
	for i, t := range st.TopicStates {
		acked := "-"
		if t.AckedVersion != 0 {
			acked = strconv.FormatUint(t.AckedVersion, 10)
		}
		rows[i] = []string{t.Topic, strconv.FormatUint(t.WantVersion, 10), acked, topicStatus(t, st.Acknowledges), formatTime(t.AckedAt)}
	}
	return s.table([]string{"TOPIC", "WANTED", "ACKNOWLEDGED", "STATUS", "ACKNOWLEDGED AT"}, rows)
}

// acknowledgesText says whether a device acknowledges and how C2 knows.
func acknowledgesText(st *c2pb.ClientState) string {
	answer := yesNo(st.Acknowledges)
	switch {
	case st.AckMode != "auto":
		return answer + " (declared)"
	case st.Acknowledges:
		return answer + " (learned)"
	}
	return answer + " (not heard from yet; auto)"
}

// topicStatus says what a device holds of one topic.
func topicStatus(t *c2pb.TopicKeyState, acknowledges bool) string {
	switch {
	case !t.Behind:
		return "holds"
	case t.AckedVersion != 0:
		return "outdated"
	case !acknowledges:
		return "unknown"
	}
	return "missing"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func neverIfDash(s string) string {
	if s == "-" {
		return "never"
	}
	return s
}

func newC2ClientAcknowledgesCommand(f *c2Flags) *cobra.Command {
	return &cobra.Command{
		Use:   "acknowledges CLIENT yes|no|auto",
		Short: "Declare whether a client's device acknowledges commands",
		Long: `acknowledges declares whether a client's device acknowledges commands.
C2 learns it by itself (auto, the default): a device counts as acknowledging
from its first acknowledgement or sync request. Declare "no" for devices
that cannot (E4 v1 reference devices): C2 then never waits for their
acknowledgements and repairs them on the resend schedule instead (see
"e4 c2 serve --help", c2.resend_every). Declare "yes" to count on a device's
acknowledgements before its first one. Needs an operate token; audited.`,
		Example: `  e4 c2 client acknowledges thermostat-42 no
  e4 c2 client acknowledges thermostat-42 auto`,
		Args: cobra.ExactArgs(2),
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 1 {
				return []string{"yes", "no", "auto"}, cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				st, err := s.client.SetClientAcknowledges(ctx, &c2pb.SetClientAcknowledgesRequest{Client: args[0], Mode: args[1]})
				if err != nil {
					return err
				}
				return s.printRecord(st, []string{"ID", "NAME", "MODE", "ACKNOWLEDGES"},
					[]string{st.Id, orDash(st.Name), st.AckMode, yesNo(st.Acknowledges)})
			})
		},
	}
}

func newC2TopicStateCommand(f *c2Flags) *cobra.Command {
	var page pageFlags
	var behind bool
	cmd := &cobra.Command{
		Use:   "state TOPIC",
		Short: "Show how many members acknowledged the topic's current key, and with --behind which have not",
		Long: `state prints how far a topic's members are with its current key, as
"version 7: 9950 of 10000 members acknowledged; 50 behind", and how many of
those behind are devices that do not acknowledge (C2 cannot know what they
hold). With --behind it then lists the members behind, a page at a time.`,
		Example: `  e4 c2 topic state plant/telemetry
  e4 c2 topic state plant/telemetry --behind --all`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeTopics(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				st, err := s.client.GetTopicState(ctx, &c2pb.TopicRequest{Topic: args[0]})
				if err != nil {
					return err
				}
				var list *c2pb.ListTopicBehindResponse
				if behind {
					if list, err = s.topicBehind(ctx, args[0], &page); err != nil {
						return err
					}
				}
				if s.f.json {
					return s.printTopicStateJSON(st, list)
				}
				return s.printTopicState(st, list)
			})
		},
	}
	cmd.Flags().BoolVar(&behind, "behind", false, "list the members that have not acknowledged the current key")
	page.register(cmd, "client id")
	return cmd
}

// topicBehind lists a page of the members behind, or every page with
// --all.
func (s *c2Session) topicBehind(ctx context.Context, topic string, page *pageFlags) (*c2pb.ListTopicBehindResponse, error) {
	req := &c2pb.ListTopicBehindRequest{Topic: topic, After: page.after, Limit: page.limit}
	out := &c2pb.ListTopicBehindResponse{}
	for {
		res, err := s.client.ListTopicBehind(ctx, req)
		if err != nil {
			return nil, err
		}
		out.Clients = append(out.Clients, res.Clients...)
		out.Total = res.Total
		if !page.all || len(res.Clients) < page.pageSize() {
			return out, nil
		}
		req.After = res.Clients[len(res.Clients)-1].Id
	}
}

func (s *c2Session) printTopicState(st *c2pb.TopicState, list *c2pb.ListTopicBehindResponse) error {
	lines := []string{st.Summary}
	switch {
	case st.Converged:
		lines = append(lines, "converged: every member holds the current key")
	case st.BehindNotAcknowledging > 0:
		lines = append(lines, fmt.Sprintf("%d of those behind do not acknowledge: C2 cannot know what they hold", st.BehindNotAcknowledging))
	}
	if _, err := fmt.Fprintln(s.out, strings.Join(lines, "\n")); err != nil || list == nil {
		return err
	}
	fmt.Fprintln(s.out)
	rows := make([][]string, len(list.Clients))
	for i, c := range list.Clients {
		acked := "-"
		if c.AckedVersion != 0 {
			acked = strconv.FormatUint(c.AckedVersion, 10)
		}
		rows[i] = []string{c.Id, acked, yesNo(c.Acknowledges), neverIfDash(formatTime(c.LastSeen))}
	}
	return s.table([]string{"CLIENT ID", "ACKNOWLEDGED", "ACKNOWLEDGES", "LAST SEEN"}, rows)
}

// printTopicStateJSON prints the state alone, or with --behind one
// document {"state": ..., "behind": ...}.
func (s *c2Session) printTopicStateJSON(st *c2pb.TopicState, list *c2pb.ListTopicBehindResponse) error {
	if list == nil {
		return s.printJSON(st)
	}
	doc := make(map[string]json.RawMessage, 2)
	for name, m := range map[string]proto.Message{"state": st, "behind": list} {
		b, err := api.MarshalJSON(m)
		if err != nil {
			return err
		}
		doc[name] = b
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(s.out, "%s\n", b)
	return err
}

func newC2FleetCommand(f *c2Flags) *cobra.Command {
	return &cobra.Command{
		Use:     "fleet",
		Aliases: []string{"state"},
		Short:   "Count the devices that acknowledge, are behind, stalled or changing their client key",
		Long: `fleet counts, over every device: those known (or declared) to acknowledge
commands or not and those never heard from, the clients and memberships
behind their topics' current keys, stalled queues, client-key changes the
devices have not confirmed, and commands waiting in the outbox; then the
catch-up progress of the C2 process that answered since it started: sync
requests received, waiting, answered, refused (no key of the client opens
them) and dropped (queue full; the device asks again when it reconnects),
commands queued in answer, and keys repaired or resent.`,
		Example: `  e4 c2 fleet
  e4 c2 fleet --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				fl, err := s.client.GetFleetState(ctx, &c2pb.Empty{})
				if err != nil {
					return err
				}
				if s.f.json {
					return s.printJSON(fl)
				}
				n := func(v int64) string { return strconv.FormatInt(v, 10) }
				return s.table([]string{"DEVICES", "COUNT"}, append([][]string{
					{"clients", n(fl.Clients)},
					{"acknowledging", n(fl.Acknowledging)}, {"not acknowledging", n(fl.NotAcknowledging)},
					{"never heard from", n(fl.Unknown)},
					{"clients behind", n(fl.ClientsBehind)}, {"memberships behind", n(fl.MembershipsBehind)},
					{"stalled", n(fl.Stalled)}, {"key changes pending", n(fl.KeyChangesPending)},
					{"pending commands", n(fl.PendingCommands)},
				}, catchUpRows(fl.CatchUp)...))
			})
		},
	}
}

// catchUpRows shows the catch-up progress of the C2 process that answered.
func catchUpRows(c *c2pb.CatchUpProgress) [][]string {
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	return [][]string{
		{"sync requests received", u(c.GetSyncReceived())}, {"sync requests waiting", strconv.FormatInt(c.GetSyncQueued(), 10)},
		{"sync requests answered", u(c.GetSyncAnswered())}, {"sync requests refused", u(c.GetSyncRefused())},
		{"sync requests dropped", u(c.GetSyncDropped())}, {"catch-up commands", u(c.GetCommands())},
		{"keys repaired", u(c.GetRepaired())}, {"keys resent", u(c.GetResent())},
	}
}

// The event kinds about device state, offered by "e4 c2 events --kind"
// completion beside those of c2ops.go.
func init() {
	eventKinds = append(eventKinds, "command_acked", "topic_converged", "devices_behind", "client_stalled",
		"client_key_confirmed", "device_synced", "ack_mode_set")
}
