# shellcheck shell=bash
# parts.sh: how each part of the stack starts, answers a health check, and stops. Every start is
# a no-op when our own process is already running, and refuses a port held by anyone else.

KC_ADMIN() { echo "$SKEWGUARD_STACK_DIR/kubeconfig"; }
kubectl_admin() { "$(KUBECTL)" --kubeconfig "$(KC_ADMIN)" "$@"; }
GATEWAY_NAMESPACE=skewguard-system
GATEWAY_NAME=gw
GATEWAY_SECTION=web

# already NAME: log and succeed when our NAME is running.
already() {
  local pid
  pid=$(pid_of "$1") || return 1
  log "$1: already running (pid $pid)"
  return 0
}

# --- PostgreSQL (Debian's server binaries, run as user postgres) ---------------------------------
PG_DIR() { echo "$SKEWGUARD_STACK_DIR/pg"; }
as_postgres() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# pg_postmaster: the pid in the cluster's lock file, if that process lives (a zombie, killed and
# not yet reaped by PID 1, does not: pg_ctl and the postmaster would still count it as running).
pg_postmaster() {
  local pid
  pid=$(head -1 "$(PG_DIR)/data/postmaster.pid" 2>/dev/null) || return 1
  [[ -n $pid ]] && proc_state "$pid" >/dev/null && [[ $(proc_state "$pid") != Z ]] || return 1
  echo "$pid"
}
pg_ours() { pg_postmaster >/dev/null && as_postgres "$PG_BIN/pg_ctl" -D "$(PG_DIR)/data" status >/dev/null 2>&1; }
pg_healthy() { pg_ours && "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$SKEWGUARD_PG_PORT"; }

up_postgres() {
  local d
  d=$(PG_DIR)
  if pg_ours; then
    log "postgresql: already running (pid $(pg_postmaster))"
    return 0
  fi
  require_free_port SKEWGUARD_PG_PORT
  # Lock files left by a postmaster that was killed (the cluster's and the socket's): its pid is
  # dead or a zombie, and a new postmaster refuses to start while a zombie holds that pid.
  rm -f "$d/data/postmaster.pid" "$d/sock/.s.PGSQL.$SKEWGUARD_PG_PORT.lock"
  mkdir -p "$d/sock" "$(LOG_DIR)"
  if [[ $(id -u) == 0 ]]; then
    chown postgres:postgres "$d" "$d/sock"
    runuser -u postgres -- test -x "$d" ||
      die "user postgres cannot reach $d: make every parent directory of SKEWGUARD_STACK_DIR traversable (chmod o+x) or set SKEWGUARD_STACK_DIR elsewhere"
  fi
  if [[ ! -f $d/data/PG_VERSION ]]; then
    # Trust authentication: a throwaway cluster for local tests, reachable on 127.0.0.1 only.
    as_postgres "$PG_BIN/initdb" -D "$d/data" -U postgres --no-sync --auth=trust -E UTF8 --locale=C.UTF-8 \
      >"$(LOG_DIR)/postgresql-initdb.log" 2>&1 || part_failed postgresql-initdb "initdb failed"
  fi
  touch "$(LOG_DIR)/postgresql.log"
  chown postgres:postgres "$(LOG_DIR)/postgresql.log" 2>/dev/null || true
  # fsync and full-page writes off: only an OS crash needs them, and a throwaway cluster has none
  # to survive. synchronous_commit stays on: with it off a commit is acknowledged before its WAL
  # reaches the kernel, so a SIGKILL of the server (the chaos run's fault) loses commits the
  # client was told had happened, which no real PostgreSQL set up for durability does.
  as_postgres "$PG_BIN/pg_ctl" -D "$d/data" -l "$(LOG_DIR)/postgresql.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $SKEWGUARD_PG_PORT -k $d/sock -c max_connections=300 -c fsync=off -c synchronous_commit=on -c full_page_writes=off" \
    start >/dev/null || part_failed postgresql "pg_ctl start failed"
}
down_postgres() {
  if pg_ours; then
    as_postgres "$PG_BIN/pg_ctl" -D "$(PG_DIR)/data" -m fast -w -t 60 stop >/dev/null && log "stopped postgresql"
  fi
}

# --- Temporal dev server with its Web UI ---------------------------------------------------------
TEMPORAL_BIN() { echo "$(TEMPORAL_DIR)/temporal"; }
SEARCH_ATTRIBUTES=(SkewNamespace SkewApp SkewVersion SkewState)
temporal_healthy() {
  running temporal &&
    "$(TEMPORAL_BIN)" operator cluster health --address "127.0.0.1:$SKEWGUARD_TEMPORAL_PORT" 2>/dev/null | grep -q SERVING &&
    http_ok "http://127.0.0.1:$SKEWGUARD_TEMPORAL_UI_PORT/"
}
up_temporal() {
  already temporal && return 0
  local v sa=()
  for v in SKEWGUARD_TEMPORAL_PORT SKEWGUARD_TEMPORAL_HTTP_PORT SKEWGUARD_TEMPORAL_METRICS_PORT SKEWGUARD_TEMPORAL_UI_PORT; do
    require_free_port "$v"
  done
  for v in "${SEARCH_ATTRIBUTES[@]}"; do sa+=(--search-attribute "$v=Keyword"); done
  mkdir -p "$SKEWGUARD_STACK_DIR/temporal"
  # Eager activities: a workflow task that schedules an activity gets it back with its completion,
  # when the worker has a free slot, instead of through matching (the flip's Activate). Eager
  # workflow start is on by default in the server.
  spawn temporal "$(TEMPORAL_BIN)" server start-dev \
    --ip 127.0.0.1 --port "$SKEWGUARD_TEMPORAL_PORT" --http-port "$SKEWGUARD_TEMPORAL_HTTP_PORT" \
    --metrics-port "$SKEWGUARD_TEMPORAL_METRICS_PORT" --ui-ip 127.0.0.1 --ui-port "$SKEWGUARD_TEMPORAL_UI_PORT" \
    --db-filename "$SKEWGUARD_STACK_DIR/temporal/temporal.db" --namespace default \
    --log-format json --log-level warn "${sa[@]}" \
    --dynamic-config-value system.enableActivityEagerExecution=true
}
# Registered at start; checked (and added if a persisted database lacks one) once it serves.
ensure_search_attributes() {
  local have sa
  have=$("$(TEMPORAL_BIN)" operator search-attribute list --address "127.0.0.1:$SKEWGUARD_TEMPORAL_PORT" 2>/dev/null)
  for sa in "${SEARCH_ATTRIBUTES[@]}"; do
    grep -qw "$sa" <<<"$have" && continue
    "$(TEMPORAL_BIN)" operator search-attribute create --name "$sa" --type Keyword \
      --address "127.0.0.1:$SKEWGUARD_TEMPORAL_PORT" >/dev/null || die "temporal: cannot create search attribute $sa"
  done
}

# --- Prometheus (Debian's) -----------------------------------------------------------------------
write_prometheus_config() {
  mkdir -p "$SKEWGUARD_STACK_DIR/prometheus"
  cat >"$SKEWGUARD_STACK_DIR/prometheus/prometheus.yml" <<EOF
# Written by hack/stack.sh. A 1 s scrape interval keeps traffic checks in tests short.
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: traefik
    static_configs: [{targets: ["127.0.0.1:$SKEWGUARD_TRAEFIK_ADMIN_PORT"]}]
  - job_name: skewguard
    static_configs: [{targets: ["$SKEWGUARD_TEST_METRICS_ADDR"]}]
  - job_name: temporal
    static_configs: [{targets: ["127.0.0.1:$SKEWGUARD_TEMPORAL_METRICS_PORT"]}]
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:$SKEWGUARD_PROMETHEUS_PORT"]}]
EOF
}
prometheus_healthy() { running prometheus && http_ok "http://127.0.0.1:$SKEWGUARD_PROMETHEUS_PORT/-/ready"; }
up_prometheus() {
  write_prometheus_config
  if already prometheus; then
    curl -fsS -m 5 -X POST "http://127.0.0.1:$SKEWGUARD_PROMETHEUS_PORT/-/reload" >/dev/null || log "prometheus: config reload failed"
    return 0
  fi
  require_free_port SKEWGUARD_PROMETHEUS_PORT
  spawn prometheus "$(command -v prometheus)" \
    --config.file="$SKEWGUARD_STACK_DIR/prometheus/prometheus.yml" \
    --storage.tsdb.path="$SKEWGUARD_STACK_DIR/prometheus/data" --storage.tsdb.retention.time=2d \
    --web.listen-address="127.0.0.1:$SKEWGUARD_PROMETHEUS_PORT" --web.enable-lifecycle
}

# --- etcd + kube-apiserver -----------------------------------------------------------------------
etcd_healthy() { running etcd && http_ok "http://127.0.0.1:$SKEWGUARD_ETCD_PORT/health"; }
up_etcd() {
  already etcd && return 0
  require_free_port SKEWGUARD_ETCD_PORT
  require_free_port SKEWGUARD_ETCD_PEER_PORT
  spawn etcd "$(ETCD_DIR)/etcd" --name skewguard --data-dir "$SKEWGUARD_STACK_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$SKEWGUARD_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$SKEWGUARD_ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$SKEWGUARD_ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$SKEWGUARD_ETCD_PEER_PORT" \
    --initial-cluster "skewguard=http://127.0.0.1:$SKEWGUARD_ETCD_PEER_PORT" \
    --unsafe-no-fsync --quota-backend-bytes=$((2 * 1024 * 1024 * 1024)) --log-level=warn
}

admin_curl() { local p; p=$(PKI_DIR); curl -fsS -m 3 --cacert "$p/ca.crt" --cert "$p/admin.crt" --key "$p/admin.key" "$@"; }
apiserver_healthy() { running kube-apiserver && [[ $(admin_curl "https://127.0.0.1:$SKEWGUARD_APISERVER_PORT/readyz" 2>/dev/null) == ok ]]; }
up_apiserver() {
  already kube-apiserver && return 0
  require_free_port SKEWGUARD_APISERVER_PORT
  local p
  p=$(PKI_DIR)
  # --endpoint-reconciler-type=none: a loopback advertise address is refused by the reconciler.
  # The ServiceAccount issuer and signing key make TokenRequest work, so pods can be given bound
  # tokens (with the pod's name in them) that pass TokenReview.
  spawn kube-apiserver "$(K8S_DIR)/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$SKEWGUARD_ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$SKEWGUARD_APISERVER_PORT" \
    --endpoint-reconciler-type=none \
    --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" --client-ca-file="$p/ca.crt" \
    --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --allow-privileged=true --profiling=false --cert-dir="$p"
}

# bootstrap: RBAC for the stack's own components and the fake nodes. No taints on the nodes, so
# ordinary manifests schedule onto them as they are.
cluster_bootstrap() {
  local f=$SKEWGUARD_STACK_DIR/bootstrap.yaml i base o1 o2 o3
  base=${SKEWGUARD_POD_CIDR%%/*}
  IFS=. read -r o1 o2 o3 _ <<<"$base"
  {
    cat <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: skewguard:stack-components}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "skewguard:stack-components"}]
---
apiVersion: v1
kind: Namespace
metadata: {name: $GATEWAY_NAMESPACE}
EOF
    for ((i = 0; i < SKEWGUARD_KWOK_NODES; i++)); do
      cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {kubernetes.io/hostname: kwok-node-$i, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok}
spec:
  podCIDR: $o1.$o2.$((o3 + i)).0/24
  podCIDRs: [$o1.$o2.$((o3 + i)).0/24]
EOF
    done
  } >"$f"
  kubectl_admin apply -f "$f" >>"$(LOG_DIR)/bootstrap.log" 2>&1 || part_failed bootstrap "kubectl apply bootstrap.yaml failed"
}

gateway_crds_healthy() {
  [[ $(kubectl_admin get crd httproutes.gateway.networking.k8s.io -o jsonpath='{.metadata.annotations.gateway\.networking\.k8s\.io/bundle-version} {.status.conditions[?(@.type=="Established")].status}' 2>/dev/null) == "v$GATEWAY_API_VERSION True" ]]
}
up_gateway_crds() {
  if gateway_crds_healthy; then log "gateway-api-crds: already installed (v$GATEWAY_API_VERSION standard)"; return 0; fi
  local files=() f
  for f in "$(GATEWAY_CRDS_DIR)"/gateway.networking*.yaml; do files+=(-f "$f"); done
  # Server-side apply: the CRDs are too large for client-side apply's last-applied annotation.
  kubectl_admin apply --server-side --force-conflicts --field-manager=skewguard-stack "${files[@]}" \
    >>"$(LOG_DIR)/gateway-api-crds.log" 2>&1 || part_failed gateway-api-crds "server-side apply failed"
  kubectl_admin wait --for condition=Established --timeout=60s \
    crd/gatewayclasses.gateway.networking.k8s.io crd/gateways.gateway.networking.k8s.io \
    crd/httproutes.gateway.networking.k8s.io >>"$(LOG_DIR)/gateway-api-crds.log" 2>&1 ||
    part_failed gateway-api-crds "CRDs not Established"
}

# --- controllers: kube-controller-manager, kube-scheduler, kwok ----------------------------------
kcm_healthy() { running kube-controller-manager && [[ $(curl -sk -m 2 "https://127.0.0.1:$SKEWGUARD_KCM_PORT/healthz") == ok ]]; }
up_kcm() {
  already kube-controller-manager && return 0
  require_free_port SKEWGUARD_KCM_PORT
  local p
  p=$(PKI_DIR)
  # No --authentication/authorization-kubeconfig: the API server has no requestheader CA, and with
  # them the controller-manager loops on "missing content for CA bundle". /healthz stays anonymous.
  spawn kube-controller-manager "$(K8S_DIR)/kube-controller-manager" \
    --kubeconfig="$SKEWGUARD_STACK_DIR/kubeconfigs/kube-controller-manager" \
    --bind-address=127.0.0.1 --secure-port="$SKEWGUARD_KCM_PORT" --cert-dir="$SKEWGUARD_STACK_DIR/kcm-certs" \
    --leader-elect=false --controllers='*' --use-service-account-credentials=true \
    --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
    --kube-api-qps=100 --kube-api-burst=200 --profiling=false
}
scheduler_healthy() { running kube-scheduler && [[ $(curl -sk -m 2 "https://127.0.0.1:$SKEWGUARD_SCHEDULER_PORT/healthz") == ok ]]; }
up_scheduler() {
  already kube-scheduler && return 0
  require_free_port SKEWGUARD_SCHEDULER_PORT
  spawn kube-scheduler "$(K8S_DIR)/kube-scheduler" \
    --kubeconfig="$SKEWGUARD_STACK_DIR/kubeconfigs/kube-scheduler" \
    --bind-address=127.0.0.1 --secure-port="$SKEWGUARD_SCHEDULER_PORT" --cert-dir="$SKEWGUARD_STACK_DIR/scheduler-certs" \
    --leader-elect=false --profiling=false
}
kwok_healthy() { running kwok && [[ $(curl -s -m 2 "http://127.0.0.1:$SKEWGUARD_KWOK_PORT/healthz") == ok ]]; }
nodes_ready() {
  local want
  want=$(printf 'True %.0s' $(seq 1 "$SKEWGUARD_KWOK_NODES"))
  [[ $(kubectl_admin get nodes -l type=kwok -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{" "}{end}' 2>/dev/null) == "$want" ]]
}
up_kwok() {
  already kwok && return 0
  require_free_port SKEWGUARD_KWOK_PORT
  local f
  # Only Stage documents: a KwokConfiguration read from a file gets no defaults.
  for f in "$(KWOK_DIR)"/stages/*.yaml "$HACK_DIR/kwok/pod-running.yaml"; do
    printf -- '---\n'
    cat "$f"
  done >"$SKEWGUARD_STACK_DIR/kwok.yaml"
  # The nodes' own address (status only, never added anywhere): the last /24 of the pod CIDR.
  local node_ip base o1 o2 o3 bits
  base=${SKEWGUARD_POD_CIDR%%/*}
  bits=${SKEWGUARD_POD_CIDR##*/}
  IFS=. read -r o1 o2 o3 _ <<<"$base"
  node_ip=$o1.$o2.$((o3 + (1 << (24 - bits)) - 1)).1
  # --server-address: without it kwok would listen on 0.0.0.0.
  spawn kwok "$(KWOK_DIR)/kwok" --config="$SKEWGUARD_STACK_DIR/kwok.yaml" \
    --kubeconfig="$SKEWGUARD_STACK_DIR/kubeconfigs/kwok" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr="$SKEWGUARD_POD_CIDR" --node-ip="$node_ip" --node-lease-duration-seconds=40 \
    --server-address="127.0.0.1:$SKEWGUARD_KWOK_PORT"
}

# --- pod launcher ----------------------------------------------------------------------------------
write_launcher_config() {
  local watt_cmd=$HACK_DIR/watt-pod.sh
  cat >"$SKEWGUARD_STACK_DIR/launcher.json" <<EOF
{
  "podCIDR": "$SKEWGUARD_POD_CIDR",
  "logDir": "$SKEWGUARD_STACK_DIR/pods",
  "stateFile": "$SKEWGUARD_STACK_DIR/run/launcher-state.json",
  "defaultProgram": "echo",
  "iccURL": "$SKEWGUARD_LAUNCHER_ICC_URL",
  "programs": {
    "echo": {"command": ["$SKEWGUARD_STACK_DIR/bin/echo-backend"], "startTimeout": "15s"},
    "watt": {"command": ["$watt_cmd"], "podHostname": true, "serviceAccountToken": true, "startTimeout": "120s",
             "env": {"SKEWGUARD_WATT_DIR": "$SKEWGUARD_CACHE/watt"}}
  },
  "images": {"skewguard/echo": "echo", "skewguard/watt": "watt"}
}
EOF
}
launcher_healthy() { running launcher && http_ok "http://127.0.0.1:$SKEWGUARD_LAUNCHER_PORT/healthz"; }
up_launcher() {
  write_launcher_config
  already launcher && return 0
  require_free_port SKEWGUARD_LAUNCHER_PORT
  mkdir -p "$SKEWGUARD_STACK_DIR/pods"
  spawn launcher "$SKEWGUARD_STACK_DIR/bin/launcher" \
    -kubeconfig "$SKEWGUARD_STACK_DIR/kubeconfigs/launcher" -config "$SKEWGUARD_STACK_DIR/launcher.json" \
    -listen "127.0.0.1:$SKEWGUARD_LAUNCHER_PORT"
}
# down_launcher also cleans what a launcher that died without its shutdown left behind: pod
# processes and addresses it recorded in its state file.
down_launcher() {
  stop_proc launcher 30
  "$SKEWGUARD_STACK_DIR/bin/launcher" -cleanup -config "$SKEWGUARD_STACK_DIR/launcher.json" 2>>"$(LOG_DIR)/launcher.log" || true
}

# --- Traefik (Gateway API data plane) --------------------------------------------------------------
traefik_healthy() { running traefik && http_ok "http://127.0.0.1:$SKEWGUARD_TRAEFIK_ADMIN_PORT/ping"; }
up_traefik() {
  already traefik && return 0
  require_free_port SKEWGUARD_TRAEFIK_WEB_PORT
  require_free_port SKEWGUARD_TRAEFIK_ADMIN_PORT
  # providersThrottleDuration=100ms: the default 2 s delays back-to-back route changes by up to 2 s.
  # Metrics with service labels give, per HTTPRoute rule and backend, traefik_service_requests_total{service=
  # "httproute-<route ns>-<route>-gw-<gw ns>-<gw>-ep-<entrypoint>-<rule index>-<rule hash>-svc-<svc ns>-<svc>-<backend index>@kubernetesgateway"},
  # so one version's traffic is service=~".+-svc-<ns>-<svc>-[0-9]+@kubernetesgateway" (hack/README.md).
  # --api.dashboard=false: the module zip has no built dashboard.
  spawn traefik env KUBECONFIG="$SKEWGUARD_STACK_DIR/kubeconfigs/traefik" "$(TRAEFIK_DIR)/traefik" \
    --global.checknewversion=false --global.sendanonymoususage=false \
    --entrypoints.web.address="127.0.0.1:$SKEWGUARD_TRAEFIK_WEB_PORT" \
    --entrypoints.traefik.address="127.0.0.1:$SKEWGUARD_TRAEFIK_ADMIN_PORT" \
    --api.insecure=true --api.dashboard=false --ping=true --log.nocolor=true --log.level=INFO \
    --metrics.prometheus=true --metrics.prometheus.entryPoint=traefik \
    --metrics.prometheus.addServicesLabels=true \
    --providers.kubernetesgateway=true --providers.providersThrottleDuration=100ms
}

gateway_healthy() {
  [[ $(kubectl_admin -n "$GATEWAY_NAMESPACE" get gateway "$GATEWAY_NAME" -o jsonpath='{.status.conditions[?(@.type=="Programmed")].status}' 2>/dev/null) == True ]]
}
up_gateway() {
  cat >"$SKEWGUARD_STACK_DIR/gateway.yaml" <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: traefik}
spec: {controllerName: traefik.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: $GATEWAY_NAME, namespace: $GATEWAY_NAMESPACE}
spec:
  gatewayClassName: traefik
  listeners:
  # Traefik binds a listener to the entrypoint whose address ends in :<port>.
  - {name: $GATEWAY_SECTION, protocol: HTTP, port: $SKEWGUARD_TRAEFIK_WEB_PORT, allowedRoutes: {namespaces: {from: All}}}
EOF
  kubectl_admin apply --server-side --field-manager=skewguard-stack -f "$SKEWGUARD_STACK_DIR/gateway.yaml" \
    >>"$(LOG_DIR)/gateway.log" 2>&1 || part_failed gateway "apply GatewayClass/Gateway failed"
}
