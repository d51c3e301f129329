package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
)

// addresses puts pod IPs on the loopback interface while a pod's process needs them. The API
// server refuses loopback endpoint addresses, so pods get IPs from a reserved range (RFC 2544,
// 198.18.0.0/15) that only exists on this machine's lo. An address that was already there is
// used but never removed: the launcher only removes what it added.
type addresses struct {
	state *stateFile

	mu    sync.Mutex
	refs  map[netip.Addr]int
	added map[netip.Addr]bool
}

func newAddresses(state *stateFile) *addresses {
	return &addresses{state: state, refs: map[netip.Addr]int{}, added: map[netip.Addr]bool{}}
}

func (a *addresses) acquire(ip netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.refs[ip] > 0 {
		a.refs[ip]++
		return nil
	}
	present, err := onLoopback(ip)
	if err != nil {
		return err
	}
	if !present {
		// Record first: a crash right after the add still leaves the address to -cleanup.
		a.state.addAddress(ip)
		if out, err := exec.Command("ip", "addr", "add", ip.String()+"/32", "dev", "lo").CombinedOutput(); err != nil {
			a.state.removeAddress(ip)
			return fmt.Errorf("ip addr add %s/32 dev lo: %v: %s", ip, err, strings.TrimSpace(string(out)))
		}
		a.added[ip] = true
		slog.Info("added pod IP on lo", "ip", ip)
	}
	a.refs[ip]++
	return nil
}

func (a *addresses) release(ip netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.refs[ip] == 0 {
		return
	}
	a.refs[ip]--
	if a.refs[ip] > 0 {
		return
	}
	delete(a.refs, ip)
	if a.added[ip] {
		removeAddress(ip)
		delete(a.added, ip)
		a.state.removeAddress(ip)
	}
}

func (a *addresses) releaseAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for ip := range a.added {
		removeAddress(ip)
		a.state.removeAddress(ip)
	}
	a.added = map[netip.Addr]bool{}
	a.refs = map[netip.Addr]int{}
}

func removeAddress(ip netip.Addr) {
	if out, err := exec.Command("ip", "addr", "del", ip.String()+"/32", "dev", "lo").CombinedOutput(); err != nil {
		slog.Warn("ip addr del", "ip", ip, "err", err, "out", strings.TrimSpace(string(out)))
		return
	}
	slog.Info("removed pod IP from lo", "ip", ip)
}

func onLoopback(ip netip.Addr) (bool, error) {
	out, err := exec.Command("ip", "-o", "-4", "addr", "show", "dev", "lo").Output()
	if err != nil {
		return false, fmt.Errorf("ip addr show dev lo: %w", err)
	}
	return strings.Contains(string(out), " "+ip.String()+"/"), nil
}
