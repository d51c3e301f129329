// Command benchtable copies the output of `go test -bench` from stdin to stdout and then prints
// the table of the rows the benchmarks reported (internal/benchtable). It exits non-zero when
// the input holds no row, or a FAIL line (a benchmark that broke is not a figure).
package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"

	"github.com/skewguard/skewguard/internal/benchtable"
)

var failed = regexp.MustCompile(`(?m)^(--- )?FAIL`)

func main() {
	var buf bytes.Buffer
	if _, err := io.Copy(io.MultiWriter(os.Stdout, &buf), os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	rows, err := benchtable.Parse(bytes.NewReader(buf.Bytes()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println()
	if title := os.Getenv("BENCHTABLE_TITLE"); title != "" {
		fmt.Println(title)
		fmt.Println()
	}
	if err := benchtable.Format(os.Stdout, rows); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	switch {
	case len(rows) == 0:
		fmt.Fprintln(os.Stderr, "benchtable: no rows in the input: did the benchmarks run?")
		os.Exit(1)
	case failed.Match(buf.Bytes()):
		fmt.Fprintln(os.Stderr, "benchtable: a benchmark failed (FAIL in the output)")
		os.Exit(1)
	}
}
