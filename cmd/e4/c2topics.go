package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

func newC2TopicCommand(f *c2Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topic",
		Short: "Add, list, rotate and remove topics",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newC2TopicAddCommand(f), newC2TopicGetCommand(f), newC2TopicListCommand(f),
		newC2TopicRemoveCommand(f), newC2TopicRotateCommand(f), newC2TopicMembersCommand(f))
	return cmd
}

// completeTopics offers the topic names C2 knows, when a token is at
// hand; shell completion must never fail loudly.
func completeTopics(f *c2Flags) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		_ = f.withSessionFor(cmd, 3*time.Second, func(ctx context.Context, s *c2Session) error {
			res, err := s.client.ListTopics(ctx, &c2pb.ListTopicsRequest{Limit: 1000})
			for _, t := range res.GetTopics() {
				names = append(names, t.Name)
			}
			return err
		})
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

func topicRow(t *c2pb.Topic) []string {
	rotated := ""
	if t.RotatedAt != nil {
		rotated = t.RotatedAt.AsTime().Format(time.RFC3339)
	}
	return []string{t.Name, hex.EncodeToString(t.Hash), strconv.FormatUint(t.KeyVersion, 10), rotated}
}

var topicHeader = []string{"TOPIC", "HASH", "KEY VERSION", "ROTATED"}

func newC2TopicAddCommand(f *c2Flags) *cobra.Command {
	return &cobra.Command{
		Use:     "add TOPIC",
		Short:   "Create a topic with a random key (no wildcards)",
		Example: `  e4 c2 topic add plant/telemetry`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				t, err := s.client.AddTopic(ctx, &c2pb.AddTopicRequest{Topic: args[0]})
				if err != nil {
					return err
				}
				return s.printRecord(t, topicHeader, topicRow(t))
			})
		},
	}
}

func newC2TopicGetCommand(f *c2Flags) *cobra.Command {
	return &cobra.Command{
		Use:               "get TOPIC",
		Short:             "Show a topic and its member count (never its key)",
		Example:           `  e4 c2 topic get plant/telemetry`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeTopics(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				t, err := s.client.GetTopic(ctx, &c2pb.TopicRequest{Topic: args[0]})
				if err != nil {
					return err
				}
				return s.printRecord(t, append(topicHeader, "MEMBERS"), append(topicRow(t), strconv.FormatInt(t.Members, 10)))
			})
		},
	}
}

func newC2TopicListCommand(f *c2Flags) *cobra.Command {
	var after string
	var limit int32
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List topics by name, a page at a time",
		Example: `  e4 c2 topic list --limit 500`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				res, err := s.client.ListTopics(ctx, &c2pb.ListTopicsRequest{After: after, Limit: limit})
				if err != nil {
					return err
				}
				if s.f.json {
					return s.printJSON(res)
				}
				rows := make([][]string, len(res.Topics))
				for i, t := range res.Topics {
					rows[i] = topicRow(t)
				}
				if err := s.table(topicHeader, rows); err != nil {
					return err
				}
				fmt.Fprintf(s.errOut, "%d of %d topics\n", len(res.Topics), res.Total)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&after, "after", "", "list after this topic name")
	cmd.Flags().Int32Var(&limit, "limit", 0, "page size, 1 to 10000 (default 100)")
	return cmd
}

func newC2TopicRemoveCommand(f *c2Flags) *cobra.Command {
	cmd := simpleClientCommand(f, "remove TOPIC", "Delete a topic and make its members forget it",
		"  e4 c2 topic remove plant/old", "removed topic %s",
		func(ctx context.Context, c c2pb.C2Client, topic string) error {
			_, err := c.RemoveTopic(ctx, &c2pb.TopicRequest{Topic: topic})
			return err
		})
	cmd.ValidArgsFunction = completeTopics(f)
	return cmd
}

func newC2TopicRotateCommand(f *c2Flags) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "rotate TOPIC",
		Short: "Give a topic a new key and send it to every member",
		Long: `rotate gives TOPIC a new key and queues a command for each member. With
--wait it then follows the delivery with a progress bar until no command
about the topic is pending (devices keep accepting the old key meanwhile).`,
		Example: `  e4 c2 topic rotate plant/telemetry
  e4 c2 topic rotate plant/telemetry --wait`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeTopics(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSessionFor(cmd, 0, func(ctx context.Context, s *c2Session) error {
				call, cancel := context.WithTimeout(ctx, s.f.timeout)
				res, err := s.client.RotateTopic(call, &c2pb.TopicRequest{Topic: args[0]})
				cancel()
				if err != nil {
					return err
				}
				if wait {
					if err := s.waitDelivered(ctx, args[0], res.Commands); err != nil {
						return err
					}
				}
				if s.f.json {
					return s.printJSON(res)
				}
				return s.done("rotated %s: %d commands queued", args[0], res.Commands)
			})
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until every member's command is delivered, with a progress bar")
	return cmd
}

func newC2TopicMembersCommand(f *c2Flags) *cobra.Command {
	var after string
	var limit int32
	cmd := &cobra.Command{
		Use:               "members TOPIC",
		Short:             "List the clients of a topic",
		Example:           `  e4 c2 topic members plant/telemetry`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeTopics(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				res, err := s.client.ListMembers(ctx, &c2pb.ListMembersRequest{Topic: args[0], After: after, Limit: limit})
				if err != nil {
					return err
				}
				if s.f.json {
					return s.printJSON(res)
				}
				return s.idTable("CLIENT ID", res.Clients, fmt.Sprintf("%d of %d members", len(res.Clients), res.Total))
			})
		},
	}
	cmd.Flags().StringVar(&after, "after", "", "list after this client id")
	cmd.Flags().Int32Var(&limit, "limit", 0, "page size, 1 to 10000 (default 100)")
	return cmd
}

// idTable prints one column of ids and a summary on stderr.
func (s *c2Session) idTable(header string, ids []string, summary string) error {
	rows := make([][]string, len(ids))
	for i, id := range ids {
		rows[i] = []string{id}
	}
	if err := s.table([]string{header}, rows); err != nil {
		return err
	}
	if summary != "" {
		fmt.Fprintln(s.errOut, summary)
	}
	return nil
}

func newC2MemberCommand(f *c2Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "member",
		Short: "Add clients to topics and remove them",
		Args:  cobra.NoArgs,
	}
	add := &cobra.Command{
		Use:   "add CLIENT TOPIC",
		Short: "Add a client to a topic and send it the topic key",
		Example: `  e4 c2 member add thermostat-42 plant/telemetry
  e4 c2 member add-many plant/telemetry sensor-1 sensor-2 sensor-3`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				if _, err := s.client.AddMember(ctx, &c2pb.MemberRequest{Client: args[0], Topic: args[1]}); err != nil {
					return err
				}
				return s.done("%s is a member of %s", args[0], args[1])
			})
		},
	}
	addMany := &cobra.Command{
		Use:     "add-many TOPIC CLIENT...",
		Short:   "Add many clients to a topic at once (all or none)",
		Example: `  e4 c2 member add-many plant/telemetry sensor-1 sensor-2 sensor-3`,
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				if _, err := s.client.AddMembers(ctx, &c2pb.AddMembersRequest{Topic: args[0], Clients: args[1:]}); err != nil {
					return err
				}
				return s.done("%d clients added to %s", len(args)-1, args[0])
			})
		},
	}
	remove := &cobra.Command{
		Use:     "remove CLIENT TOPIC",
		Short:   "Remove a client from a topic; the topic gets a new key",
		Example: `  e4 c2 member remove old-gateway plant/telemetry`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				if _, err := s.client.RemoveMember(ctx, &c2pb.MemberRequest{Client: args[0], Topic: args[1]}); err != nil {
					return err
				}
				return s.done("%s removed from %s", args[0], args[1])
			})
		},
	}
	check := &cobra.Command{
		Use:     "check CLIENT TOPIC",
		Short:   "Say whether a client is in a topic (exit status 1 when not)",
		Example: `  e4 c2 member check thermostat-42 plant/telemetry`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				res, err := s.client.IsMember(ctx, &c2pb.MemberRequest{Client: args[0], Topic: args[1]})
				if err != nil {
					return err
				}
				if s.f.json {
					if err := s.printJSON(res); err != nil {
						return err
					}
				}
				if !res.Member {
					return fmt.Errorf("%s is not a member of %s", args[0], args[1])
				}
				if !s.f.json {
					fmt.Fprintf(s.out, "%s is a member of %s\n", args[0], args[1])
				}
				return nil
			})
		},
	}
	cmd.AddCommand(add, addMany, remove, check)
	return cmd
}
