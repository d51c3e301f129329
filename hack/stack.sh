#!/usr/bin/env bash
# stack.sh up|down|status|env|clean: the real local stack every integration test and the demo run
# on: PostgreSQL, Temporal (with UI), etcd + kube-apiserver (RBAC) + controller-manager + scheduler
# + kwok, the Gateway API CRDs, the pod launcher, Traefik as the Gateway data plane, and Prometheus.
# All on 127.0.0.1 (plus pod IPs the launcher adds on lo). See hack/README.md.
#
#   up      build what is missing (cached in $SKEWGUARD_CACHE), start what is not running, wait
#           until every part is healthy, write $SKEWGUARD_STACK_DIR/stack.env. Idempotent.
#   down    stop every process this stack started and remove every address it added.
#   status  print each part, its URL and whether it is healthy; non-zero if any is not.
#   env     print the path of stack.env (after checking the stack is healthy).
#   clean   down, then delete the stack dir (data, PKI, logs).
#   tools   only install and build the tools into $SKEWGUARD_CACHE (nothing is started).
#   plan    one line: is the tool cache warm or cold, what `up` would build and how long it takes.
#   kill PART   SIGKILL one part of a running stack (for fault injection: make chaos), no cleanup.
#   start PART  start one part again with its own start command and wait until it is healthy.
#           PART: postgresql, temporal, prometheus, kube-apiserver, traefik.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$HERE/lib/common.sh"
# shellcheck source=lib/progress.sh
source "$HERE/lib/progress.sh"
# shellcheck source=lib/tools.sh
source "$HERE/lib/tools.sh"
# shellcheck source=lib/pki.sh
source "$HERE/lib/pki.sh"
# shellcheck source=lib/parts.sh
source "$HERE/lib/parts.sh"

STACK_ENV() { echo "$SKEWGUARD_STACK_DIR/stack.env"; }

cmd_up() {
  local t0 t
  t0=$(now_ms)
  mkdir -p "$SKEWGUARD_STACK_DIR"
  SKEWGUARD_STACK_DIR=$(cd "$SKEWGUARD_STACK_DIR" && pwd)
  resolve_config
  mkdir -p "$(RUN_DIR)" "$(LOG_DIR)"
  chmod 755 "$SKEWGUARD_STACK_DIR"
  ensure_tools
  if [[ -x $HERE/setup-helm.sh ]]; then
    STACK_HELM=$(run_setup "$HERE/setup-helm.sh" "$HELM_FIGURE") || die "hack/setup-helm.sh failed"
  fi
  build_stack_programs
  write_config
  ensure_pki
  write_kubeconfigs

  t=$(now_ms)
  up_postgres
  up_temporal
  up_prometheus
  up_etcd
  wait_until etcd 30 etcd_healthy
  up_apiserver
  wait_until kube-apiserver 90 apiserver_healthy
  log "etcd + kube-apiserver healthy after $(since "$t")"
  cluster_bootstrap
  up_kcm
  up_scheduler
  up_kwok
  up_gateway_crds
  up_launcher
  up_traefik
  wait_until kube-controller-manager 60 kcm_healthy
  wait_until kube-scheduler 60 scheduler_healthy
  wait_until kwok 60 kwok_healthy
  wait_until kwok 60 nodes_ready
  wait_until kube-controller-manager 60 kubectl_admin get serviceaccount default -n default
  log "cluster ready after $(since "$t") (nodes Ready, default ServiceAccount present)"
  wait_until launcher 30 launcher_healthy
  wait_until traefik 30 traefik_healthy
  up_gateway
  wait_until traefik 60 gateway_healthy
  wait_until postgresql 60 pg_healthy
  wait_until prometheus 60 prometheus_healthy
  wait_until temporal 120 temporal_healthy
  ensure_search_attributes
  if [[ $SKEWGUARD_WITH_WATT == 1 ]]; then
    run_setup "$HERE/setup-watt.sh" "$WATT_FIGURE" || die "hack/setup-watt.sh failed"
  fi
  write_stack_env
  log "stack up in $(since "$t0"); settings in $(STACK_ENV)"
  cmd_status
}

write_stack_env() {
  local f
  f=$(STACK_ENV)
  cat >"$f.tmp" <<EOF
# Written by hack/stack.sh up; source it (set -a) to reach this stack. Names are in internal/testenv.
SKEWGUARD_STACK_DIR=$SKEWGUARD_STACK_DIR
SKEWGUARD_STACK_SLOT=$STACK_SLOT
SKEWGUARD_TEST_PG_URL=postgres://postgres@127.0.0.1:$SKEWGUARD_PG_PORT/postgres?sslmode=disable
KUBECONFIG=$SKEWGUARD_STACK_DIR/kubeconfig
SKEWGUARD_TEST_KUBECTL=$(KUBECTL)
SKEWGUARD_TEST_APISERVER_URL=https://127.0.0.1:$SKEWGUARD_APISERVER_PORT
TEMPORAL_ADDRESS=127.0.0.1:$SKEWGUARD_TEMPORAL_PORT
TEMPORAL_NAMESPACE=default
SKEWGUARD_TEST_TEMPORAL_CLI=$(TEMPORAL_BIN)
SKEWGUARD_TEST_TEMPORAL_UI=http://127.0.0.1:$SKEWGUARD_TEMPORAL_UI_PORT
PROMETHEUS_URL=http://127.0.0.1:$SKEWGUARD_PROMETHEUS_PORT
SKEWGUARD_TEST_METRICS_ADDR=$SKEWGUARD_TEST_METRICS_ADDR
SKEWGUARD_TEST_GATEWAY_URL=http://127.0.0.1:$SKEWGUARD_TRAEFIK_WEB_PORT
SKEWGUARD_TEST_TRAEFIK_API=http://127.0.0.1:$SKEWGUARD_TRAEFIK_ADMIN_PORT
SKEWGUARD_TEST_GATEWAY_REF=$GATEWAY_NAMESPACE/$GATEWAY_NAME:$GATEWAY_SECTION
SKEWGUARD_TEST_POD_CIDR=$SKEWGUARD_POD_CIDR
SKEWGUARD_TEST_LAUNCHER_URL=http://127.0.0.1:$SKEWGUARD_LAUNCHER_PORT
SKEWGUARD_TEST_LAUNCHER_CONFIG=$SKEWGUARD_STACK_DIR/launcher.json
EOF
  [[ -n ${STACK_HELM:-} ]] && echo "SKEWGUARD_TEST_HELM=$STACK_HELM" >>"$f.tmp"
  mv "$f.tmp" "$f"
}

cmd_down() {
  [[ -d $SKEWGUARD_STACK_DIR ]] || { log "nothing to stop: no $SKEWGUARD_STACK_DIR"; return 0; }
  SKEWGUARD_STACK_DIR=$(cd "$SKEWGUARD_STACK_DIR" && pwd)
  resolve_config
  local t0
  t0=$(now_ms)
  # Clients first (they would log errors against a vanishing API server), then the API server, then etcd.
  stop_proc traefik 15 &
  down_launcher &
  stop_proc kwok 15 &
  stop_proc kube-scheduler 15 &
  stop_proc kube-controller-manager 15 &
  stop_proc prometheus 15 &
  stop_proc temporal 30 &
  down_postgres &
  wait
  stop_proc kube-apiserver 30
  stop_proc etcd 15
  rm -f "$(STACK_ENV)" "$SKEWGUARD_STACK_DIR/config.env"
  log "stack down in $(since "$t0")"
}

cmd_clean() {
  cmd_down
  [[ -d $SKEWGUARD_STACK_DIR ]] && rm -rf "$SKEWGUARD_STACK_DIR" && log "removed $SKEWGUARD_STACK_DIR"
  return 0
}

# status_line PART URL CHECK...: one line per part; remembers any failure in STATUS_FAILED.
STATUS_FAILED=0
status_line() {
  local part=$1 url=$2 state=healthy; shift 2
  if ! "$@" >/dev/null 2>&1; then
    state=UNHEALTHY
    STATUS_FAILED=1
  fi
  printf '  %-24s %-10s %s\n' "$part" "$state" "$url"
}

cmd_status() {
  if [[ ! -f $SKEWGUARD_STACK_DIR/config.env ]]; then
    echo "stack in $SKEWGUARD_STACK_DIR: not up (run 'make stack-up')"
    return 1
  fi
  SKEWGUARD_STACK_DIR=$(cd "$SKEWGUARD_STACK_DIR" && pwd)
  resolve_config
  STATUS_FAILED=0
  echo "stack in $SKEWGUARD_STACK_DIR (slot $STACK_SLOT):"
  status_line postgresql "postgres://postgres@127.0.0.1:$SKEWGUARD_PG_PORT/postgres" pg_healthy
  status_line temporal "127.0.0.1:$SKEWGUARD_TEMPORAL_PORT (gRPC)" temporal_healthy
  status_line temporal-ui "http://127.0.0.1:$SKEWGUARD_TEMPORAL_UI_PORT" http_ok "http://127.0.0.1:$SKEWGUARD_TEMPORAL_UI_PORT/"
  status_line etcd "http://127.0.0.1:$SKEWGUARD_ETCD_PORT" etcd_healthy
  status_line kube-apiserver "https://127.0.0.1:$SKEWGUARD_APISERVER_PORT (KUBECONFIG=$SKEWGUARD_STACK_DIR/kubeconfig)" apiserver_healthy
  status_line kube-controller-manager "https://127.0.0.1:$SKEWGUARD_KCM_PORT/healthz" kcm_healthy
  status_line kube-scheduler "https://127.0.0.1:$SKEWGUARD_SCHEDULER_PORT/healthz" scheduler_healthy
  status_line kwok "http://127.0.0.1:$SKEWGUARD_KWOK_PORT/healthz ($SKEWGUARD_KWOK_NODES nodes, pods in $SKEWGUARD_POD_CIDR)" kwok_healthy
  status_line gateway-api-crds "v$GATEWAY_API_VERSION standard" gateway_crds_healthy
  status_line launcher "http://127.0.0.1:$SKEWGUARD_LAUNCHER_PORT/healthz" launcher_healthy
  status_line traefik "http://127.0.0.1:$SKEWGUARD_TRAEFIK_WEB_PORT (web), http://127.0.0.1:$SKEWGUARD_TRAEFIK_ADMIN_PORT (api, /metrics)" traefik_healthy
  status_line gateway "$GATEWAY_NAMESPACE/$GATEWAY_NAME:$GATEWAY_SECTION (GatewayClass traefik)" gateway_healthy
  status_line prometheus "http://127.0.0.1:$SKEWGUARD_PROMETHEUS_PORT" prometheus_healthy
  [[ -f $(STACK_ENV) ]] && echo "settings: $(STACK_ENV)"
  return "$STATUS_FAILED"
}

# PARTS: the parts `kill` and `start` handle, each with its start and health commands.
declare -A PART_UP=([postgresql]=up_postgres [temporal]=up_temporal [prometheus]=up_prometheus
  [kube-apiserver]=up_apiserver [traefik]=up_traefik)
declare -A PART_HEALTHY=([postgresql]=pg_healthy [temporal]=temporal_healthy [prometheus]=prometheus_healthy
  [kube-apiserver]=apiserver_healthy [traefik]=traefik_healthy)

part_arg() {
  [[ -n ${PART_UP[${1:-}]:-} ]] || die "unknown part '${1:-}': one of ${!PART_UP[*]}"
  [[ -f $SKEWGUARD_STACK_DIR/config.env ]] || die "stack in $SKEWGUARD_STACK_DIR is not up"
  SKEWGUARD_STACK_DIR=$(cd "$SKEWGUARD_STACK_DIR" && pwd)
  resolve_config
}

# cmd_kill PART: SIGKILL the part's process group (PostgreSQL: its postmaster), as a crash would.
cmd_kill() {
  part_arg "$1"
  local pid procs
  if [[ $1 == postgresql ]]; then
    pid=$(head -1 "$(PG_DIR)/data/postmaster.pid" 2>/dev/null) || die "postgresql is not running"
    # The postmaster and its children at once, as a lost node would: a backend that outlived its
    # postmaster keeps the shared memory attached and the next start refuses to run.
    procs="$pid $(pgrep -P "$pid" | tr '\n' ' ')"
    # shellcheck disable=SC2086
    kill -KILL $procs || die "kill postgresql (pid $pid) failed"
  else
    pid=$(pid_of "$1") || die "$1 is not running"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" || die "kill $1 (pid $pid) failed"
  fi
  # SIGKILL is delivered at once but a big process takes a moment to go: wait until it has (or is
  # a zombie), so that a start right after finds the part stopped rather than "already running".
  # The same test as start's "already running" (pid_of), twice in a row: a process being torn
  # down was once seen gone from /proc for a moment and then running again.
  local i p gone
  for p in ${procs:-$pid}; do
    gone=0
    for ((i = 0; i < 300 && gone < 2; i++)); do
      if [[ $(proc_state "$p" 2>/dev/null) == "" || $(proc_state "$p" 2>/dev/null) == Z ]]; then
        gone=$((gone + 1))
      else
        gone=0
      fi
      sleep 0.1
    done
  done
  log "killed $1 (pid $pid)"
}

# cmd_start PART: the part's own start command (a no-op if it runs), then wait until healthy.
cmd_start() {
  part_arg "$1"
  "${PART_UP[$1]}"
  wait_until "$1" 90 "${PART_HEALTHY[$1]}"
  log "$1 healthy"
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
env)
  cmd_status >/dev/null || die "stack in $SKEWGUARD_STACK_DIR is not healthy: run 'make stack-up'"
  STACK_ENV
  ;;
clean) cmd_clean ;;
tools) ensure_tools ;;
plan) tools_plan ;;
kill) cmd_kill "${2:-}" ;;
start) cmd_start "${2:-}" ;;
*)
  sed -n '2,17p' "$0" >&2
  exit 2
  ;;
esac
