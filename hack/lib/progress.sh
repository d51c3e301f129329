# shellcheck shell=bash
# progress.sh: what a long build says while it runs, and how long it took last time.
#
# Every line starts with "[build HH:MM:SS]" and goes to stderr: plain lines for terminals and CI
# logs alike, no carriage returns. hack/demo.sh and hack/stack-selftest.sh keep the stack's detailed
# log in a file and show only these lines (grep '^\[build '), so a cold first run is never silent.
#
# Each successful build's duration is kept in $SKEWGUARD_CACHE/durations, one "KEY SECONDS" line per
# key (the tool's cache dir name, e.g. "kubernetes-1.37.2 835"): the next build of that key expects
# it. A key never built here expects the figure its caller passes (the typical first build).
# Sourced after common.sh (now_ms, SKEWGUARD_CACHE). SKEWGUARD_PROGRESS_EVERY (seconds, default 30)
# is the heartbeat interval.

progress_log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# human_s SECONDS: "41s", "13m55s", "1h02m".
human_s() {
  local s=$1
  if ((s >= 3600)); then
    printf '%dh%02dm' $((s / 3600)) $((s % 3600 / 60))
  elif ((s >= 60)); then
    printf '%dm%02ds' $((s / 60)) $((s % 60))
  else
    printf '%ds' "$s"
  fi
}

# about SECONDS: a rough figure, "40s" or "27 min".
about() { if (($1 < 60)); then printf '%ds' "$1"; else printf '%d min' $((($1 + 30) / 60)); fi; }

DURATIONS() { echo "$SKEWGUARD_CACHE/durations"; }

# progress_last KEY: the seconds the last successful build of KEY took; status 1 when none is known.
progress_last() {
  local k s
  [[ -f $(DURATIONS) ]] || return 1
  while read -r k s; do
    [[ $k == "$1" && $s =~ ^[0-9]+$ ]] && { echo "$s"; return 0; }
  done <"$(DURATIONS)"
  return 1
}

# progress_record KEY SECONDS: KEY's line in the durations file becomes "KEY SECONDS" (the file is
# replaced by rename, so a reader never sees half of it).
progress_record() {
  local f
  f=$(DURATIONS)
  mkdir -p "$SKEWGUARD_CACHE"
  { awk -v k="$1" '$1 != k' "$f" 2>/dev/null || true; echo "$1 $2"; } >"$f.tmp.$$" && mv "$f.tmp.$$" "$f"
}

# progress_expect KEY FIGURE: sets EXPECT_S (seconds) and EXPECT_FROM ("last build" when KEY's last
# build is recorded, else "typical first build" with FIGURE).
progress_expect() {
  if EXPECT_S=$(progress_last "$1"); then
    EXPECT_FROM="last build"
  else
    EXPECT_S=$2
    EXPECT_FROM="typical first build"
  fi
}

# progress_run NAME EXPECTED_S CMD...: run CMD, saying when NAME starts (with the time it is expected
# to take), every SKEWGUARD_PROGRESS_EVERY seconds while it runs (elapsed, expected), and when it
# ends (elapsed, or FAILED). Returns CMD's status; PROGRESS_ELAPSED holds its whole seconds.
# EXPECT_FROM, when set, names where EXPECTED_S comes from.
progress_run() {
  local name=$1 expected=$2 t0 ticker rc=0 every=${SKEWGUARD_PROGRESS_EVERY:-30}
  shift 2
  t0=$(now_ms)
  progress_log "$name: started, expected to take about $(human_s "$expected")${EXPECT_FROM:+ ($EXPECT_FROM)}"
  # The heartbeat: a subshell that holds neither the build lock (tools.sh, fd 9) nor, while it
  # sleeps, the output (a pipe the caller may be reading to its end). It ends by SIGKILL: a subshell
  # killed by SIGTERM before it has reset its traps would run the caller's EXIT trap.
  (
    exec 9>&-
    while sleep "$every" >/dev/null 2>&1 </dev/null && kill -0 $$ 2>/dev/null; do
      progress_log "$name: running for $(human_s $((($(now_ms) - t0) / 1000))), expected about $(human_s "$expected")"
    done
  ) &
  ticker=$!
  "$@" || rc=$?
  kill -KILL "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  PROGRESS_ELAPSED=$((($(now_ms) - t0 + 500) / 1000))
  if [[ $rc == 0 ]]; then
    progress_log "$name: done in $(human_s "$PROGRESS_ELAPSED")"
  else
    progress_log "$name: FAILED after $(human_s "$PROGRESS_ELAPSED") (exit $rc)"
  fi
  return "$rc"
}

# progress_build KEY NAME FIGURE CMD...: progress_run with KEY's expectation (progress_expect), and
# KEY's duration recorded when CMD succeeds.
progress_build() {
  local key=$1 name=$2 figure=$3 EXPECT_S EXPECT_FROM
  shift 3
  progress_expect "$key" "$figure"
  progress_run "$name" "$EXPECT_S" "$@" || return
  progress_record "$key" "$PROGRESS_ELAPSED"
}
