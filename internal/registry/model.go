package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// State is where a version is in its life.
type State string

const (
	// Pending: seen, not yet routable (waiting for ready endpoints).
	Pending State = "pending"
	// Staged: held at the approval gate; reachable only by an explicit pin.
	Staged State = "staged"
	// Active: the version new sessions go to. At most one per application.
	Active State = "active"
	// Draining: superseded; pinned sessions still reach it until it expires.
	Draining State = "draining"
	// Expired: no longer routed; its Deployment is scaled to 0 or deleted.
	Expired State = "expired"
	// Failed: could not be made Active (never ready, routes that cannot be rendered or were
	// refused, a host and path another app holds). Never routed; its workloads are left as they
	// are until an operator expires it. It keeps its label, and may still become Active (ready
	// late, or an operator's approval).
	Failed State = "failed"
)

// Live reports whether a version in state s still holds its label (is not expired).
func (s State) Live() bool { return s != Expired }

// Pinned reports whether a version in state s gets a pin rule in the routes.
func (s State) Pinned() bool { return s == Draining || s == Staged }

// transitions is the one place where the legal moves between states are written.
var transitions = map[State][]State{
	// Pending → Draining: found together with a newer version, which is Active instead.
	Pending:  {Staged, Active, Draining, Expired, Failed},
	Staged:   {Active, Expired, Failed},
	Active:   {Draining},
	Draining: {Active, Expired},
	Failed:   {Staged, Active, Expired},
	Expired:  {},
}

// CanTransition reports whether a version may move from one state to another.
func CanTransition(from, to State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// CheckTransition returns an *IllegalTransitionError when from → to is not allowed.
func CheckTransition(v VersionRef, from, to State) error {
	if CanTransition(from, to) {
		return nil
	}
	return &IllegalTransitionError{Version: v, From: from, To: to}
}

// IllegalTransitionError is returned, and nothing is changed, when an operation asks for a
// move the state machine does not allow.
type IllegalTransitionError struct {
	Version  VersionRef
	From, To State
	// Op, when set, names the operation that refused a move the state machine allows in
	// general but that operation does not make (Activate never revives a Draining version).
	Op string
}

func (e *IllegalTransitionError) Error() string {
	if e.Op != "" {
		return fmt.Sprintf("version %s: %s does not move %s → %s", e.Version, e.Op, e.From, e.To)
	}
	return fmt.Sprintf("version %s: illegal transition %s → %s", e.Version, e.From, e.To)
}

// ErrNotFound is returned when an application or version does not exist.
var ErrNotFound = errors.New("not found")

// ErrInvalid is returned (wrapped) for input the registry refuses before touching the database:
// empty names, unknown actor types, out-of-range ports, invalid policies.
var ErrInvalid = errors.New("invalid input")

// VersionRef names one version label of one application.
type VersionRef struct {
	Namespace string `json:"namespace"`
	App       string `json:"app"`
	Label     string `json:"version"`
}

func (r VersionRef) String() string { return r.Namespace + "/" + r.App + "@" + r.Label }

// AppRef names one application.
func (r VersionRef) AppRef() AppRef { return AppRef{Namespace: r.Namespace, Name: r.App} }

// AppRef names one application: the app.kubernetes.io/name label within a namespace.
type AppRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (r AppRef) String() string { return r.Namespace + "/" + r.Name }

// Application is one app and its route generation.
type Application struct {
	ID              int64     `json:"id"`
	Namespace       string    `json:"namespace"`
	Name            string    `json:"name"`
	RouteGeneration int64     `json:"routeGeneration"`
	CreatedAt       time.Time `json:"createdAt"`
	// Claim is the host and path prefix the app's routes serve, nil while nothing is routed.
	Claim *Claim `json:"claim,omitempty"`
	// CookieName is the pin cookie of the app's routes; empty means the configured default.
	CookieName string `json:"cookieName,omitempty"`
}

// Claim is a host and path prefix an application's routes serve. Host "" stands for every
// host of the Gateway listeners. Two applications never hold the same claim.
type Claim struct {
	Host string `json:"host"`
	Path string `json:"path"`
}

func (c Claim) String() string {
	h := c.Host
	if h == "" {
		h = "(any host)"
	}
	return h + c.Path
}

// overlapsHost reports whether requests could match both claims' hosts: the same host, or either
// serves every host. (Wildcard hostnames are compared as written.)
func (c Claim) overlapsHost(o Claim) bool { return c.Host == "" || o.Host == "" || c.Host == o.Host }

// Nests reports whether one claim's path prefix covers the other's on a shared host: then a
// cookie set for the shorter path is also sent with requests for the longer one.
func (c Claim) Nests(o Claim) bool {
	if !c.overlapsHost(o) {
		return false
	}
	covers := func(short, long string) bool {
		return short == "/" || short == long || strings.HasPrefix(long, strings.TrimRight(short, "/")+"/")
	}
	return covers(c.Path, o.Path) || covers(o.Path, c.Path)
}

// Placement is where a version's requests go and which of them it serves: its Service and
// port, and its plt.dev/path and plt.dev/hostname. It is the one description of a version's
// placement from detection to the registry: detection reads it (detect.StartRequest), the
// lifecycle workflow carries it (workflows.LifecycleInput), its first activity hands it on
// (activities.ObserveInput) and the registry records it (Observation, Version). Each of those
// embeds it, so its fields keep their JSON names at the top level of every payload; a new
// fact about where a version is reached is added here, once.
//
// What detection finds besides where the version is reached is not placement: who found it
// (an Actor), when its Deployment and pods were created (Origin, which orders versions found
// together), why its routes cannot be rendered, and which life it follows.
type Placement struct {
	ServiceName string `json:"serviceName"`
	ServicePort int32  `json:"servicePort"`          // 0: not known yet (the registry keeps the last known)
	PathPrefix  string `json:"pathPrefix,omitempty"` // from plt.dev/path; empty means the default
	Hostname    string `json:"hostname,omitempty"`   // from plt.dev/hostname
	// AdoptedDeployment names the Deployment, without plt.dev/version and annotated
	// plt.dev/adopt=true, whose running pods are this version (see internal/detect's
	// AnnotationAdopt); ServiceName is then the Service skewguard created for them. Empty for
	// every other version. Recorded when the version's life is inserted.
	AdoptedDeployment string `json:"adoptedDeployment,omitempty"`
	// Group is the app group the version belongs to (plt.dev/group; empty: none): the versions
	// of one group in one namespace share one pin cookie across apps.
	Group string `json:"group,omitempty"`
}

// checkPort returns an ErrInvalid error when the port cannot be a Service port.
func (p Placement) checkPort(ref VersionRef) error {
	if p.ServicePort < 0 || p.ServicePort > math.MaxUint16 {
		return invalid("version %s: service port %d out of range", ref, p.ServicePort)
	}
	return nil
}

// Origin is when a version came to be, as detection saw it: the creation times of the
// Deployment that runs it and of its first pod (zero: unknown). Among versions found together
// the newest becomes Active (Version.newerThan). Like Placement it is embedded in every payload
// from detection to the registry, its fields at the top level.
type Origin struct {
	DeployedAt    time.Time `json:"deployedAt,omitzero"`
	PodsCreatedAt time.Time `json:"podsCreatedAt,omitzero"`
}

// Version is one life of one version label. A label that expired and is deployed again gets a
// new row (a new life); the old row and its audit trail are kept.
type Version struct {
	ID        int64  `json:"id"`
	AppID     int64  `json:"appId"`
	Namespace string `json:"namespace"`
	App       string `json:"app"`
	Label     string `json:"version"`
	Life      int    `json:"life"`
	State     State  `json:"state"`
	// Placement is where the version is reached, as last recorded (its fields are the
	// version's own in JSON).
	Placement
	WorkflowID string     `json:"workflowId"`
	PendingAt  time.Time  `json:"pendingAt"`
	StagedAt   *time.Time `json:"stagedAt,omitempty"`
	ActiveAt   *time.Time `json:"activeAt,omitempty"`
	DrainingAt *time.Time `json:"drainingAt,omitempty"`
	ExpiredAt  *time.Time `json:"expiredAt,omitempty"`
	// LastRPS is the last request-rate reading while draining (nil until one succeeded).
	LastRPS   *float64   `json:"lastRps,omitempty"`
	LastRPSAt *time.Time `json:"lastRpsAt,omitempty"`
	// DeployedAt and PodsCreatedAt are the creation times of the version's Deployment and of
	// its first pod, when detection knew them: they order versions found together.
	DeployedAt    *time.Time `json:"deployedAt,omitempty"`
	PodsCreatedAt *time.Time `json:"podsCreatedAt,omitempty"`
	FailedAt      *time.Time `json:"failedAt,omitempty"`
	// Failure says why the version is Failed.
	Failure string `json:"failure,omitempty"`
}

// newerThan says whether v is newer than o among versions found together: by the Deployment's creation
// time when both are known, then the pods' when both are known, then detection time and the row id.
// A time known for one side only is not compared with the other's fallback: a version whose
// Deployment detection could not see yet (its informer was behind) would otherwise be compared by
// its recording time, which trails any creation time, and an older version would keep the app.
func (v Version) newerThan(o Version) bool {
	known := func(t *time.Time) bool { return t != nil && !t.IsZero() }
	if known(v.DeployedAt) && known(o.DeployedAt) && !v.DeployedAt.Equal(*o.DeployedAt) {
		return v.DeployedAt.After(*o.DeployedAt)
	}
	if known(v.PodsCreatedAt) && known(o.PodsCreatedAt) && !v.PodsCreatedAt.Equal(*o.PodsCreatedAt) {
		return v.PodsCreatedAt.After(*o.PodsCreatedAt)
	}
	if !v.PendingAt.Equal(o.PendingAt) {
		return v.PendingAt.After(o.PendingAt)
	}
	return v.ID > o.ID
}

// Ref names the version.
func (v Version) Ref() VersionRef {
	return VersionRef{Namespace: v.Namespace, App: v.App, Label: v.Label}
}

// ActorType says who caused an event.
type ActorType string

const (
	ActorSystem   ActorType = "system"   // skewguard's own lifecycle decisions
	ActorPod      ActorType = "pod"      // a pod registration (agent or pod watch)
	ActorUser     ActorType = "user"     // an operator through the API, CLI or Temporal UI
	ActorWorkflow ActorType = "workflow" // a workflow step, with its workflow id
)

// Actor is who caused an audited event.
type Actor struct {
	Type ActorType `json:"type"`
	ID   string    `json:"id,omitempty"`
	Name string    `json:"name,omitempty"`
}

// AuditEntry is one row of a version's append-only audit trail.
type AuditEntry struct {
	ID        int64           `json:"id"`
	VersionID int64           `json:"versionId"`
	Version   VersionRef      `json:"ref"`
	Life      int             `json:"life"`
	Event     string          `json:"event"`
	FromState *State          `json:"fromState,omitempty"`
	ToState   *State          `json:"toState,omitempty"`
	Actor     Actor           `json:"actor"`
	Reason    string          `json:"reason,omitempty"`
	Detail    json.RawMessage `json:"detail,omitempty"`
	At        time.Time       `json:"at"`
}

// Policy holds per-application overrides; a nil field inherits the global value.
type Policy struct {
	GracePeriodMS   *int64 `json:"gracePeriodMs,omitempty"`
	MaxAliveMS      *int64 `json:"maxAliveMs,omitempty"`
	CheckIntervalMS *int64 `json:"checkIntervalMs,omitempty"`
	TrafficWindowMS *int64 `json:"trafficWindowMs,omitempty"`
	CookieMaxAge    *int64 `json:"cookieMaxAge,omitempty"`
	AutoCleanup     *bool  `json:"autoCleanup,omitempty"`
	RequireApproval *bool  `json:"requireApproval,omitempty"`
	// MaxVersions caps how many versions may be Draining at once (ICC's maxVersions); 0 is no
	// cap. Enforced by the Flip that makes a version Active (see FlipRequest.MaxVersions).
	MaxVersions *int64 `json:"maxVersions,omitempty"`
	// Enabled switches skew protection for the app (ICC's enabled); nil is on. Off (false): the
	// app's Draining versions are expired (ApplySwitch), a version superseded while off expires at
	// once instead of draining (an effective cap of 0, see enforceMaxVersions), and the routes are
	// one plain route to the Active version: no pin rules, no Set-Cookie.
	Enabled *bool `json:"enabled,omitempty"`
	// Mode is how far skewguard acts on the app's cluster objects: ModeManage, ModeAdvise or
	// ModeObserve (PLT_SKEW_MODE when nil).
	Mode *string `json:"mode,omitempty"`
}

// ProtectionOff reports whether the policy switches the app's skew protection off.
func (p Policy) ProtectionOff() bool { return p.Enabled != nil && !*p.Enabled }

// Snapshot is one consistent view of an application, read in a single transaction: what the
// route renderer needs.
type Snapshot struct {
	App        Application `json:"app"`
	Active     *Version    `json:"active,omitempty"`
	Pinned     []Version   `json:"pinned"` // draining and staged, ordered by version id
	Generation int64       `json:"generation"`
	// Policy is the app's overrides read in the same transaction (the cookie Max-Age is part of
	// the rendered routes); zero when the app has none.
	Policy Policy `json:"policy"`
}

// Pod is a pod that registered or was seen by the pod watch.
type Pod struct {
	ID        string          `json:"podId"`
	Namespace string          `json:"namespace"`
	AppID     *int64          `json:"appId,omitempty"`
	VersionID *int64          `json:"versionId,omitempty"`
	FirstSeen time.Time       `json:"firstSeen"`
	LastSeen  time.Time       `json:"lastSeen"`
	Metadata  json.RawMessage `json:"metadata,omitempty"`
}
