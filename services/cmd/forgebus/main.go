// Command forgebus runs the forgebus services: ingest (Gogs webhooks into
// JetStream), the workers, and an all-in-one dev mode. Run "forgebus help".
package main

import "os"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }
