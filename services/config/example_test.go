package config_test

import (
	"fmt"

	"github.com/forgebus/forgebus/services/config"
)

func ExampleLoad() {
	env := map[string]string{
		"FORGEBUS_GOGS_SECRETS":   "old-secret,new-secret",
		"FORGEBUS_INSTANCE":       "git-main",
		"FORGEBUS_STREAM_MAX_AGE": "168h",
	}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		panic(err)
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	fmt.Println(cfg.Instance, cfg.HTTPAddr, cfg.ClientURL(), cfg.Streams.Events.MaxAge)
	fmt.Println(len(cfg.Gogs.Secrets), cfg.Gogs.Secrets)
	// Output:
	// git-main :8080 nats://127.0.0.1:4222 168h0m0s
	// 2 [[redacted] [redacted]]
}
