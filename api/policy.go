package api

import (
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/skewguard/skewguard/internal/bounds"
	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/registry"
)

// Where a resolved policy setting comes from.
const (
	SourceOverride = "override" // the app's stored policy
	SourceDefault  = "default"  // the configured global value (or its documented default)
)

// ResolvedSetting is the value of one policy setting that applies to an app.
type ResolvedSetting struct {
	// Value is the override or the default; null when neither sets it.
	Value any `json:"value"`
	// Source is SourceOverride or SourceDefault.
	Source string `json:"source"`
	// Setting names the configuration variable the default comes from, when there is one.
	Setting string `json:"setting,omitempty"`
}

// PolicyView is the answer of GET …/policy: the app's stored overrides, and every setting of
// the policy with the value that applies to the app and where it comes from.
type PolicyView struct {
	Overrides registry.Policy            `json:"overrides"`
	Resolved  map[string]ResolvedSetting `json:"resolved"`
}

// PolicyDefaults are the global values an app's policy overrides: Values has a field set for
// each setting the configuration gives, Settings names the variable of each (by JSON field).
type PolicyDefaults struct {
	Values   registry.Policy
	Settings map[string]string
}

// DefaultsFromConfig reads the defaults of every policy field from cfg: the field of Config
// with the same Go name gives the value, its env tag the variable. A policy field with no such
// Config field has no default (it resolves to null unless overridden).
func DefaultsFromConfig(cfg config.Config) PolicyDefaults {
	out := PolicyDefaults{Settings: map[string]string{}}
	pv := reflect.ValueOf(&out.Values).Elem()
	cv := reflect.ValueOf(cfg)
	for i := range pv.NumField() {
		f := pv.Type().Field(i)
		cf, ok := cv.Type().FieldByName(f.Name)
		if !ok || f.Type.Kind() != reflect.Pointer || cf.Type != f.Type.Elem() {
			continue
		}
		val := reflect.New(cf.Type)
		val.Elem().Set(cv.FieldByIndex(cf.Index))
		pv.Field(i).Set(val)
		env, _, _ := strings.Cut(cf.Tag.Get("env"), ",")
		out.Settings[jsonName(f)] = env
	}
	if out.Values.Enabled == nil {
		// The per-app switch has no global variable of its own: an app inherits on
		// (PLT_FEATURE_SKEW_PROTECTION is the cluster's switch; off, nothing is managed at all).
		on := true
		out.Values.Enabled = &on
	}
	return out
}

// Resolve returns each field of registry.Policy, named by its JSON name, with the value that
// applies: the override when set, else the default. An integer that internal/bounds holds to a
// range (matched by the policy field name) is clamped into it, as the lifecycle clamps it
// (activities.ResolvePolicy), so what is shown is what applies.
func (d PolicyDefaults) Resolve(overrides registry.Policy) map[string]ResolvedSetting {
	ov, dv := reflect.ValueOf(overrides), reflect.ValueOf(d.Values)
	out := make(map[string]ResolvedSetting, ov.NumField())
	for i := range ov.NumField() {
		name := jsonName(ov.Type().Field(i))
		r := ResolvedSetting{Source: SourceDefault, Setting: d.Settings[name]}
		v := dv.Field(i)
		if o := ov.Field(i); !o.IsNil() {
			r.Source, r.Setting, v = SourceOverride, "", o
		}
		if !v.IsNil() {
			r.Value = clamp(name, v.Elem().Interface())
		}
		out[name] = r
	}
	return out
}

// TrafficWindow is the traffic window that applies to an app with overrides p.
func (d PolicyDefaults) TrafficWindow(p registry.Policy) time.Duration {
	switch {
	case p.TrafficWindowMS != nil:
		return bounds.TrafficWindow.Duration(*p.TrafficWindowMS)
	case d.Values.TrafficWindowMS != nil:
		return bounds.TrafficWindow.Duration(*d.Values.TrafficWindowMS)
	}
	return 5 * time.Minute
}

func clamp(field string, v any) any {
	n, ok := v.(int64)
	if !ok {
		return v
	}
	for _, r := range bounds.All {
		if r.Field == field && r.Field != "" {
			return min(max(n, r.Min), r.Max)
		}
	}
	return v
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "" {
		return f.Name
	}
	return name
}

func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request) {
	app, _ := appRef(w, r)
	p, err := s.opts.Registry.GetPolicy(r.Context(), app)
	if err != nil {
		s.registryError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, PolicyView{Overrides: p, Resolved: s.opts.PolicyDefaults.Resolve(p)})
}
