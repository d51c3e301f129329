package routes

import (
	"errors"
	"fmt"
	"strings"

	"github.com/skewguard/skewguard/internal/validate"
)

// ParentRef names a Gateway (and optionally one of its listeners) that routes attach to. It is
// skewguard's one description of a parent: the configuration reads it (PLT_SKEW_GATEWAY_PARENT_REFS,
// through EnvDecode), the renderer writes it into every HTTPRoute as a gatewayv1.ParentReference of group gateway.networking.k8s.io and kind Gateway.
type ParentRef struct {
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	SectionName string `json:"sectionName,omitempty"`
}

// String writes "namespace/name" or "namespace/name:sectionName", what ParseParentRef reads.
func (r ParentRef) String() string {
	s := r.Namespace + "/" + r.Name
	if r.SectionName != "" {
		s += ":" + r.SectionName
	}
	return s
}

// EnvDecode parses "namespace/name" or "namespace/name:sectionName" (go-envconfig's Decoder).
func (r *ParentRef) EnvDecode(val string) error {
	ref, err := ParseParentRef(val)
	if err != nil {
		return err
	}
	*r = ref
	return nil
}

// ParseParentRef parses one "namespace/name[:sectionName]" reference and checks each part as
// the Gateway API does (namespace: an RFC 1123 label; name and sectionName: RFC 1123
// subdomains), so that a reference the API server would refuse stops skewguard at start-up
// rather than failing every route it later writes. Surrounding spaces are trimmed.
func ParseParentRef(val string) (ParentRef, error) {
	val = strings.TrimSpace(val)
	nsName, section, hasSection := strings.Cut(val, ":")
	ns, name, ok := strings.Cut(nsName, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return ParentRef{}, fmt.Errorf("%q is not namespace/name[:sectionName]", val)
	}
	var errs []error
	check := func(part, value string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%q: %s %q: %v", val, part, value, err))
		}
	}
	check("namespace", ns, validate.DNSLabel(ns))
	check("name", name, validate.DNSSubdomain(name))
	if hasSection {
		// "ns/gw:" names an empty listener: a typo, not "every listener".
		check("sectionName", section, validate.DNSSubdomain(section))
	}
	if len(errs) > 0 {
		return ParentRef{}, errors.Join(errs...)
	}
	return ParentRef{Namespace: ns, Name: name, SectionName: section}, nil
}
