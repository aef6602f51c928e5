// Command forgebus runs the forgebus services: ingest (Gogs webhooks into
// JetStream), the workers, and an all-in-one dev mode. Run "forgebus help".
package main

import (
	"os"

	"github.com/forgebus/forgebus/services/config"
	"golang.org/x/sys/unix"
)

func main() {
	// Builds and git run as children: none may read this process's memory
	// or its environment (the original block, secrets included) through /proc.
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// dropSecretEnv removes the secrets from the environment once the
// configuration holds them, so that no child inherits them by accident.
func dropSecretEnv() {
	for _, k := range config.SecretVariables {
		_ = os.Unsetenv(k)
	}
}
