package main

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat: USER_HZ, 100 on every Linux
// architecture Go supports (the kernel converts to it whatever its internal HZ is).
const userHZ = 100

// procSample is what /proc says about one process at one instant.
type procSample struct {
	at       time.Time
	cpuTicks uint64 // utime + stime, in 1/userHZ s
	rssBytes uint64 // VmRSS
	hwmBytes uint64 // VmHWM: the peak RSS so far
	written  uint64 // write_bytes of /proc/<pid>/io: bytes the process caused to be written to disk
}

// readProc reads /proc/<pid>/stat and /proc/<pid>/status.
func readProc(pid int) (procSample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procSample{}, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procSample{}, err
	}
	s := procSample{at: time.Now()}
	if s.cpuTicks, err = parseStatCPU(string(stat)); err != nil {
		return procSample{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	if s.rssBytes, err = parseStatusKB(string(status), "VmRSS"); err != nil {
		return procSample{}, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	if s.hwmBytes, err = parseStatusKB(string(status), "VmHWM"); err != nil {
		return procSample{}, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	if io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil { // absent without task I/O accounting
		s.written, _ = parseIOWritten(string(io))
	}
	return s, nil
}

// parseStatCPU returns utime+stime (fields 14 and 15) of a /proc/<pid>/stat line. The command
// name (field 2) is in parentheses and may itself hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseStatCPU(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no ')' closing the command name")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	utime, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	stime, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return utime + stime, nil
}

// parseStatusKB returns the value of a "Key:   123 kB" line of /proc/<pid>/status, in bytes.
func parseStatusKB(status, key string) (uint64, error) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != key {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%s: %q is not \"<n> kB\"", key, strings.TrimSpace(rest))
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", key, err)
		}
		return n * 1024, nil
	}
	return 0, fmt.Errorf("no %s line", key)
}

// parseIOWritten returns write_bytes of /proc/<pid>/io.
func parseIOWritten(text string) (uint64, error) {
	for _, line := range strings.Split(text, "\n") {
		name, v, ok := strings.Cut(line, ":")
		if ok && name == "write_bytes" {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no write_bytes line")
}

// cores is the CPU a process used between two samples, in cores (1 = one core busy all along).
func cores(from, to procSample) float64 {
	wall := to.at.Sub(from.at).Seconds()
	if wall <= 0 || to.cpuTicks < from.cpuTicks {
		return math.NaN()
	}
	return float64(to.cpuTicks-from.cpuTicks) / userHZ / wall
}

// cpuSeconds is the CPU time a process used between two samples.
func cpuSeconds(from, to procSample) float64 {
	if to.cpuTicks < from.cpuTicks {
		return math.NaN()
	}
	return float64(to.cpuTicks-from.cpuTicks) / userHZ
}

// perHour scales a count over a window to a rate per hour.
func perHour(count float64, window time.Duration) float64 {
	if window <= 0 {
		return math.NaN()
	}
	return count * float64(time.Hour) / float64(window)
}

// metricSum sums the samples of the metric name in a Prometheus text exposition whose labels
// contain every match (each `key="value"`); a metric with no labels matches only an empty match.
func metricSum(text, name string, match ...string) (float64, bool, error) {
	var sum float64
	found := false
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		labels := ""
		switch {
		case strings.HasPrefix(rest, "{"):
			j := strings.LastIndexByte(rest, '}')
			if j < 0 {
				return 0, false, fmt.Errorf("metric %s: unclosed labels in %q", name, line)
			}
			labels, rest = rest[1:j], rest[j+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // another metric whose name starts with name
		}
		ok := true
		for _, m := range match {
			if !strings.Contains(","+labels+",", ","+m+",") {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, false, fmt.Errorf("metric %s: no value in %q", name, line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, false, fmt.Errorf("metric %s: %w", name, err)
		}
		sum += v
		found = true
	}
	return sum, found, sc.Err()
}

// ratio is b/a, or 0 (no ratio) when a is zero or either is not a number.
func ratio(a, b float64) float64 {
	if a == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return 0
	}
	return b / a
}

// mib formats bytes in MiB.
func mib(b float64) string { return fmt.Sprintf("%.0f MiB", b/(1<<20)) }
