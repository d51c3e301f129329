#!/usr/bin/env bash
# fuzz.sh: what `make fuzz` runs. Every fuzz target of the repo (found by `go test -list`, not
# listed here), one after another on all cores, then one table: target, time, execs, execs/s, new
# interesting inputs, crashes. Exit 1 if a target crashed (or failed to run); each crash prints
# the failing input's path and the `go test -run` line that reproduces it.
#
# Env:
#   FUZZ_EXECS    executions per target (default 1000000, the goal of issue 13): a target stops
#                 when it has run this many (go test -fuzztime <FUZZ_EXECS>x) ...
#   FUZZTIME      ... or after this much fuzzing, whichever comes first (default 10m; h, m, s as
#                 in 1h30m; the build is not counted). The table says which targets reached FUZZ_EXECS.
#   FUZZ_TARGETS  regex (grep -E) on "<package dir>.<Target>", e.g. 'FuzzRender$' or '^api\.'
#                 (default: every target).
#   FUZZ_PARALLEL fuzzing workers (default: nproc).
#   FUZZ_KEEP     new interesting inputs kept per target in testdata/fuzz (default 20; 0 keeps none).
#   FUZZ_MINIMIZE time Go spends minimizing each new interesting (or failing) input, during which
#                 the target does not run (go test -fuzzminimizetime; default 5s, Go's own is 60s:
#                 minimizing FuzzRender's inputs stopped it for most of a short run).
#
# Corpus: Go writes the new interesting inputs of a run to $GOCACHE/fuzz/<import path>/<Target>/
# (they stay there and seed the next run on this machine). After each target, the ones this run
# added are copied into <package>/testdata/fuzz/<Target>/ as corpus-<name>, so that `go test`
# replays them on every run. Only the FUZZ_KEEP smallest corpus-* files of a target are kept
# (ties: by name): small inputs replay fastest, so `make test` stays as quick as before, and the
# choice does not depend on when a file was found. Files not named corpus-* (hand-written seeds,
# crashers Go writes to testdata/fuzz/<Target>/ itself) are never touched.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
cd "$REPO" || exit 2
export PATH=/usr/local/go/bin:$PATH

FUZZ_EXECS=${FUZZ_EXECS:-1000000}
FUZZTIME=${FUZZTIME:-10m}
FUZZ_TARGETS=${FUZZ_TARGETS:-.}
FUZZ_PARALLEL=${FUZZ_PARALLEL:-$(nproc)}
FUZZ_KEEP=${FUZZ_KEEP:-20}
FUZZ_MINIMIZE=${FUZZ_MINIMIZE:-5s}
[[ $FUZZ_EXECS =~ ^[1-9][0-9]*$ ]] || { echo "FUZZ_EXECS must be a positive number, got '$FUZZ_EXECS'" >&2; exit 2; }
[[ $FUZZ_KEEP =~ ^[0-9]+$ ]] || { echo "FUZZ_KEEP must be a number, got '$FUZZ_KEEP'" >&2; exit 2; }
[[ $FUZZ_PARALLEL =~ ^[1-9][0-9]*$ ]] || { echo "FUZZ_PARALLEL must be a positive number, got '$FUZZ_PARALLEL'" >&2; exit 2; }
[[ $FUZZ_MINIMIZE =~ ^([0-9]+[hms]|[0-9]+x)$ ]] || { echo "FUZZ_MINIMIZE must be a duration like 5s or a count like 1000x, got '$FUZZ_MINIMIZE'" >&2; exit 2; }

# seconds 1h2m3s -> 3723 (the form of FUZZTIME and of Go's "fuzz: elapsed:").
seconds() {
  awk -v d="$1" 'BEGIN {s = 0; while (match(d, /^[0-9]+[hms]/)) {n = substr(d, 1, RLENGTH - 1); u = substr(d, RLENGTH, 1)
    s += n * (u == "h" ? 3600 : u == "m" ? 60 : 1); d = substr(d, RLENGTH + 1)} print (d == "" ? s : -1)}'
}
MAXSECS=$(seconds "$FUZZTIME")
if ! [[ $FUZZTIME =~ ^([0-9]+[hms])+$ ]] || ((MAXSECS <= 0)); then
  echo "FUZZTIME must be a duration like 90s, 10m or 1h30m, got '$FUZZTIME'" >&2
  exit 2
fi
CACHE=$(go env GOCACHE)/fuzz
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/skewguard-fuzz.XXXXXX")

# Packages whose test files declare a fuzz target; `go test -list` then names the targets the
# build really contains (build constraints included).
mapfile -t PKGS < <(go list -f '{{.Dir}}	{{.ImportPath}}' ./... | while IFS=$'\t' read -r dir imp; do
  if grep -qs '^func Fuzz' "$dir"/*_test.go; then printf '%s\t%s\n' "${dir#"$REPO"/}" "$imp"; fi
done)

TARGETS=() # "reldir<TAB>importpath<TAB>Target"
for p in "${PKGS[@]}"; do
  IFS=$'\t' read -r dir imp <<<"$p"
  list=$(go test "./$dir" -run '^$' -list '^Fuzz') || { echo "$list"; echo "go test -list failed in ./$dir" >&2; exit 2; }
  for t in $(grep '^Fuzz' <<<"$list"); do
    if grep -Eq -- "$FUZZ_TARGETS" <<<"$dir.$t"; then TARGETS+=("$dir	$imp	$t"); fi
  done
done
if [[ ${#TARGETS[@]} == 0 ]]; then
  echo "no fuzz target matches FUZZ_TARGETS='$FUZZ_TARGETS'" >&2
  exit 2
fi
echo "fuzzing ${#TARGETS[@]} targets, each until $FUZZ_EXECS execs or $FUZZTIME, -parallel $FUZZ_PARALLEL, -fuzzminimizetime $FUZZ_MINIMIZE (logs in $LOGDIR)"

# keep_corpus DIR IMPORT TARGET BEFORE: copy the cache entries not listed in BEFORE into
# DIR/testdata/fuzz/TARGET as corpus-<name>, then trim corpus-* to the FUZZ_KEEP smallest.
# Prints how many were added (before trimming).
keep_corpus() {
  local dir=$1 imp=$2 t=$3 before=$4 src=$CACHE/$2/$3 dst=$1/testdata/fuzz/$3 f n=0
  [[ -d $src ]] || { echo 0; return; }
  for f in "$src"/*; do
    [[ -f $f ]] || continue
    grep -qxF -- "${f##*/}" "$before" && continue
    n=$((n + 1))
    ((FUZZ_KEEP > 0)) || continue
    mkdir -p "$dst"
    cp -- "$f" "$dst/corpus-${f##*/}"
  done
  if [[ -d $dst ]]; then
    # size, then name: delete everything after the first FUZZ_KEEP.
    find "$dst" -maxdepth 1 -type f -name 'corpus-*' -printf '%s %f\n' | sort -k1,1n -k2,2 |
      tail -n +"$((FUZZ_KEEP + 1))" | while read -r _ name; do rm -f -- "$dst/$name"; done
  fi
  echo "$n"
}

# The target runs in a session of its own: pass an interrupt of this script on to it.
pid=
trap '[[ -n $pid ]] && kill -INT -- -"$pid" 2>/dev/null; exit 130' INT TERM

ROWS=()
CRASHES=0
FAILED=0
for entry in "${TARGETS[@]}"; do
  IFS=$'\t' read -r dir imp t <<<"$entry"
  log=$LOGDIR/${dir//\//_}.$t.log
  before=$LOGDIR/${dir//\//_}.$t.before
  ls -1 "$CACHE/$imp/$t" 2>/dev/null >"$before" || :
  echo
  echo "=== fuzz: ./$dir $t"
  t0=$(date +%s.%N)
  # In a session of its own, so that the time limit can interrupt go test and its test binary
  # together: on SIGINT the fuzzing engine stops, reports and passes.
  setsid go test "./$dir" -run '^$' -fuzz "^$t\$" -fuzztime "${FUZZ_EXECS}x" -parallel "$FUZZ_PARALLEL" \
    -fuzzminimizetime "$FUZZ_MINIMIZE" -timeout 0 >"$log" 2>&1 &
  pid=$!
  tail -n +1 -f --pid="$pid" "$log" &
  tailpid=$!
  capped=0
  while kill -0 "$pid" 2>/dev/null; do
    # Go prints "fuzz: elapsed: ..." every 3 s once the build is done.
    el=$(grep -oE '^fuzz: elapsed: [0-9hms]+' "$log" | tail -n 1 | cut -d' ' -f3)
    if [[ $capped == 0 && -n $el ]] && (($(seconds "$el") >= MAXSECS)); then
      capped=1
      kill -INT -- -"$pid" 2>/dev/null || kill -INT "$pid" 2>/dev/null
    fi
    sleep 1
  done
  wait "$pid"
  rc=$?
  pid=
  wait "$tailpid" 2>/dev/null
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", b - a}')
  # The last status line: "fuzz: elapsed: 1m3s, execs: 1000000 (15873/sec), new interesting: 4 (total: 40)".
  last=$(grep -E '^fuzz: elapsed: .*execs: [0-9]+' "$log" | tail -n 1)
  execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
  execs=${execs:-0}
  # execs/s over the fuzzing engine's own elapsed time (the build is not counted).
  fsecs=$(seconds "$(sed -nE 's/^fuzz: elapsed: ([0-9hms]+),.*/\1/p' <<<"$last")")
  rate=$(awk -v e="$execs" -v s="$fsecs" 'BEGIN {printf "%.0f", (s > 0 ? e / s : 0)}')
  # Interrupted at the time limit, the engine still ends with PASS (go test may exit non-zero).
  if [[ $rc != 0 && $capped == 1 ]] && ! grep -q -- '--- FAIL' "$log" && grep -q '^PASS$' "$log"; then rc=0; fi
  added=$(keep_corpus "$dir" "$imp" "$t" "$before")
  crash=0
  if [[ $rc != 0 ]]; then
    input=$(sed -nE 's/.*Failing input written to (testdata\/fuzz\/[^ ]+).*/\1/p' "$log" | tail -n 1)
    if [[ -n $input ]]; then
      crash=1
      CRASHES=$((CRASHES + 1))
      echo
      echo "=== fuzz: CRASH in ./$dir $t"
      echo "    failing input: $dir/$input"
      echo "    reproduce:     go test ./$dir -run '^$t\$/^${input##*/}\$'"
    else
      FAILED=$((FAILED + 1))
      echo
      echo "=== fuzz: ./$dir $t FAILED (exit $rc) without a failing input: see $log"
    fi
  fi
  goal=no
  ((execs >= FUZZ_EXECS)) && goal=yes
  ROWS+=("$(printf '%-40s %8ss %10s %8s %5s %6s %7s' "$dir.$t" "$fsecs" "$execs" "$rate" "$goal" "$added" \
    "$([[ $rc == 0 || $crash == 1 ]] && echo "$crash" || echo error)")")
done

echo
echo "=== make fuzz: each target until $FUZZ_EXECS execs or $FUZZTIME of fuzzing, -parallel $FUZZ_PARALLEL, -fuzzminimizetime $FUZZ_MINIMIZE, $(nproc) cores, $(go env GOVERSION)"
# time: fuzzing (Go's elapsed, the build not counted); goal: reached FUZZ_EXECS; new: inputs Go
# found interesting in this run (before the FUZZ_KEEP cap).
printf '%-40s %9s %10s %8s %5s %6s %7s\n' target time execs execs/s goal new crashes
for r in "${ROWS[@]}"; do echo "$r"; done
echo "crashes: $CRASHES, other failures: $FAILED (corpus kept in <package>/testdata/fuzz/<Target>/corpus-*)"
[[ $CRASHES == 0 && $FAILED == 0 ]]
