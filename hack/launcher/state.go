package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stateFile records what the launcher owns outside its own process (addresses on lo and pod
// process groups), so that `launcher -cleanup` can undo it after the launcher died without its
// shutdown. Every change is written at once.
type stateFile struct {
	path string

	mu    sync.Mutex
	State state
}

type state struct {
	Addresses []string     `json:"addresses"`
	Processes []procRecord `json:"processes"`
}

// procRecord identifies a process group leader; the start time guards against a recycled pid.
type procRecord struct {
	PID       int    `json:"pid"`
	StartTime string `json:"startTime"`
}

func openState(path string) (*stateFile, error) {
	s := &stateFile{path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read launcher state: %w", err)
	}
	if err := json.Unmarshal(b, &s.State); err != nil {
		return nil, fmt.Errorf("parse launcher state %s: %w", path, err)
	}
	return s, nil
}

func (s *stateFile) addAddress(ip netip.Addr) {
	s.update(func(st *state) {
		if !slices.Contains(st.Addresses, ip.String()) {
			st.Addresses = append(st.Addresses, ip.String())
		}
	})
}

func (s *stateFile) removeAddress(ip netip.Addr) {
	s.update(func(st *state) {
		st.Addresses = slices.DeleteFunc(st.Addresses, func(a string) bool { return a == ip.String() })
	})
}

func (s *stateFile) addProcess(pid int) {
	st := procStartTime(pid)
	s.update(func(v *state) { v.Processes = append(v.Processes, procRecord{PID: pid, StartTime: st}) })
}

func (s *stateFile) removeProcess(pid int) {
	s.update(func(st *state) {
		st.Processes = slices.DeleteFunc(st.Processes, func(p procRecord) bool { return p.PID == pid })
	})
}

func (s *stateFile) update(f func(*state)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.State)
	b, _ := json.Marshal(s.State)
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err == nil {
		err = os.Rename(tmp, s.path)
		if err != nil {
			slog.Error("write launcher state", "err", err)
		}
	}
}

// cleanup stops recorded process groups that are still ours and removes recorded addresses.
func (s *stateFile) cleanup() error {
	var errs []error
	for _, p := range s.State.Processes {
		if p.StartTime == "" || procStartTime(p.PID) != p.StartTime {
			continue
		}
		_ = syscall.Kill(-p.PID, syscall.SIGTERM)
		deadline := time.Now().Add(5 * time.Second)
		for procStartTime(p.PID) == p.StartTime && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		_ = syscall.Kill(-p.PID, syscall.SIGKILL)
		slog.Info("cleanup: stopped leftover pod process", "pid", p.PID)
	}
	for _, a := range s.State.Addresses {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			continue
		}
		present, err := onLoopback(ip)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if present {
			removeAddress(ip)
		}
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	s.mu.Lock()
	s.State = state{}
	s.mu.Unlock()
	return errors.Join(errs...)
}

// procStartTime is field 22 of /proc/PID/stat (start time in clock ticks), "" if no such process.
func procStartTime(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return ""
	}
	// A zombie still has its start time, but it no longer runs anything.
	if f[0] == "Z" {
		return ""
	}
	return f[19]
}
