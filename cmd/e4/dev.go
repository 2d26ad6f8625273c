package main

import (
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/e4-iot/e4kit/internal/devenv"
)

func newDevCommand() *cobra.Command {
	var opts devenv.Options
	var suite string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run C2, an embedded MQTT broker and three devices: E4 end to end, nothing to install",
		Long: `dev starts, in this process: C2 with its SQLite database in a local folder,
an embedded MQTT broker, and three simulated devices publishing telemetry on a
protected topic. It prints what the broker carries (ciphertext) beside what a
device reads (plaintext), rotates the topic key every few seconds while the
devices keep talking, then removes one device from the topic. C2's API listens
on localhost with a self-signed certificate and an admin token in the folder, so
the "e4 c2" admin commands work against it. Ctrl-C stops it.

Examples:
  e4 dev
  e4 dev --dir /tmp/e4dev --rotate-every 2s --duration 30s
  e4 dev --dir /tmp/e4dev-fast --suite fast --duration 30s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if opts.Suite, err = parseSuite(suite); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			_, err = devenv.Run(ctx, opts, cmd.OutOrStdout())
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Dir, "dir", ".e4dev", "folder for the database, the master key and the devices' state")
	fl.StringVar(&opts.BrokerAddr, "broker-addr", "127.0.0.1:1883", "where the embedded MQTT broker listens (a free port if taken)")
	fl.DurationVar(&opts.PublishEvery, "publish-every", time.Second, "telemetry period of each device")
	fl.DurationVar(&opts.RotateEvery, "rotate-every", 5*time.Second, "topic key rotation period")
	fl.IntVar(&opts.RemoveAfter, "remove-after", 2, "rotations before a device is removed from the topic")
	fl.DurationVar(&opts.Duration, "duration", 0, "stop after this long (default: run until Ctrl-C)")
	fl.StringVar(&opts.GRPCAddr, "grpc-addr", "127.0.0.1:9443", "where C2's gRPC API listens (a free port if taken)")
	fl.StringVar(&opts.HTTPAddr, "http-addr", "127.0.0.1:8443", "where C2's HTTPS/JSON API listens (a free port if taken)")
	addSuiteFlag(cmd, fl, &suite, suiteUsage+"; a --dir keeps the suite it was created with")
	return cmd
}
