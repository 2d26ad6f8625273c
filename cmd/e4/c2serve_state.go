package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/e4-iot/e4kit/c2"
)

// The settings of "e4 c2 serve" that tune how C2 brings devices up to
// date (c2.DispatchConfig): repairs from the device state, the resend
// schedule of devices that do not acknowledge, the report of devices
// behind, and the rate of catch-up. They are in the c2 section of the
// configuration; zero takes the default shown in serveStateHelp.

// catchUpSettings is c2.catch_up of the configuration (c2.CatchUpConfig).
type catchUpSettings struct {
	// SyncRate and SyncBurst bound the sync requests answered per second.
	SyncRate  float64 `yaml:"sync_rate"`
	SyncBurst int     `yaml:"sync_burst"`
	// SyncQueue is how many sync requests may wait; more are dropped (the
	// device asks again when it reconnects).
	SyncQueue int `yaml:"sync_queue"`
	// CommandRate and CommandBurst bound the commands per second that
	// catch-up and repairs queue.
	CommandRate  float64 `yaml:"command_rate"`
	CommandBurst int     `yaml:"command_burst"`
}

// serveStateHelp ends the help of "e4 c2 serve".
const serveStateHelp = `

Device state and catch-up (section c2 of the configuration; 0 takes the
default):
  c2.await_ack (--await-ack, 1m): a device that acknowledges and has not
    acknowledged a topic's current key this long after it was sent gets one
    SetTopicKey with the current key; negative turns the repair off.
  c2.resend_every (--resend-every, 0: never): send devices that do not
    acknowledge (E4 v1 reference devices; e4 c2 client acknowledges NAME no)
    their topics' current keys again on this schedule, one SetTopicKey per
    topic and period.
  c2.behind_after (--behind-after, 10m): report a topic whose members are
    still behind this long after its rotation (event devices_behind).
  c2.max_attempts (30) and c2.stall_after (5): the retry budget of a command,
    and the failed publishes in a row after which its client is reported
    stalled (event client_stalled).
  c2.repair_interval (10s): how often the state is scanned for repairs and
    reports.
  c2.command_lead (60s): how far ahead of the clock the strictly increasing
    timestamps of one client's commands may run; negative never dates a
    command in the future.
  c2.client_key_grace (24h): how long after a client-key change C2 keeps
    sending a device that does not acknowledge its commands under the
    previous key too.
  c2.catch_up.sync_rate (--catch-up-rate, 200/s), sync_burst (200) and
    sync_queue (10000): the sync requests answered per second, and how many
    may wait. c2.catch_up.command_rate (--catch-up-command-rate, 2000/s) and
    command_burst (2000): the commands per second catch-up and repairs queue.

Automatic rotation (c2.automation; see e4 c2 policy --help):
  c2.automation.disabled (false): this replica runs no rotation scheduler.
  c2.automation.budget (1000/s): commands per second the automatic
    rotations of every replica together may queue.
  c2.automation.coalesce_leaves (0: rotate at once): rotate a topic at most
    once per this window after members leave it.
  c2.automation.stuck_after (1h): members still behind this long after an
    automatic rotation make it stuck (and may pause its policy).
  c2.automation.tick (1s), lease (1m): how often the scheduler looks, and
    how long it holds the schedule rows it claimed.
  c2.automation.idle_after (0: never): report a device_idle event for each
    topic of a device not heard from this long (checked hourly), which
    event rules (--on-event device_idle) can rotate on.
Environment variables follow the YAML paths: E4_C2_C2_RESEND_EVERY=6h,
E4_C2_C2_CATCH_UP_SYNC_RATE=20, E4_C2_C2_AUTOMATION_BUDGET=200.`

// dispatchConfig is the dispatcher's configuration from the c2 section.
func (c *serveConfig) dispatchConfig() c2.DispatchConfig {
	s := c.C2
	return c2.DispatchConfig{
		AwaitAck: s.AwaitAck, ResendEvery: s.ResendEvery, BehindAfter: s.BehindAfter,
		MaxAttempts: s.MaxAttempts, StallAfter: s.StallAfter, RepairInterval: s.RepairInterval,
		CommandLead: s.CommandLead, ClientKeyGrace: s.ClientKeyGrace,
		CatchUp: c2.CatchUpConfig{
			SyncRate: s.CatchUp.SyncRate, SyncBurst: s.CatchUp.SyncBurst, SyncQueue: s.CatchUp.SyncQueue,
			CommandRate: s.CatchUp.CommandRate, CommandBurst: s.CatchUp.CommandBurst,
		},
	}
}

// stateFlags are the flags of "e4 c2 serve" for the most used of those
// settings.
type stateFlags struct {
	awaitAck, resendEvery, behindAfter time.Duration
	syncRate, commandRate              float64
}

func (f *stateFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.DurationVar(&f.awaitAck, "await-ack", 0, "send the current key again to a device that acknowledges and has not acknowledged it after this (default 1m; negative: never)")
	fl.DurationVar(&f.resendEvery, "resend-every", 0, "send devices that do not acknowledge their current keys again on this schedule (default 0: never)")
	fl.DurationVar(&f.behindAfter, "behind-after", 0, "report members still behind this long after a rotation (default 10m)")
	fl.Float64Var(&f.syncRate, "catch-up-rate", 0, "sync requests answered per second (default 200)")
	fl.Float64Var(&f.commandRate, "catch-up-command-rate", 0, "commands per second that catch-up and repairs queue (default 2000)")
}

// apply copies the flags given on the command line over cfg.
func (f *stateFlags) apply(cmd *cobra.Command, cfg *serveConfig) {
	changed := cmd.Flags().Changed
	if changed("await-ack") {
		cfg.C2.AwaitAck = f.awaitAck
	}
	if changed("resend-every") {
		cfg.C2.ResendEvery = f.resendEvery
	}
	if changed("behind-after") {
		cfg.C2.BehindAfter = f.behindAfter
	}
	if changed("catch-up-rate") {
		cfg.C2.CatchUp.SyncRate = f.syncRate
	}
	if changed("catch-up-command-rate") {
		cfg.C2.CatchUp.CommandRate = f.commandRate
	}
}
