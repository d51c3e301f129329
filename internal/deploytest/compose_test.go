package deploytest

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// loadCompose loads docker-compose.yaml (and any overrides) with the compose specification's own
// loader, as `docker compose` would, with env as the only environment: no .env file and nothing
// from the test's own environment leaks in.
func loadCompose(t testing.TB, env map[string]string, overrides ...string) *types.Project {
	t.Helper()
	root := repoRoot(t)
	files := []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yaml")}}
	for _, o := range overrides {
		files = append(files, types.ConfigFile{Filename: filepath.Join(root, o)})
	}
	mapping := types.Mapping{}
	for k, v := range env {
		mapping[k] = v
	}
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: files,
		Environment: mapping,
	})
	require.NoError(t, err)
	return p
}

func service(t testing.TB, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	require.NoError(t, err)
	return s
}

// envOf returns the variables a service sets; a nil value means "passed through only when set".
func envOf(s types.ServiceConfig) map[string]string {
	out := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			out[k] = *v
		}
	}
	return out
}

var skewguardServices = map[string]string{"migrate": "migrate", "skewguard-api": "api", "skewguard-worker": "worker"}

func TestComposeServices(t *testing.T) {
	p := loadCompose(t, nil)
	names := p.ServiceNames()
	sort.Strings(names)
	require.Equal(t, []string{"migrate", "postgres", "prometheus", "skewguard-api", "skewguard-worker", "temporal"}, names)

	t.Run("published ports, on the loopback only", func(t *testing.T) {
		want := map[string][]string{
			"postgres":      {"5432:5432"},
			"temporal":      {"7233:7233", "8233:8233"},
			"prometheus":    {"9090:9090"},
			"skewguard-api": {"8080:8080"},
		}
		for _, s := range p.Services {
			var got []string
			for _, port := range s.Ports {
				assert.Equal(t, "127.0.0.1", port.HostIP, "%s publishes %s beyond this machine", s.Name, port.Published)
				got = append(got, port.Published+":"+strconv.FormatUint(uint64(port.Target), 10))
			}
			sort.Strings(got)
			assert.Equal(t, want[s.Name], got, s.Name)
		}
	})

	t.Run("health checks and start order", func(t *testing.T) {
		for _, s := range p.Services {
			if s.Name == "migrate" {
				assert.Nil(t, s.HealthCheck, "a one-shot has no health")
				assert.Equal(t, "no", s.Restart, "a one-shot is not restarted")
				continue
			}
			require.NotNil(t, s.HealthCheck, "%s has no health check", s.Name)
			require.NotEmpty(t, s.HealthCheck.Test, s.Name)
			assert.Equal(t, "CMD", s.HealthCheck.Test[0], "%s: exec form, the images have no shell", s.Name)
			assert.Equal(t, "unless-stopped", s.Restart, s.Name)
		}
		depends := func(name string) map[string]string {
			out := map[string]string{}
			for dep, d := range service(t, p, name).DependsOn {
				out[dep] = d.Condition
			}
			return out
		}
		assert.Equal(t, map[string]string{"postgres": types.ServiceConditionHealthy}, depends("migrate"))
		for _, name := range []string{"skewguard-api", "skewguard-worker"} {
			assert.Equal(t, map[string]string{
				"migrate":    types.ServiceConditionCompletedSuccessfully,
				"temporal":   types.ServiceConditionHealthy,
				"prometheus": types.ServiceConditionHealthy,
			}, depends(name), name)
		}
	})

	t.Run("skewguard runs the image of ./Dockerfile", func(t *testing.T) {
		root := repoRoot(t)
		home, err := os.UserHomeDir() // compose expands ~ from the process, not the project environment
		require.NoError(t, err)
		build := service(t, p, "migrate").Build
		require.NotNil(t, build, "one service builds the image")
		assert.Equal(t, root, build.Context)
		assert.Equal(t, "Dockerfile", build.Dockerfile)
		for name, command := range skewguardServices {
			s := service(t, p, name)
			assert.Equal(t, "skewguard:local", s.Image, name)
			assert.Equal(t, types.ShellCommand{command}, s.Command, name)
			assert.True(t, s.ReadOnly, "%s: read-only root filesystem", name)
			assert.Equal(t, []string{"ALL"}, s.CapDrop, name)
			assert.Contains(t, s.SecurityOpt, "no-new-privileges:true", name)
			if s.HealthCheck != nil {
				assert.Equal(t, types.HealthCheckTest{"CMD", "/usr/local/bin/skewguard", "healthcheck"}, s.HealthCheck.Test, name)
			}
			require.Len(t, s.Volumes, 1, name)
			v := s.Volumes[0]
			assert.Equal(t, filepath.Join(home, ".kube", "config"), v.Source, "%s: the user's kubeconfig by default", name)
			assert.Equal(t, "/etc/skewguard/kubeconfig", v.Target, name)
			assert.True(t, v.ReadOnly, name)
			require.NotNil(t, v.Bind, name)
			assert.False(t, bool(v.Bind.CreateHostPath), "%s: a missing kubeconfig is an error, not an empty directory", name)
		}
	})

	t.Run("temporal: dev server with UI and the workflows' search attributes", func(t *testing.T) {
		s := service(t, p, "temporal")
		require.NotNil(t, s.Build)
		assert.Equal(t, "temporal.Dockerfile", s.Build.Dockerfile)
		assert.Equal(t, filepath.Join(repoRoot(t), "deploy", "compose"), s.Build.Context)
		assert.Equal(t, []string{"server", "start-dev"}, []string(s.Command[:2]))
		for _, arg := range []string{
			"--ip=0.0.0.0", "--ui-ip=0.0.0.0", "--db-filename=/data/temporal.db",
			"--search-attribute=SkewNamespace=Keyword", "--search-attribute=SkewApp=Keyword",
			"--search-attribute=SkewVersion=Keyword", "--search-attribute=SkewState=Keyword",
		} {
			assert.Contains(t, s.Command, arg)
		}
		assert.Equal(t, "/usr/local/bin/temporal", s.HealthCheck.Test[1], "the binary temporal.Dockerfile installs")
	})
}

func TestComposeEnvironment(t *testing.T) {
	known := configVariables(t)
	for _, c := range []struct {
		name string
		env  map[string]string
		want map[string]string
		gone []string
	}{
		{
			name: "documented defaults",
			want: func() map[string]string {
				m := map[string]string{
					"DATABASE_URL":     "postgres://skewguard:skewguard@postgres:5432/skewguard?sslmode=disable",
					"TEMPORAL_ADDRESS": "temporal:7233",
					"PROMETHEUS_URL":   "http://prometheus:9090",
					"KUBECONFIG":       "/etc/skewguard/kubeconfig",
				}
				for _, d := range documented {
					m[d.env] = d.def
				}
				return m
			}(),
			gone: []string{"PLT_SKEW_GATEWAY_PARENT_REFS", "PLT_SKEW_NAMESPACES"},
		},
		{
			name: "the user's settings win",
			env: map[string]string{
				"PLT_FEATURE_SKEW_PROTECTION":   "true",
				"PLT_SKEW_GATEWAY_PARENT_REFS":  "gateway-system/gateway",
				"PLT_SKEW_HTTP_GRACE_PERIOD_MS": "60000",
				"PLT_SKEW_AUTO_CLEANUP":         "true",
				"PROMETHEUS_URL":                "http://host.docker.internal:9090",
			},
			want: map[string]string{
				"PLT_FEATURE_SKEW_PROTECTION":   "true",
				"PLT_SKEW_GATEWAY_PARENT_REFS":  "gateway-system/gateway",
				"PLT_SKEW_HTTP_GRACE_PERIOD_MS": "60000",
				"PLT_SKEW_AUTO_CLEANUP":         "true",
				"PROMETHEUS_URL":                "http://host.docker.internal:9090",
				"PLT_SKEW_HTTP_MAX_ALIVE_MS":    "86400000",
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := loadCompose(t, c.env)
			var first map[string]string
			for name := range skewguardServices {
				env := envOf(service(t, p, name))
				for k := range service(t, p, name).Environment {
					_, ok := known[k]
					assert.True(t, ok, "%s sets %s, which skewguard does not read", name, k)
				}
				for k, v := range c.want {
					assert.Equal(t, v, env[k], "%s: %s", name, k)
				}
				for _, k := range c.gone {
					assert.NotContains(t, env, k, "%s: an empty %s would be invalid", name, k)
				}
				if first == nil {
					first = env
				}
				assert.Equal(t, first, env, "the API, the worker and the migration see one configuration")
			}
		})
	}
}

// The kind override puts skewguard on kind's network and changes nothing else.
func TestComposeKindOverride(t *testing.T) {
	p := loadCompose(t, nil, filepath.Join("deploy", "compose", "kind.yaml"))
	for name := range skewguardServices {
		assert.Contains(t, service(t, p, name).Networks, "kind", name)
		assert.Contains(t, service(t, p, name).Networks, "default", name)
	}
	require.Contains(t, p.Networks, "kind")
	assert.True(t, bool(p.Networks["kind"].External))
}

// Prometheus scrapes skewguard's API and worker where compose runs them.
func TestComposePrometheusConfig(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "compose", "prometheus.yml"))
	require.NoError(t, err)
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `json:"job_name"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	require.NoError(t, yaml.Unmarshal(data, &cfg))
	var targets []string
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	assert.Subset(t, targets, []string{"skewguard-api:8080", "skewguard-worker:8080"})

	p := loadCompose(t, nil)
	var mounted bool
	for _, v := range service(t, p, "prometheus").Volumes {
		if v.Target == "/etc/prometheus/prometheus.yml" {
			mounted = v.Source == filepath.Join(repoRoot(t), "deploy", "compose", "prometheus.yml")
		}
	}
	assert.True(t, mounted, "compose mounts deploy/compose/prometheus.yml")
}

// The compose Temporal is built from the CLI version the repository's own stack runs.
func TestComposeTemporalImage(t *testing.T) {
	root := repoRoot(t)
	stages := parseDockerfile(t, filepath.Join(root, "deploy", "compose", "temporal.Dockerfile"))
	require.Len(t, stages, 2)
	var version string
	for _, in := range stages[0].all("ARG") {
		if m := regexp.MustCompile(`^TEMPORAL_CLI_VERSION=(.+)$`).FindStringSubmatch(in.args); m != nil {
			version = m[1]
		}
	}
	require.NotEmpty(t, version)
	common, err := os.ReadFile(filepath.Join(root, "hack", "lib", "common.sh"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^TEMPORAL_CLI_VERSION=(\S+)`).FindSubmatch(common)
	require.NotNil(t, m, "hack/lib/common.sh sets TEMPORAL_CLI_VERSION")
	assert.Equal(t, string(m[1]), version)

	final := stages[1]
	assert.Equal(t, "gcr.io/distroless/static-debian13:nonroot", final.image)
	users := final.all("USER")
	require.NotEmpty(t, users)
	assert.Equal(t, "65532:65532", users[len(users)-1].args)
	assert.Contains(t, buildCommand(t, stages[0]), "CGO_ENABLED=0")
}
