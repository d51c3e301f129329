// Command testreport reads `go test -json` on stdin and prints a short report: package results,
// the output of every failed or skipped test, build failures, and a closing line
// "LABEL: N passed, N failed, N skipped". It exits non-zero when anything failed or was skipped:
// a test that skips (say, because a part of the stack is missing) must not make a run pass.
//
//	go test -json ./... | testreport -label unit
//
// With SKEWGUARD_TEST_COUNTS set, it also appends "LABEL PASSED FAILED SKIPPED" to that file, so
// hack/test.sh can print one total for the whole run.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// event is one line of test2json output (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string
	Test       string
	Output     string
}

// Summary counts tests (subtests included) by outcome.
type Summary struct {
	Passed, Failed, Skipped int
	// BrokenPackages failed without a failing test: build errors, panics in init, timeouts.
	BrokenPackages int
}

// OK is true when nothing failed and nothing was skipped.
func (s Summary) OK() bool { return s.Failed == 0 && s.Skipped == 0 && s.BrokenPackages == 0 }

// Report copies the interesting part of the stream to w and returns the counts.
func Report(r io.Reader, w io.Writer) (Summary, error) {
	var s Summary
	outputs := map[string]*strings.Builder{}
	failedTests := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1024*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// Not JSON (e.g. "go: downloading ..." or a vet message): pass it through.
			fmt.Fprintln(w, string(line))
			continue
		}
		key := e.Package + " " + e.Test
		switch {
		case e.Action == "build-output":
			fmt.Fprint(w, e.Output)
		case e.Action == "build-fail":
			s.BrokenPackages++
		case e.Test == "" && e.Action == "output":
			fmt.Fprint(w, e.Output)
		case e.Test == "" && (e.Action == "pass" || e.Action == "skip"):
			// A package passed, or has no test files: its tests were counted one by one.
		case e.Test == "" && e.Action == "fail":
			if failedTests[e.Package] == 0 {
				s.BrokenPackages++
			}
		case e.Action == "output":
			b := outputs[key]
			if b == nil {
				b = &strings.Builder{}
				outputs[key] = b
			}
			b.WriteString(e.Output)
		case e.Action == "pass":
			s.Passed++
			delete(outputs, key)
		case e.Action == "fail":
			s.Failed++
			failedTests[e.Package]++
			if b := outputs[key]; b != nil {
				fmt.Fprint(w, b.String())
			}
			delete(outputs, key)
		case e.Action == "skip":
			s.Skipped++
			if b := outputs[key]; b != nil {
				fmt.Fprint(w, b.String())
			}
			delete(outputs, key)
		}
	}
	return s, sc.Err()
}

func main() {
	label := flag.String("label", "tests", "word printed before the closing counts")
	flag.Parse()
	s, err := Report(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testreport: read go test -json: %v\n", err)
		os.Exit(2)
	}
	if s.BrokenPackages > 0 {
		fmt.Printf("%d package(s) failed to build or run (see above)\n", s.BrokenPackages)
	}
	if s.Skipped > 0 {
		fmt.Printf("%d test(s) skipped: a skipped test fails the run (see above for why each skipped)\n", s.Skipped)
	}
	fmt.Printf("%s: %d passed, %d failed, %d skipped\n", *label, s.Passed, s.Failed, s.Skipped)
	if f := os.Getenv("SKEWGUARD_TEST_COUNTS"); f != "" {
		if err := appendCounts(f, *label, s); err != nil {
			fmt.Fprintf(os.Stderr, "testreport: %v\n", err)
		}
	}
	if !s.OK() {
		os.Exit(1)
	}
}

func appendCounts(path, label string, s Summary) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open counts file: %w", err)
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%s %d %d %d\n", label, s.Passed, s.Failed+s.BrokenPackages, s.Skipped)
	return err
}
