package benchtable

import (
	"io"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRowsSurviveTheTestOutput(t *testing.T) {
	var lines []string
	report = func(line string) { lines = append(lines, line) }
	t.Cleanup(func() { report = func(line string) { _, _ = io.WriteString(os.Stdout, line) } })
	in := []Row{
		{Figure: "flip p50", Value: "42 ms", Goal: "≤ 100 ms", Peer: "30 ms", Ratio: 1.4, Met: Met(true)},
		{Figure: "a | b", Value: "1"},
	}
	for _, r := range in {
		Report(t, r)
	}
	// Amid go test's own output, as a benchmark's standard output lands in it.
	out := "goos: linux\n" + lines[0] + "BenchmarkX-2 1 5 ns/op\n--- BENCH: BenchmarkX-2\n    x_test.go:9: log\n" + lines[1] + "PASS\n"
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
	_, err := Parse(strings.NewReader("BENCHROW {not json\n"))
	require.ErrorContains(t, err, "bad row")
}
