package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/forgebus/forgebus/services/provision"
)

func init() { register(newProvisionCmd) }

func newProvisionCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "provision",
		Short: "Create or update the streams, as the operator, on an external NATS",
		Long: `provision creates the streams (FORGE_EVENTS, FORGE_RESULTS, FORGE_DLQ,
FORGE_AUDIT) or updates them to the configuration, and exits. ingest and the
workers connect with roles that may not administer streams: on an external
NATS, run this once with the operator's credentials (FORGEBUS_NATS_CREDS)
before starting them. "forgebus dev" and "forgebus ingest" with the embedded
server provision by themselves.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := connectClient(cmd, "provision")
			if err != nil {
				return err
			}
			defer b.Close()
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			if err := provision.Streams(ctx, b.JS, cfg.Streams); err != nil {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "streams provisioned")
			return nil
		},
	}
	addClientFlags(cmd)
	addFlag(cmd, "data-dir", "data directory")
	return cmd
}
