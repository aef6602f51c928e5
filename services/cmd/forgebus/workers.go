package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/services/broker"
	"github.com/forgebus/forgebus/services/platform"
	"github.com/forgebus/forgebus/workers/audit"
	"github.com/forgebus/forgebus/workers/command"
	"github.com/forgebus/forgebus/workers/docs"
	"github.com/forgebus/forgebus/workers/envsync"
	"github.com/forgebus/forgebus/workers/gitrepo"
	"github.com/forgebus/forgebus/workers/gogsapi"
	"github.com/forgebus/forgebus/workers/models"
	"github.com/forgebus/forgebus/workers/runtime"
)

// auditWorker is the one worker that is not a runtime worker: it reads three
// streams and appends to the audit chain in order, so it runs its own loop.
const auditWorker = "audit"

func init() {
	workerFactories[docs.Name] = newDocsWorker
	workerFactories[models.Name] = newModelsWorker
	workerFactories[envsync.Name] = newEnvsyncWorker
}

func newDocsWorker(p *platform.Platform, _ jetstream.JetStream) (runtime.Worker, error) {
	node := p.Config.Workers[docs.Name]
	cfg, err := docs.DecodeConfig(&node)
	if err != nil {
		return runtime.Worker{}, usage(fmt.Errorf("config workers.%s: %w", docs.Name, err))
	}
	protectSecrets(p)
	w, err := docs.New(cfg, docs.Deps{
		GogsURL:   p.Config.Gogs.URL,
		GogsToken: p.Config.Gogs.Token.Reveal(),
		CacheDir:  filepath.Join(p.Config.DataDir, "cache", docs.Name),
		Path:      p.Config.BuildPath,
		Log:       p.Log.With().Str("worker", docs.Name).Logger(),
	})
	if err != nil {
		return runtime.Worker{}, usage(err)
	}
	return runtime.Worker{Name: docs.Name, Subjects: w.Subjects(p.Config.Instance), Handler: w}, nil
}

func newModelsWorker(p *platform.Platform, js jetstream.JetStream) (runtime.Worker, error) {
	node := p.Config.Workers[models.Name]
	cfg, err := models.DecodeConfig(&node)
	if err != nil {
		return runtime.Worker{}, usage(fmt.Errorf("config workers.%s: %w", models.Name, err))
	}
	protectSecrets(p)
	w, err := models.New(cfg, models.Deps{
		GogsURL:   p.Config.Gogs.URL,
		GogsToken: p.Config.Gogs.Token.Reveal(),
		CacheDir:  filepath.Join(p.Config.DataDir, "cache", models.Name),
		Path:      p.Config.BuildPath,
		Secret:    p.Config.ModelsSecret.Bytes(),
		KV:        js,
		Replicas:  p.Config.Streams.Replicas,
		Log:       p.Log.With().Str("worker", models.Name).Logger(),
	})
	if err != nil {
		return runtime.Worker{}, usage(err)
	}
	return runtime.Worker{Name: models.Name, Subjects: w.Subjects(p.Config.Instance), Handler: w}, nil
}

func newEnvsyncWorker(p *platform.Platform, js jetstream.JetStream) (runtime.Worker, error) {
	node := p.Config.Workers[envsync.Name]
	cfg, err := envsync.DecodeConfig(&node)
	if err != nil {
		return runtime.Worker{}, usage(fmt.Errorf("config workers.%s: %w", envsync.Name, err))
	}
	if p.Config.Gogs.URL == "" {
		return runtime.Worker{}, usage(fmt.Errorf("worker %s: FORGEBUS_GOGS_URL is required (the env files are read through the Gogs API)", envsync.Name))
	}
	api, err := gogsapi.New(p.Config.Gogs.URL, p.Config.Gogs.Token.Reveal(), gogsapi.WithTimeout(p.Config.Gogs.APITimeout))
	if err != nil {
		return runtime.Worker{}, usage(fmt.Errorf("worker %s: %w", envsync.Name, err))
	}
	w, err := envsync.New(cfg, envsync.Deps{
		KV:       js,
		API:      api,
		Log:      p.Log.With().Str("worker", envsync.Name).Logger(),
		Replicas: p.Config.Streams.Replicas,
		History: envsync.GitHistory{Options: gitrepo.Options{
			BaseURL: p.Config.Gogs.URL, Token: p.Config.Gogs.Token.Reveal(),
			CacheDir: filepath.Join(p.Config.DataDir, "cache", envsync.Name), Path: p.Config.BuildPath,
		}},
	})
	if err != nil {
		return runtime.Worker{}, usage(err)
	}
	return runtime.Worker{Name: envsync.Name, Subjects: w.Subjects(p.Config.Instance), Handler: w}, nil
}

// protectSecrets tells the command runner what builds must not see: every
// secret value (redacted from output tails), the secret files and the data
// folder (masked; a build's checkout inside it is bound back).
func protectSecrets(p *platform.Platform) {
	command.Protect(p.Config.SecretValues(), append(append([]string{}, p.Config.SecretFiles...), p.Config.DataDir))
	if err := command.MaskCheck(); err != nil {
		p.Log.Warn().Err(err).Msg("builds not in sandbox: bwrap can read the secret files and the data folder by path; see docs/build-sandbox.md")
	}
}

// workerRunner builds the named worker on p, with js its own role's
// JetStream connection, and returns it as a runner.
func workerRunner(p *platform.Platform, name string, js jetstream.JetStream) (runner, error) {
	if name == auditWorker {
		key, err := audit.LoadKey(p.Config.AuditKeyPath())
		if err != nil {
			return runner{}, usage(fmt.Errorf("worker %s: %w (set FORGEBUS_AUDIT_KEY_FILE)", auditWorker, err))
		}
		w, err := audit.New(js, audit.Config{Key: key}, p.Log, p.Registry) // audit.New names the worker in its log lines
		if err != nil {
			return runner{}, err
		}
		return runner{name: "worker " + auditWorker, run: w.Run}, nil
	}
	factory, ok := workerFactories[name]
	if !ok {
		return runner{}, usage(fmt.Errorf("unknown worker %q; known workers: %s", name, knownWorkers()))
	}
	w, err := buildWorker(p, js, name, factory)
	if err != nil {
		return runner{}, err
	}
	rt, err := runtime.New(js, w, p.Log, p.Registry) // runtime.New names the worker in its log lines
	if err != nil {
		return runner{}, usage(err)
	}
	return runner{name: "worker " + name, run: rt.Run}, nil
}

// devWorkers returns every worker that runs inside "forgebus dev": the
// audit worker always, and each other worker whose section
// (workers.<name>) is in the config file. Each has its own connection, as
// its role (closed by close).
func devWorkers(ctx context.Context, p *platform.Platform) (runners []runner, close func(), err error) {
	names := []string{auditWorker}
	for _, name := range []string{docs.Name, models.Name, envsync.Name} {
		if _, ok := p.Config.Workers[name]; ok {
			names = append(names, name)
		}
	}
	var conns []*broker.Broker
	close = func() {
		for _, b := range conns {
			b.Close()
		}
	}
	for _, name := range names {
		b, err := p.Broker.DialRole(ctx, p.Config, p.Log, "worker-"+name)
		if err != nil {
			close()
			return nil, nil, fmt.Errorf("worker %s: %w", name, err)
		}
		conns = append(conns, b)
		r, err := workerRunner(p, name, b.JS)
		if err != nil {
			close()
			return nil, nil, err
		}
		runners = append(runners, r)
	}
	p.Log.Info().Strs("workers", names).Msg("dev workers")
	return runners, close, nil
}
