#!/usr/bin/env bash
# demo.sh: the whole story of skew protection on real parts, printed as it happens.
#
#   1. bring the local stack up (with Node + watt-extra for real Watt apps), build skewguard, start it
#      with short durations so the story fits in a few minutes;
#   2. kubectl apply myapp v1 (deploy/examples): its pods run a Watt app whose watt-extra registers
#      with skewguard; a new visitor gets v1 and the __plt_dpl cookie through Traefik;
#   3. kubectl apply myapp v2: the pinned visitor stays on v1, a new visitor gets v2, ?dpl= and
#      x-deployment-id pins work;
#   4. v1 drains, expires by itself once nobody uses it, and its Deployment is scaled to 0.
#
# Stop with `make demo-down` (skewguard and the stack).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="/usr/local/go/bin:$PATH"

T0=$(date +%s%N)
say() { printf '\n\033[1m[%7.1fs] %s\033[0m\n' "$(echo "($(date +%s%N) - $T0) / 1000000000" | bc -l)" "$*"; }
info() { printf '           %s\n' "$@"; }
die() { printf '\ndemo: %s\n' "$*" >&2; exit 1; }

say "Bringing the local stack up (a fresh machine first builds the tools: the line below says how long)"
# The stack's detailed log goes to a file; its build progress lines (hack/lib/progress.sh: the tool
# cache warm or cold, each build's start, a heartbeat, its end) are shown as they come.
rc=0
SKEWGUARD_WITH_WATT=1 hack/stack.sh up 2>&1 | tee "$ROOT/.stack-demo-up.log" |
  { grep --line-buffered '^\[build [0-9:]*\] ' || true; } | sed -u 's/^/           /' || rc=$?
[[ $rc == 0 ]] || { tail -40 "$ROOT/.stack-demo-up.log"; die "stack did not come up"; }
tail -n 20 "$ROOT/.stack-demo-up.log" | sed 's/^/           /'
rm -f "$ROOT/.stack-demo-up.log"
set -a; source .stack/stack.env; set +a
if ! grep -q "\"iccURL\": \"http://$SKEWGUARD_TEST_METRICS_ADDR\"" "$SKEWGUARD_STACK_DIR/launcher.json"; then
  say "Restarting the stack so that pods register with the demo's skewguard (http://$SKEWGUARD_TEST_METRICS_ADDR)"
  hack/stack.sh down >/dev/null
  SKEWGUARD_WITH_WATT=1 SKEWGUARD_LAUNCHER_ICC_URL="http://$SKEWGUARD_TEST_METRICS_ADDR" hack/stack.sh up >/dev/null
  set -a; source .stack/stack.env; set +a
fi
KUBECTL=$SKEWGUARD_TEST_KUBECTL
GW=$SKEWGUARD_TEST_GATEWAY_URL
SG_ADDR=$SKEWGUARD_TEST_METRICS_ADDR # Prometheus scrapes skewguard here, and pods register here
LOG_DIR="$SKEWGUARD_STACK_DIR/logs"; RUN_DIR="$SKEWGUARD_STACK_DIR/run"; mkdir -p "$LOG_DIR" "$RUN_DIR"
PIDFILE="$RUN_DIR/demo-skewguard.pid"

say "Building skewguard"
make -s build
info "$(bin/skewguard version)"

if [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  say "Stopping the skewguard of a previous demo run"
  kill "$(cat "$PIDFILE")"; while kill -0 "$(cat "$PIDFILE")" 2>/dev/null; do sleep 0.2; done
fi
say "Fresh registry database and namespace for the story"
psql -q "$SKEWGUARD_TEST_PG_URL" -c "DROP DATABASE IF EXISTS skewguard_demo" -c "CREATE DATABASE skewguard_demo" >/dev/null
export DATABASE_URL="${SKEWGUARD_TEST_PG_URL%/postgres*}/skewguard_demo?sslmode=disable"
bin/skewguard migrate | sed 's/^/           /'
# Lifecycles of a previous run belong to the registry just dropped: end them so this story starts clean.
if "$SKEWGUARD_TEST_TEMPORAL_CLI" workflow count --address "$TEMPORAL_ADDRESS" \
    --query 'SkewNamespace="myapp" AND ExecutionStatus="Running"' 2>/dev/null | grep -qv 'Total: 0'; then
  "$SKEWGUARD_TEST_TEMPORAL_CLI" workflow terminate --address "$TEMPORAL_ADDRESS" --yes \
    --query 'SkewNamespace="myapp" AND ExecutionStatus="Running"' --reason "demo restarted" >/dev/null
  for _ in $(seq 1 100); do
    "$SKEWGUARD_TEST_TEMPORAL_CLI" workflow count --address "$TEMPORAL_ADDRESS" \
      --query 'SkewNamespace="myapp" AND ExecutionStatus="Running"' 2>/dev/null | grep -q 'Total: 0' && break
    sleep 0.2
  done
fi
"$KUBECTL" delete namespace myapp --ignore-not-found --wait=true >/dev/null
"$KUBECTL" create namespace myapp >/dev/null
# An operator identity for the CLI: RBAC on the virtual resource versions.skewguard.dev decides who may act.
"$KUBECTL" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ServiceAccount
metadata: {name: demo-operator, namespace: myapp}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: skewguard-operator, namespace: myapp}
rules:
  - apiGroups: [skewguard.dev]
    resources: [versions]
    verbs: [get, list, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: demo-operator, namespace: myapp}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: skewguard-operator}
subjects: [{kind: ServiceAccount, name: demo-operator, namespace: myapp}]
YAML
export SKEWGUARD_URL="http://$SG_ADDR" SKEWGUARD_TOKEN; SKEWGUARD_TOKEN=$("$KUBECTL" -n myapp create token demo-operator --duration=2h)

# The operator's claims allowlist (README: Who may claim a hostname): namespace myapp may claim
# any host (myapp has no hostname label) at /myapp. Without it every version would be refused.
"$KUBECTL" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ConfigMap
metadata: {name: skewguard-demo-claims, namespace: skewguard-system}
data:
  claims.yaml: |
    allow:
      - namespace: myapp
        hosts: ["*"]
        paths: [/myapp]
YAML

say "Starting skewguard (API + worker) on $SG_ADDR with demo durations"
info "grace 10 s, traffic window 5 s, check every 1 s, max alive 5 min (production defaults: 30 min, 5 min, 1 min, 24 h)"
env PLT_FEATURE_SKEW_PROTECTION=true \
  PLT_SKEW_GATEWAY_PARENT_REFS="$SKEWGUARD_TEST_GATEWAY_REF" \
  PLT_SKEW_LISTEN_ADDRESS="$SG_ADDR" \
  PLT_SKEW_NAMESPACES=myapp \
  PLT_SKEW_CLAIMS_CONFIGMAP=skewguard-system/skewguard-demo-claims \
  PLT_SKEW_HTTP_GRACE_PERIOD_MS=10000 PLT_SKEW_TRAFFIC_WINDOW_MS=5000 \
  PLT_SKEW_CHECK_INTERVAL_MS=1000 PLT_SKEW_HTTP_MAX_ALIVE_MS=300000 \
  PLT_SKEW_TRAFFIC_PRESET=traefik PLT_SKEW_LOG_FORMAT=text \
  PLT_SKEW_TEMPORAL_UI_URL="$SKEWGUARD_TEST_TEMPORAL_UI" \
  nohup bin/skewguard serve >"$LOG_DIR/demo-skewguard.log" 2>&1 &
echo $! >"$PIDFILE"
for _ in $(seq 1 300); do
  curl -fsS "http://$SG_ADDR/readyz" >/dev/null 2>&1 && break
  kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { tail -20 "$LOG_DIR/demo-skewguard.log"; die "skewguard exited"; }
  sleep 0.2
done
curl -fsS "http://$SG_ADDR/readyz" >/dev/null || die "skewguard not ready; see $LOG_DIR/demo-skewguard.log"
info "ready; logs in $LOG_DIR/demo-skewguard.log"
info "versions panel: http://$SG_ADDR/ui/  (open it now to watch the story; sign in with the token below, kept for that tab only)" \
     "token (demo-operator, 2 h): $SKEWGUARD_TOKEN"

# visit [curl args...]: one request through Traefik to /myapp/version; prints "status version set-cookie".
visit() {
  local out status body cookie version
  out=$(curl -s -D - -o /tmp/skewguard-demo-body "$@" "$GW/myapp/version" || true)
  status=$(printf '%s' "$out" | head -1 | awk '{print $2}')
  cookie=$(printf '%s' "$out" | tr -d '\r' | grep -i '^set-cookie: __plt_dpl=' | head -1 | cut -d' ' -f2- || true)
  version=$(sed -n 's/.*"deploymentVersion":"\{0,1\}\([^",}]*\)"\{0,1\}.*/\1/p' /tmp/skewguard-demo-body 2>/dev/null)
  printf '%s %s %s\n' "${status:-000}" "${version:--}" "${cookie:--}"
}
wait_new_visitor() { # version timeout
  local deadline=$((SECONDS + $2)) r
  while ((SECONDS < deadline)); do
    r=$(visit); [[ $(echo "$r" | cut -d' ' -f1,2) == "200 $1" ]] && { echo "$r"; return 0; }
    sleep 0.2
  done
  die "new visitors never reached version $1 (last: $r)"
}
ui_link() { printf '%s/namespaces/default/workflows/%s' "$SKEWGUARD_TEST_TEMPORAL_UI" "skew%2Fmyapp%2Fmyapp%2F$1"; }

say "kubectl apply -f deploy/examples/myapp-v1.yaml   (a Watt app with watt-extra; 2 replicas)"
"$KUBECTL" apply -f deploy/examples/myapp-v1.yaml | sed 's/^/           /'
r=$(wait_new_visitor 1 240)
say "A new visitor is served by v1 through Traefik and pinned by cookie"
info "GET $GW/myapp/version -> status ${r%% *}, Watt app says PLT_DEPLOYMENT_VERSION=$(echo "$r" | cut -d' ' -f2)" \
     "Set-Cookie: $(echo "$r" | cut -d' ' -f3-)" \
     "v1 workflow: $(ui_link 1)"
PIN="__plt_dpl=1"

say "kubectl apply -f deploy/examples/myapp-v2.yaml"
"$KUBECTL" apply -f deploy/examples/myapp-v2.yaml | sed 's/^/           /'
r=$(wait_new_visitor 2 240)
say "v2 is Active: a new visitor gets v2, the session that started on v1 stays on v1"
info "new visitor           -> $(echo "$r" | cut -d' ' -f1,2 | sed 's/ / version /')   Set-Cookie: $(echo "$r" | cut -d' ' -f3-)"
r=$(visit -H "Cookie: $PIN"); info "cookie $PIN       -> ${r%% *} version $(echo "$r" | cut -d' ' -f2)"
r=$(visit -H "Cookie: theme=dark; $PIN; lang=en"); info "cookie among others    -> ${r%% *} version $(echo "$r" | cut -d' ' -f2)"
r=$(visit -G --data-urlencode dpl=1); info "?dpl=1                -> ${r%% *} version $(echo "$r" | cut -d' ' -f2)"
r=$(visit -H "x-deployment-id: 1"); info "x-deployment-id: 1    -> ${r%% *} version $(echo "$r" | cut -d' ' -f2)"
info "v2 workflow: $(ui_link 2)"
say "skewguard versions myapp/myapp   (CLI over the REST API, authorized by Kubernetes RBAC)"
bin/skewguard versions myapp/myapp | sed 's/^/           /'

say "The v1 session keeps clicking for a few seconds, then leaves; v1 drains and expires by itself"
for _ in $(seq 1 20); do visit -H "Cookie: $PIN" >/dev/null; sleep 0.25; done
state() { bin/skewguard versions myapp/myapp -o json | tr -d ' \n' | grep -o "\"version\":\"$1\"[^}]*\"state\":\"[a-z]*\"" | grep -o '"state":"[a-z]*"' | cut -d'"' -f4 | head -1; }
last=""
for _ in $(seq 1 600); do
  s=$(state 1 || true)
  if [[ -n $s && $s != "$last" ]]; then say "v1 is $s"; last=$s; fi
  [[ $s == expired ]] && break
  sleep 0.5
done
[[ $last == expired ]] || die "v1 did not expire (state: $last)"
for _ in $(seq 1 120); do
  reps=$("$KUBECTL" -n myapp get deploy myapp-v1 -o jsonpath='{.spec.replicas}')
  pods=$("$KUBECTL" -n myapp get pods -l plt.dev/version=1 --no-headers 2>/dev/null | wc -l)
  [[ $reps == 0 && $pods == 0 ]] && break
  sleep 0.5
done
say "Deployment myapp-v1 scaled to $reps replicas; $pods v1 pods left"
r=$(visit -H "Cookie: $PIN")
info "the old v1 cookie now falls through to v$(echo "$r" | cut -d' ' -f2) and is re-pinned: $(echo "$r" | cut -d' ' -f3-)"
say "skewguard audit myapp/myapp 1"
bin/skewguard audit myapp/myapp 1 | sed 's/^/           /'

say "Done. Look around:"
info "Panel:       http://$SG_ADDR/ui/   sign in with the token above, or a new one: KUBECONFIG=$KUBECONFIG $KUBECTL -n myapp create token demo-operator" \
     "Temporal UI (workflows, history, signals, updates): $SKEWGUARD_TEST_TEMPORAL_UI/namespaces/default/workflows?query=SkewApp%3D%22myapp%22" \
     "v1 lifecycle: $(ui_link 1)" \
     "Prometheus:  $PROMETHEUS_URL/graph   (try: sum by (service) (rate(traefik_service_requests_total[1m])))" \
     "Gateway:     curl -i $GW/myapp/version" \
     "kubectl:     KUBECONFIG=$KUBECONFIG $KUBECTL -n myapp get deploy,svc,pods,httproutes" \
     "CLI:         SKEWGUARD_URL=$SKEWGUARD_URL SKEWGUARD_TOKEN=\$(KUBECONFIG=$KUBECONFIG $KUBECTL -n myapp create token demo-operator) bin/skewguard versions myapp/myapp" \
     "skewguard:   $LOG_DIR/demo-skewguard.log (pid $(cat "$PIDFILE"))" \
     "Stop:        make demo-down   (stops skewguard and the stack)"
