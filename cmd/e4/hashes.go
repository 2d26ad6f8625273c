package main

import (
	"fmt"

	"github.com/e4-iot/e4kit/e4"
	"github.com/spf13/cobra"
)

func newIDCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "id NAME",
		Short:   "Print the client id (hex) derived from a device name",
		Example: "  e4 id thermostat-42",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := e4.IDFromName(args[0])
			_, err := fmt.Fprintln(cmd.OutOrStdout(), id)
			return err
		},
	}
}

func newTopicHashCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "topichash TOPIC",
		Short:   "Print the E4 topic hash (hex) of a topic name",
		Example: "  e4 topichash home/kitchen/temp",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h := e4.HashTopic(args[0])
			_, err := fmt.Fprintln(cmd.OutOrStdout(), h)
			return err
		},
	}
}
