package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/internal/bootstrap"
)

// Defaults of the C2 API addresses, for "e4 c2 serve" and the admin
// commands.
const (
	defaultC2GRPCAddr = "127.0.0.1:9443"
	defaultC2HTTPAddr = "127.0.0.1:8443"
)

// c2Flags are the connection flags of every admin command.
type c2Flags struct {
	server, token, tokenFile  string
	caFile, certFile, keyFile string
	serverName                string
	plaintext                 bool
	json                      bool
	timeout                   time.Duration
	progress                  string
}

func newC2Command() *cobra.Command {
	f := &c2Flags{}
	cmd := &cobra.Command{
		Use:   "c2",
		Short: "Run the C2 key server, or manage it over its gRPC API",
		Long: `c2 runs the E4 command-and-control server (e4 c2 serve) and manages a
running one: clients, topics, memberships, keys, tokens, events and the
audit log. The admin commands talk gRPC to --server with an API token:
--token-file FILE, or the E4_C2_TOKEN environment variable. On its first
start "e4 c2 serve" writes an admin token to <data dir>/admin.token and, in
development, a self-signed certificate to <data dir>/tls/cert.pem (use it
with --ca-file).

Connection settings also come from the environment: E4_C2_SERVER,
E4_C2_TOKEN, E4_C2_TOKEN_FILE, E4_C2_CA_FILE, E4_C2_CERT_FILE,
E4_C2_KEY_FILE.

Clients are named by name or by their 32-hex-digit id. --json prints
what the HTTP/JSON API sends (field names of c2.proto, keys and hashes in
hex, counts as numbers); that API serves the same operations on the HTTPS
address of "e4 c2 serve" and describes them at /openapi.json (OpenAPI 3).`,
		Example: `  e4 c2 serve --data-dir ./c2data --transport mqtt://127.0.0.1:1883
  export E4_C2_TOKEN_FILE=./c2data/admin.token E4_C2_CA_FILE=./c2data/tls/cert.pem
  e4 c2 token create ops --scope operate --out ops.token
  e4 c2 client add thermostat-42
  e4 c2 topic add plant/telemetry
  e4 c2 member add thermostat-42 plant/telemetry
  e4 c2 topic rotate plant/telemetry --wait
  e4 c2 events --follow
  e4 c2 audit --action AddClient --json`,
		Args: cobra.NoArgs,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.server, "server", envOr("E4_C2_SERVER", defaultC2GRPCAddr), "gRPC address of the C2 API (env E4_C2_SERVER)")
	pf.StringVar(&f.token, "token", "", "API token (prefer E4_C2_TOKEN or --token-file: a flag shows in ps)")
	pf.StringVar(&f.tokenFile, "token-file", os.Getenv("E4_C2_TOKEN_FILE"), "file holding the API token (env E4_C2_TOKEN_FILE)")
	pf.StringVar(&f.caFile, "ca-file", os.Getenv("E4_C2_CA_FILE"), "PEM CA that signs the server certificate; default system roots (env E4_C2_CA_FILE)")
	pf.StringVar(&f.certFile, "tls-cert-file", os.Getenv("E4_C2_CERT_FILE"), "client certificate for mutual TLS (env E4_C2_CERT_FILE)")
	pf.StringVar(&f.keyFile, "tls-key-file", os.Getenv("E4_C2_KEY_FILE"), "key of --tls-cert-file (env E4_C2_KEY_FILE)")
	pf.StringVar(&f.serverName, "server-name", "", "name to check in the server certificate (default: the host of --server)")
	pf.BoolVar(&f.plaintext, "plaintext", false, "connect without TLS (only to a C2 serving with tls.disabled)")
	pf.BoolVar(&f.json, "json", false, "print JSON (one document, or one per line for streams) instead of tables")
	pf.DurationVar(&f.timeout, "timeout", 30*time.Second, "time limit of one call (not of --follow or --wait)")
	pf.StringVar(&f.progress, "progress", "auto", "progress bars: auto (when stderr is a terminal), always, never")
	_ = cmd.RegisterFlagCompletionFunc("progress", fixedCompletion("auto", "always", "never"))
	cmd.AddCommand(newC2ServeCommand(), newC2RekeyCommand(),
		newC2ClientCommand(f), newC2TopicCommand(f), newC2MemberCommand(f), newC2PubKeyCommand(f),
		newC2KeyCommand(f), newC2MessageCommand(f), newC2CommandCommand(f), newC2TokenCommand(f),
		newC2EventsCommand(f), newC2AuditCommand(f), newC2HealthCommand(f), newC2InfoCommand(f),
		newC2PolicyCommand(f))
	addStateCommands(cmd, f)
	addMonitorCommands(cmd, f)
	return cmd
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func fixedCompletion(values ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}

// bearerToken sends the token with every call.
type bearerToken struct {
	token  string
	secure bool
}

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearerToken) RequireTransportSecurity() bool { return b.secure }

// c2Session is a connection to the C2 API.
type c2Session struct {
	f      *c2Flags
	conn   *grpc.ClientConn
	client c2pb.C2Client
	out    io.Writer
	errOut io.Writer
}

// readToken finds the API token: --token, E4_C2_TOKEN, --token-file.
func (f *c2Flags) readToken() (string, error) {
	switch {
	case f.token != "":
		return f.token, nil
	case os.Getenv("E4_C2_TOKEN") != "":
		return strings.TrimSpace(os.Getenv("E4_C2_TOKEN")), nil
	case f.tokenFile != "":
		tok, err := bootstrap.ReadTokenFile(f.tokenFile)
		if err != nil {
			return "", fmt.Errorf("reading the token: %w", err)
		}
		return tok, nil
	}
	// A client certificate mapped to a scope needs no token.
	if f.certFile != "" {
		return "", nil
	}
	return "", errors.New("no API token: set E4_C2_TOKEN or --token-file FILE (e4 c2 serve wrote the first admin token to <data dir>/admin.token)")
}

// session connects to the C2 API.
func (f *c2Flags) session(cmd *cobra.Command) (*c2Session, error) {
	token, err := f.readToken()
	if err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256 << 20))}
	if f.plaintext {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		tlsCfg, err := api.ClientTLS(f.caFile, f.certFile, f.keyFile, f.serverName)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken{token: token, secure: !f.plaintext}))
	}
	conn, err := grpc.NewClient(f.server, opts...)
	if err != nil {
		return nil, fmt.Errorf("C2 at %s: %w", f.server, err)
	}
	return &c2Session{f: f, conn: conn, client: c2pb.NewC2Client(conn), out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr()}, nil
}

// withSession runs fn with a session and a context bounded by --timeout.
func (f *c2Flags) withSession(cmd *cobra.Command, fn func(ctx context.Context, s *c2Session) error) error {
	return f.withSessionFor(cmd, f.timeout, fn)
}

// withSessionFor runs fn with a session and a context bounded by limit
// (none when zero: --follow, --wait), ended by SIGINT or SIGTERM.
func (f *c2Flags) withSessionFor(cmd *cobra.Command, limit time.Duration, fn func(ctx context.Context, s *c2Session) error) error {
	s, err := f.session(cmd)
	if err != nil {
		return err
	}
	defer s.conn.Close()
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	return explain(fn(ctx, s), f.server)
}

// explain turns a gRPC error into one line saying what to do.
func explain(err error, server string) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := st.Message()
	switch st.Code() {
	case codes.Unauthenticated:
		return fmt.Errorf("not authenticated: %s", msg)
	case codes.PermissionDenied:
		return fmt.Errorf("permission denied: %s", msg)
	case codes.Unavailable:
		if strings.Contains(msg, "connection") || strings.Contains(msg, "dial") || strings.Contains(msg, "certificate") || strings.Contains(msg, "handshake") {
			return fmt.Errorf("cannot reach C2 at %s: %s (is e4 c2 serve running? is --ca-file right?)", server, msg)
		}
		return fmt.Errorf("unavailable: %s", msg)
	case codes.DeadlineExceeded:
		return fmt.Errorf("no answer from C2 at %s within --timeout", server)
	}
	return fmt.Errorf("%s: %s", strings.ToLower(splitCamel(st.Code().String())), msg)
}

// splitCamel turns "InvalidArgument" into "Invalid argument".
func splitCamel(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// printJSON prints a message as indented JSON, in the dialect of the
// HTTP/JSON API (bytes in hex, counts as numbers).
func (s *c2Session) printJSON(m proto.Message) error {
	return s.writeJSON(m, "  ")
}

// printJSONLine prints a message as one line of JSON.
func (s *c2Session) printJSONLine(m proto.Message) error {
	return s.writeJSON(m, "")
}

func (s *c2Session) writeJSON(m proto.Message, indent string) error {
	b, err := api.MarshalJSON(m)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if indent == "" {
		err = json.Compact(&out, b)
	} else {
		err = json.Indent(&out, b, "", indent)
	}
	if err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = s.out.Write(out.Bytes())
	return err
}

// table prints rows under a header, aligned.
func (s *c2Session) table(header []string, rows [][]string) error {
	w := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	return w.Flush()
}

// printRecord prints one record: as JSON for scripts, else as a table
// of one row under header.
func (s *c2Session) printRecord(m proto.Message, header, row []string) error {
	if s.f.json {
		return s.printJSON(m)
	}
	return s.table(header, [][]string{row})
}

// done prints a one-line confirmation, or the empty JSON object.
func (s *c2Session) done(format string, args ...any) error {
	if s.f.json {
		_, err := fmt.Fprintln(s.out, "{}")
		return err
	}
	_, err := fmt.Fprintf(s.out, format+"\n", args...)
	return err
}

// isTerminal reports whether w is a character device.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
