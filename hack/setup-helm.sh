#!/usr/bin/env bash
# setup-helm.sh builds the helm CLI from the Go module proxy (no release tarball, no Docker) into
# $SKEWGUARD_CACHE/helm-<version>/bin/helm and prints that path on stdout. Idempotent: a cached
# binary that reports the wanted version is reused. Logs go to stderr so callers can capture the path:
#   SKEWGUARD_TEST_HELM="$(hack/setup-helm.sh)"
# `setup-helm.sh --check` only prints the cache key (helm-<version>), with status 0 when it is built.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
CACHE="${SKEWGUARD_CACHE:-$HOME/.cache/skewguard}"
root="$CACHE/helm-$HELM_VERSION"
bin="$root/bin/helm"

installed() { [[ -x "$bin" ]] && [[ "$("$bin" version --template '{{.Version}}' 2>/dev/null)" == "$HELM_VERSION" ]]; }
if [[ "${1:-}" == --check ]]; then
	echo "helm-$HELM_VERSION"
	installed
	exit
fi
if installed; then
	echo "$bin"
	exit 0
fi

command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"
echo "setup-helm: building helm $HELM_VERSION with go install (first run only)" >&2

# Build into a scratch directory and move the binary into place, so an interrupted build never
# leaves a half-written helm that a later run would trust.
tmp="$(mktemp -d "${CACHE%/}/.helm-build.XXXXXX" 2>/dev/null || { mkdir -p "$CACHE" && mktemp -d "${CACHE%/}/.helm-build.XXXXXX"; })"
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" GOFLAGS=-mod=mod CGO_ENABLED=0 go install -trimpath \
	-ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
	"helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2

mkdir -p "$root/bin"
mv -f "$tmp/helm" "$bin"
got="$("$bin" version --template '{{.Version}}')"
if [[ "$got" != "$HELM_VERSION" ]]; then
	echo "setup-helm: built helm reports $got, want $HELM_VERSION" >&2
	exit 1
fi
echo "setup-helm: helm $HELM_VERSION ready at $bin" >&2
echo "$bin"
