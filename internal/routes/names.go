package routes

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Labels and annotations skewguard puts on every HTTPRoute it writes. The route writer finds
// an app's routes by ManagedByLabel and AppLabel together, never by name.
const (
	ManagedByLabel       = "app.kubernetes.io/managed-by"
	ManagedByValue       = "skewguard"
	AppLabel             = "app.kubernetes.io/name"
	GenerationAnnotation = "skewguard.dev/route-generation"
)

// hashLen is how many hex digits of the app name's SHA-256 keep shortened names distinct.
const hashLen = 8

// RouteName is the name of an app's shard-th HTTPRoute: the app itself for shard 0 (the route
// with the default rule), <app>-pins-<shard> after it. A name that would not be a valid DNS
// label as it stands (too long, upper case, '.' or '_') is made one deterministically: the app
// name is lowered, its '.' and '_' become '-', it is cut to fit, and the first hex digits of the
// SHA-256 of the original app name are appended, so distinct apps keep distinct names.
func RouteName(app string, shard int) string {
	suffix := ""
	if shard > 0 {
		suffix = "-pins-" + strconv.Itoa(shard)
	}
	if len(app)+len(suffix) <= validation.DNS1123LabelMaxLength && len(validation.IsDNS1123Label(app)) == 0 {
		return app + suffix
	}
	sum := sha256.Sum256([]byte(app))
	hash := hex.EncodeToString(sum[:])[:hashLen]
	base := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		default: // '.' and '_', the rest of a label value's alphabet
			return '-'
		}
	}, app)
	if room := validation.DNS1123LabelMaxLength - len(suffix) - 1 - hashLen; len(base) > room {
		base = base[:room]
	}
	base = strings.Trim(base, "-")
	if base == "" {
		return hash + suffix
	}
	return base + "-" + hash + suffix
}

// Labels are the labels of every HTTPRoute rendered for app.
func Labels(app string) map[string]string {
	return map[string]string{ManagedByLabel: ManagedByValue, AppLabel: app}
}
