package detect

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/metrics"
	"github.com/skewguard/skewguard/internal/registry"
)

// Sources of a detection, as counted in metrics and written in the audit trail.
const (
	SourceAgent     = "agent"     // the agent's POST /control-plane/pods/{podId}/instance
	SourcePodWatch  = "pod_watch" // a labelled pod turned Ready
	SourceWebSocket = "websocket" // an agent reconnected its update WebSocket
	SourceRetry     = "retry"     // a detection that failed earlier, retried
)

// Registry is what detection needs from the version registry.
type Registry interface {
	LiveVersion(ctx context.Context, ref registry.VersionRef) (registry.Version, bool, error)
	GetVersion(ctx context.Context, ref registry.VersionRef) (registry.Version, error)
	UpsertPod(ctx context.Context, p registry.Pod) error
}

// StartRequest is what starting a version's lifecycle needs: the version, where it is reached
// and when it came to be (registry.Placement and registry.Origin, handed on unchanged to the
// workflow input, the first activity and the registry), who found it, and what detection
// decided about it (After, Invalid).
type StartRequest struct {
	Ref registry.VersionRef
	registry.Placement
	Actor registry.Actor
	// Origin orders versions detected together (skew protection switched on over running
	// versions, a restart, a missed event): the newest Deployment wins, then the newest pods.
	// Zero when unknown; see Cache.OriginOf for where it comes from.
	registry.Origin
	// After is the registry ID of the label's newest life, expired, that this start follows (0:
	// the label was never recorded). The expired life's workflow may still be finishing; the
	// Starter must make sure that it carries on as the new life rather than swallow the start.
	After int64
	// Invalid, when set, is why Options.Validate refused the version. The version is started
	// all the same so that the refusal is recorded where operators look; the workflow must not
	// activate it.
	Invalid string
}

// Starter starts (or finds running) the lifecycle workflow of a version. It must be idempotent.
type Starter interface {
	StartVersion(ctx context.Context, req StartRequest) error
}

// Lookup is what detection reads from the informer cache.
type Lookup interface {
	ServiceFor(pod *corev1.Pod) (*corev1.Service, int32, bool)
	OriginOf(pod *corev1.Pod) Origin
	PodsSelectedBy(namespace string, selector map[string]string) []*corev1.Pod
}

// Result says what detection found and did for one pod.
type Result struct {
	// AppName is the application: the app label, else the agent's applicationName, else the
	// pod name. ApplicationID is derived from it and the namespace.
	AppName       string
	ApplicationID string
	// Ref is the pod's version; Label is empty when the pod carries no version label (and
	// none was derived from its image).
	Ref registry.VersionRef
	// FromImage: Ref.Label was derived from the pod's image (see ImageVersion), as the pod
	// carries no version label and opted in (AnnotationVersionFrom, or the global setting).
	FromImage bool
	// DeploymentVersion is what the agent is told (empty: tell it nothing).
	DeploymentVersion string
	Outcome           Outcome
	// Reason explains outcomes that are not a plain success, for logs.
	Reason string
}

// Outcome is what detection did with one pod. Callers branch on it; its String is the outcome
// label of skewguard_registrations_total, which dashboards and alerts name, so a label value
// never changes once published. The zero value is no outcome: Detect always sets one.
type Outcome int

// Outcomes of a detection (the agent, the pod watch, a WebSocket reconnect or a retry).
const (
	OutcomeFastPath   Outcome = iota + 1 // the version was already live: the pod is recorded against it
	OutcomeStarted                       // a new (or redeployed) version: its workflow was started
	OutcomeDeduped                       // another detection holds the start of this life (moments ago)
	OutcomeFeatureOff                    // skew protection disabled: answered, nothing recorded
	OutcomeNoLabels                      // the pod lacks app.kubernetes.io/name or plt.dev/version
	OutcomeNoService                     // no Service selects the version's pods yet: worth trying again
	OutcomeStale                         // the pod predates the expiry of its version
	OutcomeInvalid                       // started, but refused by validation: it will not be activated
	OutcomeError                         // the registry or the workflow start failed; Detect returns the error
)

// outcomeLabels are the metric label values, indexed by Outcome.
var outcomeLabels = [...]string{
	OutcomeFastPath:   "fast_path",
	OutcomeStarted:    "started",
	OutcomeDeduped:    "deduped",
	OutcomeFeatureOff: "feature_off",
	OutcomeNoLabels:   "no_labels",
	OutcomeNoService:  "no_service",
	OutcomeStale:      "stale",
	OutcomeInvalid:    "invalid",
	OutcomeError:      "error",
}

// String is the outcome's metric label ("fast_path", "no_service", ...); an Outcome outside
// the constants above (a bug) reads "Outcome(n)".
func (o Outcome) String() string {
	if o > 0 && int(o) < len(outcomeLabels) {
		return outcomeLabels[o]
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Options configure a Detector.
type Options struct {
	Registry Registry
	Starter  Starter
	Lookup   Lookup
	// Enabled is PLT_FEATURE_SKEW_PROTECTION: off, nothing is recorded or started.
	Enabled bool
	// VersionFromImage is PLT_SKEW_VERSION_FROM_IMAGE: a pod without the version label gets a
	// version derived from its first container's image (ImageVersion) unless it opts out with
	// AnnotationVersionFrom=label. Off (the default), only pods annotated with
	// AnnotationVersionFrom=image[:<container>] get one.
	VersionFromImage bool
	// Adopter, when set, lets detection adopt the unlabelled pods of a Deployment annotated
	// AnnotationAdopt=true (with a Lookup that implements AdoptionLookup): it creates the
	// adopted version's Service. Nil: nothing is adopted.
	Adopter Adopter
	// ModeOf, when set, answers the app's mode (manage, advise or observe; see activities.ModeOf).
	// Adoption writes a Service, so it happens in manage mode only: in the others it is refused
	// (no_service, with the reason) and nothing is written. Nil: every app is managed.
	ModeOf func(ctx context.Context, app registry.AppRef) (string, error)
	// Audit, when set, records an event in a version's audit trail (registry.Store.AppendAudit):
	// detection records there that an adopted version followed its Deployment to a new pod
	// template. Nil: only logged.
	Audit func(ctx context.Context, ref registry.VersionRef, event string, actor registry.Actor, reason string,
		detail any) error
	// DedupeTTL is how long a started version is not started again by this process.
	DedupeTTL time.Duration
	// PodRecordTTL is how long a pod recorded against a live version is not written again
	// (last_seen is that coarse); a repeat registration of it then costs one read.
	PodRecordTTL time.Duration
	// Validate, when set, checks a version before its workflow starts. A refusal does not drop
	// the version, which would leave nothing in the registry to say why its pods get no
	// traffic: it is started with StartRequest.Invalid set, logged as a warning and counted as
	// OutcomeInvalid.
	Validate func(StartRequest) error
	Logger   *slog.Logger
	Now      func() time.Time
}

// Detector is the one idempotent path from "this pod exists" to "its version is tracked".
type Detector struct {
	opts   Options
	recent *recentSet[lifeKey]
	// recorded remembers pod rows written on the fast path.
	recorded *recentSet[podRecord]
	// retry, when set, is handed pods whose detection failed, to try again later.
	retry func(pod *corev1.Pod)
}

// NewDetector returns a Detector.
func NewDetector(opts Options) *Detector {
	if opts.DedupeTTL <= 0 {
		opts.DedupeTTL = 30 * time.Second
	}
	if opts.PodRecordTTL <= 0 {
		opts.PodRecordTTL = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Detector{opts: opts, recent: newRecentSet[lifeKey](4096), recorded: newRecentSet[podRecord](16384)}
}

// Enabled reports whether skew protection is on.
func (d *Detector) Enabled() bool { return d.opts.Enabled }

// Hint is what a caller knows beyond the pod: the agent's applicationName.
type Hint struct {
	ApplicationName string
}

// Detect records pod and, when its version is new (or an expired label is back), starts the
// version's workflow. It is safe to call any number of times for the same pod. The returned
// Result is meaningful even with an error: the pod's labels still say what it is.
func (d *Detector) Detect(ctx context.Context, pod *corev1.Pod, source string, hint Hint) (Result, error) {
	target, adopting := d.adoptionOf(pod)
	res, derr := identify(pod, hint, d.opts.VersionFromImage || adopting)
	log := d.opts.Logger.With("pod", pod.Namespace+"/"+pod.Name, "source", source)
	finish := func(outcome Outcome, reason string, err error) (Result, error) {
		res.Outcome, res.Reason = outcome, reason
		metrics.Registration(source, outcome.String())
		switch {
		case err != nil:
			log.Error("detection failed", "app", res.AppName, "version", res.Ref.Label, "error", err)
		case derr != nil:
			log.Warn("pod opted into a version from its image, but none could be derived: registered without tracking",
				"app", res.AppName, "outcome", outcome.String(), "reason", reason)
		case outcome == OutcomeInvalid:
			log.Warn("version refused at detection: started so that the refusal is recorded; it will not be activated",
				"app", res.AppName, "version", res.Ref.Label, "reason", reason)
		case reason != "":
			log.Info("pod registered without tracking", "app", res.AppName, "outcome", outcome.String(), "reason", reason)
		default:
			log.Debug("pod registered", "app", res.AppName, "version", res.Ref.Label, "outcome", outcome.String())
		}
		return res, err
	}

	if !d.opts.Enabled {
		derr = nil // nothing is derived or recorded: not worth a warning
		return finish(OutcomeFeatureOff, "skew protection is disabled (PLT_FEATURE_SKEW_PROTECTION=false)", nil)
	}
	if res.Ref.App == "" || res.Ref.Label == "" {
		err := d.opts.Registry.UpsertPod(ctx, registry.Pod{ID: pod.Name, Namespace: pod.Namespace})
		reason := fmt.Sprintf("pod lacks the %s or %s label", LabelApp, LabelVersion)
		if res.Ref.App != "" && derr != nil {
			reason = fmt.Sprintf("pod lacks the %s label and no version could be derived from its image: %v", LabelVersion, derr)
		} else {
			derr = nil // the app label is missing: the derivation is not what is wrong
		}
		return finish(OutcomeNoLabels, reason, err)
	}
	res.DeploymentVersion = res.Ref.Label

	live, ok, err := d.opts.Registry.LiveVersion(ctx, res.Ref)
	if err != nil {
		return finish(OutcomeError, "", err)
	}
	if ok {
		if err := d.followTemplate(ctx, pod, live, adopting && res.FromImage, target, source); err != nil {
			return finish(OutcomeError, "", err)
		}
		return d.fastPath(ctx, pod, live, finish)
	}
	if err := d.opts.Registry.UpsertPod(ctx, registry.Pod{ID: pod.Name, Namespace: pod.Namespace}); err != nil {
		return finish(OutcomeError, "", err)
	}
	// The start is reserved for the life that follows the newest one recorded, not for the
	// label: a label started, recorded and expired moments ago may start its next life at once.
	// (Keyed by label, the reservation of the last start made a scale-up within 30 s of it
	// come out deduped, and nothing looked at the pod again.)
	newest, found, err := d.newestLife(ctx, res.Ref)
	if err != nil {
		return finish(OutcomeError, "", err)
	}
	if found && newest.State.Live() {
		// Recorded between the two reads: the workflow's first activity has just run.
		if err := d.followTemplate(ctx, pod, newest, adopting && res.FromImage, target, source); err != nil {
			return finish(OutcomeError, "", err)
		}
		return d.fastPath(ctx, pod, newest, finish)
	}
	if found && predatesExpiry(pod, newest) {
		return finish(OutcomeStale, "the pod was created before its version expired; only new pods bring it back", nil)
	}
	key := lifeKey{ref: res.Ref, after: newest.ID}
	now := d.opts.Now()
	if !d.recent.reserve(key, now, now.Add(d.opts.DedupeTTL)) {
		return finish(OutcomeDeduped, "", nil)
	}
	started := false
	defer func() {
		if !started {
			d.recent.release(key)
		}
	}()
	var svc *corev1.Service
	var port int32
	if adopting && res.FromImage {
		// An adopted Deployment's pods: our own Service selects them, and only them.
		var err error
		if refusal, err := d.adoptionRefused(ctx, res.Ref); err != nil {
			return finish(OutcomeError, "", err)
		} else if refusal != "" {
			return finish(OutcomeNoService, refusal, nil)
		}
		svc, port, err = d.adopt(ctx, pod, res.Ref, target)
		switch {
		case errors.Is(err, errNoTeamService), errors.Is(err, kube.ErrAdoptionConflict):
			return finish(OutcomeNoService, err.Error(), nil)
		case err != nil:
			return finish(OutcomeError, "", err)
		}
	} else if svc, port, ok = d.opts.Lookup.ServiceFor(pod); !ok {
		return finish(OutcomeNoService, "no Service in the namespace selects this pod's version yet", nil)
	}
	if res.FromImage && !adopting {
		// No label tells this version's pods from the others' to a Service selector: a Service
		// that also selects pods of another version would send a pinned request to either.
		if other := d.sharedService(svc, res.Ref); other != "" {
			return finish(OutcomeNoService, fmt.Sprintf("Service %s also selects %s: a version derived from the image "+
				"needs a Service that selects its pods only", svc.Name, other), nil)
		}
	}
	path, hostname := placement(pod)
	req := StartRequest{
		Ref:       res.Ref,
		Placement: registry.Placement{ServiceName: svc.Name, ServicePort: port, PathPrefix: path, Hostname: hostname},
		Actor:     registry.Actor{Type: registry.ActorPod, ID: pod.Namespace + "/" + pod.Name, Name: source},
		Origin:    d.opts.Lookup.OriginOf(pod),
	}
	if adopting && res.FromImage {
		req.AdoptedDeployment = target.Deployment
	}
	req.Group = pod.Labels[LabelGroup]
	if res.FromImage {
		req.PodsCreatedAt = d.earliestPodOf(pod, res.Ref, req.PodsCreatedAt)
	}
	if found {
		req.After = newest.ID
	}
	if d.opts.Validate != nil {
		if err := d.opts.Validate(req); err != nil {
			req.Invalid = err.Error()
			if req.Invalid == "" {
				req.Invalid = "refused by validation"
			}
		}
	}
	if err := d.opts.Starter.StartVersion(ctx, req); err != nil {
		return finish(OutcomeError, "", fmt.Errorf("start lifecycle of %s: %w", res.Ref, err))
	}
	started = true
	if req.Invalid != "" {
		return finish(OutcomeInvalid, req.Invalid, nil)
	}
	log.Info("version detected", "app", res.AppName, "version", res.Ref.Label, "fromImage", res.FromImage, "adopted", adopting,
		"service", svc.Name, "port", port, "deployedAt", req.DeployedAt, "podsCreatedAt", req.PodsCreatedAt)
	return finish(OutcomeStarted, "", nil)
}

// fastPath writes pod's row against live, its version's live life, at most once per
// PodRecordTTL: last_seen is that coarse.
func (d *Detector) fastPath(ctx context.Context, pod *corev1.Pod, live registry.Version,
	finish func(outcome Outcome, reason string, err error) (Result, error)) (Result, error) {
	now := d.opts.Now()
	rec := podRecord{uid: string(pod.UID), versionID: live.ID}
	if !d.recorded.reserve(rec, now, now.Add(d.opts.PodRecordTTL)) {
		return finish(OutcomeFastPath, "", nil)
	}
	err := d.opts.Registry.UpsertPod(ctx, registry.Pod{ID: pod.Name, Namespace: pod.Namespace,
		AppID: &live.AppID, VersionID: &live.ID})
	if err != nil {
		d.recorded.release(rec)
		return finish(OutcomeError, "", err)
	}
	return finish(OutcomeFastPath, "", nil)
}

// newestLife returns the newest life of ref, whatever its state; found is false when the
// label was never recorded.
func (d *Detector) newestLife(ctx context.Context, ref registry.VersionRef) (v registry.Version, found bool, err error) {
	v, err = d.opts.Registry.GetVersion(ctx, ref)
	if errors.Is(err, registry.ErrNotFound) {
		return registry.Version{}, false, nil
	}
	if err != nil {
		return registry.Version{}, false, err
	}
	return v, true, nil
}

// predatesExpiry reports whether pod was created before v, the newest life of its version,
// expired: a leftover pod of a version being scaled away does not bring that version back.
// Creation times are whole seconds (the API server drops the fraction) while the expiry is
// precise, so a pod created in the very second of the expiry counts as after it: otherwise a
// scale-up right after an expiry would be turned away as stale, and nothing would look at
// that pod again.
func predatesExpiry(pod *corev1.Pod, v registry.Version) bool {
	return v.State == registry.Expired && v.ExpiredAt != nil &&
		pod.CreationTimestamp.Time.Before(v.ExpiredAt.Truncate(time.Second))
}

// identify reads who pod is from its labels, and its version from its image when it has no
// version label and opted in (global: PLT_SKEW_VERSION_FROM_IMAGE). The Result is always
// filled in; the error says why a version asked for could not be derived (Ref.Label is then
// empty).
func identify(pod *corev1.Pod, hint Hint, global bool) (Result, error) {
	app := pod.Labels[LabelApp]
	name := app
	if name == "" {
		name = strings.TrimSpace(hint.ApplicationName)
	}
	if name == "" {
		name = pod.Name
	}
	version, derived, err := versionOf(pod, global)
	return Result{
		AppName:       name,
		ApplicationID: ApplicationID(pod.Namespace, name),
		Ref:           registry.VersionRef{Namespace: pod.Namespace, App: app, Label: version},
		FromImage:     derived,
	}, err
}

// Watchable reports whether the pod watch detects pod: Ready, not going away, with the app
// label and either the version label or an opt-in to a version from its image (one whose
// derivation fails included, so that the refusal is logged and counted).
func (d *Detector) Watchable(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil || pod.Labels[LabelApp] == "" || !Ready(pod) {
		return false
	}
	if pod.Labels[LabelVersion] != "" {
		return true
	}
	_, adopting := d.adoptionOf(pod)
	src, err := sourceOf(pod, d.opts.VersionFromImage || adopting)
	return err != nil || src.fromImage
}

// live reports whether pod still counts among the pods a Service sends traffic to, or soon will.
func live(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp == nil && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}

// sharedService describes the first pod svc selects that is not of version ref ("" when every
// pod it selects is): another app, another version (labelled or derived), or a pod whose
// version cannot be told.
func (d *Detector) sharedService(svc *corev1.Service, ref registry.VersionRef) string {
	for _, p := range d.opts.Lookup.PodsSelectedBy(svc.Namespace, svc.Spec.Selector) {
		if !live(p) {
			continue
		}
		if app := p.Labels[LabelApp]; app != ref.App {
			return fmt.Sprintf("pod %s of app %q", p.Name, app)
		}
		v, _, err := versionOf(p, d.opts.VersionFromImage)
		switch {
		case err != nil:
			return fmt.Sprintf("pod %s, whose version cannot be derived (%v)", p.Name, err)
		case v == "":
			return fmt.Sprintf("pod %s, which names no version", p.Name)
		case v != ref.Label:
			return fmt.Sprintf("pod %s of version %q", p.Name, v)
		}
	}
	return ""
}

// earliestPodOf returns the earliest creation time among from and the Ready pods of ref, a
// version derived from the image: Cache.OriginOf finds a version's pods by its label, which
// these pods lack.
func (d *Detector) earliestPodOf(pod *corev1.Pod, ref registry.VersionRef, from time.Time) time.Time {
	for _, p := range d.opts.Lookup.PodsSelectedBy(pod.Namespace, map[string]string{LabelApp: ref.App}) {
		if p.DeletionTimestamp != nil || !Ready(p) || !p.CreationTimestamp.Time.Before(from) {
			continue
		}
		if v, _, err := versionOf(p, d.opts.VersionFromImage); err == nil && v == ref.Label {
			from = p.CreationTimestamp.Time
		}
	}
	return from
}

// placement returns the path prefix and hostname of the pod's version. A label value cannot
// hold a slash, so the path is read from the annotation of the same name first, and a leading
// slash is added when missing.
func placement(pod *corev1.Pod) (path, hostname string) {
	path = pod.Annotations[LabelPath]
	if path == "" {
		path = pod.Labels[LabelPath]
	}
	if path != "" && !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	hostname = pod.Labels[LabelHostname]
	if hostname == "" {
		hostname = pod.Annotations[LabelHostname]
	}
	return path, hostname
}

// applicationIDSpace is the name space of application ids (a fixed random UUID).
var applicationIDSpace = [16]byte{0x5e, 0x1c, 0x7a, 0x2b, 0x93, 0x4d, 0x4f, 0x0e, 0xa1, 0x66, 0x2d, 0x8c, 0x3b, 0x7f, 0x10, 0x94}

// ApplicationID is the agent-facing id of an application: a name-based (version 5) UUID of
// "namespace/app", so it is the same in every process and after every restart.
func ApplicationID(namespace, app string) string {
	h := sha1.New()
	h.Write(applicationIDSpace[:])
	h.Write([]byte(namespace + "/" + app))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = (u[6] & 0x0f) | 0x50
	u[8] = (u[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// lifeKey names the start of the life of ref that follows the recorded life with id after
// (0: the label's first life).
type lifeKey struct {
	ref   registry.VersionRef
	after int64
}

// podRecord is a pod row written for a live version.
type podRecord struct {
	uid       string
	versionID int64
}

// recentSet remembers keys for a while: versions started moments ago, so a burst of
// registrations (every replica of a new Deployment, plus the pod watch) starts a workflow once,
// not once per pod; and pod rows written moments ago. It is bounded: when full, expired keys
// are dropped, and if none had expired, all of them (a forgotten key only costs a repeat).
type recentSet[K comparable] struct {
	mu    sync.Mutex
	max   int
	until map[K]time.Time
}

func newRecentSet[K comparable](max int) *recentSet[K] {
	return &recentSet[K]{max: max, until: make(map[K]time.Time)}
}

// reserve marks key until the given time and reports whether it was free: of concurrent
// detections of one new version, only the first goes on to start it.
func (s *recentSet[K]) reserve(key K, now, until time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.until[key]; ok && now.Before(t) {
		return false
	}
	if len(s.until) >= s.max {
		for k, t := range s.until {
			if !now.Before(t) {
				delete(s.until, k)
			}
		}
		if len(s.until) >= s.max {
			clear(s.until)
		}
	}
	s.until[key] = until
	return true
}

// release forgets key (the work it stood for did not happen).
func (s *recentSet[K]) release(key K) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.until, key)
}
