//go:build integration

package deploytest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/testenv"
)

// helmTemplate runs `helm template` on the chart and returns its output, or the error helm
// printed.
func helmTemplate(t testing.TB, release, namespace string, args ...string) ([]byte, error) {
	t.Helper()
	helm := testenv.Get(t, testenv.HelmBinary)
	full := append([]string{"template", release, chartDir(t), "--namespace", namespace}, args...)
	cmd := exec.Command(helm, full...)
	// helm keeps caches and repository settings under these; keep them out of the user's home.
	home := t.TempDir()
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, &helmError{args: full, stderr: strings.TrimSpace(stderr.String()), err: err}
	}
	return stdout.Bytes(), nil
}

type helmError struct {
	args   []string
	stderr string
	err    error
}

func (e *helmError) Error() string {
	return "helm " + strings.Join(e.args, " ") + ": " + e.err.Error() + ": " + e.stderr
}

// render renders the chart and parses the result, failing the test on any error.
func render(t testing.TB, release, namespace string, args ...string) manifests {
	t.Helper()
	out, err := helmTemplate(t, release, namespace, args...)
	require.NoError(t, err)
	return parseManifests(t, out)
}
