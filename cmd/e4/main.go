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
  e4 keygen --type ed25519 --out device.key       an Ed25519 key pair (device.key, device.key.pub)
  e4 id thermostat-42                             the client id of a device name
  echo -n 21.5 | e4 protect --key $(cat topic.key) --topic home/temp --hex
  e4 unprotect --key $(cat topic.key) --topic home/temp --hex < message.hex`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.AddCommand(newKeygenCommand(), newIDCommand(), newTopicHashCommand(),
		newProtectCommand(), newUnprotectCommand(), newDemoCommand(), newBrokerCommand(),
		newDevCommand())
	root.AddCommand(newClientCommand())
	root.AddCommand(newC2Command())
	return root
}
