// Package benchtable is how benchmarks report the figures that go into the one table printed by
// `make bench` and `make bench-stack`: each benchmark logs its rows (figure, value, goal, and the
// floor or peer measured in the same run), and cmd/benchtable collects them from the test output
// and prints the table. A row never asserts anything: benchmarks print, tests assert.
package benchtable

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"testing"
)

// marker starts a row's line in the test output.
const marker = "BENCHROW "

// Row is one line of the table.
type Row struct {
	// Figure names what was measured, e.g. "flip: registration → HTTPRoute written, p50".
	Figure string `json:"figure"`
	// Value is the measured figure with its unit, e.g. "42 ms".
	Value string `json:"value"`
	// Goal is the target in words, e.g. "≤ 100 ms"; empty when there is none.
	Goal string `json:"goal,omitempty"`
	// Peer is the floor or peer measured in the same run, with its unit; empty when there is none.
	Peer string `json:"peer,omitempty"`
	// Ratio is Value/Peer (or Peer/Value, as Figure says); 0 when there is no peer.
	Ratio float64 `json:"ratio,omitempty"`
	// Met says whether the goal holds: "yes", "no", or "" when there is no goal.
	Met string `json:"met,omitempty"`
}

// Met turns a goal check into Row.Met.
func Met(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

// Report prints r as a row of the table, on the test binary's standard output: a benchmark's
// log is cut to its first lines by go test, standard output is not.
func Report(tb testing.TB, r Row) {
	tb.Helper()
	line, err := Line(r)
	if err != nil {
		tb.Fatalf("benchtable: %v", err)
	}
	report(line)
}

// Write writes r as a row of the table to w (a load tool's output, read by cmd/benchtable).
func Write(w io.Writer, r Row) error {
	line, err := Line(r)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, line)
	return err
}

// Line is r as the line of output that Parse reads back.
func Line(r Row) (string, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	return marker + string(b) + "\n", nil
}

// report writes one line; a variable for the tests.
var report = func(line string) { _, _ = io.WriteString(os.Stdout, line) }

// Parse returns the rows found in the output of go test, in order.
func Parse(r io.Reader) ([]Row, error) {
	var rows []Row
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, marker)
		if i < 0 {
			continue
		}
		var row Row
		if err := json.Unmarshal([]byte(line[i+len(marker):]), &row); err != nil {
			return rows, fmt.Errorf("benchtable: bad row %q: %w", line, err)
		}
		rows = append(rows, row)
	}
	return rows, sc.Err()
}

// Format writes rows as a Markdown table.
func Format(w io.Writer, rows []Row) error {
	var b strings.Builder
	b.WriteString("| figure | value | goal | floor / peer | ratio | met |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, r := range rows {
		ratio := ""
		if r.Ratio != 0 && !math.IsNaN(r.Ratio) && !math.IsInf(r.Ratio, 0) {
			ratio = fmt.Sprintf("%.2f", r.Ratio)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", cell(r.Figure), cell(r.Value), cell(r.Goal), cell(r.Peer), ratio, cell(r.Met))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func cell(s string) string {
	if s == "" {
		return "–"
	}
	return strings.ReplaceAll(s, "|", `\|`)
}
