#!/usr/bin/env bash
# progress-selftest.sh: proves what a build prints while it runs (hack/lib/progress.sh) and how the
# tool plan reads the cache (hack/lib/tools.sh), with fake builds in a throwaway cache and a short
# heartbeat (no stack, no real tool is built):
#   1. progress_run says when a build starts (name, expected time), beats while it runs (elapsed,
#      expected), says when it ends (elapsed) or that it failed, in plain lines (no carriage returns);
#   2. a successful build's duration is recorded in the cache's durations file, one line per key,
#      and is the next build's expectation; a failed build records nothing;
#   3. timed_build shows that progress for a tool and stamps it; a built tool is not built again;
#   4. tools_plan calls an empty cache cold (with the typical first-build figures) and a full one warm.
# Prints "progress-selftest: N passed, N failed" and exits non-zero on any failure.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TMP=$(mktemp -d /tmp/skewguard-progress.XXXXXX)
# shellcheck source=lib/check.sh
source "$HERE/lib/check.sh"
DONE=0
finish() {
  rm -rf "$TMP"
  # A check that stopped the script (set -e) counts as one more failure.
  [[ $DONE == 1 ]] || { echo "  FAIL  stopped early (exit status $1)"; FAILED=$((FAILED + 1)); }
  echo "progress-selftest: $PASSED passed, $FAILED failed"
  [[ -z ${SKEWGUARD_TEST_COUNTS:-} ]] || echo "progress-selftest $PASSED $FAILED 0" >>"$SKEWGUARD_TEST_COUNTS"
  [[ $FAILED == 0 ]] || exit 1
}
trap 'finish $?' EXIT
export SKEWGUARD_CACHE=$TMP/cache SKEWGUARD_PROGRESS_EVERY=0.2
# shellcheck source=lib/common.sh
source "$HERE/lib/common.sh"
# shellcheck source=lib/progress.sh
source "$HERE/lib/progress.sh"
# shellcheck source=lib/tools.sh
source "$HERE/lib/tools.sh"

has() { grep -Eq "$2" "$1"; }           # has FILE REGEX
count() { grep -Ec "$2" "$1" || true; } # count FILE REGEX
durations() { cat "$SKEWGUARD_CACHE/durations" 2>/dev/null || true; }
# A fake slow build: it lasts about a second, so that a 0.2 s heartbeat beats several times.
slow() { sleep 1.1; }

# 1. Start, heartbeat, end.
out=$TMP/run.out
rc=0
progress_run "build fake 1.0" 90 slow 2>"$out" || rc=$?
check "progress_run returns the command's status (0)" test "$rc" == 0
check "start line: name and expected time" has "$out" '^\[build [0-9:]{8}\] build fake 1\.0: started, expected to take about 1m30s$'
n=$(count "$out" '^\[build [0-9:]{8}\] build fake 1\.0: running for [0-9]+s, expected about 1m30s$')
check "heartbeat lines while it runs: elapsed and expected ($n)" test "$n" -ge 2
check "end line: elapsed" has "$out" '^\[build [0-9:]{8}\] build fake 1\.0: done in [12]s$'
check "every line is a plain [build] line (no carriage return)" \
  test "$(grep -c $'\r' "$out" || true)" == 0 -a "$(grep -vEc '^\[build ' "$out" || true)" == 0
check "the end line is the last line (no heartbeat after the end)" has <(tail -1 "$out") 'done in'

rc=0
progress_run "build broken 1.0" 5 false 2>"$out" || rc=$?
check "a failing command: its status (1) and a FAILED line" \
  bash -c "test $rc == 1 && grep -Eq '^\[build [0-9:]{8}\] build broken 1\.0: FAILED after 0s \(exit 1\)$' '$out'"

# 2. Durations: recorded after success only, one line per key, the next expectation.
progress_build fake-1.0 "build fake 1.0" 90 slow 2>"$out"
first=$(durations)
check "a successful build is recorded in the durations file ($first)" has <(echo "$first") '^fake-1\.0 [12]$'
progress_build broken-1.0 "build broken 1.0" 5 false 2>"$out" || true
check "a failed build records nothing" test "$(durations)" == "$first"
progress_record other-2.0 7
progress_record fake-1.0 3
check "one line per key, the latest duration" test "$(sort <<<"$(durations)")" == $'fake-1.0 3\nother-2.0 7'
progress_build fake-1.0 "build fake 1.0" 90 true 2>"$out"
check "the next build expects the last recorded one" has "$out" 'build fake 1\.0: started, expected to take about 3s \(last build\)$'
progress_build new-1.0 "build new 1.0" 600 true 2>"$out"
check "a key never built expects its typical first build" has "$out" 'expected to take about 10m00s \(typical first build\)$'

# 3. timed_build: progress of a tool keyed by its cache dir, the stamp, no second build.
fake_tool() { sleep 0.5; echo built >"$1/bin"; }
timed_build "$SKEWGUARD_CACHE/faketool-0.1" fake_tool 42 2>"$out"
check "timed_build: start line with the tool, its version and its figure" \
  has "$out" 'build faketool 0\.1: started, expected to take about 42s \(typical first build\)$'
check "timed_build: end line, the tool stamped, its duration recorded" \
  bash -c "grep -q 'build faketool 0.1: done in' '$out' && test -f '$SKEWGUARD_CACHE/faketool-0.1/.done' && grep -Eq '^faketool-0.1 [0-9]+$' '$SKEWGUARD_CACHE/durations'"
rc=0
(timed_build "$SKEWGUARD_CACHE/faketool-0.1" false 42) 2>"$out" || rc=$?
check "timed_build: a built tool is not built again (and says nothing)" test "$rc" == 0 -a ! -s "$out"

# 4. The plan: cold on an empty cache, warm once every tool is stamped. Debian's packages are the
#    machine's, not the cache's: here they count as installed.
export SKEWGUARD_WITH_WATT=0 HELM_VERSION=v3.22.0
apt_missing() { :; }
SKEWGUARD_CACHE=$TMP/empty tools_plan 2>"$out"
check "plan: an empty cache is cold, every tool listed, the typical figures summed" \
  has "$out" "tool cache $TMP/empty is cold: this run builds temporal $TEMPORAL_CLI_VERSION, etcd $ETCD_VERSION, kubernetes $K8S_VERSION, .*traefik $TRAEFIK_VERSION.*; about [0-9]+ min \(typical first builds on 2 cores"
warm=$TMP/warm
while read -r _ _ dir; do mkdir -p "$dir" && touch "$dir/.done"; done < <(SKEWGUARD_CACHE=$warm TOOL_TABLE)
# helm (hack/setup-helm.sh) counts as built when its binary answers with its version.
mkdir -p "$warm/helm-$HELM_VERSION/bin"
printf '#!/bin/sh\necho %s\n' "$HELM_VERSION" >"$warm/helm-$HELM_VERSION/bin/helm"
chmod +x "$warm/helm-$HELM_VERSION/bin/helm"
SKEWGUARD_CACHE=$warm tools_plan 2>"$out"
check "plan: a cache with every tool built is warm" has "$out" "tool cache $warm is warm: all [0-9]+ tools built, nothing to download or build but the stack's own programs \(seconds\)$"
rm "$warm/kubernetes-$K8S_VERSION/.done"
echo "kubernetes-$K8S_VERSION 120" >"$warm/durations"
SKEWGUARD_CACHE=$warm tools_plan 2>"$out"
check "plan: one tool missing is partly warm, expected from its last build" \
  has "$out" "is partly warm \([0-9]+ of [0-9]+ tools built\): this run builds kubernetes $K8S_VERSION; about 2 min \(their last builds\)"

DONE=1
