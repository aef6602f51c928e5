package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/forgebus/forgebus/services/config"
	"github.com/forgebus/forgebus/services/logging"
)

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// commands are the subcommands, added by register from each file's init.
var commands []func() *cobra.Command

// register adds a subcommand to the root. Call it from init() in the file
// that defines the command.
func register(f func() *cobra.Command) { commands = append(commands, f) }

// usageError marks a usage or configuration error: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usage marks err as a usage or configuration error.
func usage(err error) error {
	if err == nil {
		return nil
	}
	return usageError{err}
}

// flagEnv maps a flag name to the environment variable it overrides.
var flagEnv = map[string]string{
	"config":      "FORGEBUS_CONFIG",
	"log-level":   "FORGEBUS_LOG_LEVEL",
	"log-format":  "FORGEBUS_LOG_FORMAT",
	"http-addr":   "FORGEBUS_HTTP_ADDR",
	"data-dir":    "FORGEBUS_DATA_DIR",
	"nats-url":    "FORGEBUS_NATS_URL",
	"nats-listen": "FORGEBUS_NATS_LISTEN",
	"instance":    "FORGEBUS_INSTANCE",
}

// addFlag defines a string flag that overrides its environment variable.
func addFlag(cmd *cobra.Command, name, help string) {
	cmd.Flags().String(name, "", help+" (overrides "+flagEnv[name]+")")
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "forgebus",
		Short: "Gogs webhooks into durable CloudEvents on NATS JetStream, and the workers that act on them",
		Long: `forgebus turns webhooks from a self-hosted Gogs into durable CloudEvents on
NATS JetStream and runs retryable worker services on them.

Configuration comes from FORGEBUS_* environment variables and an optional
YAML file (FORGEBUS_CONFIG or --config, non-secret settings only); flags
override both.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().String("config", "", "YAML config file (overrides FORGEBUS_CONFIG)")
	root.PersistentFlags().String("log-level", "", "log level: trace, debug, info, warn, error (overrides FORGEBUS_LOG_LEVEL)")
	root.PersistentFlags().String("log-format", "", "log format: json, console, auto (overrides FORGEBUS_LOG_FORMAT)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usage(err) })
	for _, f := range commands {
		root.AddCommand(f())
	}
	return root
}

// run executes the command line and returns the exit code. SIGINT and
// SIGTERM cancel the command's context; a second signal kills the process.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // restore the default: a second Ctrl-C ends the process at once
	}()

	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		// Stopped by a signal while starting: not a failure.
		return exitOK
	}
	fmt.Fprintln(stderr, "forgebus: "+oneLine(err.Error()))
	var ue usageError
	switch {
	case errors.As(err, &ue), errors.Is(err, config.ErrInvalid), errors.Is(err, config.ErrNoSecret),
		errors.Is(err, config.ErrConflict), errors.Is(err, config.ErrSecretInFile):
		return exitUsage
	case cmd == nil || !ranCommand:
		// cobra's own argument and command errors.
		fmt.Fprintln(stderr, "run 'forgebus help' for usage")
		return exitUsage
	}
	return exitRuntime
}

// ranCommand is set once a command's RunE starts, through [loadConfig];
// errors before it are usage errors.
var ranCommand bool

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// loadConfig loads the configuration for cmd: environment, the config file,
// and the flags of cmd that override them (see flagEnv). It does not
// validate. Every command's RunE starts with it.
func loadConfig(cmd *cobra.Command) (config.Config, error) {
	ranCommand = true
	overrides := map[string]string{}
	for name, env := range flagEnv {
		f := cmd.Flags().Lookup(name)
		if f != nil && f.Changed {
			overrides[env] = f.Value.String()
		}
	}
	getenv := func(k string) string {
		if v, ok := overrides[k]; ok {
			return v
		}
		return os.Getenv(k)
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return config.Config{}, usage(err)
	}
	dropSecretEnv()
	return cfg, nil
}

// newLogger builds the logger of cfg, writing to cmd's stderr.
func newLogger(cmd *cobra.Command, cfg config.Config) (zerolog.Logger, error) {
	log, err := logging.New(cfg.Log.Level, cfg.Log.Format, cmd.ErrOrStderr())
	if err != nil {
		return zerolog.Nop(), usage(err)
	}
	return log, nil
}

// setup loads and validates the configuration and builds the logger: the
// start of every service command.
func setup(cmd *cobra.Command) (config.Config, zerolog.Logger, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return cfg, zerolog.Nop(), err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, zerolog.Nop(), usage(err)
	}
	log, err := newLogger(cmd, cfg)
	return cfg, log, err
}
