package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/internal/atomicfile"
)

// formatTime prints a timestamp, "-" when unset.
func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().Format(time.RFC3339)
}

func commandRow(c *c2pb.Command) []string {
	return []string{strconv.FormatInt(c.Seq, 10), c.Id, c.ClientId, c.Kind, c.Target, c.State,
		strconv.Itoa(int(c.Attempts)), formatTime(c.SentAt), orDash(c.LastError)}
}

var commandHeader = []string{"SEQ", "ID", "CLIENT", "KIND", "TARGET", "STATE", "ATTEMPTS", "SENT", "LAST ERROR"}

func newC2CommandCommand(f *c2Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "command",
		Short: "Follow the commands queued for devices (the outbox)",
		Args:  cobra.NoArgs,
	}
	get := &cobra.Command{
		Use:     "get ID",
		Short:   "Show one command's state",
		Example: `  e4 c2 command get 5f0c3e9a1b2d4c6e8f0a1b2c3d4e5f60`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				c, err := s.client.GetCommand(ctx, &c2pb.GetCommandRequest{Id: args[0]})
				if err != nil {
					return err
				}
				return s.printRecord(c, commandHeader, commandRow(c))
			})
		},
	}
	req := &c2pb.ListCommandsRequest{}
	list := &cobra.Command{
		Use:   "list",
		Short: "List commands by sequence number, filtered by client, state or target",
		Example: `  e4 c2 command list --state pending
  e4 c2 command list --client thermostat-42 --json
  e4 c2 command list --target plant/telemetry --state failed`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				res, err := s.client.ListCommands(ctx, req)
				if err != nil {
					return err
				}
				if s.f.json {
					return s.printJSON(res)
				}
				rows := make([][]string, len(res.Commands))
				for i, c := range res.Commands {
					rows[i] = commandRow(c)
				}
				if err := s.table(commandHeader, rows); err != nil {
					return err
				}
				fmt.Fprintf(s.errOut, "%d of %d commands\n", len(res.Commands), res.Total)
				return nil
			})
		},
	}
	fl := list.Flags()
	fl.StringVar(&req.Client, "client", "", "only the commands of this client")
	fl.StringVar(&req.State, "state", "", "pending, sent, failed or superseded")
	fl.StringVar(&req.Target, "target", "", "only the commands about this topic or client id")
	fl.Int64Var(&req.After, "after", 0, "list after this sequence number")
	fl.Int32Var(&req.Limit, "limit", 0, "page size, 1 to 10000 (default 100)")
	_ = list.RegisterFlagCompletionFunc("state", fixedCompletion("pending", "sent", "failed", "superseded"))
	cmd.AddCommand(get, list)
	return cmd
}

func tokenRow(t *c2pb.Token) []string {
	state := "active"
	switch {
	case t.RevokedAt != nil:
		state = "revoked"
	case t.ExpiresAt != nil && !t.ExpiresAt.AsTime().After(time.Now()):
		state = "expired"
	}
	return []string{t.Name, t.Scope, state, formatTime(t.CreatedAt), formatTime(t.ExpiresAt), t.CreatedBy}
}

func newC2TokenCommand(f *c2Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke API tokens (admin)",
		Long: `token manages the API tokens. A token has a scope: read (lookups), operate
(changes of clients, topics, memberships and keys), or admin (tokens, the
audit log, C2's own key). C2 stores only a hash: the token is shown once.`,
		Args: cobra.NoArgs,
	}
	var scope, out string
	var ttl time.Duration
	var force bool
	create := &cobra.Command{
		Use:   "create NAME --scope read|operate|admin",
		Short: "Create a token; it is shown once (or written to --out)",
		Example: `  e4 c2 token create dashboard --scope read
  e4 c2 token create ci --scope operate --ttl 720h --out ci.token`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := refuseExisting(out, force); err != nil {
				return err
			}
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				res, err := s.client.CreateToken(ctx, &c2pb.CreateTokenRequest{Name: args[0], Scope: scope, TtlSeconds: int64(ttl / time.Second)})
				if err != nil {
					return err
				}
				secret := res.Secret
				if out != "" {
					if err := atomicfile.WriteFile(out, []byte(secret+"\n"), 0o600); err != nil {
						return err
					}
					res.Secret, secret = "", "written to "+out
				} else {
					fmt.Fprintln(s.errOut, "e4: the token is shown once: keep it now (or use --out FILE)")
				}
				if s.f.json {
					return s.printJSON(res)
				}
				return s.table([]string{"NAME", "SCOPE", "EXPIRES", "TOKEN"}, [][]string{{res.Token.Name, res.Token.Scope, formatTime(res.Token.ExpiresAt), secret}})
			})
		},
	}
	create.Flags().StringVar(&scope, "scope", "", "read, operate or admin (required)")
	create.Flags().DurationVar(&ttl, "ttl", 0, "expire after this long (default: never)")
	create.Flags().StringVar(&out, "out", "", "write the token to this file (mode 0600) instead of stdout")
	create.Flags().BoolVar(&force, "force", false, forceFlagUsage)
	_ = create.MarkFlagRequired("scope")
	_ = create.RegisterFlagCompletionFunc("scope", fixedCompletion("read", "operate", "admin"))
	list := &cobra.Command{
		Use:     "list",
		Short:   "List tokens (never their secrets)",
		Example: `  e4 c2 token list`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				res, err := s.client.ListTokens(ctx, &c2pb.Empty{})
				if err != nil {
					return err
				}
				if s.f.json {
					return s.printJSON(res)
				}
				rows := make([][]string, len(res.Tokens))
				for i, t := range res.Tokens {
					rows[i] = tokenRow(t)
				}
				return s.table([]string{"NAME", "SCOPE", "STATE", "CREATED", "EXPIRES", "CREATED BY"}, rows)
			})
		},
	}
	revoke := &cobra.Command{
		Use:     "revoke NAME",
		Short:   "Revoke a token at once",
		Example: `  e4 c2 token revoke dashboard`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				if _, err := s.client.RevokeToken(ctx, &c2pb.RevokeTokenRequest{Name: args[0]}); err != nil {
					return err
				}
				return s.done("revoked token %s", args[0])
			})
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

// eventKinds are the kinds of events, for --kind completion.
var eventKinds = []string{"client_added", "client_removed", "topic_added", "topic_removed", "member_added", "member_removed",
	"topic_key_rotated", "client_key_changed", "c2_key_rotated", "pubkey_changed", "command_sent", "command_failed",
	"clients_imported", "events_lost"}

func newC2EventsCommand(f *c2Flags) *cobra.Command {
	var follow bool
	var after string
	var kinds []string
	var limit int32
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show recent events, or follow them as they happen",
		Long: `events prints the events C2 keeps in memory (client added or removed,
membership changed, key rotated, command sent or failed...). With --follow
it keeps printing new ones until interrupted. --after resumes after an event
id; an id C2 no longer has (or from before a restart) gives an events_lost
event first.`,
		Example: `  e4 c2 events
  e4 c2 events --follow --kind command_failed
  e4 c2 events --follow --after 3f9a2c1d-120 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			limitTime := f.timeout
			if follow {
				limitTime = 0
			}
			return f.withSessionFor(cmd, limitTime, func(ctx context.Context, s *c2Session) error {
				if follow {
					return s.followEvents(ctx, after, kinds)
				}
				res, err := s.client.ListEvents(ctx, &c2pb.ListEventsRequest{After: after, Limit: limit})
				if err != nil {
					return err
				}
				if s.f.json {
					return s.printJSON(res)
				}
				rows := [][]string{}
				for _, e := range res.Events {
					if wantKind(kinds, e.Kind) {
						rows = append(rows, eventRow(e))
					}
				}
				return s.table(eventHeader, rows)
			})
		},
	}
	cmd.Flags().BoolVar(&follow, "follow", false, "keep printing new events until interrupted")
	cmd.Flags().StringVar(&after, "after", "", "start after this event id")
	cmd.Flags().StringSliceVar(&kinds, "kind", nil, "only these kinds (repeat or separate with commas)")
	cmd.Flags().Int32Var(&limit, "limit", 0, "most events listed without --follow, 1 to 1000 (default 100)")
	_ = cmd.RegisterFlagCompletionFunc("kind", fixedCompletion(eventKinds...))
	return cmd
}

var eventHeader = []string{"ID", "TIME", "KIND", "CLIENT", "TOPIC", "DETAIL"}

func eventRow(e *c2pb.Event) []string {
	return []string{e.Id, formatTime(e.Time), e.Kind, orDash(e.ClientId), orDash(e.Topic), orDash(e.Detail)}
}

func wantKind(kinds []string, kind string) bool {
	if len(kinds) == 0 {
		return true
	}
	for _, k := range kinds {
		if k == kind {
			return true
		}
	}
	return false
}

// followEvents prints events as they come, one line each.
func (s *c2Session) followEvents(ctx context.Context, after string, kinds []string) error {
	stream, err := s.client.WatchEvents(ctx, &c2pb.WatchEventsRequest{After: after, Kinds: kinds})
	if err != nil {
		return err
	}
	if _, err := stream.Header(); err != nil {
		return err
	}
	// On stderr, so that --json output stays one event per line.
	fmt.Fprintln(s.errOut, "following events (Ctrl-C stops)")
	for {
		e, err := stream.Recv()
		if err == io.EOF || ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if s.f.json {
			err = s.printJSONLine(e)
		} else {
			_, err = fmt.Fprintf(s.out, "%s  %s  %-18s client=%s topic=%s %s\n", e.Id, formatTime(e.Time), e.Kind, orDash(e.ClientId), orDash(e.Topic), e.Detail)
		}
		if err != nil {
			return err
		}
	}
}

func newC2AuditCommand(f *c2Flags) *cobra.Command {
	req := &c2pb.ListAuditRequest{}
	var since, until string
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "List the audit log: who changed what, when, and how it ended (admin)",
		Example: `  e4 c2 audit
  e4 c2 audit --actor token:ci --outcome PermissionDenied
  e4 c2 audit --action RemoveClient --since 2026-01-01T00:00:00Z --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, t := range []struct {
				text string
				dst  **timestamppb.Timestamp
			}{{since, &req.Since}, {until, &req.Until}} {
				if t.text == "" {
					continue
				}
				at, err := time.Parse(time.RFC3339, t.text)
				if err != nil {
					return fmt.Errorf("--since and --until take RFC 3339 times, like 2026-01-02T15:04:05Z")
				}
				*t.dst = timestamppb.New(at)
			}
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				res, err := s.client.ListAudit(ctx, req)
				if err != nil {
					return err
				}
				if s.f.json {
					return s.printJSON(res)
				}
				rows := make([][]string, len(res.Records))
				for i, r := range res.Records {
					rows[i] = []string{strconv.FormatInt(r.Id, 10), formatTime(r.Time), r.Actor, r.Action, orDash(r.Target), r.Outcome, orDash(r.Detail)}
				}
				return s.table([]string{"ID", "TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "DETAIL"}, rows)
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&req.Actor, "actor", "", `only this actor ("token:NAME" or "cert:SUBJECT")`)
	fl.StringVar(&req.Action, "action", "", "only this call, such as AddClient")
	fl.StringVar(&req.Target, "target", "", `only this target, such as "name=thermostat-42"`)
	fl.StringVar(&req.Outcome, "outcome", "", "only this outcome: ok, or a status such as PermissionDenied")
	fl.StringVar(&since, "since", "", "only records at or after this RFC 3339 time")
	fl.StringVar(&until, "until", "", "only records before this RFC 3339 time")
	fl.Int64Var(&req.After, "after", 0, "list after this record id")
	fl.Int32Var(&req.Limit, "limit", 0, "page size, 1 to 1000 (default 100)")
	return cmd
}

func newC2HealthCommand(f *c2Flags) *cobra.Command {
	return &cobra.Command{
		Use:     "health",
		Short:   "Check that C2, its database and its broker answer (exit status 1 when not)",
		Example: `  e4 c2 health`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				h, err := s.client.GetHealth(ctx, &c2pb.Empty{})
				if err != nil {
					return err
				}
				if s.f.json {
					err = s.printJSON(h)
				} else {
					err = s.table([]string{"CHECK", "STATE"}, [][]string{
						{"database", orOK(h.Database)}, {"transport", orOK(h.Transport)},
						{"mode", h.Mode}, {"pending commands", strconv.FormatInt(h.PendingCommands, 10)},
					})
				}
				if err == nil && !h.Ok {
					err = fmt.Errorf("C2 is not healthy")
				}
				return err
			})
		},
	}
}

func orOK(problem string) string {
	if problem == "" {
		return "ok"
	}
	return problem
}

func newC2InfoCommand(f *c2Flags) *cobra.Command {
	return &cobra.Command{
		Use:     "info",
		Short:   "Show the deployment's crypto mode and counts",
		Example: `  e4 c2 info`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				i, err := s.client.GetInfo(ctx, &c2pb.Empty{})
				if err != nil {
					return err
				}
				if s.f.json {
					return s.printJSON(i)
				}
				return s.table([]string{"MODE", "CLIENTS", "TOPICS", "VERSION"},
					[][]string{{i.Mode, strconv.FormatInt(i.Clients, 10), strconv.FormatInt(i.Topics, 10), orDash(i.Version)}})
			})
		},
	}
}
