package auth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skewguard/skewguard/internal/metrics"
)

// The virtual resource management calls are authorized against. It exists only in
// SubjectAccessReviews: grant it with an ordinary Role or ClusterRole, e.g.
//
//	rules:
//	- apiGroups: ["skewguard.dev"]
//	  resources: ["versions"]
//	  verbs: ["get", "list", "update"]
const (
	Group    = "skewguard.dev"
	Resource = "versions"
)

// Verbs used on the virtual resource.
const (
	VerbGet    = "get"    // read one version, its audit trail, the app's policy
	VerbList   = "list"   // list apps and versions
	VerbUpdate = "update" // promote, expire, threshold, put the policy
)

// Attributes is what one management call asks to do. Name is the application (so a Role's
// resourceNames can limit a team to its own apps); Namespace is the application's namespace,
// empty for a cluster-wide question.
type Attributes struct {
	Verb      string
	Namespace string
	Name      string
}

// Decision is the API server's answer.
type Decision struct {
	Allowed bool
	Reason  string
}

// AuthorizerOptions tunes the SubjectAccessReview cache.
type AuthorizerOptions struct {
	AllowedTTL time.Duration
	DeniedTTL  time.Duration
	MaxEntries int
	Timeout    time.Duration
	Now        func() time.Time
}

func (o AuthorizerOptions) withDefaults() AuthorizerOptions {
	if o.AllowedTTL <= 0 {
		o.AllowedTTL = 30 * time.Second
	}
	if o.DeniedTTL <= 0 {
		o.DeniedTTL = 5 * time.Second
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 10000
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Authorizer asks the API server, with a SubjectAccessReview, whether an identity may act on
// the virtual resource, and caches the decisions briefly.
type Authorizer struct {
	kube    kubernetes.Interface
	opts    AuthorizerOptions
	reviews *reviews[Decision]
}

// NewAuthorizer returns an Authorizer that asks kube.
func NewAuthorizer(kube kubernetes.Interface, opts AuthorizerOptions) *Authorizer {
	opts = opts.withDefaults()
	return &Authorizer{kube: kube, opts: opts, reviews: newReviews[Decision](opts.MaxEntries, opts.Now, metrics.AccessReviews)}
}

// Authorize decides whether id may do attrs. An error means the API server could not be asked.
func (z *Authorizer) Authorize(ctx context.Context, id Identity, attrs Attributes) (Decision, error) {
	key := decisionKey(id, attrs)
	return z.reviews.get(key, func() (Decision, time.Time, error) {
		d, err := z.review(ctx, id, attrs)
		ttl := z.opts.DeniedTTL
		if d.Allowed {
			ttl = z.opts.AllowedTTL
		}
		return d, z.opts.Now().Add(ttl), err
	})
}

func (z *Authorizer) review(ctx context.Context, id Identity, attrs Attributes) (Decision, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), z.opts.Timeout)
	defer cancel()
	spec := authorizationv1.SubjectAccessReviewSpec{
		User:   id.Username,
		UID:    id.UID,
		Groups: id.Groups,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: attrs.Namespace,
			Verb:      attrs.Verb,
			Group:     Group,
			Resource:  Resource,
			Name:      attrs.Name,
		},
	}
	if len(id.Extra) > 0 {
		spec.Extra = make(map[string]authorizationv1.ExtraValue, len(id.Extra))
		for k, v := range id.Extra {
			spec.Extra[k] = v
		}
	}
	sar, err := z.kube.AuthorizationV1().SubjectAccessReviews().Create(ctx,
		&authorizationv1.SubjectAccessReview{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		return Decision{}, fmt.Errorf("SubjectAccessReview: %w", err)
	}
	reason := sar.Status.Reason
	if sar.Status.EvaluationError != "" && reason == "" {
		reason = sar.Status.EvaluationError
	}
	return Decision{Allowed: sar.Status.Allowed && !sar.Status.Denied, Reason: reason}, nil
}

// decisionKey hashes everything the decision depends on, with unambiguous separators.
func decisionKey(id Identity, attrs Attributes) [32]byte {
	h := sha256.New()
	write := func(s string) {
		fmt.Fprintf(h, "%d:%s|", len(s), s)
	}
	write(id.Username)
	write(id.UID)
	groups := slices.Clone(id.Groups)
	slices.Sort(groups)
	for _, g := range groups {
		write("g=" + g)
	}
	keys := make([]string, 0, len(id.Extra))
	for k := range id.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		write("x=" + k)
		for _, v := range id.Extra[k] {
			write(v)
		}
	}
	write("verb=" + attrs.Verb)
	write("ns=" + attrs.Namespace)
	write("name=" + attrs.Name)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}
