# shellcheck shell=bash
# common.sh: configuration, logging and process bookkeeping shared by hack/stack.sh and its parts.
# Sourced, never run. Every setting is an environment variable with a default; see hack/README.md.

REPO_DIR=${REPO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
HACK_DIR=$REPO_DIR/hack
export PATH=/usr/local/go/bin:$PATH
# CI may run without HOME; go and the cache path need one.
export HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}

SKEWGUARD_CACHE=${SKEWGUARD_CACHE:-$HOME/.cache/skewguard}
SKEWGUARD_STACK_DIR=${SKEWGUARD_STACK_DIR:-$REPO_DIR/.stack}

# Pinned versions of every part built from source.
TEMPORAL_CLI_VERSION=1.5.1
ETCD_VERSION=3.7.3
K8S_VERSION=1.37.2
KWOK_VERSION=0.8.0
TRAEFIK_VERSION=3.7.13
GATEWAY_API_VERSION=1.6.3 # the version go.mod requires; the CRDs come from the module cache
PG_MAJOR=15

log() { printf '[stack %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# now_ms and since_ms time phases without external tools.
now_ms() { local t=${EPOCHREALTIME/./}; echo "${t:0:-3}"; }
since() { # since START_MS -> "1.23s"
  local d=$(( $(now_ms) - $1 ))
  printf '%d.%02ds' $((d / 1000)) $(((d % 1000) / 10))
}

# --- ports -------------------------------------------------------------------------------------
# A slot shifts every default port by slot*100 and picks another pod CIDR, so that two stacks
# (say, the shared one in the main checkout and a CI clone) can run side by side. Slots 0..3 keep
# every port family apart. SKEWGUARD_STACK_SLOT=auto takes the first slot whose ports are free.
PORT_VARS=(
  SKEWGUARD_PG_PORT
  SKEWGUARD_TEMPORAL_PORT SKEWGUARD_TEMPORAL_HTTP_PORT SKEWGUARD_TEMPORAL_METRICS_PORT SKEWGUARD_TEMPORAL_UI_PORT
  SKEWGUARD_ETCD_PORT SKEWGUARD_ETCD_PEER_PORT
  SKEWGUARD_APISERVER_PORT SKEWGUARD_KCM_PORT SKEWGUARD_SCHEDULER_PORT SKEWGUARD_KWOK_PORT SKEWGUARD_LAUNCHER_PORT
  SKEWGUARD_TRAEFIK_WEB_PORT SKEWGUARD_TRAEFIK_ADMIN_PORT
  SKEWGUARD_PROMETHEUS_PORT
)
declare -A PORT_DEFAULTS=(
  [SKEWGUARD_PG_PORT]=15432
  [SKEWGUARD_TEMPORAL_PORT]=17233
  [SKEWGUARD_TEMPORAL_HTTP_PORT]=17243
  [SKEWGUARD_TEMPORAL_METRICS_PORT]=17235
  [SKEWGUARD_TEMPORAL_UI_PORT]=18233
  [SKEWGUARD_ETCD_PORT]=12379
  [SKEWGUARD_ETCD_PEER_PORT]=12380
  [SKEWGUARD_APISERVER_PORT]=16443
  [SKEWGUARD_KCM_PORT]=16444
  [SKEWGUARD_SCHEDULER_PORT]=16445
  [SKEWGUARD_KWOK_PORT]=16446
  [SKEWGUARD_LAUNCHER_PORT]=16447
  [SKEWGUARD_TRAEFIK_WEB_PORT]=18080
  [SKEWGUARD_TRAEFIK_ADMIN_PORT]=18081
  [SKEWGUARD_PROMETHEUS_PORT]=19090
)
METRICS_PORT_DEFAULT=18480 # skewguard's own /metrics, scraped by Prometheus (not started by the stack)

# resolve_config fixes every port and address of this stack. A stack that was brought up keeps
# what it was started with (config.env in the stack dir) until it is brought down.
resolve_config() {
  local cfg=$SKEWGUARD_STACK_DIR/config.env
  if [[ -f $cfg ]]; then
    # shellcheck disable=SC1090
    source "$cfg"
    return
  fi
  local slot=${SKEWGUARD_STACK_SLOT:-0}
  if [[ $slot == auto ]]; then
    slot=$(pick_free_slot) || die "no free slot: every slot 0..3 has a port in use; stop another stack or set the SKEWGUARD_*_PORT variables"
    log "SKEWGUARD_STACK_SLOT=auto picked slot $slot"
  fi
  [[ $slot =~ ^[0-3]$ ]] || die "SKEWGUARD_STACK_SLOT must be 0..3 or auto, not '$slot'"
  set_slot_defaults "$slot"
}

# set_slot_defaults SLOT: every variable not set by the caller gets its slot default.
set_slot_defaults() {
  local slot=$1 v
  STACK_SLOT=$slot
  for v in "${PORT_VARS[@]}"; do
    [[ -n ${!v:-} ]] || printf -v "$v" '%s' $((PORT_DEFAULTS[$v] + slot * 100))
  done
  if [[ $slot == 0 ]]; then
    SKEWGUARD_POD_CIDR=${SKEWGUARD_POD_CIDR:-198.19.0.0/16}
  else
    SKEWGUARD_POD_CIDR=${SKEWGUARD_POD_CIDR:-198.18.$((slot * 64)).0/18}
  fi
  SKEWGUARD_TEST_METRICS_ADDR=${SKEWGUARD_TEST_METRICS_ADDR:-127.0.0.1:$((METRICS_PORT_DEFAULT + slot * 100))}
  SKEWGUARD_KWOK_NODES=${SKEWGUARD_KWOK_NODES:-2}
  # Pods reach the skewguard the demo runs at the address Prometheus scrapes, unless told otherwise.
  SKEWGUARD_LAUNCHER_ICC_URL=${SKEWGUARD_LAUNCHER_ICC_URL:-http://$SKEWGUARD_TEST_METRICS_ADDR}
  SKEWGUARD_WITH_WATT=${SKEWGUARD_WITH_WATT:-0}
}

pick_free_slot() {
  local slot v busy
  for slot in 0 1 2 3; do
    busy=0
    for v in "${PORT_VARS[@]}"; do
      if port_in_use $((PORT_DEFAULTS[$v] + slot * 100)); then busy=1; break; fi
    done
    [[ $busy == 0 ]] && { echo "$slot"; return 0; }
  done
  return 1
}

write_config() {
  local v
  {
    echo "# Resolved configuration of this stack; removed by 'stack.sh down'."
    echo "STACK_SLOT=$STACK_SLOT"
    for v in "${PORT_VARS[@]}" SKEWGUARD_POD_CIDR SKEWGUARD_TEST_METRICS_ADDR SKEWGUARD_KWOK_NODES \
      SKEWGUARD_LAUNCHER_ICC_URL SKEWGUARD_WITH_WATT; do
      printf '%s=%q\n' "$v" "${!v}"
    done
  } >"$SKEWGUARD_STACK_DIR/config.env"
}

# port_in_use PORT: anything listening on it, on any local address.
port_in_use() {
  if command -v ss >/dev/null; then
    [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

port_owner() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(.*)' | head -1; }

# require_free_port VAR: a clear error when the port in VAR is held by someone else.
require_free_port() {
  local var=$1 port=${!1}
  if port_in_use "$port"; then
    die "port $port ($var) is already in use by $(port_owner "$port" || echo 'another process'), which is not part of this stack ($SKEWGUARD_STACK_DIR). Stop it, or pick other ports with $var=<port> or SKEWGUARD_STACK_SLOT=1..3|auto."
  fi
}

# --- processes ---------------------------------------------------------------------------------
# A pid file holds "PID STARTTIME" so that a recycled pid is never mistaken for our process.
RUN_DIR() { echo "$SKEWGUARD_STACK_DIR/run"; }
LOG_DIR() { echo "$SKEWGUARD_STACK_DIR/logs"; }

proc_starttime() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; s=${s##*) }; cut -d' ' -f20 <<<"$s"; }
# proc_state PID: its state letter (R, S, D, Z...); fails when there is no such process.
proc_state() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; s=${s##*) }; echo "${s%% *}"; }

# pid_of NAME: the pid of our live process NAME, or nothing (status 1).
pid_of() {
  local f pid st
  f=$(RUN_DIR)/$1.pid
  [[ -f $f ]] || return 1
  read -r pid st <"$f" || return 1
  [[ -n $pid && $(proc_starttime "$pid") == "$st" ]] || return 1
  [[ $(proc_state "$pid") != Z ]] || return 1 # killed, not yet reaped
  echo "$pid"
}
running() { pid_of "$1" >/dev/null; }

record_pid() { echo "$2 $(proc_starttime "$2")" >"$(RUN_DIR)/$1.pid"; }

# spawn NAME CMD...: start CMD detached in its own session (it outlives make and this shell),
# logging to logs/NAME.log.
spawn() {
  local name=$1; shift
  mkdir -p "$(RUN_DIR)" "$(LOG_DIR)"
  setsid "$@" >>"$(LOG_DIR)/$name.log" 2>&1 </dev/null &
  local pid=$!
  record_pid "$name" "$pid"
}

# stop_proc NAME [TIMEOUT_S]: SIGTERM to its process group, SIGKILL after the timeout.
stop_proc() {
  local name=$1 timeout=${2:-30} pid i
  pid=$(pid_of "$name") || { rm -f "$(RUN_DIR)/$name.pid"; return 0; }
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    running "$name" || break
    sleep 0.1
  done
  if running "$name"; then
    log "$name (pid $pid) did not stop in ${timeout}s: SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$(RUN_DIR)/$name.pid"
  log "stopped $name"
}

# wait_until NAME TIMEOUT_S CMD...: poll CMD every 0.1s; fail with NAME's log tail.
wait_until() {
  local name=$1 timeout=$2 i; shift 2
  for ((i = 0; i < timeout * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    if [[ -f $(RUN_DIR)/$name.pid ]] && ! running "$name"; then
      part_failed "$name" "exited during start-up"
    fi
    sleep 0.1
  done
  part_failed "$name" "not healthy after ${timeout}s"
}

part_failed() {
  log "FAILED: $1 $2; last lines of $(LOG_DIR)/$1.log:"
  tail -n 30 "$(LOG_DIR)/$1.log" >&2 2>/dev/null || true
  exit 1
}

http_ok() { curl -fsS -o /dev/null -m 2 "$@"; }
