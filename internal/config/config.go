// Package config owns skewguard's configuration: one struct read from the environment with
// go-envconfig and validated once at start-up. The seven skew-protection variables carry the
// names, units and defaults of the public documentation skewguard implements; connection
// settings follow each ecosystem's own conventions; everything else is ours, prefixed PLT_SKEW_.
package config

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/skewguard/skewguard/internal/bounds"
	"github.com/skewguard/skewguard/internal/routes"
	"github.com/skewguard/skewguard/internal/validate"
)

// Config is everything skewguard reads from its environment.
type Config struct {
	// The documented skew-protection settings (names, types, units and defaults as published).
	SkewProtection  bool  `env:"PLT_FEATURE_SKEW_PROTECTION, default=false"`
	GracePeriodMS   int64 `env:"PLT_SKEW_HTTP_GRACE_PERIOD_MS, default=1800000"`
	MaxAliveMS      int64 `env:"PLT_SKEW_HTTP_MAX_ALIVE_MS, default=86400000"`
	CookieMaxAge    int64 `env:"PLT_SKEW_COOKIE_MAX_AGE, default=43200"`
	AutoCleanup     bool  `env:"PLT_SKEW_AUTO_CLEANUP, default=false"`
	CheckIntervalMS int64 `env:"PLT_SKEW_CHECK_INTERVAL_MS, default=60000"`
	TrafficWindowMS int64 `env:"PLT_SKEW_TRAFFIC_WINDOW_MS, default=300000"`

	// Connections, in each ecosystem's convention. An empty DatabaseURL lets pgx read the libpq
	// PG* variables; an empty Kubeconfig means in-cluster configuration.
	TemporalAddress   string `env:"TEMPORAL_ADDRESS, default=localhost:7233"`
	TemporalNamespace string `env:"TEMPORAL_NAMESPACE, default=default"`
	DatabaseURL       string `env:"DATABASE_URL"`
	Kubeconfig        string `env:"KUBECONFIG"`
	PrometheusURL     string `env:"PROMETHEUS_URL"`

	// skewguard's own settings.
	ListenAddress  string `env:"PLT_SKEW_LISTEN_ADDRESS, default=:8080"`
	MetricsAddress string `env:"PLT_SKEW_METRICS_ADDRESS"` // empty: /metrics is served on ListenAddress
	// TemporalUIURL is the Temporal UI the versions panel (/ui) links each workflow to; empty: no links.
	TemporalUIURL string `env:"PLT_SKEW_TEMPORAL_UI_URL"`
	TaskQueue     string `env:"PLT_SKEW_TASK_QUEUE, default=skewguard"`
	// ParentRefs lists the Gateways routes attach to: "namespace/name[:sectionName]", comma separated.
	ParentRefs        []routes.ParentRef `env:"PLT_SKEW_GATEWAY_PARENT_REFS"`
	CookieName        string             `env:"PLT_SKEW_COOKIE_NAME, default=__plt_dpl"`
	RewritePathPrefix bool               `env:"PLT_SKEW_REWRITE_PATH_PREFIX, default=true"`
	RequireApproval   bool               `env:"PLT_SKEW_REQUIRE_APPROVAL, default=false"`
	// MaxVersions caps how many versions of an app may be Draining at once (ICC's maxVersions,
	// which ICC has per app only): when an activation would exceed it, the oldest Draining
	// versions are expired in the same transaction. 0, the default, is no cap; a policy's
	// maxVersions overrides it per app.
	MaxVersions int64 `env:"PLT_SKEW_MAX_VERSIONS, default=0"`
	// Mode is how far skewguard acts on the cluster (a policy's mode overrides it per app):
	// manage writes routes and retires workloads; advise publishes each step as a plan and
	// waits until it is applied; observe records versions and writes nothing.
	Mode               string `env:"PLT_SKEW_MODE, default=manage"`
	ReadinessTimeoutMS int64  `env:"PLT_SKEW_READINESS_TIMEOUT_MS, default=600000"`
	// ReadinessTCPProbe also dials a ready endpoint from the worker before activation; its
	// failure is reported, never fatal (readiness is the EndpointSlice's ready condition).
	ReadinessTCPProbe bool `env:"PLT_SKEW_READINESS_TCP_PROBE, default=false"`
	// TrafficPreset names a built-in PromQL template ("watt" or "traefik"); TrafficQuery, when
	// set, replaces it with a template of the operator's own.
	TrafficPreset string `env:"PLT_SKEW_TRAFFIC_PRESET, default=watt"`
	TrafficQuery  string `env:"PLT_SKEW_TRAFFIC_QUERY"`
	// WatchPods turns on agent-free detection: pods carrying both labels that turn Ready.
	WatchPods bool `env:"PLT_SKEW_WATCH_PODS, default=true"`
	// VersionFromImage gives a pod without the plt.dev/version label a version derived from its
	// first container's image (digest, else tag; latest refused), as if every pod carried the
	// annotation plt.dev/version-from=image; a pod opts out with plt.dev/version-from=label.
	// Off, only annotated pods get one (detect.ImageVersion, detect.AnnotationVersionFrom).
	VersionFromImage bool `env:"PLT_SKEW_VERSION_FROM_IMAGE, default=false"`
	// Namespaces limits detection (pod informer and watch) to these namespaces; empty means all.
	Namespaces []string `env:"PLT_SKEW_NAMESPACES"`
	// InsecureSkipPodAuth turns off the proof that a registering caller is the pod it names.
	// For local development only; logged loudly at start-up.
	InsecureSkipPodAuth bool `env:"PLT_SKEW_INSECURE_SKIP_POD_AUTH, default=false"`
	// InsecureSkipAPIAuth turns off TokenReview/SubjectAccessReview on /api/v1. Local development only.
	InsecureSkipAPIAuth bool   `env:"PLT_SKEW_INSECURE_SKIP_API_AUTH, default=false"`
	LogLevel            string `env:"PLT_SKEW_LOG_LEVEL, default=info"`
	LogFormat           string `env:"PLT_SKEW_LOG_FORMAT, default=json"`

	// --- Issue 12: API waits on workflows, Temporal client security (see temporal.go). ---

	// ActionWaitMS bounds every wait of the API on a workflow: an action not done by then is
	// answered 202 with a link to poll (bounds.ActionWait).
	ActionWaitMS int64 `env:"PLT_SKEW_ACTION_WAIT_MS, default=10000"`
	// Temporal client TLS, in the names of Temporal's own environment configuration. TLS is on
	// when TemporalTLS is true or an API key is given; the CA file replaces the system roots;
	// cert and key (both or neither) are the client certificate of mTLS.
	TemporalTLS           bool   `env:"TEMPORAL_TLS, default=false"`
	TemporalTLSCAFile     string `env:"TEMPORAL_TLS_SERVER_CA_CERT_PATH"`
	TemporalTLSCertFile   string `env:"TEMPORAL_TLS_CLIENT_CERT_PATH"`
	TemporalTLSKeyFile    string `env:"TEMPORAL_TLS_CLIENT_KEY_PATH"`
	TemporalTLSServerName string `env:"TEMPORAL_TLS_SERVER_NAME"`
	// TemporalAPIKey, or TemporalAPIKeyFile (re-read when it changes, e.g. a mounted Secret),
	// is sent as a bearer token on every Temporal call; at most one of the two.
	TemporalAPIKey     string `env:"TEMPORAL_API_KEY"`
	TemporalAPIKeyFile string `env:"PLT_SKEW_TEMPORAL_API_KEY_FILE"`

	// --- Claims (issue 12, item 1): who may claim a hostname and path. ---
	// ClaimsConfigMap is "namespace/name" of the operator's allowlist ConfigMap (key
	// claims.yaml, see internal/claims). Empty: no namespace may claim anything (warned at start).
	ClaimsConfigMap string `env:"PLT_SKEW_CLAIMS_CONFIGMAP"`

	// API transport security and agent tokens (security.go).
	// TLSCertFile and TLSKeyFile, both or neither, make the API listener serve HTTPS (TLS 1.2 or
	// later) with this PEM pair, re-read when the files change (cert-manager rotates them).
	TLSCertFile string `env:"PLT_SKEW_TLS_CERT_FILE"`
	TLSKeyFile  string `env:"PLT_SKEW_TLS_KEY_FILE"`
	// AgentTokenAudiences, when set, are the audiences an agent's token must be valid for
	// (TokenReview spec.audiences). Empty: the API server's default audience (weaker: such a
	// token is also accepted by the Kubernetes API).
	AgentTokenAudiences []string `env:"PLT_SKEW_AGENT_TOKEN_AUDIENCES"`
}

// The duration getters read a validated Config (LoadFrom checked every value against its range
// in internal/bounds); on any other Config they clamp into that range rather than overflow.

// GracePeriod is how long a Draining version is kept unconditionally.
func (c Config) GracePeriod() time.Duration { return bounds.GracePeriod.Duration(c.GracePeriodMS) }

// MaxAlive is the ceiling on time spent Draining.
func (c Config) MaxAlive() time.Duration { return bounds.MaxAlive.Duration(c.MaxAliveMS) }

// CheckInterval is how often a Draining version's traffic is checked after the grace period.
func (c Config) CheckInterval() time.Duration {
	return bounds.CheckInterval.Duration(c.CheckIntervalMS)
}

// TrafficWindow is the Prometheus range over which a Draining version's request rate is read.
func (c Config) TrafficWindow() time.Duration {
	return bounds.TrafficWindow.Duration(c.TrafficWindowMS)
}

// ReadinessTimeout bounds how long a new version may wait for ready endpoints.
func (c Config) ReadinessTimeout() time.Duration {
	return bounds.ReadinessTimeout.Duration(c.ReadinessTimeoutMS)
}

// Problems lists every configuration problem found, each naming its variable.
type Problems []string

func (p Problems) Error() string {
	return "invalid configuration:\n  " + strings.Join(p, "\n  ")
}

// Load reads the process environment.
func Load(ctx context.Context) (Config, error) {
	return LoadFrom(ctx, envconfig.OsLookuper())
}

// LoadFrom reads configuration through l and validates it. Every problem is reported at once:
// a value that cannot be parsed is recorded against its variable and the default is used so
// that the remaining checks still run.
func LoadFrom(ctx context.Context, l envconfig.Lookuper) (Config, error) {
	var cfg Config
	rec := &recordingLookuper{next: l, kinds: fieldKinds(reflect.TypeOf(cfg))}
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &cfg, Lookuper: rec}); err != nil {
		rec.problems = append(rec.problems, err.Error())
	}
	problems := append(rec.problems, cfg.validate(rec.failed)...)
	if len(problems) > 0 {
		sort.Strings(problems)
		return cfg, Problems(problems)
	}
	return cfg, nil
}

// validate checks the decoded values; failed names the variables already reported as
// unparsable, whose checks here would only repeat the problem.
func (c Config) validate(failed map[string]bool) []string {
	var p []string
	// Every duration is checked against its range (internal/bounds, which holds the per-app
	// policy's overrides to the same) here, before anything multiplies it into a time.Duration.
	p = append(p, bounds.Overrides{GracePeriodMS: &c.GracePeriodMS, MaxAliveMS: &c.MaxAliveMS,
		CheckIntervalMS: &c.CheckIntervalMS, TrafficWindowMS: &c.TrafficWindowMS, CookieMaxAge: &c.CookieMaxAge,
		MaxVersions: &c.MaxVersions,
	}.Check(bounds.ByEnv)...)
	p = append(p, bounds.Checks(bounds.ByEnv, []bounds.Range{bounds.ReadinessTimeout, bounds.ActionWait},
		&c.ReadinessTimeoutMS, &c.ActionWaitMS)...)
	if !validate.CookieName(c.CookieName) {
		p = append(p, fmt.Sprintf("PLT_SKEW_COOKIE_NAME: %q is not a valid cookie name", c.CookieName))
	}
	if c.Mode != "manage" && c.Mode != "advise" && c.Mode != "observe" {
		p = append(p, fmt.Sprintf("PLT_SKEW_MODE: %q is not one of manage, advise, observe", c.Mode))
	}
	if c.TaskQueue == "" {
		p = append(p, "PLT_SKEW_TASK_QUEUE: must not be empty")
	}
	if u := c.TemporalUIURL; u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		p = append(p, "PLT_SKEW_TEMPORAL_UI_URL: must be an http:// or https:// URL, got "+strconv.Quote(u))
	}
	if c.TemporalNamespace == "" {
		p = append(p, "TEMPORAL_NAMESPACE: must not be empty")
	}
	if c.TrafficQuery == "" && c.TrafficPreset != "watt" && c.TrafficPreset != "traefik" {
		p = append(p, fmt.Sprintf("PLT_SKEW_TRAFFIC_PRESET: %q is not one of watt, traefik", c.TrafficPreset))
	}
	for _, ns := range c.Namespaces {
		if validate.DNSLabel(ns) != nil {
			p = append(p, fmt.Sprintf("PLT_SKEW_NAMESPACES: %q is not a namespace name", ns))
		}
	}
	if c.SkewProtection && len(c.ParentRefs) == 0 && !failed["PLT_SKEW_GATEWAY_PARENT_REFS"] {
		p = append(p, "PLT_SKEW_GATEWAY_PARENT_REFS: required when PLT_FEATURE_SKEW_PROTECTION is true")
	}
	p = append(p, c.validateTemporal()...)
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		p = append(p, fmt.Sprintf("PLT_SKEW_LOG_LEVEL: %q is not one of debug, info, warn, error", c.LogLevel))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		p = append(p, fmt.Sprintf("PLT_SKEW_LOG_FORMAT: %q is not one of json, text", c.LogFormat))
	}
	p = append(p, c.validateSecurity()...)
	return p
}

// recordingLookuper checks each raw value against the kind of the field it fills. A value that
// does not parse is recorded as a problem and hidden, so that decoding goes on with the default.
type recordingLookuper struct {
	next     envconfig.Lookuper
	kinds    map[string]reflect.Kind
	problems []string
	failed   map[string]bool // variables with a problem
}

func (r *recordingLookuper) Lookup(key string) (string, bool) {
	val, ok := r.next.Lookup(key)
	if !ok || strings.TrimSpace(val) == "" {
		// An empty value means unset, as charts and compose files often render optional settings.
		return "", false
	}
	var err error
	switch r.kinds[key] {
	case reflect.Int64:
		val = strings.TrimSpace(val) // envconfig parses the value as given: " 5" would abort decoding
		_, err = strconv.ParseInt(val, 10, 64)
		if err != nil {
			err = fmt.Errorf("%q is not a whole number", val)
		}
	case reflect.Bool:
		val = strings.TrimSpace(val)
		_, err = strconv.ParseBool(val)
		if err != nil {
			err = fmt.Errorf("%q is not true or false", val)
		}
	case reflect.Slice:
		if key != "PLT_SKEW_GATEWAY_PARENT_REFS" {
			break
		}
		// Every bad reference in one problem, on one line: Problems prints one per line.
		var bad []string
		for _, part := range strings.Split(val, ",") {
			if _, perr := routes.ParseParentRef(part); perr != nil {
				bad = append(bad, strings.ReplaceAll(perr.Error(), "\n", "; "))
			}
		}
		if len(bad) > 0 {
			err = errors.New(strings.Join(bad, "; "))
		}
	}
	if err != nil {
		r.problems = append(r.problems, fmt.Sprintf("%s: %v", key, err))
		if r.failed == nil {
			r.failed = map[string]bool{}
		}
		r.failed[key] = true
		return "", false
	}
	return val, ok
}

// fieldKinds maps each env variable name of t to the kind of its field.
func fieldKinds(t reflect.Type) map[string]reflect.Kind {
	kinds := map[string]reflect.Kind{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name != "" {
			kinds[name] = f.Type.Kind()
		}
	}
	return kinds
}
