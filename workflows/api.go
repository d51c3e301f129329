package workflows

import (
	"context"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/registry"
)

// WorkflowType is the registered name of the lifecycle workflow.
const WorkflowType = "VersionLifecycle"

// Names of the lifecycle's signals, updates and query.
const (
	// SignalSuperseded tells a version's workflow that a newer version is Active and it is now
	// Draining (argument: Superseded).
	SignalSuperseded = "superseded"
	// SignalForceExpire expires a Pending, Staged or Draining version at once; the argument
	// (ActionRequest) is optional, so it works from the Temporal UI's signal button. Signals
	// cannot be refused: an Active version ignores it and audits why.
	SignalForceExpire = "force-expire"
	// SignalPolicyChanged tells a live version's workflow that its app's policy changed: it
	// reloads it at once (timers follow the new values) and the Active one re-writes the routes.
	SignalPolicyChanged = "policy-changed"
	// SignalRedeploy (argument: Redeploy) is sent with a start when the label's newest life has
	// expired: if that life's run is still finishing (retiring its workloads), the start
	// attaches to it, and the signal is how it learns that a new life was seen and must carry on
	// as that life instead of completing.
	SignalRedeploy = "redeploy"
	// Updates (argument ActionRequest, result ActionResult), each with a validator that refuses
	// an action the version's state does not allow.
	UpdateExpire  = "expire"  // Pending, Staged, Draining or Failed → Expired
	UpdatePromote = "promote" // Draining → Active; the current Active version becomes Draining
	UpdateApprove = "approve" // Staged or Failed → Active (for Failed: try the activation again)
	UpdateReject  = "reject"  // Staged or Failed → Expired
	// QueryState returns a StateView.
	QueryState = "state"
)

// Search attributes (Keyword) the lifecycle sets; the Temporal server must have them registered.
var (
	NamespaceKey = temporal.NewSearchAttributeKeyKeyword("SkewNamespace")
	AppKey       = temporal.NewSearchAttributeKeyKeyword("SkewApp")
	VersionKey   = temporal.NewSearchAttributeKeyKeyword("SkewVersion")
	StateKey     = temporal.NewSearchAttributeKeyKeyword("SkewState")
)

// WorkflowID is the ID of a version's lifecycle workflow: skew/<namespace>/<app>/<version>.
func WorkflowID(ref registry.VersionRef) string {
	return "skew/" + ref.Namespace + "/" + ref.App + "/" + ref.Label
}

// LifecycleInput starts a version's lifecycle. Placement and Origin are embedded: their fields
// stand at the top level of the JSON, as in the histories recorded before they were types of
// their own (workflows/testdata), so running and recorded workflows decode it unchanged.
type LifecycleInput struct {
	Ref registry.VersionRef `json:"ref"`
	// Placement is where the version is reached (Service, port, plt.dev/path, plt.dev/hostname).
	registry.Placement
	Actor registry.Actor `json:"actor"` // who detected it
	// Origin is when the version's Deployment and first pod were created (zero: unknown):
	// among versions found together, the newest becomes Active.
	registry.Origin
	// Invalid is why detection found the version's routes impossible to render; such a version
	// is marked Failed at once and never becomes Active.
	Invalid string `json:"invalid,omitempty"`
	// Resume is the state carried across continue-as-new; nil for a fresh start.
	Resume *Resume `json:"resume,omitempty"`
	// After is the registry ID of the label's newest life when detection found it expired (0:
	// the label was never recorded): the start then also signals SignalRedeploy.
	After int64 `json:"after,omitempty"`
}

// Redeploy is SignalRedeploy's argument: a new life of the label was seen after life After
// expired; Input starts it.
type Redeploy struct {
	After int64          `json:"after"`
	Input LifecycleInput `json:"input"`
}

func (in LifecycleInput) validate() error {
	var missing []string
	for _, f := range [][2]string{{"ref.namespace", in.Ref.Namespace}, {"ref.app", in.Ref.App},
		{"ref.version", in.Ref.Label}, {"serviceName", in.ServiceName}} {
		if f[1] == "" {
			missing = append(missing, f[0])
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("lifecycle input: missing %s", strings.Join(missing, ", "))
	}
	if in.ServicePort < 0 || in.ServicePort > 65535 {
		return fmt.Errorf("lifecycle input: service port %d out of range", in.ServicePort)
	}
	return nil
}

// Resume is what a Draining lifecycle carries into its next run.
type Resume struct {
	VersionID   int64             `json:"versionId"`
	Life        int               `json:"life"`
	State       registry.State    `json:"state"`
	Transitions []StateChange     `json:"transitions"`
	DrainingAt  time.Time         `json:"drainingAt"`
	By          string            `json:"by,omitempty"` // the version that superseded this one
	ZeroStreak  int               `json:"zeroStreak"`
	Readings    []Reading         `json:"readings,omitempty"`
	Policy      activities.Policy `json:"policy"`
	Runs        int               `json:"runs"` // how many times the lifecycle continued as new
}

// ActionRequest is the argument of every Update, and (optionally) of the force-expire signal.
type ActionRequest struct {
	Actor  registry.Actor `json:"actor"`
	Reason string         `json:"reason,omitempty"`
}

// ActionResult is the result of an Update.
type ActionResult struct {
	State   registry.State `json:"state"`
	Message string         `json:"message"`
}

// Superseded is the argument of the superseded signal.
type Superseded struct {
	// VersionID is the life that was superseded; a signal meant for another life is ignored.
	VersionID  int64          `json:"versionId"`
	DrainingAt time.Time      `json:"drainingAt"`
	By         string         `json:"by"` // the version label now Active
	Actor      registry.Actor `json:"actor"`
	Reason     string         `json:"reason,omitempty"`
}

// StateChange is one transition of the version.
type StateChange struct {
	State  registry.State `json:"state"`
	At     time.Time      `json:"at"`
	Actor  registry.Actor `json:"actor"`
	Reason string         `json:"reason,omitempty"`
}

// Verdicts of a traffic reading.
const (
	VerdictZero    = "zero"    // found, zero requests per second
	VerdictTraffic = "traffic" // found, some traffic: the zero streak is reset
	VerdictUnknown = "unknown" // no series for the version: counts as nothing
	VerdictFailed  = "failed"  // the query failed: counts as nothing
)

// Reading is one traffic check of a Draining version.
type Reading struct {
	At      time.Time `json:"at"`
	RPS     float64   `json:"rps"`
	Verdict string    `json:"verdict"`
	Error   string    `json:"error,omitempty"`
	// Taken is when Prometheus evaluated the query the reading came from (the worker's clock),
	// zero when it failed: the next reading must come from a later query.
	Taken time.Time `json:"taken,omitzero"`
}

// StateView is the result of the state query.
type StateView struct {
	Ref         registry.VersionRef `json:"ref"`
	VersionID   int64               `json:"versionId"`
	Life        int                 `json:"life"`
	State       registry.State      `json:"state"`
	Since       time.Time           `json:"since"`
	Transitions []StateChange       `json:"transitions"`
	Policy      activities.Policy   `json:"policy"`
	// Draining timeline (nil unless Draining).
	DrainingAt   *time.Time `json:"drainingAt,omitempty"`
	SupersededBy string     `json:"supersededBy,omitempty"`
	GraceEndsAt  *time.Time `json:"graceEndsAt,omitempty"`
	FirstReadAt  *time.Time `json:"firstReadingAt,omitempty"` // grace period + traffic window
	MaxAliveAt   *time.Time `json:"maxAliveAt,omitempty"`
	ZeroStreak   int        `json:"zeroStreak"`
	Readings     []Reading  `json:"readings,omitempty"` // newest last
	NextCheckAt  *time.Time `json:"nextCheckAt,omitempty"`
	// WaitingFor says in words what the workflow waits for and until when.
	WaitingFor string `json:"waitingFor"`
	// LastError is the last step that failed for good (routes not rendered, for example).
	LastError string `json:"lastError,omitempty"`
	// Failure says why a Failed version was not made Active.
	Failure string `json:"failure,omitempty"`
	Runs    int    `json:"runs"`
}

// LifecycleResult is what a finished lifecycle returns.
type LifecycleResult struct {
	Ref         registry.VersionRef `json:"ref"`
	VersionID   int64               `json:"versionId"`
	Life        int                 `json:"life"`
	State       registry.State      `json:"state"`
	Reason      string              `json:"reason"`
	Transitions []StateChange       `json:"transitions"`
}

// StartOptions are the options Start uses: conflict policy USE_EXISTING (a version's workflow
// is started once however many pods register), ID reuse allowed after close (an expired label
// can be deployed again), the search attributes and the static summary and details.
func StartOptions(taskQueue string, in LifecycleInput) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                       WorkflowID(in.Ref),
		TaskQueue:                taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		TypedSearchAttributes:    searchAttributes(in.Ref, registry.Pending),
		StaticSummary:            summary(in.Ref),
		StaticDetails:            staticDetails(in),
	}
}

// Start starts (or attaches to) the version's workflow.
func Start(ctx context.Context, c client.Client, taskQueue string, in LifecycleInput) (client.WorkflowRun, error) {
	if err := in.validate(); err != nil {
		return nil, err
	}
	var run client.WorkflowRun
	var err error
	if in.After != 0 {
		// The expired life's run may still be finishing: USE_EXISTING would attach this start
		// to it and the new life would never be recorded; the signal tells that run to carry on
		// as the new life. A fresh run ignores it (its own life is not After).
		run, err = c.SignalWithStartWorkflow(ctx, WorkflowID(in.Ref), SignalRedeploy, Redeploy{After: in.After, Input: in},
			StartOptions(taskQueue, in), WorkflowType, in)
	} else {
		// Eager start: when this process also runs a worker on the task queue (role serve), the
		// server hands the first workflow task straight back with the start, skipping matching.
		// Without a local worker, or with the server setting off, it is an ordinary start.
		opts := StartOptions(taskQueue, in)
		opts.EnableEagerStart = true
		run, err = c.ExecuteWorkflow(ctx, opts, WorkflowType, in)
	}
	if err != nil {
		return nil, fmt.Errorf("start lifecycle workflow %s: %w", WorkflowID(in.Ref), err)
	}
	return run, nil
}

func searchAttributes(ref registry.VersionRef, state registry.State) temporal.SearchAttributes {
	return temporal.NewSearchAttributes(
		NamespaceKey.ValueSet(ref.Namespace),
		AppKey.ValueSet(ref.App),
		VersionKey.ValueSet(ref.Label),
		StateKey.ValueSet(string(state)),
	)
}

func summary(ref registry.VersionRef) string {
	return fmt.Sprintf("%s version %s (namespace %s)", ref.App, ref.Label, ref.Namespace)
}

func staticDetails(in LifecycleInput) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Lifecycle of version `%s` of app `%s` in namespace `%s`.\n\n", in.Ref.Label, in.Ref.App, in.Ref.Namespace)
	fmt.Fprintf(&b, "- Service: `%s` port %d\n", in.ServiceName, in.ServicePort)
	if in.PathPrefix != "" {
		fmt.Fprintf(&b, "- Path (plt.dev/path): `%s`\n", in.PathPrefix)
	}
	if in.Hostname != "" {
		fmt.Fprintf(&b, "- Hostname (plt.dev/hostname): `%s`\n", in.Hostname)
	}
	fmt.Fprintf(&b, "- Detected by: %s\n", describeActor(in.Actor))
	b.WriteString("\nPending → Active → Draining → Expired. Query `state` for the timeline; " +
		"signal `force-expire` or use the updates `expire`, `promote`, `approve`, `reject` to steer it.")
	return b.String()
}

func describeActor(a registry.Actor) string {
	s := string(a.Type)
	if s == "" {
		s = "unknown"
	}
	if a.Name != "" {
		s += " " + a.Name
	} else if a.ID != "" {
		s += " " + a.ID
	}
	return s
}
