package routes

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/skewguard/skewguard/internal/validate"
)

// Labels and annotations the renderer (and nothing else) puts on every HTTPRoute skewguard
// writes. The route writer finds an app's routes by ManagedByLabel and AppLabel together, never
// by name, and refuses to write a route that lacks them or the GenerationAnnotation.
const (
	ManagedByLabel       = "app.kubernetes.io/managed-by"
	ManagedByValue       = "skewguard"
	AppLabel             = "app.kubernetes.io/name"
	GenerationAnnotation = "skewguard.dev/route-generation"
)

// hashLen is how many hex digits of the app name's SHA-256 keep hashed names distinct: 48 bits,
// so that finding another app name with the same digits (and the same readable prefix) takes
// some 2^48 hashes rather than the 2^32 of eight digits.
const hashLen = 12

// sep joins the app's part of a derived name to the rest. Only derived names contain it.
const sep = "--"

// RouteName is the name of an app's shard-th HTTPRoute. Names must be RFC 1123 labels (at most 63
// of a-z, 0-9 and '-', alphanumeric at both ends) and must never be shared by two (app, shard)
// pairs of one namespace: under the old "<app>-pins-<shard>", the second route of app "web" and
// the first of app "web-pins-1" were both "web-pins-1".
//
// The scheme reserves the double hyphen "--" for derived names:
//
//   - shard 0 of a plain app, one whose name is a DNS label without "--", is the app's name
//     itself, as before: "web". These are exactly the names without "--".
//   - shard n > 0 of a plain app is "<app>--pins-<n>" when that fits: "web--pins-1".
//   - any other case is hashed: "<base>--<hash>" for shard 0, "<base>--<hash>-pins-<n>" after
//     it, where hash is the first hashLen hex digits of the SHA-256 of the app name and base is
//     the app name lowered, with '.', '_' (and anything else) made '-', runs of '-' made one,
//     cut to fit and trimmed of '-' ("x" if nothing is left). That covers app names that are
//     not DNS labels ("Web", "web.v2", "web_api"), names containing "--", and names too long
//     for the suffix.
//
// Why no two pairs share a name: a name without "--" is a plain app's shard 0 and is that app's
// name. Every derived name has exactly one "--": neither base nor the app of a plain name contains
// one, both end in an alphanumeric, and the tail after it ("pins-<n>", or the hash and its
// optional "-pins-<n>") starts with an alphanumeric and has none. So the "--" splits a derived
// name unambiguously into its app part and its tail. A tail starting "pins-" (p is no hex digit)
// is a plain app's shard: the app part is the app itself and the tail gives the shard. A tail
// starting with the hash gives the shard too, and two apps share base and hash only through a
// SHA-256 collision in 48 bits. TestRouteNamesNeverCollide checks it over tricky names.
//
// Routes are found by their labels, never by name (see kube.RouteWriter), so a route whose name
// changed with this scheme is replaced: the new one is created before the old one is deleted.
func RouteName(app string, shard int) string {
	plain := validate.DNSLabel(app) == nil && !strings.Contains(app, sep)
	if shard <= 0 && plain {
		return app
	}
	pins := ""
	if shard > 0 {
		pins = "pins-" + strconv.Itoa(shard)
	}
	if plain && len(app)+len(sep)+len(pins) <= validation.DNS1123LabelMaxLength {
		return app + sep + pins
	}
	sum := sha256.Sum256([]byte(app))
	tail := hex.EncodeToString(sum[:])[:hashLen]
	if pins != "" {
		tail += "-" + pins
	}
	return routeBase(app, validation.DNS1123LabelMaxLength-len(sep)-len(tail)) + sep + tail
}

// routeBase is the readable part of a hashed route name: app lowered, every character outside
// a-z and 0-9 made '-', runs of '-' made one, cut to room and trimmed of '-'; "x" when nothing is
// left. It never contains "--" and starts and ends with an alphanumeric.
func routeBase(app string, room int) string {
	var b strings.Builder
	for _, r := range strings.ToLower(app) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			continue
		}
		if s := b.String(); s != "" && !strings.HasSuffix(s, "-") {
			b.WriteByte('-')
		}
	}
	base := b.String()
	if len(base) > room {
		base = base[:room]
	}
	base = strings.Trim(base, "-")
	if base == "" {
		return "x"
	}
	return base
}

// Labels are the labels of every HTTPRoute rendered for app.
func Labels(app string) map[string]string {
	return map[string]string{ManagedByLabel: ManagedByValue, AppLabel: app}
}
