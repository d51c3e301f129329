package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/skewguard/skewguard/internal/registry"
)

// deadlines are the lifecycle durations the run's skewguard uses: they give each version's
// next deadline, the time by which its workflow must next make progress.
type deadlines struct {
	grace, window, interval, readiness time.Duration
}

// next is how long a version in state s, draining since drainingAt (zero if not), may go
// without progress at now; 0 when nothing is due (the newest Active version waits for signals,
// Expired and Failed ones are done).
func (d deadlines) next(s registry.State, superseded bool, drainingAt, now time.Time) time.Duration {
	switch s {
	case registry.Pending, registry.Staged:
		return d.readiness
	case registry.Active:
		if superseded {
			return d.interval
		}
		return 0
	case registry.Draining:
		// No reading during the grace period nor the window after it; then one per interval.
		if !drainingAt.IsZero() && now.Before(drainingAt.Add(d.grace+d.window)) {
			return d.grace + d.window
		}
		return d.interval
	}
	return 0
}

// progressWatch tracks each version's progress: a change of its registry state or a new event
// in its workflow's history. A version is stuck when it makes none for 3 × its next deadline,
// counted from its last progress or from the end of the last fault, whichever is later: while a
// part it needs is down, no version can progress, and that is the fault's doing, not skewguard's.
type progressWatch struct {
	d      deadlines
	faults func() (inFault bool, clearedAt time.Time)

	mu    sync.Mutex
	seen  map[string]*versionProgress
	stuck []string
}

type versionProgress struct {
	state   registry.State
	history int64
	at      time.Time // last progress
	stuck   bool      // reported once
}

func newProgressWatch(d deadlines, faults func() (bool, time.Time)) *progressWatch {
	return &progressWatch{d: d, faults: faults, seen: map[string]*versionProgress{}}
}

// observe takes one look at the versions (from the registry) and their workflows' history
// lengths (history < 0: not known this time, which is not progress).
func (p *progressWatch) observe(now time.Time, vs []registry.Version, history map[string]int64) {
	inFault, cleared := p.faults()
	newestActive := ""
	var newestAt time.Time
	for _, v := range vs {
		if v.State == registry.Active && v.ActiveAt != nil && v.ActiveAt.After(newestAt) {
			newestActive, newestAt = v.Label, *v.ActiveAt
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, v := range vs {
		h, known := history[v.Label]
		vp, ok := p.seen[v.Label]
		if !ok {
			vp = &versionProgress{state: v.State, history: h, at: now}
			p.seen[v.Label] = vp
			continue
		}
		if v.State != vp.state || (known && h >= 0 && h != vp.history) {
			vp.state, vp.at = v.State, now
			if known && h >= 0 {
				vp.history = h
			}
			vp.stuck = false
			continue
		}
		var drainingAt time.Time
		if v.DrainingAt != nil {
			drainingAt = *v.DrainingAt
		}
		due := p.d.next(v.State, v.Label != newestActive, drainingAt, now)
		if due == 0 || inFault || vp.stuck {
			continue
		}
		since := vp.at
		if cleared.After(since) {
			since = cleared
		}
		if idle := now.Sub(since); idle > 3*due {
			vp.stuck = true
			p.stuck = append(p.stuck, fmt.Sprintf("%s %s no progress for %s (next deadline %s) at %s",
				v.Label, v.State, idle.Round(time.Second), due, now.Format("15:04:05")))
		}
	}
}

func (p *progressWatch) results() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.stuck...)
}

// historyLengths asks Temporal for the history length of each live version's workflow; a
// version whose workflow cannot be described this time is left out.
func historyLengths(ctx context.Context, tc client.Client, vs []registry.Version) map[string]int64 {
	out := map[string]int64{}
	for _, v := range vs {
		if v.WorkflowID == "" || v.State == registry.Expired || v.State == registry.Failed {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		d, err := tc.DescribeWorkflowExecution(dctx, v.WorkflowID, "")
		cancel()
		if err != nil {
			continue
		}
		out[v.Label] = d.GetWorkflowExecutionInfo().GetHistoryLength()
	}
	return out
}
