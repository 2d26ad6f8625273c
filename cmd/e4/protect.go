package main

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	"github.com/e4-iot/e4kit/e4"
	"github.com/spf13/cobra"
)

// maxInput bounds what protect and unprotect read from stdin.
const maxInput = 64 << 20

type protectFlags struct {
	key, topic, signKey, signerID string
	suite                         string
	time                          int64
	hex                           bool
}

func newProtectCommand() *cobra.Command {
	var f protectFlags
	cmd := &cobra.Command{
		Use:   "protect --key HEX --topic T [--sign-key HEX --signer-id HEX] [--time UNIX] [--hex]",
		Short: "Protect stdin for publication on a topic, write the message to stdout",
		Long: `protect reads a payload on stdin and writes the protected E4 message on stdout.

Without --sign-key it produces an SK message (timestamp | SIV | ciphertext);
with --sign-key (a 64-byte Ed25519 private key) and --signer-id it produces a
PK message, signed by that sender.`,
		Example: `  echo -n hello | e4 protect --key $(cat topic.key) --topic sensors/temp > msg.bin
  echo 68656c6c6f | e4 protect --key $(cat topic.key) --topic sensors/temp --hex > msg.hex
  e4 protect --key $K --topic a --sign-key $PRIV --signer-id $ID --time 1764000000 < payload.bin > signed.bin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runProtect(cmd, &f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.key, "key", "", "32-byte topic key, hex (required)")
	fl.StringVar(&f.topic, "topic", "", "topic the message is for (required)")
	fl.StringVar(&f.signKey, "sign-key", "", "PK mode: the sender's 64-byte Ed25519 private key, hex")
	fl.StringVar(&f.signerID, "signer-id", "", "PK mode: the sender's 16-byte client id, hex")
	fl.Int64Var(&f.time, "time", 0, "timestamp to use, Unix seconds (default now)")
	fl.BoolVar(&f.hex, "hex", false, "read and write hex text instead of raw bytes")
	addSuiteFlag(cmd, fl, &f.suite, suiteUsage)
	_ = cmd.MarkFlagRequired("key")
	_ = cmd.MarkFlagRequired("topic")
	return cmd
}

func runProtect(cmd *cobra.Command, f *protectFlags) error {
	suite, err := parseSuite(f.suite)
	if err != nil {
		return err
	}
	key, err := decodeHexFlag("key", f.key, e4.KeyLen)
	if err != nil {
		return err
	}
	payload, err := readInput(cmd.InOrStdin(), f.hex)
	if err != nil {
		return err
	}
	at := time.Now()
	if cmd.Flags().Changed("time") {
		at = time.Unix(f.time, 0)
	}
	var out []byte
	if f.signKey == "" && f.signerID == "" {
		out, err = suite.ProtectSymKey(nil, payload, key, at)
	} else {
		out, err = protectSigned(suite, payload, key, f, at)
	}
	if err != nil {
		return err
	}
	return writeOutput(cmd.OutOrStdout(), out, f.hex)
}

func protectSigned(suite *e4.Suite, payload, key []byte, f *protectFlags, at time.Time) ([]byte, error) {
	signKey, err := decodeHexFlag("sign-key", f.signKey, ed25519.PrivateKeySize)
	if err != nil {
		return nil, err
	}
	id, err := decodeHexFlag("signer-id", f.signerID, e4.IDLen)
	if err != nil {
		return nil, err
	}
	return suite.ProtectPubKey(nil, payload, key, e4.ID(id), signKey, at)
}

type unprotectFlags struct {
	key, topic string
	suite      string
	signers    []string
	now        int64
	hex        bool
	maxAge     time.Duration
	skew       time.Duration
	noClock    bool
}

func newUnprotectCommand() *cobra.Command {
	var f unprotectFlags
	cmd := &cobra.Command{
		Use:   "unprotect --key HEX --topic T [--signer ID_HEX=PUBKEY_HEX ...] [--now UNIX] [--hex]",
		Short: "Check and decrypt an E4 message from stdin, write the payload to stdout",
		Long: `unprotect reads a protected E4 message on stdin, checks its timestamp and its
authenticity, and writes the payload on stdout. With one or more --signer it
expects a PK message from one of those senders.

On failure it exits non-zero and names the cause on stderr, for example
"e4: timestamp too old" or "e4: message authentication failed". A message
that authenticates under another suite than --suite is refused with the
suite it was protected under named.`,
		Example: `  e4 unprotect --key $(cat topic.key) --topic sensors/temp < msg.bin
  e4 unprotect --key $(cat topic.key) --topic sensors/temp --hex < msg.hex
  e4 unprotect --key $K --topic a --signer $ID=$PUB --now 1764000013 < signed.bin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runUnprotect(cmd, &f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.key, "key", "", "32-byte topic key, hex (required)")
	fl.StringVar(&f.topic, "topic", "", "topic the message came from (required)")
	fl.StringArrayVar(&f.signers, "signer", nil, "PK mode: a known sender, ID_HEX=PUBKEY_HEX (repeatable)")
	fl.Int64Var(&f.now, "now", 0, "the receiver's clock, Unix seconds (default now)")
	fl.BoolVar(&f.hex, "hex", false, "read and write hex text instead of raw bytes")
	fl.DurationVar(&f.maxAge, "max-age", e4.DefaultMaxAge, "oldest acceptable message")
	fl.DurationVar(&f.skew, "max-skew", 0, "how far in the future a timestamp may be")
	fl.BoolVar(&f.noClock, "no-clock", false, "skip the timestamp checks")
	addSuiteFlag(cmd, fl, &f.suite, suiteUsage)
	_ = cmd.MarkFlagRequired("key")
	_ = cmd.MarkFlagRequired("topic")
	return cmd
}

func runUnprotect(cmd *cobra.Command, f *unprotectFlags) error {
	suite, err := parseSuite(f.suite)
	if err != nil {
		return err
	}
	key, err := decodeHexFlag("key", f.key, e4.KeyLen)
	if err != nil {
		return err
	}
	signers, err := parseSigners(f.signers)
	if err != nil {
		return err
	}
	msg, err := readInput(cmd.InOrStdin(), f.hex)
	if err != nil {
		return err
	}
	cfg := &e4.Config{MaxAge: f.maxAge, MaxFutureSkew: f.skew, NoClock: f.noClock}
	if cmd.Flags().Changed("now") {
		now := time.Unix(f.now, 0)
		cfg.Now = func() time.Time { return now }
	}
	out, err := unprotectWith(suite, msg, key, signers, cfg)
	if err != nil {
		return explainSuite(err, suite, func(other *e4.Suite) ([]byte, error) {
			return unprotectWith(other, msg, key, signers, cfg)
		})
	}
	return writeOutput(cmd.OutOrStdout(), out, f.hex)
}

// parseSigners reads ID_HEX=PUBKEY_HEX pairs.
func parseSigners(specs []string) (map[e4.ID]ed25519.PublicKey, error) {
	signers := make(map[e4.ID]ed25519.PublicKey, len(specs))
	for _, spec := range specs {
		idHex, pubHex, ok := strings.Cut(spec, "=")
		if !ok {
			return nil, fmt.Errorf("--signer %q: want ID_HEX=PUBKEY_HEX", spec)
		}
		id, err := decodeHexFlag("signer id", idHex, e4.IDLen)
		if err != nil {
			return nil, err
		}
		pub, err := decodeHexFlag("signer public key", pubHex, ed25519.PublicKeySize)
		if err != nil {
			return nil, err
		}
		signers[e4.ID(id)] = pub
	}
	return signers, nil
}

// decodeHexFlag decodes a hex flag value of an exact byte length.
func decodeHexFlag(name, value string, size int) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimSpace(value))
	if err != nil {
		return nil, fmt.Errorf("--%s is not valid hex", name)
	}
	if len(b) != size {
		return nil, fmt.Errorf("--%s must be %d bytes (%d hex characters), got %d bytes", name, size, 2*size, len(b))
	}
	return b, nil
}

// readInput reads stdin, as hex text (whitespace ignored) when asHex.
func readInput(r io.Reader, asHex bool) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, fmt.Errorf("reading stdin: %w", err)
	}
	if len(data) > maxInput {
		return nil, fmt.Errorf("input larger than %d bytes", maxInput)
	}
	if !asHex {
		return data, nil
	}
	compact := strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, string(data))
	b, err := hex.DecodeString(compact)
	if err != nil {
		return nil, fmt.Errorf("stdin is not valid hex: %w", err)
	}
	return b, nil
}

func writeOutput(w io.Writer, data []byte, asHex bool) error {
	var err error
	if asHex {
		_, err = fmt.Fprintln(w, hex.EncodeToString(data))
	} else {
		_, err = w.Write(data)
	}
	return err
}
