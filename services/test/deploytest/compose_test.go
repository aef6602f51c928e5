package deploytest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/conf"
	"go.yaml.in/yaml/v3"

	"github.com/forgebus/forgebus/services/config"
	"github.com/forgebus/forgebus/services/creds"
	"github.com/forgebus/forgebus/workers/docs"
	"github.com/forgebus/forgebus/workers/envsync"
	"github.com/forgebus/forgebus/workers/models"
	"github.com/forgebus/forgebus/workers/runtime"
)

var (
	natsNodes = []string{"nats-1", "nats-2", "nats-3"}
	// workerServices maps each worker service to its worker name.
	workerServices = map[string]string{
		"worker-docs":    "docs",
		"worker-models":  "models",
		"worker-envsync": "envsync",
		"worker-audit":   "audit",
	}
	// probe is the healthcheck of every forgebus service.
	probe = []string{"CMD", "/usr/local/bin/forgebus", "probe", "http://127.0.0.1:8080/readyz"}
)

// forgebusServices are ingest and the workers, sorted.
// provisionService is the operator's one-shot that creates the streams.
const provisionService = "provision"

// TestComposeProvision: the operator's credentials go to the one-shot
// provision service alone, which starts once every NATS node is healthy.
func TestComposeProvision(t *testing.T) {
	p := loadCompose(t, nil)
	s := service(t, p, provisionService)
	for _, node := range natsNodes {
		if d, ok := s.DependsOn[node]; !ok || d.Condition != "service_healthy" {
			t.Errorf("does not wait for %s to be healthy", node)
		}
	}
	if got := env(s, "FORGEBUS_NATS_CREDS"); got != "/etc/forgebus/creds/operator.creds" {
		t.Errorf("FORGEBUS_NATS_CREDS = %q, want the operator's", got)
	}
	for name, other := range p.Services {
		if name == provisionService {
			continue
		}
		for _, v := range other.Volumes {
			if strings.HasSuffix(v.Source, "operator.creds") {
				t.Errorf("%s mounts the operator's credentials", name)
			}
		}
	}
}

func forgebusServices() []string {
	out := []string{"ingest"}
	for s := range workerServices {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// loadCompose loads docker-compose.yml as docker compose does, with env as
// the whole environment (no .env file, not the test's environment).
func loadCompose(t *testing.T, env map[string]string) *types.Project {
	t.Helper()
	return loadComposeFiles(t, env, "docker-compose.yml")
}

// loadComposeFiles loads the compose files (slash paths from the root)
// layered in order, as docker compose -f a -f b does.
func loadComposeFiles(t *testing.T, env map[string]string, files ...string) *types.Project {
	t.Helper()
	root := repoRoot(t)
	var list []string
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join(root, filepath.FromSlash(f)))
	}
	opts, err := cli.NewProjectOptions(paths,
		cli.WithWorkingDirectory(root),
		cli.WithName("forgebus"),
		cli.WithEnv(list),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("service %s missing", name)
	}
	return s
}

func env(s types.ServiceConfig, key string) string {
	if v := s.Environment[key]; v != nil {
		return *v
	}
	return ""
}

func replicas(s types.ServiceConfig) int {
	if s.Deploy == nil || s.Deploy.Replicas == nil {
		return 1
	}
	return *s.Deploy.Replicas
}

// mountAt returns the volume of s mounted at target.
func mountAt(s types.ServiceConfig, target string) (types.ServiceVolumeConfig, bool) {
	for _, v := range s.Volumes {
		if v.Target == target {
			return v, true
		}
	}
	return types.ServiceVolumeConfig{}, false
}

func TestComposeServices(t *testing.T) {
	p := loadCompose(t, nil)
	want := append(slices.Clone(natsNodes), forgebusServices()...)
	want = append(want, "lb", provisionService)
	for _, name := range want {
		service(t, p, name)
	}
	for name := range p.Services {
		if !slices.Contains(want, name) {
			t.Errorf("unexpected service %s: add it to the test", name)
		}
	}
}

func TestComposeScalable(t *testing.T) {
	p := loadCompose(t, nil)
	tests := []struct {
		service  string
		command  []string
		replicas int
	}{
		{"ingest", []string{"ingest"}, 2},
		{"worker-docs", []string{"worker", "docs"}, 2},
		{"worker-models", []string{"worker", "models"}, 1},
		{"worker-envsync", []string{"worker", "envsync"}, 1},
		{"worker-audit", []string{"worker", "audit"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.service, func(t *testing.T) {
			s := service(t, p, tc.service)
			if !slices.Equal(s.Command, tc.command) {
				t.Errorf("command = %q, want %q", s.Command, tc.command)
			}
			if s.Deploy == nil || s.Deploy.Replicas == nil {
				t.Errorf("no deploy.replicas")
			} else if got := replicas(s); got != tc.replicas {
				t.Errorf("replicas = %d, want %d", got, tc.replicas)
			}
			// "docker compose up --scale <service>=3" fails on a fixed
			// container name or a published host port.
			if s.ContainerName != "" {
				t.Errorf("container_name %q: replicas cannot share it", s.ContainerName)
			}
			if len(s.Ports) > 0 {
				t.Errorf("ports %v: replicas cannot share a host port", s.Ports)
			}
			if s.Image == "" {
				t.Errorf("no image")
			}
			if s.Build == nil {
				t.Errorf("no build: docker compose would try to pull %s", s.Image)
			}
		})
	}
}

func TestComposeHealthchecks(t *testing.T) {
	p := loadCompose(t, nil)
	for _, name := range forgebusServices() {
		t.Run(name, func(t *testing.T) {
			s := service(t, p, name)
			if s.HealthCheck == nil || s.HealthCheck.Disable {
				t.Fatal("no healthcheck")
			}
			test := []string(s.HealthCheck.Test)
			if !slices.Equal(test, probe) {
				t.Fatalf("healthcheck test = %q, want %q", test, probe)
			}
			u, err := url.Parse(test[len(test)-1])
			if err != nil {
				t.Fatal(err)
			}
			if u.Path != "/readyz" {
				t.Errorf("healthcheck probes %s, want /readyz", u.Path)
			}
			// The probe must hit the port the service listens on.
			_, port, err := net.SplitHostPort(env(s, "FORGEBUS_HTTP_ADDR"))
			if err != nil {
				t.Fatalf("FORGEBUS_HTTP_ADDR: %v", err)
			}
			if u.Port() != port {
				t.Errorf("probe port %s, service listens on %s", u.Port(), port)
			}
		})
	}
	for _, name := range natsNodes {
		s := service(t, p, name)
		if s.HealthCheck == nil || !strings.Contains(strings.Join(s.HealthCheck.Test, " "), "/healthz") {
			t.Errorf("%s: healthcheck %v does not probe /healthz", name, s.HealthCheck)
		}
	}
}

func TestComposeBrokerSettings(t *testing.T) {
	p := loadCompose(t, nil)
	root := repoRoot(t)
	for _, name := range forgebusServices() {
		t.Run(name, func(t *testing.T) {
			s := service(t, p, name)
			if got := env(s, "FORGEBUS_STREAM_REPLICAS"); got != "3" {
				t.Errorf("FORGEBUS_STREAM_REPLICAS = %q, want 3", got)
			}
			var hosts []string
			for _, raw := range strings.Split(env(s, "FORGEBUS_NATS_URL"), ",") {
				u, err := url.Parse(strings.TrimSpace(raw))
				if err != nil || u.Scheme != "nats" {
					t.Fatalf("FORGEBUS_NATS_URL entry %q", raw)
				}
				if u.Port() != "4222" {
					t.Errorf("FORGEBUS_NATS_URL %s: want the client port 4222", raw)
				}
				hosts = append(hosts, u.Hostname())
			}
			slices.Sort(hosts)
			if !slices.Equal(hosts, natsNodes) {
				t.Errorf("FORGEBUS_NATS_URL names %v, want all of %v", hosts, natsNodes)
			}
			// Only the operator creates the streams: every service waits for
			// the provision run, which waits for every node.
			if d, ok := s.DependsOn[provisionService]; !ok || d.Condition != "service_completed_successfully" {
				t.Errorf("does not wait for %s to complete (%+v)", provisionService, d)
			}
			// Its own role's credentials, and no other.
			creds := env(s, "FORGEBUS_NATS_CREDS")
			if m, ok := mountAt(s, creds); !ok || !m.ReadOnly || filepath.Base(m.Source) != filepath.Base(creds) {
				t.Errorf("FORGEBUS_NATS_CREDS %q is not its own file mounted read-only (%+v)", creds, m)
			}
			for _, v := range s.Volumes {
				if strings.HasPrefix(v.Target, "/etc/forgebus/creds/") && v.Target != creds && filepath.Base(v.Target) != "audit.key" {
					t.Errorf("also mounts %s", v.Target)
				}
			}
			// FORGEBUS_CONFIG is the mounted deploy/forgebus.yaml.
			m, ok := mountAt(s, env(s, "FORGEBUS_CONFIG"))
			if !ok || m.Source != filepath.Join(root, "deploy", "forgebus.yaml") || !m.ReadOnly {
				t.Errorf("FORGEBUS_CONFIG %q is not deploy/forgebus.yaml mounted read-only (mount %+v)", env(s, "FORGEBUS_CONFIG"), m)
			}
		})
	}
}

// natsRoute is one cluster route of a node's config file.
var natsRoute = regexp.MustCompile(`^nats-route://([a-z0-9-]+):(\d+)$`)

func TestNATSCluster(t *testing.T) {
	p := loadCompose(t, nil)
	root := repoRoot(t)
	clusterNames := map[string]bool{}
	for _, name := range natsNodes {
		t.Run(name, func(t *testing.T) {
			s := service(t, p, name)
			// Built offline from the nats-server module (make images).
			if s.Build == nil || s.Build.Dockerfile != "deploy/images/nats.Dockerfile" {
				t.Errorf("build %+v, want deploy/images/nats.Dockerfile", s.Build)
			}
			// The command names this node's file, mounted from deploy/nats.
			cmd := []string(s.Command)
			i := slices.Index(cmd, "-c")
			if i < 0 || i+1 >= len(cmd) {
				t.Fatalf("command %q has no -c <file>", cmd)
			}
			confPath := cmd[i+1]
			m, ok := mountAt(s, filepath.Dir(confPath))
			if !ok || m.Source != filepath.Join(root, "deploy", "nats") {
				t.Fatalf("%s is not in deploy/nats (mount %+v)", confPath, m)
			}
			if filepath.Base(confPath) != name+".conf" {
				t.Errorf("node %s runs %s", name, confPath)
			}
			// The store is on a named volume.
			j := slices.Index(cmd, "-sd")
			if j < 0 || j+1 >= len(cmd) {
				t.Fatalf("command %q has no -sd <store dir>", cmd)
			}
			if v, ok := mountAt(s, cmd[j+1]); !ok || v.Type != types.VolumeTypeVolume {
				t.Errorf("store dir %s is not a named volume (mount %+v)", cmd[j+1], v)
			}

			c := parseNodeConf(t, root, name)
			if c["operator"] == nil || c["resolver"] == nil {
				t.Errorf("%s.conf does not turn auth on (operator %v, resolver %v)", name, c["operator"] != nil, c["resolver"])
			}
			if c["server_name"] != name {
				t.Errorf("server_name = %v, want %s", c["server_name"], name)
			}
			js, ok := c["jetstream"].(map[string]any)
			if !ok {
				t.Fatalf("jetstream = %#v, want a block (JetStream on)", c["jetstream"])
			}
			if _, ok := js["store_dir"]; ok {
				t.Errorf("jetstream.store_dir is set: the -sd flag of the compose file and cluster.sh would be refused")
			}
			cl, ok := c["cluster"].(map[string]any)
			if !ok {
				t.Fatal("no cluster block")
			}
			clusterNames[fmt.Sprint(cl["name"])] = true
			_, listenPort, err := net.SplitHostPort(fmt.Sprint(cl["listen"]))
			if err != nil {
				t.Fatalf("cluster.listen %v: %v", cl["listen"], err)
			}
			rawRoutes, _ := cl["routes"].([]any)
			var peers []string
			for _, r := range rawRoutes {
				mm := natsRoute.FindStringSubmatch(fmt.Sprint(r))
				if mm == nil {
					t.Fatalf("route %v: want nats-route://<node>:<port>", r)
				}
				if mm[2] != listenPort {
					t.Errorf("route %v: port is not the cluster port %s", r, listenPort)
				}
				peers = append(peers, mm[1])
			}
			slices.Sort(peers)
			var others []string
			for _, n := range natsNodes {
				if n != name {
					others = append(others, n)
				}
			}
			if !slices.Equal(peers, others) {
				t.Errorf("routes name %v, want the other two nodes %v", peers, others)
			}
		})
	}
	if len(clusterNames) != 1 {
		t.Errorf("cluster names %v: every node must name the same cluster", clusterNames)
	}
}

// TestComposeSecrets: a secret is never a value in the compose file, only
// a substitution from the operator's environment (.env), and without one
// it is empty.
func TestComposeSecrets(t *testing.T) {
	var raw struct {
		Services map[string]struct {
			Environment map[string]any `yaml:"environment"`
			EnvFile     any            `yaml:"env_file"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, "docker-compose.yml"), &raw); err != nil {
		t.Fatal(err)
	}
	subst := regexp.MustCompile(`^\$\{([A-Z0-9_]+)(:?-)?\}$`)
	seen := 0
	for name, s := range raw.Services {
		if s.EnvFile != nil {
			t.Errorf("%s: env_file would hand every variable of the file to the service; substitute the ones it needs", name)
		}
		for key, v := range s.Environment {
			if !secretName.MatchString(key) {
				continue
			}
			seen++
			val := fmt.Sprint(v)
			if v == nil || val == "" {
				continue
			}
			m := subst.FindStringSubmatch(val)
			if m == nil {
				t.Errorf("%s: %s has a value inline, want ${%s:-}", name, key, key)
			} else if m[1] != key {
				t.Errorf("%s: %s is taken from ${%s}, want ${%s}", name, key, m[1], key)
			}
		}
	}
	if seen == 0 {
		t.Fatal("no secret variables found: the test reads the wrong shape")
	}

	// Loaded with no environment, every secret is empty.
	p := loadCompose(t, nil)
	for name, s := range p.Services {
		for key := range s.Environment {
			if secretName.MatchString(key) && env(s, key) != "" {
				t.Errorf("%s: %s is %d bytes with an empty environment", name, key, len(env(s, key)))
			}
		}
	}

	// Loaded with one, each service gets only the secrets it needs.
	secrets := map[string]string{
		"FORGEBUS_GOGS_SECRETS":  "s1,s0",
		"FORGEBUS_GOGS_TOKEN":    "tok",
		"FORGEBUS_MODELS_SECRET": "ms",
		"FORGEBUS_NATS_PASSWORD": "np",
	}
	p = loadCompose(t, secrets)
	tests := []struct {
		service string
		want    []string
	}{
		{"ingest", []string{"FORGEBUS_GOGS_SECRETS", "FORGEBUS_NATS_PASSWORD"}},
		{"worker-docs", []string{"FORGEBUS_GOGS_TOKEN", "FORGEBUS_NATS_PASSWORD"}},
		{"worker-models", []string{"FORGEBUS_GOGS_TOKEN", "FORGEBUS_MODELS_SECRET", "FORGEBUS_NATS_PASSWORD"}},
		{"worker-envsync", []string{"FORGEBUS_GOGS_TOKEN", "FORGEBUS_NATS_PASSWORD"}},
		{"worker-audit", []string{"FORGEBUS_NATS_PASSWORD"}},
	}
	for _, tc := range tests {
		s := service(t, p, tc.service)
		var got []string
		for key := range s.Environment {
			if secretName.MatchString(key) {
				if env(s, key) != secrets[key] {
					t.Errorf("%s: %s not substituted from the environment", tc.service, key)
				}
				got = append(got, key)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s gets secrets %v, want %v", tc.service, got, tc.want)
		}
	}
}

// TestEnvExample: .env.example names every variable the compose file
// substitutes, with no secret value, and .env is never committed.
func TestEnvExample(t *testing.T) {
	example := map[string]string{}
	for _, line := range strings.Split(string(readRepoFile(t, ".env.example")), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf(".env.example: %q is not KEY=value", line)
			continue
		}
		example[k] = v
		if secretName.MatchString(k) && v != "" {
			t.Errorf(".env.example: %s has a value", k)
		}
	}
	refs := regexp.MustCompile(`\$\{([A-Z0-9_]+)`).FindAllStringSubmatch(string(readRepoFile(t, "docker-compose.yml")), -1)
	if len(refs) == 0 {
		t.Fatal("no ${VAR} in docker-compose.yml")
	}
	for _, m := range refs {
		if _, ok := example[m[1]]; !ok {
			t.Errorf("docker-compose.yml uses ${%s}, .env.example does not list it", m[1])
		}
	}
	ignored := false
	for _, line := range strings.Split(string(readRepoFile(t, ".gitignore")), "\n") {
		if l := strings.TrimSpace(line); l == ".env" || l == "/.env" {
			ignored = true
		}
	}
	if !ignored {
		t.Error(".gitignore does not ignore .env")
	}
	if !strings.Contains(string(readRepoFile(t, ".dockerignore")), "\n.env\n") {
		t.Error(".dockerignore does not keep .env out of the build context")
	}
}

// TestComposeDocsVolume: the docs worker publishes into a named volume that
// holds every docs rule's root, and the load balancer serves it read-only.
func TestComposeDocsVolume(t *testing.T) {
	p := loadCompose(t, nil)
	cfg := deployConfig(t)
	node := cfg.Workers[docs.Name]
	dc, err := docs.DecodeConfig(&node)
	if err != nil {
		t.Fatal(err)
	}
	w := service(t, p, "worker-docs")
	for _, r := range dc.Rules {
		var vol types.ServiceVolumeConfig
		for _, v := range w.Volumes {
			if r.Root == v.Target || strings.HasPrefix(r.Root, v.Target+"/") {
				vol = v
			}
		}
		if vol.Type != types.VolumeTypeVolume || vol.ReadOnly {
			t.Fatalf("docs rule %s publishes to %s, which is not on a writable named volume of worker-docs (%+v)", r.Name, r.Root, vol)
		}
		if _, ok := p.Volumes[vol.Source]; !ok {
			t.Errorf("volume %s is not declared", vol.Source)
		}
		lb := service(t, p, "lb")
		served := false
		for _, v := range lb.Volumes {
			if v.Source == vol.Source && v.ReadOnly {
				served = true
			}
		}
		if !served {
			t.Errorf("lb does not mount volume %s read-only", vol.Source)
		}
	}
}

// deployConfig loads deploy/forgebus.yaml as the compose services do.
func deployConfig(t *testing.T) config.Config {
	t.Helper()
	path := filepath.Join(repoRoot(t), "deploy", "forgebus.yaml")
	p := loadCompose(t, nil)
	s := service(t, p, "ingest")
	getenv := func(k string) string {
		switch k {
		case "FORGEBUS_CONFIG":
			return path
		case "FORGEBUS_GOGS_SECRETS":
			return "test-secret"
		}
		return env(s, k)
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		t.Fatalf("deploy/forgebus.yaml: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("deploy/forgebus.yaml with the compose environment: %v", err)
	}
	return cfg
}

// TestDeployConfig: deploy/forgebus.yaml is a valid configuration, every
// worker section decodes, and it agrees with the compose file.
func TestDeployConfig(t *testing.T) {
	cfg := deployConfig(t)
	if cfg.Streams.Replicas != 3 {
		t.Errorf("streams.replicas = %d, want 3", cfg.Streams.Replicas)
	}
	if cfg.Embedded() {
		t.Error("the compose services would start an embedded server")
	}
	decoders := map[string]func(*yaml.Node) error{
		docs.Name:    func(n *yaml.Node) error { _, err := docs.DecodeConfig(n); return err },
		models.Name:  func(n *yaml.Node) error { _, err := models.DecodeConfig(n); return err },
		envsync.Name: func(n *yaml.Node) error { _, err := envsync.DecodeConfig(n); return err },
	}
	for name, decode := range decoders {
		node, ok := cfg.Workers[name]
		if !ok {
			t.Errorf("workers.%s missing: worker-%s would not start", name, name)
			continue
		}
		if err := decode(&node); err != nil {
			t.Errorf("workers.%s: %v", name, err)
		}
		if _, _, err := runtime.DecodeConfig(&node); err != nil {
			t.Errorf("workers.%s runtime/policy: %v", name, err)
		}
	}
	// The image's data dir is where the config puts it.
	if cfg.DataDir != "/var/lib/forgebus" {
		t.Errorf("data_dir = %s, want the image's /var/lib/forgebus", cfg.DataDir)
	}
	if _, err := os.Stat(filepath.Join(repoRoot(t), "deploy", "README.md")); err != nil {
		t.Errorf("deploy/README.md: %v", err)
	}
}

// parseNodeConf parses deploy/nats/<name>.conf beside an auth.conf made as
// "forgebus creds server-config" makes it (the file includes it).
func parseNodeConf(t *testing.T, root, name string) map[string]any {
	t.Helper()
	dir := t.TempDir()
	st, err := creds.Open(filepath.Join(dir, "creds"))
	if err != nil {
		t.Fatal(err)
	}
	auth, err := st.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), []byte(auth), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".conf"), readRepoFile(t, filepath.Join("deploy", "nats", name+".conf")), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := conf.ParseFile(filepath.Join(dir, name+".conf"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
