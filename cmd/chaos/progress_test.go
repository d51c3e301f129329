package main

import (
	"strings"
	"testing"
	"time"

	"github.com/skewguard/skewguard/internal/registry"
)

func TestProgressWatchFindsAStuckDrainingVersion(t *testing.T) {
	d := deadlines{grace: 2 * time.Second, window: 3 * time.Second, interval: 3 * time.Second, readiness: 20 * time.Second}
	var inFault bool
	var cleared time.Time
	p := newProgressWatch(d, func() (bool, time.Time) { return inFault, cleared })
	active, draining := at(0), at(10)
	vs := func(h1 int64) ([]registry.Version, map[string]int64) {
		return []registry.Version{
			{Label: "1", State: registry.Draining, ActiveAt: &active, DrainingAt: &draining},
			{Label: "2", State: registry.Active, ActiveAt: &draining},
		}, map[string]int64{"1": h1, "2": 10}
	}
	look := func(s int, h int64) {
		v, h2 := vs(h)
		p.observe(at(s), v, h2)
	}
	look(10, 5)
	look(16, 9) // progress: a reading
	look(20, 9)
	look(24, 9) // 8 s without progress: under 3 × the 3 s interval
	if got := p.results(); len(got) != 0 {
		t.Fatalf("stuck too early: %v", got)
	}
	inFault = true
	look(40, 9) // a fault in force: not counted
	if got := p.results(); len(got) != 0 {
		t.Fatalf("stuck during a fault: %v", got)
	}
	inFault, cleared = false, at(41)
	look(48, 9) // 7 s since the fault ended
	if got := p.results(); len(got) != 0 {
		t.Fatalf("stuck right after a fault: %v", got)
	}
	look(51, 9) // 10 s since the fault ended, > 9 s
	got := p.results()
	if len(got) != 1 || !strings.HasPrefix(got[0], "1 draining") {
		t.Fatalf("want version 1 stuck, got %v", got)
	}
	look(52, 9)
	if n := len(p.results()); n != 1 {
		t.Fatalf("reported %d times, want once", n)
	}
}

func TestDeadlines(t *testing.T) {
	d := deadlines{grace: 2 * time.Second, window: 3 * time.Second, interval: 4 * time.Second, readiness: 20 * time.Second}
	drain := at(0)
	cases := []struct {
		s          registry.State
		superseded bool
		now        time.Time
		want       time.Duration
	}{
		{registry.Pending, false, at(0), 20 * time.Second},
		{registry.Active, false, at(0), 0},
		{registry.Active, true, at(0), 4 * time.Second},
		{registry.Draining, false, at(1), 5 * time.Second},
		{registry.Draining, false, at(6), 4 * time.Second},
		{registry.Expired, false, at(6), 0},
	}
	for _, c := range cases {
		if got := d.next(c.s, c.superseded, drain, c.now); got != c.want {
			t.Errorf("%s superseded=%v at %s: %s, want %s", c.s, c.superseded, c.now.Sub(t0), got, c.want)
		}
	}
}
