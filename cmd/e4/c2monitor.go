package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

// The commands that read the monitor of a C2 started with --monitor: its
// counters and its top lists.

// monitorResults are the results of the monitor, in its counter order.
var monitorResults = []string{"valid", "previous_key", "auth_failed", "replay", "too_old", "future", "not_e4", "unknown_signer"}

// addMonitorCommands adds "monitor stats" and "monitor top" to the c2
// command tree.
func addMonitorCommands(c2Cmd *cobra.Command, f *c2Flags) {
	cmd := &cobra.Command{
		Use:   "monitor",
		Short: "Read what the monitor saw on C2's topics (e4 c2 serve --monitor)",
		Long: `monitor reads the counters of the monitor of a C2 started with --monitor:
every message seen on the topics C2 manages, classified as valid (current
key), previous_key (the key the last rotation replaced, inside the
transition window: a lagging device), auth_failed (forged, altered, or a
wrong or withdrawn key), replay, too_old, future (sender clock ahead),
not_e4 (plaintext or garbage on a protected topic) or unknown_signer
(public-key mode).`,
	}
	cmd.AddCommand(newC2MonitorStatsCommand(f), newC2MonitorTopCommand(f))
	c2Cmd.AddCommand(cmd)
}

func newC2MonitorStatsCommand(f *c2Flags) *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Count the messages the monitor saw, by result",
		Example: `  e4 c2 monitor stats
  e4 c2 monitor stats --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				st, err := s.client.GetMonitorStats(ctx, &c2pb.Empty{})
				if err != nil {
					return err
				}
				if s.f.json {
					return s.printJSON(st)
				}
				rows := make([][]string, 0, len(monitorResults)+4)
				for _, r := range monitorResults {
					rows = append(rows, []string{r, strconv.FormatUint(st.Results[r], 10)})
				}
				rows = append(rows, []string{"ignored (not C2's topics)", strconv.FormatUint(st.Ignored, 10)},
					[]string{"dropped by the transport", strconv.FormatUint(st.Dropped, 10)},
					[]string{"since", formatTime(st.Since)}, []string{"topics", strings.Join(st.Filters, " ")})
				return s.table([]string{"RESULT", "MESSAGES"}, rows)
			})
		},
	}
}

func newC2MonitorTopCommand(f *c2Flags) *cobra.Command {
	var req c2pb.ListMonitorTopRequest
	cmd := &cobra.Command{
		Use:   "top",
		Short: "List the topics or senders with the most anomalies (or messages of one result)",
		Long: `top lists the topics (--by topic) or the senders (--by sender) with the
most messages of a result: anomalies (every result but valid, the
default), all, or one of ` + strings.Join(monitorResults, ", ") + `.

The lists are bounded (space-saving top-k): COUNT may overestimate by at
most ERROR; the counts by result are exact since the entry entered the
list. Senders exist only in public-key mode, where every message names
its sender id (for auth_failed and unknown_signer that id is only
claimed); symmetric-key messages carry no sender, so there anomalies are
attributed to topics only.`,
		Example: `  e4 c2 monitor top
  e4 c2 monitor top --by sender --result auth_failed --limit 10
  e4 c2 monitor top --result all --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				top, err := s.client.ListMonitorTop(ctx, &req)
				if err != nil {
					return err
				}
				if s.f.json {
					return s.printJSON(top)
				}
				by := strings.ToUpper(req.By)
				if by == "" {
					by = "TOPIC"
				}
				rows := make([][]string, len(top.Entries))
				for i, e := range top.Entries {
					rows[i] = []string{e.Key, strconv.FormatUint(e.Count, 10), strconv.FormatUint(e.Error, 10), byResultText(e.ByResult)}
				}
				return s.table([]string{by, "COUNT", "ERROR", "BY RESULT"}, rows)
			})
		},
	}
	cmd.Flags().StringVar(&req.By, "by", "topic", "topic or sender")
	cmd.Flags().StringVar(&req.Result, "result", "anomalies", "anomalies, all, or one result: "+strings.Join(monitorResults, ", "))
	cmd.Flags().Int32Var(&req.Limit, "limit", 0, "number of entries (default: all the monitor keeps, 100)")
	_ = cmd.RegisterFlagCompletionFunc("by", fixedCompletion("topic", "sender"))
	_ = cmd.RegisterFlagCompletionFunc("result", fixedCompletion(append([]string{"anomalies", "all"}, monitorResults...)...))
	return cmd
}

// byResultText shows the counts by result, most first: "auth_failed=12
// replay=3".
func byResultText(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}
