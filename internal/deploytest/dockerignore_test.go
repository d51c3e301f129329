package deploytest

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dockerignore holds the patterns of a .dockerignore file.
type dockerignore [][]string

func parseDockerignore(t testing.TB, path string) dockerignore {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var d dockerignore
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		require.False(t, strings.HasPrefix(line, "!"), "exceptions (%s) are not understood by this check", line)
		d = append(d, strings.Split(strings.Trim(filepath.Clean(line), "/"), "/"))
	}
	require.NoError(t, sc.Err())
	return d
}

// excludes reports whether path (slash separated, relative to the context) is left out of the
// build context: a pattern matching the path or one of its directories excludes it.
func (d dockerignore) excludes(path string) bool {
	parts := strings.Split(path, "/")
	for _, p := range d {
		for n := 1; n <= len(parts); n++ {
			if matchParts(p, parts[:n]) {
				return true
			}
		}
	}
	return false
}

// matchParts matches path elements against pattern elements, "**" standing for any number of them.
func matchParts(pattern, parts []string) bool {
	if len(pattern) == 0 {
		return len(parts) == 0
	}
	if pattern[0] == "**" {
		for i := 0; i <= len(parts); i++ {
			if matchParts(pattern[1:], parts[i:]) {
				return true
			}
		}
		return false
	}
	if len(parts) == 0 {
		return false
	}
	ok, err := filepath.Match(pattern[0], parts[0])
	return err == nil && ok && matchParts(pattern[1:], parts[1:])
}

func TestDockerignoreMatcher(t *testing.T) {
	d := dockerignore{{".git"}, {"**", "*_test.go"}, {"**", "testdata"}, {"skewguard"}}
	for path, want := range map[string]bool{
		".git/config":                     true,
		"internal/routes/render_test.go":  true,
		"render_test.go":                  true,
		"internal/routes/testdata/a.yaml": true,
		"skewguard":                       true,
		"cmd/skewguard/main.go":           false,
		"internal/routes/render.go":       false,
		"go.mod":                          false,
	} {
		assert.Equal(t, want, d.excludes(path), path)
	}
}

// Everything `go build ./cmd/skewguard` reads is in the build context the .dockerignore leaves:
// go.mod, go.sum, and every Go and embedded file of the module's packages the binary imports.
func TestDockerBuildContextHoldsTheBuild(t *testing.T) {
	root := repoRoot(t)
	ignore := parseDockerignore(t, filepath.Join(root, ".dockerignore"))
	for _, f := range []string{"go.mod", "go.sum"} {
		assert.False(t, ignore.excludes(f), f)
	}
	assert.True(t, ignore.excludes(".git/HEAD"), "the repository's history stays out of the context")
	assert.True(t, ignore.excludes(".stack/stack.env"), "the local stack's state stays out of the context")

	cmd := exec.Command(goTool(), "list", "-deps", "-f",
		`{{if not .Standard}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}`,
		"./cmd/skewguard")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	out, err := cmd.Output()
	require.NoError(t, err)
	var checked int
	for _, abs := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, abs)
		require.NoError(t, err)
		if strings.HasPrefix(rel, "..") { // a dependency from the module cache
			continue
		}
		checked++
		assert.False(t, ignore.excludes(filepath.ToSlash(rel)), "the build needs %s, which .dockerignore leaves out", rel)
	}
	require.NotZero(t, checked, "the binary's own files were listed")
}
