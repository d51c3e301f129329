#!/usr/bin/env bash
# stack-selftest.sh: proves, on a throwaway stack of its own (own dir, first free slot, so a
# running shared stack is never touched), that
#   1. `stack.sh up` on a running stack is a no-op: every part reports "already running" and keeps
#      its pid;
#   2. a pod gets its process and its IP on lo, and `stack.sh status` is healthy;
#   3. `stack.sh kill|start PART` brings each part back as a new process (PostgreSQL keeping an
#      acknowledged commit);
#   4. `stack.sh down` leaves no process of the stack, no listening port of it, and no added address.
# Prints "stack-selftest: N passed, N failed" and exits non-zero on any failure.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STACK=$HERE/stack.sh
DIR=$(mktemp -d /tmp/skewguard-selftest.XXXXXX)
chmod 755 "$DIR" # PostgreSQL runs as user postgres and must reach its data dir
export SKEWGUARD_STACK_DIR=$DIR SKEWGUARD_STACK_SLOT=auto
# shellcheck source=lib/check.sh
source "$HERE/lib/check.sh"

cleanup() {
  local rc=$?
  "$STACK" down >/dev/null 2>&1 || true
  if [[ $FAILED == 0 && $rc == 0 ]]; then rm -rf "$DIR"; else echo "stack-selftest: logs kept in $DIR/logs"; fi
  echo "stack-selftest: $PASSED passed, $FAILED failed"
  [[ -z ${SKEWGUARD_TEST_COUNTS:-} ]] || echo "stack-selftest $PASSED $FAILED 0" >>"$SKEWGUARD_TEST_COUNTS"
  [[ $FAILED == 0 ]] || exit 1
}
trap cleanup EXIT

pids() { # every pid file of the stack, plus PostgreSQL's postmaster
  cat "$DIR"/run/*.pid 2>/dev/null | sort
  head -1 "$DIR/pg/data/postmaster.pid" 2>/dev/null || true
}

t=$SECONDS
# The first up may build the tools (make test on a fresh machine): its build progress lines are
# shown as they come (hack/lib/progress.sh), the rest stays in up1.log.
"$STACK" up 2>&1 | tee "$DIR/up1.log" | { grep --line-buffered '^\[build [0-9:]*\] ' || true; } ||
  { tail -40 "$DIR/up1.log"; exit 1; }
echo "first up: $((SECONDS - t))s"
# shellcheck disable=SC1091
source "$DIR/config.env"
# shellcheck disable=SC1091
set -a && source "$DIR/stack.env" && set +a
K=$SKEWGUARD_TEST_KUBECTL
before=$(pids)

# A pod, so that its process and its address exist when the stack goes down.
"$K" apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Namespace
metadata: {name: selftest}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: selftest}
spec:
  replicas: 1
  selector: {matchLabels: {app.kubernetes.io/name: echo}}
  template:
    metadata: {labels: {app.kubernetes.io/name: echo, plt.dev/version: selftest}}
    spec:
      containers: [{name: app, image: skewguard/echo:1, ports: [{containerPort: 8080}]}]
EOF
check "pod becomes Ready" "$K" -n selftest rollout status deployment/echo --timeout=60s >/dev/null
POD_IP=$("$K" -n selftest get pods -l app.kubernetes.io/name=echo -o jsonpath='{.items[0].status.podIP}')
check "pod IP $POD_IP is on lo" grep -q " $POD_IP/" <(ip -o -4 addr show dev lo)
check "pod process answers with its version" grep -q '"version":"selftest"' <(curl -s -m 5 "http://$POD_IP:8080/")

t=$SECONDS
"$STACK" up >"$DIR/up2.log" 2>&1 || { tail -40 "$DIR/up2.log"; exit 1; }
echo "second up: $((SECONDS - t))s"
check "second up started nothing (same pids)" test "$before" == "$(pids)"
n_already=$(grep -c 'already' "$DIR/up2.log" || true)
check "second up says 'already' for all 10 processes and the CRDs ($n_already)" test "$n_already" -ge 11
check "second up rebuilt no tool" bash -c "! grep -q 'building ' '$DIR/up2.log'"
check "status is healthy" "$STACK" status

# 4. kill|start (the chaos run's faults): each part comes back healthy as a new process. PostgreSQL
#    acknowledges a commit only once its WAL reached the kernel (synchronous_commit on), so SIGKILL
#    loses no acknowledged commit (with it off, the chaos run saw an expiry lost). A commit-then-kill
#    check cannot show this reliably (the WAL writer usually wins the race), so the setting is read.
PSQL=$(ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | head -1)
PSQL=${PSQL:-psql}
check "PostgreSQL loses no acknowledged commit on SIGKILL (synchronous_commit on)" \
  test "$("$PSQL" -Atq "$SKEWGUARD_TEST_PG_URL" -c "SHOW synchronous_commit" 2>/dev/null)" == on
for part in postgresql temporal traefik kube-apiserver; do
  if [[ $part == postgresql ]]; then old_pid=$(head -1 "$DIR/pg/data/postmaster.pid"); else old_pid=$(cut -d' ' -f1 "$DIR/run/$part.pid"); fi
  rc=0
  { "$STACK" kill "$part" >"$DIR/kill-$part.log" 2>&1 && "$STACK" start "$part" >"$DIR/start-$part.log" 2>&1; } || rc=$?
  if [[ $part == postgresql ]]; then new_pid=$(head -1 "$DIR/pg/data/postmaster.pid"); else new_pid=$(cut -d' ' -f1 "$DIR/run/$part.pid"); fi
  check "kill then start $part: healthy again, a new process ($old_pid -> $new_pid)" test "$rc" == 0 -a "$old_pid" != "$new_pid"
done
check "status is healthy after the kills" "$STACK" status

stack_pids=$(pids | awk '{print $1}')
"$STACK" down >"$DIR/down.log" 2>&1 || { cat "$DIR/down.log"; exit 1; }
alive=()
zombie() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; s=${s##*) }; [[ ${s%% *} == Z ]]; }
# A zombie is dead (killed, not yet reaped by PID 1, which here reaps late).
for p in $stack_pids; do kill -0 "$p" 2>/dev/null && ! zombie "$p" && alive+=("$p"); done
check "down: no recorded process alive (${alive[*]:-none})" test ${#alive[@]} == 0
left=$(pgrep -af -- "$DIR" || true)
check "down: no process runs from the stack dir (${left:-none})" test -z "$left"
check "down: pod IP $POD_IP removed from lo" bash -c "! ip -o -4 addr show dev lo | grep -q ' $POD_IP/'"
busy=()
for v in SKEWGUARD_PG_PORT SKEWGUARD_TEMPORAL_PORT SKEWGUARD_TEMPORAL_UI_PORT SKEWGUARD_ETCD_PORT SKEWGUARD_APISERVER_PORT \
  SKEWGUARD_KCM_PORT SKEWGUARD_SCHEDULER_PORT SKEWGUARD_KWOK_PORT SKEWGUARD_LAUNCHER_PORT SKEWGUARD_TRAEFIK_WEB_PORT \
  SKEWGUARD_TRAEFIK_ADMIN_PORT SKEWGUARD_PROMETHEUS_PORT; do
  [[ -n $(ss -Hltn "sport = :${!v}") ]] && busy+=("${!v}")
done
check "down: no port of the stack is listening (${busy[*]:-none})" test ${#busy[@]} == 0
