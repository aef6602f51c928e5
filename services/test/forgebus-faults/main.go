package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

type options struct {
	root         string
	bin          string
	hooks        int
	spread       time.Duration
	conc         int
	modelsEvery  int
	docsEvery    int
	envsyncEvery int
	drain        time.Duration
	keep         bool
	bench        bool
	benchRate    int
	benchFor     time.Duration
}

func (o options) mix() mix {
	return mix{modelsEvery: o.modelsEvery, docsEvery: o.docsEvery, envsyncEvery: o.envsyncEvery}
}

func main() {
	// The docs worker runs this program as its build command.
	if len(os.Args) == 3 && os.Args[1] == buildArg {
		if err := docsBuild(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.StringVar(&o.root, "root", "", "repository root (default: found from the working directory)")
	flag.StringVar(&o.bin, "bin", "bin/forgebus", "the forgebus binary, relative to -root unless absolute")
	flag.IntVar(&o.hooks, "hooks", 5000, "signed webhooks to post")
	flag.DurationVar(&o.spread, "spread", 75*time.Second, "post the webhooks evenly over this long")
	flag.IntVar(&o.conc, "concurrency", 16, "webhooks in flight at most")
	flag.IntVar(&o.modelsEvery, "models-every", 10, "every Nth webhook is a push the models worker acts on (git fetch + POST)")
	flag.IntVar(&o.docsEvery, "docs-every", 25, "every Nth webhook is a push the docs worker acts on (git fetch + build + publish); 0: none")
	flag.IntVar(&o.envsyncEvery, "envsync-every", 25, "every Nth webhook is a push the envsync worker acts on (raw-file fetch + KV writes); 0: none")
	flag.DurationVar(&o.drain, "drain", 120*time.Second, "how long to wait for every consumer to drain")
	flag.BoolVar(&o.keep, "keep", false, "keep the run's directory (logs, stores) after the run")
	flag.BoolVar(&o.bench, "bench", false, "run the cluster benchmark instead of the fault test")
	flag.IntVar(&o.benchRate, "bench-rate", 1000, "bench: webhooks per second")
	flag.DurationVar(&o.benchFor, "bench-for", 10*time.Second, "bench: how long to post at that rate")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "forgebus-faults: %v\n", err)
		os.Exit(1)
	}
}

// findRoot walks up from the working directory to the folder with go.work.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.work above the working directory; pass -root")
		}
		dir = parent
	}
}

func run(ctx context.Context, o options) (err error) {
	if o.root == "" {
		r, err := findRoot()
		if err != nil {
			return err
		}
		o.root = r
	}
	if !filepath.IsAbs(o.bin) {
		o.bin = filepath.Join(o.root, o.bin)
	}
	if _, err := os.Stat(o.bin); err != nil {
		return fmt.Errorf("forgebus binary: %w (run make build)", err)
	}
	if o.hooks <= 0 || o.conc <= 0 || o.spread <= 0 {
		return fmt.Errorf("-hooks, -concurrency and -spread must be positive")
	}
	if o.modelsEvery < 0 || o.docsEvery < 0 || o.envsyncEvery < 0 {
		return fmt.Errorf("-models-every, -docs-every and -envsync-every must not be negative")
	}
	dir, err := os.MkdirTemp("", "forgebus-faults-")
	if err != nil {
		return err
	}
	e := &env{opts: o, dir: dir}
	defer func() {
		e.close()
		switch {
		case o.keep:
			fmt.Printf("run directory kept: %s\n", dir)
		case err != nil:
			// Keep what explains a failure (every process's log, the
			// nodes' logs), not the stores.
			_ = os.RemoveAll(filepath.Join(dir, "git"))
			for n := 1; n <= 3; n++ {
				_ = os.RemoveAll(filepath.Join(dir, "cluster", fmt.Sprintf("nats-%d", n)))
			}
			for _, p := range e.procs {
				_ = os.RemoveAll(filepath.Join(dir, p.name))
			}
			fmt.Printf("logs of the failed run kept in %s\n", dir)
		default:
			_ = os.RemoveAll(dir)
		}
	}()
	if err = e.start(ctx); err != nil {
		return err
	}
	if o.bench {
		return e.bench(ctx)
	}
	return e.faults(ctx)
}
