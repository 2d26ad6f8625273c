package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/internal/atomicfile"
)

func newC2ClientCommand(f *c2Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "client",
		Short: "Add, list, re-key, reset, import and remove clients (devices)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newC2ClientAddCommand(f), newC2ClientGetCommand(f), newC2ClientListCommand(f),
		newC2ClientRemoveCommand(f), newC2ClientResetCommand(f), newC2ClientNewKeyCommand(f),
		newC2ClientImportCommand(f), newC2ClientTopicsCommand(f))
	return cmd
}

// readKeyFile reads a key written in hex (as e4 keygen writes it).
func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%s: not a hex key", path)
	}
	return key, nil
}

// readSecretFile reads a one-line secret (a broker password); E4
// passwords, which keys are derived from, are read whole by readE4Password.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// refuseExisting refuses an output file that exists unless force is
// set, as keygen does. Commands call it before asking C2 for a secret: a
// secret C2 made but could not write would be lost.
func refuseExisting(path string, force bool) error {
	if path == "" || force {
		return nil
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s exists; use --force to overwrite it", path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// forceFlagUsage is the help of --force on the commands that write a
// secret to a file.
const forceFlagUsage = "overwrite an existing output file"

// deliverKey hands a key C2 generated to the operator: into keyOut
// (0600, atomically) when given, else on stdout, which is the only copy.
func (s *c2Session) deliverKey(key []byte, keyOut, what string) (string, error) {
	if len(key) == 0 {
		return "", nil
	}
	if keyOut != "" {
		if err := atomicfile.WriteFile(keyOut, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
			return "", err
		}
		return "written to " + keyOut, nil
	}
	fmt.Fprintf(s.errOut, "e4: the %s is shown once: provision the device with it now (or use --key-out FILE)\n", what)
	return hex.EncodeToString(key), nil
}

func clientRow(c *c2pb.Client) []string {
	created := ""
	if c.CreatedAt != nil {
		created = c.CreatedAt.AsTime().Format(time.RFC3339)
	}
	pub := ""
	if len(c.PublicKey) > 0 {
		pub = hex.EncodeToString(c.PublicKey)
	}
	return []string{c.Id, orDash(c.Name), orDash(pub), created}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

var clientHeader = []string{"ID", "NAME", "PUBLIC KEY", "CREATED"}

func newC2ClientAddCommand(f *c2Flags) *cobra.Command {
	var id, keyFile, passwordFile, publicKeyFile, keyOut string
	var force bool
	cmd := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a client; in symmetric-key mode C2 generates its key unless one is given",
		Long: `add adds a client named NAME (its id is e4 id NAME, with --suite as C2 runs), or with --id only.
Symmetric-key mode: C2 generates the client key and shows it once (or writes
it to --key-out); --key-file gives the key, --password-file derives it.
Public-key mode: give the device's Ed25519 public key (--public-key-file,
the FILE.pub of e4 keygen --type ed25519) or --password-file.`,
		Example: `  e4 c2 client add thermostat-42 --key-out thermostat-42.key
  e4 c2 client add --id 0123456789abcdef0123456789abcdef
  e4 c2 client add camera-7 --public-key-file camera-7.key.pub`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &c2pb.AddClientRequest{Id: id}
			if len(args) == 1 {
				req.Name = args[0]
			}
			if req.Name == "" && id == "" {
				return fmt.Errorf("give a client NAME or --id")
			}
			if err := refuseExisting(keyOut, force); err != nil {
				return err
			}
			var err error
			if req.Key, req.PublicKey, err = readClientKeyFiles(keyFile, publicKeyFile); err != nil {
				return err
			}
			if passwordFile != "" {
				if req.Password, err = readE4Password(passwordFile, cmd.ErrOrStderr()); err != nil {
					return err
				}
			}
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				res, err := s.client.AddClient(ctx, req)
				if err != nil {
					return err
				}
				key, err := s.deliverKey(res.Key, keyOut, "client key")
				if err != nil {
					return err
				}
				if s.f.json {
					if keyOut != "" {
						res.Key = nil
					}
					return s.printJSON(res)
				}
				row := clientRow(res.Client)
				return s.table([]string{"ID", "NAME", "KEY"}, [][]string{{row[0], row[1], orDash(key)}})
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&id, "id", "", "the client id (32 hex digits), for a client without a name")
	fl.StringVar(&keyFile, "key-file", "", "the client's symmetric key, hex (default: C2 generates one)")
	fl.StringVar(&passwordFile, "password-file", "", "derive the client's key from the password in this file; "+passwordFileHelp)
	fl.StringVar(&publicKeyFile, "public-key-file", "", "the device's Ed25519 public key, hex (public-key mode)")
	fl.StringVar(&keyOut, "key-out", "", "write the key C2 generated to this file (mode 0600) instead of stdout")
	fl.BoolVar(&force, "force", false, forceFlagUsage)
	return cmd
}

func newC2ClientGetCommand(f *c2Flags) *cobra.Command {
	return &cobra.Command{
		Use:     "get CLIENT",
		Short:   "Show a client (never its key)",
		Example: `  e4 c2 client get thermostat-42`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				c, err := s.client.GetClient(ctx, &c2pb.GetClientRequest{Client: args[0]})
				if err != nil {
					return err
				}
				return s.printRecord(c, clientHeader, clientRow(c))
			})
		},
	}
}

func newC2ClientListCommand(f *c2Flags) *cobra.Command {
	var after string
	var limit int32
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List clients by id, a page at a time (--all for every page)",
		Example: `  e4 c2 client list
  e4 c2 client list --limit 1000 --after 7f3a0000000000000000000000000000
  e4 c2 client list --all --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				out := &c2pb.ListClientsResponse{}
				pageSize := int(limit)
				if pageSize == 0 {
					pageSize = 100 // the server's default
				}
				for {
					page, err := s.client.ListClients(ctx, &c2pb.ListClientsRequest{After: after, Limit: limit})
					if err != nil {
						return err
					}
					out.Clients = append(out.Clients, page.Clients...)
					out.Total = page.Total
					if !all || len(page.Clients) < pageSize {
						break
					}
					after = page.Clients[len(page.Clients)-1].Id
				}
				if s.f.json {
					return s.printJSON(out)
				}
				rows := make([][]string, len(out.Clients))
				for i, c := range out.Clients {
					rows[i] = clientRow(c)
				}
				if err := s.table(clientHeader, rows); err != nil {
					return err
				}
				fmt.Fprintf(s.errOut, "%d of %d clients\n", len(out.Clients), out.Total)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&after, "after", "", "list after this client id (the last of the previous page)")
	cmd.Flags().Int32Var(&limit, "limit", 0, "page size, 1 to 10000 (default 100)")
	cmd.Flags().BoolVar(&all, "all", false, "follow every page")
	return cmd
}

// simpleClientCommand is a command taking one client that returns nothing.
func simpleClientCommand(f *c2Flags, use, short, example, doneMsg string, call func(context.Context, c2pb.C2Client, string) error) *cobra.Command {
	return &cobra.Command{
		Use:     use,
		Short:   short,
		Example: example,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				if err := call(ctx, s.client, args[0]); err != nil {
					return err
				}
				return s.done(doneMsg, args[0])
			})
		},
	}
}

func newC2ClientRemoveCommand(f *c2Flags) *cobra.Command {
	return simpleClientCommand(f, "remove CLIENT", "Remove a client; its topics get new keys",
		"  e4 c2 client remove old-gateway", "removed %s",
		func(ctx context.Context, c c2pb.C2Client, ref string) error {
			_, err := c.RemoveClient(ctx, &c2pb.ClientRequest{Client: ref})
			return err
		})
}

func newC2ClientResetCommand(f *c2Flags) *cobra.Command {
	return simpleClientCommand(f, "reset CLIENT", "Remove a client from every topic and make it forget its topic keys",
		"  e4 c2 client reset thermostat-42", "reset %s",
		func(ctx context.Context, c c2pb.C2Client, ref string) error {
			_, err := c.ResetClient(ctx, &c2pb.ClientRequest{Client: ref})
			return err
		})
}

func newC2ClientNewKeyCommand(f *c2Flags) *cobra.Command {
	var keyFile, publicKeyFile, keyOut string
	var generatePair bool
	var force bool
	cmd := &cobra.Command{
		Use:   "newkey CLIENT",
		Short: "Give a client a new key (generated by C2, or given)",
		Long: `newkey gives a client a new key. Symmetric-key mode: C2 generates it (shown
once, or written to --key-out) unless --key-file gives it, and sends it to
the device under its old key. Public-key mode: the device makes its new key
pair and you give its public key (--public-key-file).

--generate-key-pair (public-key mode) is for devices that cannot make their
own key pair, as the reference C2 does: C2 generates an Ed25519 key pair and
sends the private key to the device (SetIDKey). It is weaker and off unless
the server runs with c2.allow_generated_key_pairs: C2 holds the device's
private key until the command is settled (sealed under the master key in the
outbox, never logged), then discards it.`,
		Example: `  e4 c2 client newkey thermostat-42 --key-out thermostat-42.key
  e4 c2 client newkey camera-7 --public-key-file camera-7-new.key.pub
  e4 c2 client newkey legacy-sensor --generate-key-pair`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &c2pb.NewClientKeyRequest{Client: args[0], GenerateKeyPair: generatePair}
			if err := refuseExisting(keyOut, force); err != nil {
				return err
			}
			var err error
			if req.Key, req.PublicKey, err = readClientKeyFiles(keyFile, publicKeyFile); err != nil {
				return err
			}
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				res, err := s.client.NewClientKey(ctx, req)
				if err != nil {
					return err
				}
				key, err := s.deliverKey(res.Key, keyOut, "new client key")
				if err != nil {
					return err
				}
				if s.f.json {
					if keyOut != "" {
						res.Key = nil
					}
					return s.printJSON(res)
				}
				if len(res.PublicKey) > 0 && !s.f.json {
					return s.table([]string{"CLIENT", "NEW PUBLIC KEY"}, [][]string{{args[0], hex.EncodeToString(res.PublicKey)}})
				}
				if key == "" {
					return s.done("new key of %s recorded and sent", args[0])
				}
				return s.table([]string{"CLIENT", "NEW KEY"}, [][]string{{args[0], key}})
			})
		},
	}
	cmd.Flags().StringVar(&keyFile, "key-file", "", "the new symmetric key, hex (default: C2 generates one)")
	cmd.Flags().StringVar(&publicKeyFile, "public-key-file", "", "the device's new Ed25519 public key, hex (public-key mode)")
	cmd.Flags().StringVar(&keyOut, "key-out", "", "write the key C2 generated to this file (mode 0600) instead of stdout")
	cmd.Flags().BoolVar(&generatePair, "generate-key-pair", false, "public-key mode: C2 generates the device's key pair and sends it the private key (weaker; needs c2.allow_generated_key_pairs)")
	cmd.Flags().BoolVar(&force, "force", false, forceFlagUsage)
	return cmd
}

func newC2ClientImportCommand(f *c2Flags) *cobra.Command {
	var format, keysOut string
	var force bool
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Add every client of a CSV or JSON file, with a progress bar",
		Long: `import adds the clients of FILE ("-" for stdin): CSV with a header naming
its columns among name, id, key, password, public_key (keys in hex or
base64), or JSON (an array of objects with those fields, or one object per
line). Clients are written 10000 per transaction; if a record is bad, the
import stops there and says how many were imported. Keys C2 generated are
written to --keys-out (CSV "id,key", mode 0600, atomically), else printed.
When an import fails after some clients were written, the keys of exactly
those clients are still written to --keys-out (or printed), and the error
says so: provision them, then import the records after them.`,
		Example: `  e4 c2 client import fleet.csv --keys-out fleet-keys.csv
  e4 c2 client import fleet.json --format json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := refuseExisting(keysOut, force); err != nil {
				return err
			}
			data, err := readImportFile(cmd, args[0])
			if err != nil {
				return err
			}
			if format == "" {
				format = strings.TrimPrefix(strings.ToLower(filepath.Ext(args[0])), ".")
				if format != "csv" && format != "json" {
					return fmt.Errorf("cannot tell the format of %s: give --format csv or json", args[0])
				}
			}
			return f.withSessionFor(cmd, 0, func(ctx context.Context, s *c2Session) error {
				return s.importClients(ctx, format, data, keysOut)
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "csv or json (default: from the file name)")
	cmd.Flags().StringVar(&keysOut, "keys-out", "", "write the generated keys to this file (CSV id,key; mode 0600)")
	cmd.Flags().BoolVar(&force, "force", false, forceFlagUsage)
	_ = cmd.RegisterFlagCompletionFunc("format", fixedCompletion("csv", "json"))
	return cmd
}

// readImportFile reads a file, or stdin for "-".
func readImportFile(cmd *cobra.Command, path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(cmd.InOrStdin())
	}
	return os.ReadFile(path)
}

// countRecords estimates how many records an import file holds, for the
// progress bar.
func countRecords(format string, data []byte) int64 {
	lines := int64(strings.Count(strings.TrimSpace(string(data)), "\n")) + 1
	if format == "csv" {
		return lines - 1
	}
	if n := int64(strings.Count(string(data), "{")); n > 0 {
		return n
	}
	return lines
}

func (s *c2Session) importClients(ctx context.Context, format string, data []byte, keysOut string) error {
	stream, err := s.client.ImportClients(ctx, &c2pb.ImportClientsRequest{Format: format, Data: data})
	if err != nil {
		return err
	}
	bar := s.newProgress("importing", countRecords(format, data))
	result := &c2pb.ImportClientsProgress{}
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			bar.finish()
			return s.importFailed(err, result, keysOut)
		}
		bar.set(msg.Imported)
		result.Imported, result.Done = msg.Imported, msg.Done
		result.Generated = append(result.Generated, msg.Generated...)
	}
	bar.finish()
	if keysOut != "" {
		if err := writeGeneratedKeys(keysOut, result.Generated); err != nil {
			return err
		}
		result.Generated = nil
	}
	if s.f.json {
		return s.printJSON(result)
	}
	fmt.Fprintf(s.out, "imported %d clients\n", result.Imported)
	if keysOut != "" {
		fmt.Fprintf(s.out, "generated keys written to %s\n", keysOut)
		return nil
	}
	if len(result.Generated) == 0 {
		return nil
	}
	rows := make([][]string, len(result.Generated))
	for i, g := range result.Generated {
		rows[i] = []string{g.ClientId, hex.EncodeToString(g.Key)}
	}
	return s.table([]string{"ID", "GENERATED KEY"}, rows)
}

// writeGeneratedKeys writes the keys of an import as CSV "id,key",
// atomically with mode 0600.
func writeGeneratedKeys(path string, generated []*c2pb.GeneratedKey) error {
	var b strings.Builder
	b.WriteString("id,key\n")
	for _, g := range generated {
		b.WriteString(g.ClientId + "," + hex.EncodeToString(g.Key) + "\n")
	}
	return atomicfile.WriteFile(path, []byte(b.String()), 0o600)
}

// importFailed saves the generated keys of the clients an interrupted
// import committed (C2 sends them before the error), so none is lost, and
// says where they are.
func (s *c2Session) importFailed(err error, result *c2pb.ImportClientsProgress, keysOut string) error {
	if len(result.Generated) == 0 {
		return err
	}
	// Flattened to text: withSession's explain must not rewrite it again.
	err = errors.New(explain(err, s.f.server).Error())
	if keysOut != "" {
		if werr := writeGeneratedKeys(keysOut, result.Generated); werr != nil {
			return fmt.Errorf("%w; the %d keys generated for the clients imported could not be saved to %s: %v", err, len(result.Generated), keysOut, werr)
		}
		return fmt.Errorf("%w; the %d keys generated for the clients imported were written to %s", err, len(result.Generated), keysOut)
	}
	rows := make([][]string, len(result.Generated))
	for i, g := range result.Generated {
		rows[i] = []string{g.ClientId, hex.EncodeToString(g.Key)}
	}
	if terr := s.table([]string{"ID", "GENERATED KEY"}, rows); terr != nil {
		return terr
	}
	return fmt.Errorf("%w; the %d keys generated for the clients imported are printed above", err, len(result.Generated))
}

func newC2ClientTopicsCommand(f *c2Flags) *cobra.Command {
	return &cobra.Command{
		Use:     "topics CLIENT",
		Short:   "List the topics a client is in",
		Example: `  e4 c2 client topics thermostat-42`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withSession(cmd, func(ctx context.Context, s *c2Session) error {
				res, err := s.client.ListTopicsOfClient(ctx, &c2pb.ListTopicsOfClientRequest{Client: args[0], Limit: 10000})
				if err != nil {
					return err
				}
				if s.f.json {
					return s.printJSON(res)
				}
				rows := make([][]string, len(res.Topics))
				for i, t := range res.Topics {
					rows[i] = []string{t}
				}
				if err := s.table([]string{"TOPIC"}, rows); err != nil {
					return err
				}
				fmt.Fprintf(s.errOut, "%s is in %s topics\n", args[0], strconv.FormatInt(res.Total, 10))
				return nil
			})
		},
	}
}

// readClientKeyFiles reads the optional symmetric key and public key files
// of a client; an empty name leaves its key nil.
func readClientKeyFiles(keyFile, publicKeyFile string) (key, publicKey []byte, err error) {
	if keyFile != "" {
		if key, err = readKeyFile(keyFile); err != nil {
			return nil, nil, err
		}
	}
	if publicKeyFile != "" {
		if publicKey, err = readKeyFile(publicKeyFile); err != nil {
			return nil, nil, err
		}
	}
	return key, publicKey, nil
}
