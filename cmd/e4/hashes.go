package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newIDCommand() *cobra.Command {
	var suite string
	cmd := &cobra.Command{
		Use:     "id NAME",
		Short:   "Print the client id (hex) derived from a device name",
		Example: "  e4 id thermostat-42\n  e4 id --suite fast thermostat-42",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := parseSuite(suite)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), s.IDFromName(args[0]))
			return err
		},
	}
	addSuiteFlag(cmd, cmd.Flags(), &suite, suiteUsage)
	return cmd
}

func newTopicHashCommand() *cobra.Command {
	var suite string
	cmd := &cobra.Command{
		Use:     "topichash TOPIC",
		Short:   "Print the E4 topic hash (hex) of a topic name",
		Example: "  e4 topichash home/kitchen/temp\n  e4 topichash --suite fast home/kitchen/temp",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := parseSuite(suite)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), s.HashTopic(args[0]))
			return err
		},
	}
	addSuiteFlag(cmd, cmd.Flags(), &suite, suiteUsage)
	return cmd
}
