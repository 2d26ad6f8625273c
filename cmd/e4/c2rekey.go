package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store"
)

func newC2RekeyCommand() *cobra.Command {
	f := &serveFlags{}
	var newKeyFile string
	cmd := &cobra.Command{
		Use:   "rekey --new-master-key-file FILE",
		Short: "Re-seal every key in the C2 database under a new master key (C2 stopped)",
		Long: `rekey rotates the master key: it re-seals every sealed value of the database
(client keys, topic keys, C2's key pair, the payloads of queued and past
commands) under the key in --new-master-key-file, created (hex, mode 0600)
if it does not exist. It reads the database and the current master key from
the same configuration as "e4 c2 serve" (--config, E4_C2_* variables, the
flags below).

Stop every C2 that uses the database first: rekey works offline, and a
running C2 would keep sealing under the old key. It rewrites the database in
transactions of 500 rows; if it is interrupted (a crash, a kill), C2 refuses
to start on the half-rekeyed database, and running the same command again
finishes it. When it is done the database opens only with the new key: point
master_key.file (or --master-key-file) at the new file, or move it over the
old one, then start C2. A C2 started with the old key is refused. Keep the
old key as long as you keep backups made before the rekey.`,
		Example: `  e4 c2 rekey --data-dir c2data --new-master-key-file c2data/master.key.new
  mv c2data/master.key.new c2data/master.key
  e4 c2 rekey --config c2.yaml --new-master-key-file /etc/e4c2/master-2027.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadServeConfig(f.config, os.Environ())
			if err != nil {
				return err
			}
			f.apply(cmd, cfg)
			cfg.setDefaults()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runRekey(ctx, cfg, newKeyFile, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "YAML configuration file of e4 c2 serve")
	fl.StringVar(&f.dataDir, "data-dir", "", "folder of the default database and master key (default ./c2data)")
	fl.StringVar(&f.storeDriver, "store", "", "database: sqlite or postgres (default sqlite)")
	fl.StringVar(&f.db, "db", "", "SQLite file (default <data dir>/c2.db)")
	fl.StringVar(&f.dsn, "dsn", "", "PostgreSQL connection string (prefer E4_C2_STORE_DSN)")
	fl.StringVar(&f.masterKeyFile, "master-key-file", "", "the current master key file (default <data dir>/master.key)")
	fl.StringVar(&f.masterKeyEnv, "master-key-env", "", "name of the environment variable holding the current master key")
	fl.StringVar(&f.passphraseFile, "passphrase-file", "", "derive the current master key from the passphrase in this file")
	fl.StringVar(&newKeyFile, "new-master-key-file", "", "the new master key, hex; created with mode 0600 if missing (required)")
	_ = cmd.MarkFlagRequired("new-master-key-file")
	_ = cmd.RegisterFlagCompletionFunc("store", fixedCompletion("sqlite", "postgres"))
	return cmd
}

// runRekey re-seals the database of cfg under the key of newKeyFile.
func runRekey(ctx context.Context, cfg *serveConfig, newKeyFile string, out io.Writer) error {
	st, err := cfg.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if ok, err := c2.Initialized(ctx, st); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("the database %s holds no C2 deployment: nothing to rekey", cfg.storeName())
	}
	oldKey, err := cfg.currentMasterKey(ctx, st)
	if err != nil {
		return err
	}
	newKey, err := seal.KeyFromFile(newKeyFile)
	if errors.Is(err, os.ErrNotExist) {
		if newKey, err = seal.WriteKeyFile(newKeyFile); err == nil {
			fmt.Fprintf(out, "created the new master key %s: back it up\n", newKeyFile)
		}
	}
	if err != nil {
		return err
	}
	res, err := c2.Rekey(ctx, st, oldKey, newKey, nil)
	if err != nil {
		return fmt.Errorf("%w (run the same command again to resume)", err)
	}
	if res.Resealed == 0 && res.AlreadyNew == 0 {
		fmt.Fprintf(out, "the database is already sealed under %s\n", newKeyFile)
		return nil
	}
	fmt.Fprintf(out, "re-sealed %d values under the new master key (%d already were, from an interrupted run)\n", res.Resealed, res.AlreadyNew)
	fmt.Fprintf(out, "the database now opens only with %s: point master_key.file (--master-key-file) at it, or move it over the old key, then start C2\n", newKeyFile)
	return nil
}

// currentMasterKey loads the master key the database is sealed under,
// from the one source configured; unlike serve, it never creates one.
func (c *serveConfig) currentMasterKey(ctx context.Context, st store.Store) ([]byte, error) {
	switch {
	case c.MasterKey.Env != "":
		return seal.KeyFromEnv(c.MasterKey.Env)
	case c.MasterKey.PassphraseFile != "" || c.MasterKey.PassphraseEnv != "":
		return c.passphraseKey(ctx, st)
	}
	return seal.KeyFromFile(c.MasterKey.File)
}
