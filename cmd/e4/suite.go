package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/e4-iot/e4kit/e4"
)

// suiteUsage is the help text of every --suite flag.
var suiteUsage = "suite of primitives: " + strings.Join(e4.SuiteNames(), " or ") +
	" (fast: 10-round AES-256 and SHA3-256; C2 and every device must agree)"

// addSuiteFlag registers --suite on fl with its completion.
func addSuiteFlag(cmd *cobra.Command, fl *pflag.FlagSet, dst *string, usage string) {
	fl.StringVar(dst, "suite", "", usage)
	_ = cmd.RegisterFlagCompletionFunc("suite", fixedCompletion(e4.SuiteNames()...))
}

// parseSuite reads a --suite value; empty is v1.
func parseSuite(name string) (*e4.Suite, error) {
	s, err := e4.SuiteByName(strings.ToLower(strings.TrimSpace(name)))
	if err != nil {
		return nil, fmt.Errorf("--suite: %w", err)
	}
	return s, nil
}

// explainSuite turns an authentication failure of a one-shot unprotect
// under suite s into an error that says so when the message opens under
// another suite: the user then only has to change --suite. The trial is
// cheap next to starting the process, and its plaintext is discarded.
func explainSuite(err error, s *e4.Suite, open func(*e4.Suite) ([]byte, error)) error {
	if !errors.Is(err, e4.ErrAuthentication) {
		return err
	}
	for _, name := range e4.SuiteNames() {
		other, _ := e4.SuiteByName(name)
		if other == s {
			continue
		}
		if plain, otherErr := open(other); otherErr == nil {
			clear(plain)
			return fmt.Errorf("%w: %w: the message was protected under suite %q, not %q: run with --suite %s",
				e4.ErrAuthentication, e4.ErrSuiteMismatch, other, s, other)
		}
	}
	return err
}

// unprotectWith opens msg under suite s, as SK without signers and PK with.
func unprotectWith(s *e4.Suite, msg, key []byte, signers map[e4.ID]ed25519.PublicKey, cfg *e4.Config) ([]byte, error) {
	if len(signers) == 0 {
		return s.UnprotectSymKey(nil, msg, key, cfg)
	}
	return s.UnprotectPubKey(nil, msg, key, signers, cfg)
}
