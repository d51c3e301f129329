// Package deploytest holds the tests of what users install skewguard with: the Helm chart
// (deploy/helm/skewguard), the plain manifests rendered from it (deploy/kubernetes), the image's
// Dockerfile and the top-level docker-compose.yaml. It has no non-test code.
//
// Pure tests (values keys, Dockerfile, static build, compose file, committed manifests) run with
// plain `go test`. Tests that need helm or the real API server carry the integration build tag
// and find them through internal/testenv.
package deploytest
