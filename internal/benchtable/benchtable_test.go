package benchtable

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

type logRecorder struct {
	testing.TB
	lines []string
}

func (l *logRecorder) Helper()               {}
func (l *logRecorder) Log(args ...any)       { l.lines = append(l.lines, args[0].(string)) }
func (l *logRecorder) Fatalf(string, ...any) { panic("unexpected") }

func TestRowsSurviveTheTestOutput(t *testing.T) {
	rec := &logRecorder{TB: t}
	in := []Row{
		{Figure: "flip p50", Value: "42 ms", Goal: "≤ 100 ms", Peer: "30 ms", Ratio: 1.4, Met: Met(true)},
		{Figure: "a | b", Value: "1"},
	}
	for _, r := range in {
		Report(rec, r)
	}
	// As go test prints a benchmark's log: indented, behind file:line.
	out := "goos: linux\nBenchmarkX-2 1 5 ns/op\n--- BENCH: BenchmarkX-2\n    x_test.go:9: " + rec.lines[0] +
		"\n    x_test.go:9: " + rec.lines[1] + "\nPASS\n"
	rows, err := Parse(strings.NewReader(out))
	require.NoError(t, err)
	require.Equal(t, in, rows)

	var b strings.Builder
	require.NoError(t, Format(&b, rows))
	require.Equal(t, "| figure | value | goal | floor / peer | ratio | met |\n|---|---|---|---|---|---|\n"+
		"| flip p50 | 42 ms | ≤ 100 ms | 30 ms | 1.40 | yes |\n"+
		"| a \\| b | 1 | – | – |  | – |\n", b.String())
}

func TestABrokenRowIsAnError(t *testing.T) {
	_, err := Parse(strings.NewReader("    x_test.go:9: BENCHROW {not json\n"))
	require.ErrorContains(t, err, "bad row")
}
