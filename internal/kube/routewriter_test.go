package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	k8stesting "k8s.io/client-go/testing"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"

	"github.com/skewguard/skewguard/internal/routes"
)

const routeTestNS = "shop"

// routeStore is an in-memory HTTPRoute store with the API server's optimistic concurrency
// (the fake clientset's tracker has none): resourceVersions, update and delete preconditions,
// AlreadyExists, NotFound and Conflict. before, when set, runs ahead of each request so a test
// can slip a concurrent writer in at an exact point.
type routeStore struct {
	mu     sync.Mutex
	rv     int
	uid    int
	objs   map[string]*gatewayv1.HTTPRoute
	calls  []string
	before func(verb, name string)
}

func newRouteStore(t *testing.T, initial ...*gatewayv1.HTTPRoute) (*routeStore, *RouteWriter) {
	t.Helper()
	s := &routeStore{objs: map[string]*gatewayv1.HTTPRoute{}}
	for _, r := range initial {
		s.put(r.DeepCopy())
	}
	return s, s.writer()
}

// writer returns a writer with a client of its own on the store (a fake clientset holds its
// lock while a reactor runs, so a concurrent writer needs a separate one).
func (s *routeStore) writer() *RouteWriter {
	cs := gatewayfake.NewSimpleClientset()
	cs.PrependReactor("*", "httproutes", s.react)
	return NewRouteWriter(cs)
}

var routeGR = gatewayv1.Resource("httproutes")

func (s *routeStore) put(r *gatewayv1.HTTPRoute) *gatewayv1.HTTPRoute {
	s.rv++
	r.ResourceVersion = strconv.Itoa(s.rv)
	if r.UID == "" {
		s.uid++
		r.UID = types.UID("uid-" + strconv.Itoa(s.uid))
	}
	s.objs[r.Name] = r
	return r.DeepCopy()
}

func (s *routeStore) react(action k8stesting.Action) (bool, runtime.Object, error) {
	var name string
	switch a := action.(type) {
	case k8stesting.CreateAction:
		name = a.GetObject().(*gatewayv1.HTTPRoute).Name
	case k8stesting.UpdateAction:
		name = a.GetObject().(*gatewayv1.HTTPRoute).Name
	case interface{ GetName() string }: // get, delete
		name = a.GetName()
	}
	if s.before != nil {
		s.before(action.GetVerb(), name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, action.GetVerb()+" "+name)
	switch action.GetVerb() {
	case "list":
		sel := action.(k8stesting.ListAction).GetListRestrictions().Labels
		list := &gatewayv1.HTTPRouteList{}
		for _, r := range s.sorted() {
			if sel.Matches(labels.Set(r.Labels)) {
				list.Items = append(list.Items, *r.DeepCopy())
			}
		}
		return true, list, nil
	case "get":
		r, ok := s.objs[name]
		if !ok {
			return true, nil, apierrors.NewNotFound(routeGR, name)
		}
		return true, r.DeepCopy(), nil
	case "create":
		if _, ok := s.objs[name]; ok {
			return true, nil, apierrors.NewAlreadyExists(routeGR, name)
		}
		r := action.(k8stesting.CreateAction).GetObject().(*gatewayv1.HTTPRoute).DeepCopy()
		r.UID = ""
		return true, s.put(r), nil
	case "update":
		r := action.(k8stesting.UpdateAction).GetObject().(*gatewayv1.HTTPRoute).DeepCopy()
		old, ok := s.objs[name]
		switch {
		case !ok:
			return true, nil, apierrors.NewNotFound(routeGR, name)
		case r.ResourceVersion != old.ResourceVersion:
			return true, nil, apierrors.NewConflict(routeGR, name, errors.New("the object has been modified"))
		}
		r.UID = old.UID
		return true, s.put(r), nil
	case "patch":
		// What the writer patches: metadata only, as a JSON merge patch carrying the
		// resourceVersion it read, which the API server checks as it does an update's.
		pa := action.(k8stesting.PatchAction)
		old, ok := s.objs[name]
		if !ok {
			return true, nil, apierrors.NewNotFound(routeGR, name)
		}
		var patch struct {
			Metadata struct {
				ResourceVersion string             `json:"resourceVersion"`
				Labels          map[string]*string `json:"labels"`
				Annotations     map[string]*string `json:"annotations"`
			} `json:"metadata"`
		}
		dec := json.NewDecoder(bytes.NewReader(pa.GetPatch()))
		dec.DisallowUnknownFields()
		if pa.GetPatchType() != types.MergePatchType || dec.Decode(&patch) != nil {
			return true, nil, fmt.Errorf("routeStore: unexpected %s patch %s", pa.GetPatchType(), pa.GetPatch())
		}
		if m := patch.Metadata; m.ResourceVersion != "" && m.ResourceVersion != old.ResourceVersion {
			return true, nil, apierrors.NewConflict(routeGR, name, errors.New("the object has been modified"))
		}
		r := old.DeepCopy()
		merge := func(into map[string]string, p map[string]*string) map[string]string {
			if into == nil {
				into = map[string]string{}
			}
			for k, v := range p {
				if v == nil {
					delete(into, k)
				} else {
					into[k] = *v
				}
			}
			return into
		}
		r.Labels = merge(r.Labels, patch.Metadata.Labels)
		r.Annotations = merge(r.Annotations, patch.Metadata.Annotations)
		return true, s.put(r), nil
	case "delete":
		old, ok := s.objs[name]
		if !ok {
			return true, nil, apierrors.NewNotFound(routeGR, name)
		}
		if p := action.(k8stesting.DeleteAction).GetDeleteOptions().Preconditions; p != nil {
			if (p.UID != nil && *p.UID != old.UID) || (p.ResourceVersion != nil && *p.ResourceVersion != old.ResourceVersion) {
				return true, nil, apierrors.NewConflict(routeGR, name, errors.New("precondition failed"))
			}
		}
		delete(s.objs, name)
		return true, nil, nil
	}
	return true, nil, fmt.Errorf("routeStore: unexpected %s", action.GetVerb())
}

func (s *routeStore) sorted() []*gatewayv1.HTTPRoute {
	var out []*gatewayv1.HTTPRoute
	for _, name := range slices.Sorted(maps.Keys(s.objs)) {
		out = append(out, s.objs[name])
	}
	return out
}

// writes are the calls that change something.
func (s *routeStore) writes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range s.calls {
		if verb, _, _ := strings.Cut(c, " "); verb == "create" || verb == "update" || verb == "patch" || verb == "delete" {
			out = append(out, c)
		}
	}
	return out
}

func (s *routeStore) get(name string) *gatewayv1.HTTPRoute {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.objs[name]; ok {
		return r.DeepCopy()
	}
	return nil
}

func (s *routeStore) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.objs))
}

// rendered renders myapp with an Active version and pins draining versions at generation.
func rendered(t *testing.T, generation int64, pins int) []gatewayv1.HTTPRoute {
	t.Helper()
	in := routes.Input{
		Namespace: routeTestNS, App: "myapp", Generation: generation,
		ParentRefs: []routes.ParentRef{{Namespace: "gw", Name: "public"}},
		CookieName: "__plt_dpl", CookieMaxAge: 43200,
		Active: &routes.Backend{Version: "active-" + strconv.FormatInt(generation, 10), ServiceName: "myapp-active", Port: 80},
	}
	for i := range pins {
		in.Pinned = append(in.Pinned, routes.Backend{Version: strconv.Itoa(i), ServiceName: "myapp-v" + strconv.Itoa(i), Port: 80})
	}
	out, err := routes.Render(in)
	require.NoError(t, err)
	return out
}

func TestApplyRoutesCreatesThenIsIdempotent(t *testing.T) {
	store, w := newRouteStore(t)
	ctx := context.Background()

	res, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 3, rendered(t, 3, 12))
	require.NoError(t, err)
	assert.Equal(t, []string{"myapp", "myapp--pins-1"}, res.Created)
	assert.False(t, res.Superseded)
	assert.True(t, res.Changed())
	first := store.get("myapp")
	require.NotNil(t, first)
	assert.Equal(t, "3", first.Annotations[routes.GenerationAnnotation])
	assert.Equal(t, routes.ManagedByValue, first.Labels[routes.ManagedByLabel])

	before := len(store.writes())
	res, err = w.ApplyRoutes(ctx, routeTestNS, "myapp", 3, rendered(t, 3, 12))
	require.NoError(t, err)
	assert.Equal(t, []string{"myapp", "myapp--pins-1"}, res.Unchanged)
	assert.False(t, res.Changed())
	assert.Len(t, store.writes(), before, "a repeated apply writes nothing")
}

func TestApplyRoutesUpdatesAndDeletesSurplus(t *testing.T) {
	store, w := newRouteStore(t)
	ctx := context.Background()
	_, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 3, rendered(t, 3, 22))
	require.NoError(t, err)
	require.Equal(t, []string{"myapp", "myapp--pins-1", "myapp--pins-2"}, store.names())

	// Someone else's label and annotation on our route survive our updates.
	r := store.get("myapp")
	r.Labels["team"] = "checkout"
	r.Annotations["note"] = "keep"
	store.mu.Lock()
	store.put(r)
	store.mu.Unlock()

	res, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 4, rendered(t, 4, 5))
	require.NoError(t, err)
	assert.Equal(t, []string{"myapp"}, res.Updated)
	assert.Equal(t, []string{"myapp--pins-1", "myapp--pins-2"}, res.Deleted)
	assert.Equal(t, []string{"myapp"}, store.names())
	r = store.get("myapp")
	assert.Equal(t, "4", r.Annotations[routes.GenerationAnnotation])
	assert.Equal(t, "checkout", r.Labels["team"])
	assert.Equal(t, "keep", r.Annotations["note"])
	assert.Equal(t, rendered(t, 4, 5)[0].Spec, r.Spec)
}

func TestApplyRoutesNeverRollsBack(t *testing.T) {
	store, w := newRouteStore(t)
	ctx := context.Background()
	_, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 7, rendered(t, 7, 5))
	require.NoError(t, err)
	written := store.writes()
	newer := store.get("myapp")

	// A late write from generation 6 with more pins than generation 7 has.
	res, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 6, rendered(t, 6, 22))
	require.NoError(t, err)
	assert.True(t, res.Superseded)
	assert.Equal(t, []string{"myapp", "myapp--pins-1", "myapp--pins-2"}, res.SkippedStale)
	assert.False(t, res.Changed())
	assert.Equal(t, written, store.writes(), "a stale apply writes nothing")
	assert.Equal(t, newer, store.get("myapp"))

	// Nor may it delete a newer shard.
	_, err = w.ApplyRoutes(ctx, routeTestNS, "myapp", 8, rendered(t, 8, 22))
	require.NoError(t, err)
	res, err = w.ApplyRoutes(ctx, routeTestNS, "myapp", 7, rendered(t, 7, 5))
	require.NoError(t, err)
	assert.True(t, res.Superseded)
	assert.Equal(t, []string{"myapp", "myapp--pins-1", "myapp--pins-2"}, store.names())
}

func TestApplyRoutesRetriesConflicts(t *testing.T) {
	tests := []struct {
		name           string
		concurrentGen  string // generation the concurrent writer leaves on the route
		wantSuperseded bool
		wantGen        string
	}{
		{"an equal or older writer interleaves: re-read and write", "4", false, "5"},
		{"a newer writer interleaves: stop, leave its route", "6", true, "6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store, w := newRouteStore(t)
			ctx := context.Background()
			_, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 4, rendered(t, 4, 3))
			require.NoError(t, err)

			interleaved := false
			store.before = func(verb, name string) {
				if verb == "update" && name == "myapp" && !interleaved {
					interleaved = true
					store.mu.Lock()
					defer store.mu.Unlock()
					r := store.objs["myapp"].DeepCopy()
					r.Annotations[routes.GenerationAnnotation] = tt.concurrentGen
					r.Spec.Hostnames = []gatewayv1.Hostname{"concurrent.example"}
					store.put(r)
				}
			}
			res, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 5, rendered(t, 5, 3))
			require.NoError(t, err)
			assert.True(t, interleaved)
			assert.Equal(t, tt.wantSuperseded, res.Superseded)
			assert.Equal(t, tt.wantGen, store.get("myapp").Annotations[routes.GenerationAnnotation])
			if !tt.wantSuperseded {
				assert.Equal(t, []string{"myapp"}, res.Updated)
				assert.Empty(t, store.get("myapp").Spec.Hostnames)
			}
		})
	}
}

func TestApplyRoutesSurplusRaces(t *testing.T) {
	tests := []struct {
		name           string
		concurrent     func(s *routeStore)
		wantDeleted    []string
		wantSuperseded bool
		wantLeft       []string
	}{
		{
			name:        "already deleted by someone else: NotFound is success",
			concurrent:  func(s *routeStore) { delete(s.objs, "myapp--pins-1") },
			wantDeleted: nil,
			wantLeft:    []string{"myapp"},
		},
		{
			name: "rewritten by a newer generation: kept",
			concurrent: func(s *routeStore) {
				r := s.objs["myapp--pins-1"].DeepCopy()
				r.Annotations[routes.GenerationAnnotation] = "9"
				s.put(r)
			},
			wantSuperseded: true,
			wantLeft:       []string{"myapp", "myapp--pins-1"},
		},
		{
			name: "touched by an older generation: re-read and deleted",
			concurrent: func(s *routeStore) {
				r := s.objs["myapp--pins-1"].DeepCopy()
				r.Annotations["touched"] = "yes"
				s.put(r)
			},
			wantDeleted: []string{"myapp--pins-1"},
			wantLeft:    []string{"myapp"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store, w := newRouteStore(t)
			ctx := context.Background()
			_, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 4, rendered(t, 4, 12))
			require.NoError(t, err)
			once := false
			store.before = func(verb, name string) {
				if verb == "delete" && name == "myapp--pins-1" && !once {
					once = true
					store.mu.Lock()
					defer store.mu.Unlock()
					tt.concurrent(store)
				}
			}
			res, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 5, rendered(t, 5, 3))
			require.NoError(t, err)
			assert.Equal(t, tt.wantDeleted, res.Deleted)
			assert.Equal(t, tt.wantSuperseded, res.Superseded)
			assert.Equal(t, tt.wantLeft, store.names())
		})
	}
}

// TestApplyRoutesDoesNotResurrectShards: a newer writer completes between this writer's list
// and its creation of a shard the newer one no longer wants. The shard must not outlive the
// race.
func TestApplyRoutesDoesNotResurrectShards(t *testing.T) {
	store, w := newRouteStore(t)
	ctx := context.Background()
	_, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 4, rendered(t, 4, 3))
	require.NoError(t, err)

	newer := store.writer()
	raced := false
	store.before = func(verb, name string) {
		if verb == "create" && name == "myapp--pins-1" && !raced {
			raced = true
			res, err := newer.ApplyRoutes(ctx, routeTestNS, "myapp", 6, rendered(t, 6, 2))
			assert.NoError(t, err)
			assert.Equal(t, []string{"myapp"}, res.Updated)
		}
	}
	res, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 5, rendered(t, 5, 12))
	require.NoError(t, err)
	require.True(t, raced)
	assert.True(t, res.Superseded)
	assert.Contains(t, res.SkippedStale, "myapp--pins-1")
	assert.Equal(t, []string{"myapp"}, store.names(), "the stale shard was withdrawn")
	assert.Equal(t, "6", store.get("myapp").Annotations[routes.GenerationAnnotation])
}

func TestApplyRoutesRecreatesRouteDeletedMidway(t *testing.T) {
	store, w := newRouteStore(t)
	ctx := context.Background()
	_, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 4, rendered(t, 4, 3))
	require.NoError(t, err)
	once := false
	store.before = func(verb, name string) {
		if verb == "update" && !once {
			once = true
			store.mu.Lock()
			delete(store.objs, name)
			store.mu.Unlock()
		}
	}
	res, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 5, rendered(t, 5, 3))
	require.NoError(t, err)
	assert.Equal(t, []string{"myapp"}, res.Created)
	assert.Equal(t, "5", store.get("myapp").Annotations[routes.GenerationAnnotation])
}

func TestApplyRoutesLeavesOthersRoutesAlone(t *testing.T) {
	foreign := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: "myapp--pins-1", Namespace: routeTestNS,
		Labels: map[string]string{"app.kubernetes.io/managed-by": "helm"}}}
	otherApp := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: routeTestNS,
		Labels: routes.Labels("other"), Annotations: map[string]string{routes.GenerationAnnotation: "1"}}}
	store, w := newRouteStore(t, foreign, otherApp)
	ctx := context.Background()

	res, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 3, rendered(t, 3, 12))
	require.ErrorIs(t, err, ErrRouteNotManaged)
	assert.Equal(t, []string{"myapp"}, res.Created)
	assert.Equal(t, foreign.Labels, store.get("myapp--pins-1").Labels, "an unmanaged route is never touched")
	assert.Empty(t, store.get("myapp--pins-1").Spec.Rules)

	// Removing every route of myapp leaves both the unmanaged route and the other app's alone.
	res, err = w.ApplyRoutes(ctx, routeTestNS, "myapp", 4, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"myapp"}, res.Deleted)
	assert.Equal(t, []string{"myapp--pins-1", "other"}, store.names())
}

func TestApplyRoutesOverwritesUnreadableGeneration(t *testing.T) {
	broken := rendered(t, 1, 0)[0].DeepCopy()
	broken.Annotations[routes.GenerationAnnotation] = "not-a-number"
	store, w := newRouteStore(t, broken)
	res, err := w.ApplyRoutes(context.Background(), routeTestNS, "myapp", 2, rendered(t, 2, 0))
	require.NoError(t, err)
	assert.Equal(t, []string{"myapp"}, res.Updated)
	assert.Equal(t, "2", store.get("myapp").Annotations[routes.GenerationAnnotation])
}

func TestApplyRoutesRejectsInconsistentInput(t *testing.T) {
	tests := []struct {
		name   string
		mutate func([]gatewayv1.HTTPRoute) []gatewayv1.HTTPRoute
		want   string
	}{
		{"other namespace", func(rs []gatewayv1.HTTPRoute) []gatewayv1.HTTPRoute {
			rs[0].Namespace = "elsewhere"
			return rs
		}, "is for namespace elsewhere"},
		{"same name twice", func(rs []gatewayv1.HTTPRoute) []gatewayv1.HTTPRoute { return append(rs, rs[0]) }, "listed twice"},
		{"other generation", func(rs []gatewayv1.HTTPRoute) []gatewayv1.HTTPRoute {
			rs[0].Annotations[routes.GenerationAnnotation] = "2"
			return rs
		}, "rendered for generation 2"},
		{"other app", func(rs []gatewayv1.HTTPRoute) []gatewayv1.HTTPRoute {
			rs[0].Labels[routes.AppLabel] = "other"
			return rs
		}, "labelled for app other"},
		{"no name", func(rs []gatewayv1.HTTPRoute) []gatewayv1.HTTPRoute {
			rs[0].Name = ""
			return rs
		}, "has no name"},
		{"not labelled", func(rs []gatewayv1.HTTPRoute) []gatewayv1.HTTPRoute {
			delete(rs[0].Labels, routes.ManagedByLabel)
			return rs
		}, "lacks the labels"},
		{"no generation", func(rs []gatewayv1.HTTPRoute) []gatewayv1.HTTPRoute {
			rs[0].Annotations = nil
			return rs
		}, "lacks the " + routes.GenerationAnnotation + " annotation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store, w := newRouteStore(t)
			_, err := w.ApplyRoutes(context.Background(), routeTestNS, "myapp", 3, tt.mutate(rendered(t, 3, 1)))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Empty(t, store.calls, "nothing is read or written")
		})
	}
}

func TestApplyRoutesGivesUpAfterPersistentConflicts(t *testing.T) {
	store, w := newRouteStore(t)
	ctx := context.Background()
	_, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 1, rendered(t, 1, 0))
	require.NoError(t, err)
	store.before = func(verb, name string) {
		if verb == "update" {
			store.mu.Lock()
			defer store.mu.Unlock()
			store.put(store.objs[name].DeepCopy()) // bump the resourceVersion every time
		}
	}
	_, err = w.ApplyRoutes(ctx, routeTestNS, "myapp", 2, rendered(t, 2, 0))
	require.Error(t, err)
	assert.True(t, apierrors.IsConflict(err), err)
	assert.Contains(t, err.Error(), "apply HTTPRoute shop/myapp")
}

// TestApplyRoutesSupersededByAnyNewerRoute: one route of the app from a newer generation is
// enough to stop a write before it changes anything, even a route the newer write lacks.
func TestApplyRoutesSupersededByAnyNewerRoute(t *testing.T) {
	newerShard := rendered(t, 9, 12)[1].DeepCopy()
	store, w := newRouteStore(t, newerShard)
	res, err := w.ApplyRoutes(context.Background(), routeTestNS, "myapp", 5, rendered(t, 5, 12))
	require.NoError(t, err)
	assert.True(t, res.Superseded)
	assert.Equal(t, []string{"myapp", "myapp--pins-1"}, res.SkippedStale)
	assert.Empty(t, store.writes())
	assert.Equal(t, []string{"myapp--pins-1"}, store.names())
}

// TestApplyRoutesNewestGenerationWinsAnyInterleaving runs one writer to completion at every
// possible point (request boundary) of another writer's apply, both ways round, and checks that
// the routes always end as the newer generation wants them.
func TestApplyRoutesNewestGenerationWinsAnyInterleaving(t *testing.T) {
	type write struct {
		gen  int64
		pins int
	}
	tests := []struct {
		name               string
		start, interrupted write
		interloper         write
	}{
		{"newer interloper removes shards", write{4, 40}, write{5, 20}, write{6, 2}},
		{"newer interloper adds shards", write{4, 2}, write{5, 20}, write{6, 40}},
		{"older interloper", write{4, 40}, write{6, 2}, write{5, 20}},
		{"older interloper adding shards", write{4, 2}, write{6, 20}, write{5, 40}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			newest := tt.interrupted
			if tt.interloper.gen > newest.gen {
				newest = tt.interloper
			}
			want := rendered(t, newest.gen, newest.pins)
			for k := 1; ; k++ {
				store, w := newRouteStore(t)
				ctx := context.Background()
				_, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", tt.start.gen, rendered(t, tt.start.gen, tt.start.pins))
				require.NoError(t, err)

				interloper := store.writer()
				requests, fired := 0, false
				store.before = func(string, string) {
					if requests++; requests == k && !fired {
						fired = true
						_, err := interloper.ApplyRoutes(ctx, routeTestNS, "myapp", tt.interloper.gen,
							rendered(t, tt.interloper.gen, tt.interloper.pins))
						assert.NoError(t, err)
					}
				}
				_, err = w.ApplyRoutes(ctx, routeTestNS, "myapp", tt.interrupted.gen, rendered(t, tt.interrupted.gen, tt.interrupted.pins))
				require.NoError(t, err)
				if !fired { // k is past the interrupted apply's last request: every point was tried
					require.Greater(t, k, 3)
					return
				}
				store.before = nil
				require.Equal(t, routeNames(want), store.names(), "interloper before request %d", k)
				for _, r := range want {
					got := store.get(r.Name)
					assert.Equal(t, r.Spec, got.Spec, "%s, interloper before request %d", r.Name, k)
					assert.Equal(t, strconv.FormatInt(newest.gen, 10), got.Annotations[routes.GenerationAnnotation])
				}
			}
		})
	}
}
