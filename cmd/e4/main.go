// Command e4 is the E4kit tool: key generation, ids and topic hashes, and
// protecting or unprotecting single messages for scripting and debugging.
//
// Run "e4 help" for the list of commands.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/e4-iot/e4kit/internal/version"
	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the command line and returns the exit status. Errors are
// printed as one line, "e4: <cause>", on stderr.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, "e4: ") {
			msg = "e4: " + msg
		}
		fmt.Fprintln(stderr, strings.ReplaceAll(msg, "\n", " "))
		return 1
	}
	return 0
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "e4",
		Short: "End-to-end encryption and key management for IoT publish/subscribe",
		Long: `e4 protects messages with the E4 protocol (v1 wire format).

Examples:
  e4 demo                                         protect, unprotect, tamper: see E4 at work
  e4 keygen --type symmetric --out device.key     a new 32-byte client or topic key
  e4 keygen --type ed25519 --out signer.key       an Ed25519 key pair (signer.key, signer.key.pub)
  e4 id thermostat-42                             the client id of a device name
  echo -n 21.5 | e4 protect --key $(cat topic.key) --topic home/temp > message.bin
  e4 unprotect --key $(cat topic.key) --topic home/temp < message.bin
  echo 32312e35 | e4 protect --key $(cat topic.key) --topic home/temp --hex   (--hex: hex in, hex out)`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       version.String(),
	}
	root.SetVersionTemplate("e4 {{.Version}}\n")
	root.AddCommand(newVersionCommand())
	root.AddCommand(newKeygenCommand(), newIDCommand(), newTopicHashCommand(),
		newProtectCommand(), newUnprotectCommand(), newDemoCommand(), newBrokerCommand(),
		newDevCommand())
	root.AddCommand(newClientCommand())
	root.AddCommand(newC2Command())
	refuseUnknownSubcommands(root)
	return root
}

// refuseUnknownSubcommands makes every command that only groups others
// fail on an argument that names none of them, with cobra's suggestions.
// Cobra checks this for the root alone: "e4 c2 polcy" would print the help
// of "e4 c2" and exit 0, so a script with a typo would "succeed".
func refuseUnknownSubcommands(cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if !cmd.HasSubCommands() || cmd.Runnable() || cmd == cmd.Root() {
		return
	}
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if suggestions := cmd.SuggestionsFor(args[0]); len(suggestions) > 0 {
			msg += "; did you mean " + strings.Join(suggestions, " or ") + "?"
		}
		return fmt.Errorf("%s (see %q)", msg, cmd.CommandPath()+" --help")
	}
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this e4 build (also: e4 --version)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "e4 %s\n", version.String())
			return err
		},
	}
}
