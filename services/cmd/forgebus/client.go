package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/forgebus/forgebus/services/broker"
	"github.com/forgebus/forgebus/services/config"
)

// validateNoWebhook validates cfg for a command that handles no webhook
// (workers and client commands): the secret settings do not matter there.
func validateNoWebhook(cfg config.Config) error {
	cfg.Gogs.AllowUnsigned = true
	if err := cfg.Validate(); err != nil {
		return usage(err)
	}
	return nil
}

// connectClient loads the configuration of cmd and connects to a running
// forgebus's NATS as a client named forgebus-<role>; it never starts an
// embedded server.
func connectClient(cmd *cobra.Command, role string) (*broker.Broker, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return nil, err
	}
	if err := validateNoWebhook(cfg); err != nil {
		return nil, err
	}
	log, err := newLogger(cmd, cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
	defer cancel()
	b, err := broker.Connect(ctx, cfg, log, broker.ClientOnly(), broker.WithRole(role))
	if err != nil {
		return nil, fmt.Errorf("%w (is 'forgebus dev', 'forgebus ingest' or a worker running against this NATS?)", err)
	}
	return b, nil
}

// addClientFlags adds the flags of a client command.
func addClientFlags(cmd *cobra.Command) {
	addFlag(cmd, "nats-url", "NATS server URLs")
	addFlag(cmd, "nats-listen", "address of a running forgebus's embedded NATS")
}
