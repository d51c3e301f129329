package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// request is one request of one session through the gateway.
type request struct {
	Session  int
	Carrier  string // cookie, header, dpl, or "" for an anonymous first request
	Pinned   string // the version the request carried ("" when anonymous)
	Start    time.Time
	End      time.Time
	Status   int    // 0 when the request got no HTTP answer
	Answered string // X-Skewguard-Version of the answer ("" if none)
	Err      string // transport error or a short body of a non-2xx answer
	Faults   string // the faults in force when it was sent ("" if none)
}

// lifetime is when a version was routed, from the registry: from the moment it was first Active
// (or Staged) until it expired (zero: still live at the end).
type lifetime struct {
	Routed  time.Time
	Expired time.Time
}

// liveMargin is how close to its expiry a request may end and still count as pinned to a live
// version: the routes are withdrawn in the same registry transaction that records the expiry, so
// a request that ends within this margin may have met the new routes; it is not counted either way.
const liveMargin = time.Second

// pinnedLive reports whether r carried a version that was routed for the whole of r.
func pinnedLive(r request, lives map[string]lifetime) bool {
	if r.Pinned == "" {
		return false
	}
	l, ok := lives[r.Pinned]
	if !ok || l.Routed.IsZero() || r.Start.Before(l.Routed) {
		return false
	}
	return l.Expired.IsZero() || r.End.Add(liveMargin).Before(l.Expired)
}

// misrouted: a request pinned to a live version that another version answered.
func misrouted(r request, lives map[string]lifetime) bool {
	return pinnedLive(r, lives) && r.Status/100 == 2 && r.Answered != r.Pinned
}

// failed: a request the gateway did not answer with a 2xx.
func failed(r request) bool { return r.Status/100 != 2 }

// gatewayOutage: r was sent while Traefik was killed or starting again (until it served the app
// again), or was in flight when it was killed.
func (res result) gatewayOutage(r request) bool {
	if slices.Contains(strings.Split(strings.TrimPrefix(r.Faults, "killed "), "+"), "traefik") {
		return true
	}
	for _, d := range res.GatewayDown {
		if !r.End.Before(d[0]) && !r.Start.After(d[1]) {
			return true
		}
	}
	return false
}

// failureCause names why a request failed: its status and a short reason, and what was down
// when it was sent.
func failureCause(r request) string {
	c := fmt.Sprintf("%d %s", r.Status, r.Err)
	if r.Status == 0 {
		c = "no answer: " + r.Err
	}
	if k := faultKind(r.Faults); k != "" {
		c += " [" + k + " down]"
	}
	return c
}

// faultKind names what "killed a+b" took down: skewguard for its own processes, else the stack
// parts.
func faultKind(faults string) string {
	names := strings.Split(strings.TrimPrefix(faults, "killed "), "+")
	var kinds []string
	for _, n := range names {
		switch {
		case n == "":
			continue
		case strings.HasPrefix(n, "api-") || strings.HasPrefix(n, "worker-"):
			n = "skewguard"
		}
		if !slices.Contains(kinds, n) {
			kinds = append(kinds, n)
		}
	}
	return strings.Join(kinds, "+")
}

// line is one line of the table.
type line struct {
	What   string
	Value  string
	Goal   string
	Failed bool
}

// result is what the run measured.
type result struct {
	Seed        int64
	Requests    []request
	Lives       map[string]lifetime
	Deployed    []string        // version labels deployed, in order
	Recorded    map[string]bool // version labels the registry knows at the end
	Stuck       []string        // versions that made no progress (with why)
	TwoActiveDB []string        // registry samples with more than one Active version
	TwoActiveRt []string        // route samples with more than one default backend
	Samples     int             // registry samples taken
	Convergence []time.Duration // after each restart
	Unconverged []string        // restarts after which the routes never matched
	Kills       []string        // what was killed, in order
	GatewayDown [][2]time.Time  // from each kill of Traefik until it served the app again
}

// percentile returns the p-th percentile (0..100) of ds by nearest rank; 0 for none.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100+0.999999) - 1
	rank = max(0, min(rank, len(s)-1))
	return s[rank]
}

// convergenceGoal is the goal for the p99 of route convergence.
const convergenceGoal = 10 * time.Second

// table computes the lines of the table and writes every misrouted request to log.
func (res result) table(log io.Writer) []line {
	var lines []line
	pinned, mis := 0, 0
	for _, r := range res.Requests {
		if pinnedLive(r, res.Lives) {
			pinned++
		}
		if misrouted(r, res.Lives) {
			mis++
			fmt.Fprintf(log, "MISROUTED session %d carrier %s pinned %s answered %s status %d at %s (faults: %s)\n",
				r.Session, r.Carrier, r.Pinned, r.Answered, r.Status, r.Start.Format(time.RFC3339Nano), orNone(r.Faults))
		}
	}
	lines = append(lines, line{"requests (pinned to a live version)", fmt.Sprintf("%d (%d)", len(res.Requests), pinned), "", false})
	lines = append(lines, line{"misrouted, pinned to a live version", fmt.Sprint(mis), "0", mis > 0})

	var lost []string
	for _, v := range res.Deployed {
		if !res.Recorded[v] {
			lost = append(lost, v)
		}
	}
	lines = append(lines, line{"versions lost (deployed, never recorded)", countList(lost), "0", len(lost) > 0})
	for _, st := range res.Stuck {
		fmt.Fprintf(log, "STUCK %s\n", st)
	}
	lines = append(lines, line{"versions stuck", countList(res.Stuck), "0", len(res.Stuck) > 0})
	lines = append(lines, line{fmt.Sprintf("two Active at once, registry (%d samples)", res.Samples), countList(res.TwoActiveDB), "0", len(res.TwoActiveDB) > 0})
	lines = append(lines, line{"two Active at once, routes", countList(res.TwoActiveRt), "0", len(res.TwoActiveRt) > 0})

	p99 := percentile(res.Convergence, 99)
	conv := fmt.Sprintf("n=%d p50=%s p99=%s max=%s", len(res.Convergence),
		percentile(res.Convergence, 50).Round(time.Millisecond), p99.Round(time.Millisecond),
		percentile(res.Convergence, 100).Round(time.Millisecond))
	if len(res.Unconverged) > 0 {
		conv += fmt.Sprintf("; never: %s", strings.Join(res.Unconverged, ", "))
	}
	lines = append(lines, line{"route convergence after each restart", conv, "p99 <= 10s",
		p99 > convergenceGoal || len(res.Unconverged) > 0 || (len(res.Kills) > 0 && len(res.Convergence) == 0)})

	causes := map[string]int{}
	causesLive := map[string]int{}
	failedLive, gatewayDown := 0, 0
	for _, r := range res.Requests {
		if !failed(r) {
			continue
		}
		c := failureCause(r)
		causes[c]++
		if res.gatewayOutage(r) {
			// Traefik killed, or started and not yet serving its routes: the gateway's own
			// outage, whatever the request carried.
			gatewayDown++
			continue
		}
		if pinnedLive(r, res.Lives) {
			causesLive[c]++
			failedLive++
		}
	}
	total := 0
	for _, n := range causes {
		total += n
	}
	lines = append(lines, line{"failed at the gateway (non-2xx or no answer)", fmt.Sprint(total), "", false})
	keys := make([]string, 0, len(causes))
	for c := range causes {
		keys = append(keys, c)
	}
	sort.Slice(keys, func(i, j int) bool {
		return causes[keys[i]] > causes[keys[j]] || causes[keys[i]] == causes[keys[j]] && keys[i] < keys[j]
	})
	for _, c := range keys {
		lines = append(lines, line{"  " + truncate(c, 60), fmt.Sprintf("%d (live pinned: %d)", causes[c], causesLive[c]), "", false})
	}
	lines = append(lines, line{"  of them while Traefik was down or restarting", fmt.Sprint(gatewayDown), "", false})
	lines = append(lines, line{"failed, pinned to a live version, gateway up", fmt.Sprint(failedLive), "0", failedLive > 0})
	return lines
}

// printTable writes the table; it returns whether every line passed.
func printTable(w io.Writer, res result, lines []line) bool {
	ok := true
	fmt.Fprintf(w, "\nchaos run, CHAOS_SEED=%d, %d versions deployed, kills: %d\n", res.Seed, len(res.Deployed), len(res.Kills))
	fmt.Fprintf(w, "%-52s %-44s %-11s %s\n", "LINE", "VALUE", "GOAL", "RESULT")
	for _, l := range lines {
		verdict := ""
		if l.Goal != "" {
			verdict = "pass"
			if l.Failed {
				verdict = "FAIL"
				ok = false
			}
		}
		fmt.Fprintf(w, "%-52s %-44s %-11s %s\n", l.What, l.Value, l.Goal, verdict)
	}
	return ok
}

func countList(xs []string) string {
	if len(xs) == 0 {
		return "0"
	}
	return fmt.Sprintf("%d: %s", len(xs), truncate(strings.Join(xs, ", "), 120))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
