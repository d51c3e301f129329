package routes

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/skewguard/skewguard/internal/bounds"
	"github.com/skewguard/skewguard/internal/validate"
)

// ErrInvalidInput marks every error Render returns: the snapshot cannot be rendered as it is,
// and retrying will not help.
var ErrInvalidInput = errors.New("invalid route input")

// Backend is one routable version and the Service port that serves it.
type Backend struct {
	Version     string `json:"version"`
	ServiceName string `json:"serviceName"`
	Port        int32  `json:"port"`
	Staged      bool   `json:"staged,omitempty"` // pinned by approval gate rather than draining
	// CookieName and CookiePath, when set, are the pin cookie of the version's app group
	// (plt.dev/group): the version's pin rule reads that cookie, and as the Active version its
	// default rule sets it for CookiePath. Empty: the app's own cookie (Input.CookieName) for the
	// app's path prefix. Each version keeps the cookie it was deployed with, so a session pinned
	// before an app joined or left its group keeps reaching its version.
	CookieName string `json:"cookieName,omitempty"`
	CookiePath string `json:"cookiePath,omitempty"`
}

// cookie is the pin cookie name that reads and sets b's pins in an app whose own cookie is name.
func (b Backend) cookie(name string) string {
	if b.CookieName != "" {
		return b.CookieName
	}
	return name
}

// Input is one consistent snapshot of an application, as far as routing is concerned.
// sigs.k8s.io/yaml reads the json tags, so testdata/<case>.in.yaml is an Input.
type Input struct {
	Namespace     string      `json:"namespace"`
	App           string      `json:"app"`
	Generation    int64       `json:"generation"`
	Path          string      `json:"path,omitempty"`      // plt.dev/path; "" → default
	Hostnames     []string    `json:"hostnames,omitempty"` // plt.dev/hostname
	ParentRefs    []ParentRef `json:"parentRefs"`
	CookieName    string      `json:"cookieName"`
	CookieMaxAge  int64       `json:"cookieMaxAge"` // seconds
	RewritePrefix bool        `json:"rewritePrefix"`
	Active        *Backend    `json:"active,omitempty"`
	Pinned        []Backend   `json:"pinned,omitempty"` // draining + staged, in registry order
	// Plain renders skew protection off for the app: one route whose only rule sends everything
	// under the prefix to Active, with no Set-Cookie, no carriers and no pin rules (Pinned is
	// ignored). No Active version: no routes.
	Plain bool `json:"plain,omitempty"`
}

// Limits of the Gateway API CRD (v1.6.3) that shape the input (the path's is
// validate.MaxPathLength).
const (
	maxHostnames  = 16
	maxParentRefs = 32
)

// validate reports every problem with the input at once. Each value is checked by the function
// of internal/validate that names it, the one the configuration and the API use too.
func (in Input) validate(prefix string) error {
	var p problems
	if err := validate.DNSLabel(in.Namespace); err != nil {
		p.addf("namespace %q: %v", in.Namespace, err)
	}
	if err := validate.LabelValue(in.App); err != nil {
		p.addf("app %q: %v", in.App, err)
	}
	if in.Generation < 0 {
		p.addf("generation %d: must not be negative", in.Generation)
	}
	if err := validate.PathPrefix(prefix); err != nil {
		p.addf("path %q: %v", prefix, err)
	}
	in.validateHostnames(&p)
	in.validateParentRefs(&p)
	if !validate.CookieName(in.CookieName) {
		p.addf("cookie name %q: not an RFC 6265 token", in.CookieName)
	}
	// Only what cannot be rendered: the maximum is the configuration's and the policy's to hold.
	if in.CookieMaxAge < bounds.CookieMaxAge.Min {
		p.addf("cookie max age %d: must be greater than zero", in.CookieMaxAge)
	}
	in.validateBackends(&p)
	if len(p) > 0 {
		return fmt.Errorf("%w for %s/%s: %s", ErrInvalidInput, in.Namespace, in.App, strings.Join(p, "; "))
	}
	return nil
}

func (in Input) validateHostnames(p *problems) {
	if len(in.Hostnames) > maxHostnames {
		p.addf("hostnames: %d given, at most %d allowed", len(in.Hostnames), maxHostnames)
	}
	seen := make(map[string]bool, len(in.Hostnames))
	for _, h := range in.Hostnames {
		if seen[h] {
			p.addf("hostname %q: listed twice", h)
		}
		seen[h] = true
		if err := validate.Hostname(h); err != nil {
			p.addf("hostname %q: %v", h, err)
		}
	}
}

func (in Input) validateParentRefs(p *problems) {
	switch {
	case len(in.ParentRefs) == 0:
		p.addf("parentRefs: at least one is required")
	case len(in.ParentRefs) > maxParentRefs:
		p.addf("parentRefs: %d given, at most %d allowed", len(in.ParentRefs), maxParentRefs)
	}
	type gateway struct{ namespace, name string }
	sections := map[gateway][]string{}
	for _, ref := range in.ParentRefs {
		if err := validate.DNSLabel(ref.Namespace); err != nil {
			p.addf("parentRef %s: namespace: %v", ref, err)
		}
		if ref.Name == "" || len(ref.Name) > validation.DNS1123SubdomainMaxLength {
			p.addf("parentRef %s: name must be 1-%d characters", ref, validation.DNS1123SubdomainMaxLength)
		}
		if ref.SectionName != "" {
			if err := validate.DNSSubdomain(ref.SectionName); err != nil {
				p.addf("parentRef %s: sectionName: %v", ref, err)
			}
		}
		g := gateway{ref.Namespace, ref.Name}
		sections[g] = append(sections[g], ref.SectionName)
	}
	// The CRD requires distinct, non-empty sectionNames when one Gateway is referenced twice.
	for _, ref := range in.ParentRefs {
		list := sections[gateway{ref.Namespace, ref.Name}]
		if len(list) < 2 {
			continue
		}
		if ref.SectionName == "" {
			p.addf("parentRef %s: sectionName is required when the Gateway is referenced more than once", ref)
			continue
		}
		n := 0
		for _, s := range list {
			if s == ref.SectionName {
				n++
			}
		}
		if n > 1 {
			p.addf("parentRef %s: listed more than once", ref)
		}
	}
}

func (in Input) validateBackends(p *problems) {
	seen := make(map[string]bool, len(in.Pinned)+1)
	check := func(role string, b Backend) {
		if err := validate.LabelValue(b.Version); err != nil {
			p.addf("%s version %q: %v", role, b.Version, err)
		}
		if seen[b.Version] {
			p.addf("%s version %q: listed more than once", role, b.Version)
		}
		seen[b.Version] = true
		if err := validate.ServiceName(b.ServiceName); err != nil {
			p.addf("%s version %q: service name %q: %v", role, b.Version, b.ServiceName, err)
		}
		if b.CookieName != "" && !validate.CookieName(b.CookieName) {
			p.addf("%s version %q: cookie name %q: not an RFC 6265 token", role, b.Version, b.CookieName)
		}
		if b.CookiePath != "" {
			if err := validate.PathPrefix(b.CookiePath); err != nil {
				p.addf("%s version %q: cookie path %q: %v", role, b.Version, b.CookiePath, err)
			}
		}
		if b.Port < 1 || b.Port > 65535 {
			p.addf("%s version %q: port %d: must be 1-65535", role, b.Version, b.Port)
		}
	}
	if in.Active != nil {
		if in.Active.Staged {
			p.addf("active version %q: cannot be staged", in.Active.Version)
		}
		check("active", *in.Active)
	}
	for _, b := range in.Pinned {
		check("pinned", b)
	}
}

type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }
