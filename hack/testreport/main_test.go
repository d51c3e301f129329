package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReport(t *testing.T) {
	tests := []struct {
		name       string
		stream     string
		want       Summary
		ok         bool
		wantOutput []string
		notOutput  []string
	}{
		{
			name: "all pass",
			stream: `{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Output":"ok  \tp\t0.1s\n"}
{"Action":"pass","Package":"p"}`,
			want:       Summary{Passed: 1},
			ok:         true,
			wantOutput: []string{"ok  \tp\t0.1s"},
			notOutput:  []string{"=== RUN"},
		},
		{
			name: "a skip fails the run and shows why",
			stream: `{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:9: stack missing\n"}
{"Action":"skip","Package":"p","Test":"TestB"}
{"Action":"pass","Package":"p"}`,
			want:       Summary{Skipped: 1},
			wantOutput: []string{"stack missing"},
		},
		{
			name: "a failure shows its output",
			stream: `{"Action":"output","Package":"p","Test":"TestC","Output":"    c_test.go:3: boom\n"}
{"Action":"fail","Package":"p","Test":"TestC"}
{"Action":"fail","Package":"p"}`,
			want:       Summary{Failed: 1},
			wantOutput: []string{"boom"},
		},
		{
			name: "a build failure counts as a broken package",
			stream: `{"ImportPath":"p","Action":"build-output","Output":"p/x.go:1: syntax error\n"}
{"ImportPath":"p","Action":"build-fail"}
{"Action":"fail","Package":"p"}`,
			want:       Summary{BrokenPackages: 2},
			wantOutput: []string{"syntax error"},
		},
		{
			name: "a package failing without a failed test (panic in TestMain) is broken",
			stream: `{"Action":"output","Package":"p","Output":"panic: x\n"}
{"Action":"fail","Package":"p"}`,
			want:       Summary{BrokenPackages: 1},
			wantOutput: []string{"panic: x"},
		},
		{
			name:       "non-JSON lines pass through",
			stream:     "go: downloading example.com/m v1.0.0",
			want:       Summary{},
			ok:         true,
			wantOutput: []string{"go: downloading"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			got, err := Report(strings.NewReader(tt.stream), &out)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.ok, got.OK())
			for _, s := range tt.wantOutput {
				assert.Contains(t, out.String(), s)
			}
			for _, s := range tt.notOutput {
				assert.NotContains(t, out.String(), s)
			}
		})
	}
}
