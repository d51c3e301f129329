#!/usr/bin/env bash
# test.sh all|integration: what `make test` (and CI's .ci/run) runs.
#
#   all          the tool plan (hack/stack.sh plan), go vet, unit tests, the build progress self-test
#                (hack/progress-selftest.sh), the stack self-test (hack/stack-selftest.sh), then the
#                integration tests and the short chaos run (cmd/chaos) on the real stack. The stack is started here when it is not
#                already healthy, and then stopped again at the end, whatever the outcome.
#   integration  only the integration tests, on the stack that is running.
#
# A skipped test fails the run (hack/testreport). Each phase prints its duration.
# Env: SKEWGUARD_TEST_PARALLEL (go test -p for the integration tests, default 1: the stack and the
# tests share 2 cores, and packages share one cluster), SKEWGUARD_TEST_TIMEOUT (default 30m),
# SKEWGUARD_SKIP_SELFTEST=1 (skip the self-test, e.g. while iterating locally),
# SKEWGUARD_CHAOS_SEED / _VERSIONS / _DURATION / _STACK_FAULTS (the short chaos run, last).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
cd "$REPO"
export PATH=/usr/local/go/bin:$PATH
STACK=$HERE/stack.sh
STACK_DIR=${SKEWGUARD_STACK_DIR:-$REPO/.stack}
export SKEWGUARD_STACK_DIR=$STACK_DIR
PARALLEL=${SKEWGUARD_TEST_PARALLEL:-1}
TIMEOUT=${SKEWGUARD_TEST_TIMEOUT:-30m}
REPORT=$STACK_DIR/bin/testreport

TIMES=()
T_ALL=$SECONDS
phase() { # phase NAME CMD...: run CMD, record its duration, stop at the first failure.
  local name=$1 t=$SECONDS rc=0
  shift
  echo
  echo "=== make test: $name"
  "$@" || rc=$?
  TIMES+=("$(printf '%-14s %4ds  %s' "$name" $((SECONDS - t)) "$([[ $rc == 0 ]] && echo ok || echo FAILED)")")
  if [[ $rc != 0 ]]; then
    echo "phase-$name 0 1 0" >>"$SKEWGUARD_TEST_COUNTS"
    echo "=== make test: $name FAILED (exit $rc)"
    exit "$rc"
  fi
}

export SKEWGUARD_TEST_COUNTS=$STACK_DIR/test-counts
mkdir -p "$STACK_DIR"
: >"$SKEWGUARD_TEST_COUNTS"

print_times() {
  echo
  echo "=== make test: phase times"
  local l
  for l in "${TIMES[@]}"; do echo "  $l"; done
  echo "  total          $((SECONDS - T_ALL))s"
  # One closing line for the whole run (unit, self-test and integration tests).
  awk '{p += $2; f += $3; s += $4} END {printf "total: %d passed, %d failed, %d skipped\n", p, f, s}' "$SKEWGUARD_TEST_COUNTS"
}

build_report() {
  mkdir -p "$STACK_DIR/bin"
  go build -o "$REPORT" ./hack/testreport
}

unit_tests() {
  go test -count=1 -json ./... 2>&1 | "$REPORT" -label unit
}

# fuzz_tests runs every fuzz target of FUZZ_PKGS briefly: the API's request bodies and path
# parameters through the whole handler (api/fuzz_test.go) and their parsing and checks
# (internal/apiwire), the route renderer, route names and cookie patterns
# (internal/routes), the traffic query templates (internal/traffic), bearer token parsing
# (internal/auth). Each target's seed corpus
# already runs with the unit tests; this explores.
FUZZ_PKGS=(./api ./internal/apiwire ./internal/auth ./internal/routes ./internal/traffic)
fuzz_tests() {
  local pkg f targets cache rc=0
  # A fuzz cache of this run's own: the machine's (GOCACHE/fuzz, grown by every make fuzz) would
  # make each target first replay all it ever found, and a replay longer than the fuzz time fails
  # the target ("context deadline exceeded") on a warm machine. testdata/fuzz is replayed anyway.
  cache=$(mktemp -d /tmp/skewguard-fuzzcache.XXXXXX)
  for pkg in "${FUZZ_PKGS[@]}"; do
    targets=$(go test "$pkg" -list '^Fuzz' | grep '^Fuzz') || true
    [[ -n $targets ]] || { echo "no fuzz targets found in $pkg"; rc=1; break; }
    for f in $targets; do
      fuzz_one "$pkg" "$f" "$cache" || { rc=1; break 2; }
    done
  done
  rm -rf "$cache"
  return $rc
}

# fuzz_one PKG TARGET CACHE fuzzes one target briefly. A failure that wrote no failing input and
# says only "context deadline exceeded" is Go's own fuzz coordinator racing the -fuzztime deadline
# (golang/go#75804, fixed in Go 1.27, not in 1.26): that target runs once more, and fails the phase
# if it fails again. A real crash always writes its input (testdata/fuzz) and says so.
fuzz_one() {
  local pkg=$1 f=$2 cache=$3 out attempt
  for attempt in 1 2; do
    out=$(mktemp /tmp/skewguard-fuzz.XXXXXX)
    if go test "$pkg" -run '^$' -fuzz "^$f\$" -fuzztime "${SKEWGUARD_FUZZTIME:-3s}" -test.fuzzcachedir="$cache" 2>&1 | tee "$out"; then
      rm -f "$out"
      return 0
    fi
    if [[ $attempt == 1 ]] && grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written to' "$out"; then
      echo "=== make test: $f stopped on Go's fuzz deadline race (golang/go#75804), no failing input: running it once more"
      rm -f "$out"
      continue
    fi
    rm -f "$out"
    return 1
  done
}

STARTED=0
stop_if_started() {
  if [[ $STARTED == 1 ]]; then
    echo
    echo "=== make test: stopping the stack this run started"
    "$STACK" down || true
  fi
}

stack_up() {
  if "$STACK" status >/dev/null 2>&1; then
    echo "stack in $STACK_DIR is already up and healthy: using it (and leaving it running)"
    return 0
  fi
  STARTED=1
  # A clean clone on a machine where another checkout's stack holds the default ports takes the
  # next free slot (other ports and pod CIDR) instead of failing.
  export SKEWGUARD_STACK_SLOT=${SKEWGUARD_STACK_SLOT:-auto}
  if ! "$STACK" up; then
    echo "=== make test: the stack did not come up (the failing part and its log are above)"
    "$STACK" status || true
    return 1
  fi
}

integration_tests() {
  "$STACK" status >/dev/null || { "$STACK" status; echo "the stack is not healthy"; return 1; }
  set -a
  # shellcheck disable=SC1090,SC1091
  source "$STACK_DIR/stack.env"
  set +a
  go test -count=1 -json -tags integration -p "$PARALLEL" -timeout "$TIMEOUT" ./... 2>&1 | "$REPORT" -label integration
}

# The short chaos run (README: make chaos): 2 api + 2 worker processes, one app through
# SKEWGUARD_CHAOS_VERSIONS versions over SKEWGUARD_CHAOS_DURATION, a session fleet, SIGKILL of our
# processes and of the stack's parts. A fixed seed, so that CI repeats the same fault schedule.
chaos_short() {
  "$STACK" status >/dev/null || { "$STACK" status; echo "the stack is not healthy"; return 1; }
  set -a
  # shellcheck disable=SC1090,SC1091
  source "$STACK_DIR/stack.env"
  set +a
  local bin=$STACK_DIR/bin
  go build -o "$bin/chaos" ./cmd/chaos && go build -o "$bin/skewguard-chaos" ./cmd/skewguard || return 1
  if CHAOS_SEED=${SKEWGUARD_CHAOS_SEED:-20261130} CHAOS_VERSIONS=${SKEWGUARD_CHAOS_VERSIONS:-10} \
    CHAOS_DURATION=${SKEWGUARD_CHAOS_DURATION:-2m} CHAOS_SESSIONS=50 \
    CHAOS_STACK_FAULTS=${SKEWGUARD_CHAOS_STACK_FAULTS-postgresql,temporal,prometheus,kube-apiserver,traefik} \
    CHAOS_SKEWGUARD=$bin/skewguard-chaos CHAOS_STACK_SH=$STACK "$bin/chaos"; then
    echo "chaos-short 1 0 0" >>"$SKEWGUARD_TEST_COUNTS"
  else
    return 1
  fi
}

trap 'exit 130' INT TERM # so the EXIT trap below still stops what this run started
case ${1:-all} in
all)
  trap 'stop_if_started; print_times' EXIT
  # First, whether this run builds the stack's tools and how long that takes (a fresh machine:
  # about half an hour, before the stack self-test can start; its progress is shown then).
  "$STACK" plan 2>&1 || true
  phase build-report build_report
  phase vet go vet ./...
  phase vet-integ go vet -tags integration ./...
  phase unit unit_tests
  phase fuzz fuzz_tests
  phase progress "$HERE/progress-selftest.sh"
  if [[ ${SKEWGUARD_SKIP_SELFTEST:-0} != 1 ]]; then
    phase stack-selftest "$HERE/stack-selftest.sh"
  fi
  phase stack-up stack_up
  phase integration integration_tests
  phase chaos chaos_short
  ;;
integration)
  trap print_times EXIT
  phase build-report build_report
  phase integration integration_tests
  ;;
*)
  sed -n '2,14p' "$0" >&2
  exit 2
  ;;
esac
