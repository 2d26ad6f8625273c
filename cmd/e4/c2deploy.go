package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/internal/atomicfile"
)

// deploymentMarker is the file of the data folder that records that a
// deployment was initialized there, whatever holds its database.
const deploymentMarker = "deployment"

func (c *serveConfig) markerPath() string { return filepath.Join(c.DataDir, deploymentMarker) }

// checkDeployment refuses to start a new deployment on an empty or missing
// database when the data folder says a deployment existed (its marker, or
// a master key file made by an earlier start): starting would create a new
// deployment, with a new admin token written over the old one, and every
// device provisioned by the old one would be lost. init (--init) allows it.
func (c *serveConfig) checkDeployment(ctx context.Context, st store.Store, init bool) error {
	done, err := c2.Initialized(ctx, st)
	if err != nil || done || init {
		return err
	}
	evidence := ""
	if _, err := os.Stat(c.markerPath()); err == nil {
		evidence = "the data folder records a deployment initialized there (" + c.markerPath() + ")"
	} else if c.MasterKey.File != "" {
		if _, err := os.Stat(c.MasterKey.File); err == nil {
			evidence = "the master key file " + c.MasterKey.File + " exists"
		}
	}
	if evidence == "" {
		return nil
	}
	return fmt.Errorf("the database %s is empty or missing, but %s: restore the database from a backup (or fix store.path / store.dsn); to start a new deployment, use a new --data-dir, or start once with --init if this master key was made for a new deployment", c.storeName(), evidence)
}

// storeName names the database without any password of a DSN.
func (c *serveConfig) storeName() string {
	if c.Store.Driver == "sqlite" {
		return c.Store.Path
	}
	return "(" + c.Store.Driver + ")"
}

// markDeployment records in the data folder that a deployment exists, once.
func (c *serveConfig) markDeployment() error {
	if _, err := os.Stat(c.markerPath()); !errors.Is(err, os.ErrNotExist) {
		return err
	}
	text := fmt.Sprintf("An E4kit C2 deployment was initialized with this data folder on %s.\nC2 refuses to start on an empty database while this file exists.\n",
		time.Now().UTC().Format(time.RFC3339))
	return atomicfile.WriteFile(c.markerPath(), []byte(text), 0o600)
}
