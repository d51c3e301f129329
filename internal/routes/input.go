package routes

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// ErrInvalidInput marks every error Render returns: the snapshot cannot be rendered as it is,
// and retrying will not help.
var ErrInvalidInput = errors.New("invalid route input")

// ParentRef names a Gateway (and optionally one of its listeners) that routes attach to.
type ParentRef struct {
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	SectionName string `json:"sectionName,omitempty"`
}

// Backend is one routable version and the Service port that serves it.
type Backend struct {
	Version     string `json:"version"`
	ServiceName string `json:"serviceName"`
	Port        int32  `json:"port"`
	Staged      bool   `json:"staged,omitempty"` // pinned by approval gate rather than draining
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
}

// Limits of the Gateway API CRD (v1.6.3) that shape the input.
const (
	maxHostnames  = 16
	maxParentRefs = 32
	maxPathLength = 1024
)

// pathChars is the character set the HTTPRoute CRD accepts in a PathPrefix value.
var pathChars = regexp.MustCompile(`^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+$`)

// validate reports every problem with the input at once.
func (in Input) validate(prefix string) error {
	var p problems
	if errs := validation.IsDNS1123Label(in.Namespace); len(errs) > 0 {
		p.addf("namespace %q: %s", in.Namespace, strings.Join(errs, "; "))
	}
	if err := validateLabelValue(in.App); err != nil {
		p.addf("app %q: %v", in.App, err)
	}
	if in.Generation < 0 {
		p.addf("generation %d: must not be negative", in.Generation)
	}
	if err := validatePathPrefix(prefix); err != nil {
		p.addf("path %q: %v", prefix, err)
	}
	in.validateHostnames(&p)
	in.validateParentRefs(&p)
	if !ValidCookieName(in.CookieName) {
		p.addf("cookie name %q: not an RFC 6265 token", in.CookieName)
	}
	if in.CookieMaxAge <= 0 {
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
		if err := validateHostname(h); err != nil {
			p.addf("hostname %q: %v", h, err)
		}
	}
}

func validateHostname(h string) error {
	if net.ParseIP(h) != nil {
		return errors.New("IP addresses are not allowed")
	}
	name := strings.TrimPrefix(h, "*.")
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
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
		if errs := validation.IsDNS1123Label(ref.Namespace); len(errs) > 0 {
			p.addf("parentRef %s: namespace: %s", ref, strings.Join(errs, "; "))
		}
		if ref.Name == "" || len(ref.Name) > validation.DNS1123SubdomainMaxLength {
			p.addf("parentRef %s: name must be 1-%d characters", ref, validation.DNS1123SubdomainMaxLength)
		}
		if ref.SectionName != "" {
			if errs := validation.IsDNS1123Subdomain(ref.SectionName); len(errs) > 0 {
				p.addf("parentRef %s: sectionName: %s", ref, strings.Join(errs, "; "))
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
		if err := validateVersion(b.Version); err != nil {
			p.addf("%s version %q: %v", role, b.Version, err)
		}
		if seen[b.Version] {
			p.addf("%s version %q: listed more than once", role, b.Version)
		}
		seen[b.Version] = true
		if errs := validation.IsDNS1035Label(b.ServiceName); len(errs) > 0 {
			p.addf("%s version %q: service name %q: %s", role, b.Version, b.ServiceName, strings.Join(errs, "; "))
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

// validateVersion accepts what a Kubernetes label value accepts, except the empty string:
// 1-63 characters of [A-Za-z0-9._-], beginning and ending with a letter or digit.
func validateVersion(v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	return validateLabelValue(v)
}

func validateLabelValue(v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// validatePathPrefix applies the CRD's rules for a PathPrefix value, and refuses ';' and ','
// because the prefix is also written into the Set-Cookie header's Path attribute.
func validatePathPrefix(prefix string) error {
	switch {
	case len(prefix) > maxPathLength:
		return fmt.Errorf("longer than %d characters", maxPathLength)
	case !strings.HasPrefix(prefix, "/"):
		return errors.New("must start with '/'")
	case !pathChars.MatchString(prefix):
		return errors.New("contains characters not allowed in a URL path")
	case strings.ContainsAny(prefix, ";,"):
		return errors.New("must not contain ';' or ',' (it becomes the cookie's Path)")
	}
	for _, bad := range []string{"//", "/./", "/../", "%2f", "%2F", "#"} {
		if strings.Contains(prefix, bad) {
			return fmt.Errorf("must not contain %q", bad)
		}
	}
	if strings.HasSuffix(prefix, "/..") || strings.HasSuffix(prefix, "/.") {
		return errors.New("must not end with '/.' or '/..'")
	}
	return nil
}

func (r ParentRef) String() string {
	s := r.Namespace + "/" + r.Name
	if r.SectionName != "" {
		s += ":" + r.SectionName
	}
	return s
}

type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }
