package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/gorilla/mux"
	corev1 "k8s.io/api/core/v1"

	"github.com/skewguard/skewguard/internal/apiwire"
	"github.com/skewguard/skewguard/internal/auth"
	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/detect"
	"github.com/skewguard/skewguard/internal/registry"
)

// InstanceRequest is the body watt-extra sends to register (it may send more; extra fields
// are ignored, because the agent adds fields across releases).
type InstanceRequest = apiwire.InstanceRequest

// InstanceResponse is what watt-extra needs back. ApplicationID is required by the agent (it
// never retries a 2xx without one); DeploymentVersion becomes PLT_DEPLOYMENT_VERSION in the
// app's workers and is left out when skewguard does not track the pod's version. No optional
// ICC service (compliance, cron, scaler...) is advertised, so the agent never calls one.
type InstanceResponse struct {
	ApplicationID     string `json:"applicationId"`
	ApplicationName   string `json:"applicationName"`
	DeploymentVersion string `json:"deploymentVersion,omitempty"`
}

// registerInstance is POST /control-plane/pods/{podId}/instance.
func (s *Server) registerInstance(w http.ResponseWriter, r *http.Request) {
	var req InstanceRequest
	pod, ok := s.agentRequest(w, r, func(body []byte, podID string) (p *apiwire.Problem) {
		req, p = apiwire.ParseInstanceBody(body, podID)
		return p
	})
	if !ok {
		return
	}
	res, err := s.opts.Detector.Detect(r.Context(), pod, detect.SourceAgent, detect.Hint{ApplicationName: req.ApplicationName})
	if err != nil || res.Outcome == detect.OutcomeNoService {
		// The pod's labels already say what it runs, so it gets its answer and boots; the
		// detection itself is retried in the background.
		s.retry(pod)
	}
	if req.BuildDeploymentID != "" && res.DeploymentVersion != "" && req.BuildDeploymentID != res.DeploymentVersion {
		s.log.Debug("build deployment id differs from the version label", "pod", pod.Namespace+"/"+pod.Name,
			"buildDeploymentId", req.BuildDeploymentID, "version", res.DeploymentVersion)
	}
	writeJSON(w, http.StatusOK, InstanceResponse{
		ApplicationID:     res.ApplicationID,
		ApplicationName:   res.AppName,
		DeploymentVersion: res.DeploymentVersion,
	})
}

// saveInstanceState is POST /control-plane/pods/{podId}/instance/state: the agent reports its
// services and runtime metadata, stored as is on the pod's row. The agent needs a JSON answer.
func (s *Server) saveInstanceState(w http.ResponseWriter, r *http.Request) {
	var state json.RawMessage
	pod, ok := s.agentRequest(w, r, func(body []byte, _ string) (p *apiwire.Problem) {
		state, p = apiwire.ParseStateBody(body)
		return p
	})
	if !ok {
		return
	}
	if err := s.opts.Registry.UpsertPod(r.Context(), registry.Pod{ID: pod.Name, Namespace: pod.Namespace, Metadata: state}); err != nil {
		s.log.Error("store pod state", "pod", pod.Namespace+"/"+pod.Name, "error", err)
		writeError(w, http.StatusServiceUnavailable, CodeRegistryUnavailable, "the pod's state could not be stored; retry later")
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// agentRequest takes a request of the agent about the pod {podId} through the steps every one
// of them takes, in this order: authenticate the caller (podCaller), read the body (at most
// agentBodyLimit), parse it (parse returns the problem to answer, nil when the body is good),
// and find the pod (resolvePod). A failed step answers the request itself, and agentRequest
// returns false.
func (s *Server) agentRequest(w http.ResponseWriter, r *http.Request,
	parse func(body []byte, podID string) *apiwire.Problem) (*corev1.Pod, bool) {
	podID := mux.Vars(r)["podId"]
	caller, ok := s.podCaller(w, r)
	if !ok {
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, agentBodyLimit))
	if err != nil {
		decodeError(w, err)
		return nil, false
	}
	if p := parse(body, podID); p != nil {
		writeProblem(w, p)
		return nil, false
	}
	return s.resolvePod(w, podID, caller)
}

func (s *Server) retry(pod *corev1.Pod) {
	if s.opts.Retry != nil {
		s.opts.Retry(pod)
	}
}

// podCaller authenticates a request of the agent. With pod authentication on, the caller must
// bring a service-account token bound to a pod; it answers 401 or 403 itself otherwise. With it
// off, the returned identity is the zero one.
func (s *Server) podCaller(w http.ResponseWriter, r *http.Request) (*auth.PodIdentity, bool) {
	if s.opts.InsecureSkipPodAuth {
		return nil, true
	}
	id, ok := s.authenticate(w, r, s.opts.AgentAuthenticator)
	if !ok {
		return nil, false
	}
	pod, ok := id.Pod()
	if !ok {
		writeError(w, http.StatusForbidden, CodeNotPodToken,
			"registration needs the pod's own bound service-account token; %q is not one", id.Username)
		return nil, false
	}
	return &pod, true
}

// authenticate turns the request's bearer token into an identity with authn, answering 401 or
// 503 itself. A refusal says why with its code: no token, the agent's "Bearer undefined", a
// malformed token or one for another audience (both refused without a TokenReview), or a token
// the API server did not accept.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, authn Authenticator) (auth.Identity, bool) {
	token, err := auth.ParseBearer(r.Header.Get("Authorization"))
	if err == nil {
		var id auth.Identity
		if id, err = authn.Authenticate(r.Context(), token); err == nil {
			return id, true
		}
	}
	unauthorized := func(code, format string, args ...any) (auth.Identity, bool) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="skewguard", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, code, format, args...)
		return auth.Identity{}, false
	}
	switch {
	case errors.Is(err, auth.ErrNoToken):
		w.Header().Set("WWW-Authenticate", `Bearer realm="skewguard"`)
		writeError(w, http.StatusUnauthorized, CodeUnauthenticated, "a bearer token is required")
		return auth.Identity{}, false
	case errors.Is(err, auth.ErrUndefinedToken):
		return unauthorized(CodeTokenUndefined, `the bearer token is the literal "undefined": the agent found no `+
			"service-account token to send (is one mounted at %s?)", config.ServiceAccountTokenFile)
	case errors.Is(err, auth.ErrMalformedToken):
		return unauthorized(CodeMalformedToken, "the bearer token is malformed: %v", err)
	case errors.Is(err, auth.ErrWrongAudience):
		return unauthorized(CodeWrongAudience, "the token was not issued for skewguard's audience: mount a projected "+
			"service-account token with the audience skewguard expects")
	case errors.Is(err, auth.ErrUnauthenticated):
		return unauthorized(CodeUnauthenticated, "the token was not accepted by the Kubernetes API server")
	default:
		s.log.Error("token review failed", "error", err)
		writeError(w, http.StatusServiceUnavailable, CodeAuthUnavailable, "the token could not be verified; retry later")
		return auth.Identity{}, false
	}
}

// resolvePod finds the pod named podID in the informer cache. With a caller, it looks in the
// caller's namespace only and requires that the token was issued for exactly that pod (same
// name and UID); without one (pod authentication off) the name must be unambiguous.
func (s *Server) resolvePod(w http.ResponseWriter, podID string, caller *auth.PodIdentity) (*corev1.Pod, bool) {
	if p := apiwire.CheckPodID(podID); p != nil {
		writeProblem(w, p)
		return nil, false
	}
	if s.opts.Synced != nil && !s.opts.Synced() {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, CodeNotReady, "skewguard is starting: its pod cache is not synced yet")
		return nil, false
	}
	var found []*corev1.Pod
	for _, p := range s.opts.Pods.PodsNamed(podID) {
		if caller == nil || p.Namespace == caller.Namespace {
			found = append(found, p)
		}
	}
	switch {
	case len(found) == 0:
		where := "any watched namespace"
		if caller != nil {
			where = "namespace " + caller.Namespace
		}
		writeError(w, http.StatusNotFound, CodePodNotFound, "no pod %q in %s", podID, where)
		return nil, false
	case len(found) > 1:
		namespaces := make([]string, len(found))
		for i, p := range found {
			namespaces[i] = p.Namespace
		}
		writeError(w, http.StatusConflict, CodeAmbiguousPod, "pod %q exists in namespaces %s; authenticate with its token to choose",
			podID, strings.Join(namespaces, ", "))
		return nil, false
	}
	pod := found[0]
	if caller != nil {
		if caller.Name != pod.Name {
			writeError(w, http.StatusForbidden, CodePodMismatch, "the token belongs to pod %q, not %q", caller.Name, pod.Name)
			return nil, false
		}
		if caller.UID != string(pod.UID) {
			writeError(w, http.StatusForbidden, CodePodMismatch, "the token was issued for another pod named %q (uid %s)", pod.Name, caller.UID)
			return nil, false
		}
	}
	return pod, true
}
