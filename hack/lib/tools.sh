# shellcheck shell=bash
# tools.sh: installs Debian's packages and builds every other part from the Go module proxy, once,
# into $SKEWGUARD_CACHE/<tool>-<version>/. A finished tool has a .done stamp; a build that was
# interrupted is redone. Builds hold a lock, so two checkouts never build the same tool twice at
# once, and run one at a time (2 cores; each link step alone needs 2-3 GB of memory).
# Build flags are those of the proven recipes (shared/stack), so a warm Go build cache is reused.

TEMPORAL_DIR() { echo "$SKEWGUARD_CACHE/temporal-$TEMPORAL_CLI_VERSION"; }
ETCD_DIR() { echo "$SKEWGUARD_CACHE/etcd-$ETCD_VERSION"; }
K8S_DIR() { echo "$SKEWGUARD_CACHE/kubernetes-$K8S_VERSION"; }
KWOK_DIR() { echo "$SKEWGUARD_CACHE/kwok-$KWOK_VERSION"; }
TRAEFIK_DIR() { echo "$SKEWGUARD_CACHE/traefik-$TRAEFIK_VERSION"; }
GATEWAY_CRDS_DIR() { echo "$SKEWGUARD_CACHE/gateway-api-$GATEWAY_API_VERSION/standard"; }
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
KUBECTL() { echo "$(K8S_DIR)/kubectl"; }

go_env() {
  # Ignore a caller's go.work, -mod=vendor or toolchain switch: these builds are not the project's.
  env GOFLAGS=-buildvcs=false GOWORK=off GOTOOLCHAIN=local "$@"
}

mod_dir() { (cd / && go_env go mod download -json "$1" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p'); }
mod_gomod() { (cd / && go_env go mod download -json "$1" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p'); }

# built DIR: the tool in DIR was completely built.
built() { [[ -f $1/.done ]]; }

# timed_build DIR FUNC FIGURE: run FUNC (which fills DIR) under the cache lock, stamp DIR when
# done. Its progress (progress.sh) is keyed by DIR's name (temporal-1.5.1) and expects the last
# build of that key, else FIGURE seconds.
timed_build() {
  local dir=$1 fn=$2 figure=$3 key name
  key=$(basename "$dir")
  name=$(tool_name "$key")
  built "$dir" && return 0
  mkdir -p "$SKEWGUARD_CACHE"
  exec 9>"$SKEWGUARD_CACHE/.build.lock"
  if ! flock -n 9; then
    progress_log "waiting for another build in $SKEWGUARD_CACHE to finish"
    flock 9
  fi
  if ! built "$dir"; then
    log "building $name into $dir"
    mkdir -p "$dir"
    if ! progress_build "$key" "build $name" "$figure" "$fn" "$dir"; then
      flock -u 9
      die "building $name failed"
    fi
    date -u +%FT%TZ >"$dir/.done"
  fi
  flock -u 9
}

# tool_name KEY: "temporal-1.5.1" -> "temporal 1.5.1".
tool_name() { echo "${1%-*} ${1##*-}"; }

# TOOL_TABLE: what ensure_tools builds, in order, one "FUNC FIGURE DIR" line each. FIGURE is the
# typical first build in seconds on 2 cores with empty Go caches (hack/README.md, Timings).
TOOL_TABLE() {
  printf '%s\n' \
    "build_temporal 341 $(TEMPORAL_DIR)" \
    "build_etcd 97 $(ETCD_DIR)" \
    "build_kubernetes 835 $(K8S_DIR)" \
    "build_kwok 83 $(KWOK_DIR)" \
    "build_traefik 220 $(TRAEFIK_DIR)" \
    "copy_gateway_crds 1 $SKEWGUARD_CACHE/gateway-api-$GATEWAY_API_VERSION"
}
APT_FIGURE=105   # apt-get install of PostgreSQL, Prometheus, chromium (about 45 s alone) and the small tools (an estimate)
HELM_FIGURE=150  # hack/setup-helm.sh from empty Go caches (an estimate)
WATT_FIGURE=60   # hack/setup-watt.sh: Node 22 and watt-extra from npm (an estimate)

# tools_plan: one line saying whether the tool cache is warm or cold, which tools this run builds
# and how long that is expected to take (progress.sh: each tool's last build, else its figure).
# hack/test.sh prints it first; ensure_tools prints it before building.
tools_plan() {
  local fn figure dir key row rows todo=() total=0 all=0 built_n=0 last=0 EXPECT_S EXPECT_FROM
  mapfile -t rows < <(TOOL_TABLE)
  for row in "${rows[@]}"; do
    read -r fn figure dir <<<"$row"
    plan_tool "$(basename "$dir")" "$figure" built "$dir"
  done
  if [[ -x $HACK_DIR/setup-helm.sh ]]; then
    key=$("$HACK_DIR/setup-helm.sh" --check || true)
    plan_tool "$key" "$HELM_FIGURE" "$HACK_DIR/setup-helm.sh" --check
  fi
  if [[ ${SKEWGUARD_WITH_WATT:-0} == 1 ]]; then
    key=$("$HACK_DIR/setup-watt.sh" --check || true)
    plan_tool "$key" "$WATT_FIGURE" "$HACK_DIR/setup-watt.sh" --check
  fi
  # Debian's packages are not in the cache, but a fresh machine installs them first.
  [[ -z $(apt_missing) ]] || plan_add "apt-packages" "$APT_FIGURE"
  if [[ ${#todo[@]} == 0 ]]; then
    progress_log "tool cache $SKEWGUARD_CACHE is warm: all $all tools built, nothing to download or build but the stack's own programs (seconds)"
    return 0
  fi
  local state=cold from="typical first builds on 2 cores, hack/README.md" list
  [[ $built_n == 0 ]] || state="partly warm ($built_n of $all tools built)"
  if [[ $last == "${#todo[@]}" ]]; then
    from="their last builds"
  elif [[ $last -gt 0 ]]; then
    from="last builds where known, else typical first builds on 2 cores"
  fi
  list=$(printf '%s, ' "${todo[@]}")
  progress_log "tool cache $SKEWGUARD_CACHE is $state: this run builds ${list%, }; about $(about "$total") ($from); progress follows"
}

# plan_tool KEY FIGURE CMD...: for tools_plan (its locals), one tool of the cache, built when CMD
# succeeds.
plan_tool() {
  all=$((all + 1))
  if "${@:3}" >/dev/null; then built_n=$((built_n + 1)); else plan_add "$1" "$2"; fi
}

# plan_add KEY FIGURE: for tools_plan (its locals), KEY is to be built, in about its expected time.
plan_add() {
  progress_expect "$1" "$2"
  todo+=("$(tool_name "$1")")
  total=$((total + EXPECT_S))
  [[ $EXPECT_FROM != "last build" ]] || last=$((last + 1))
}

# run_setup SCRIPT FIGURE: a hack/setup-*.sh script (it installs its tool once into the cache and
# answers --check with its cache key, status 0 when installed), with progress when it has work.
run_setup() {
  local key
  if key=$("$1" --check); then
    "$1"
    return
  fi
  progress_build "$key" "build $(tool_name "$key")" "$2" "$1"
}

# apt_missing: the Debian packages the stack needs and this machine lacks, space-separated.
apt_missing() {
  local need=()
  [[ -x $PG_BIN/initdb ]] || need+=("postgresql-$PG_MAJOR")
  command -v psql >/dev/null || need+=("postgresql-client-$PG_MAJOR")
  command -v prometheus >/dev/null || need+=(prometheus)
  command -v openssl >/dev/null || need+=(openssl)
  command -v curl >/dev/null || need+=(curl)
  command -v ip >/dev/null || need+=(iproute2)
  command -v ss >/dev/null || need+=(iproute2)
  command -v flock >/dev/null || need+=(util-linux)
  command -v pgrep >/dev/null || need+=(procps)
  # The browser tests of the versions panel (api, TestVersionsPanelInChromium) drive it.
  command -v chromium >/dev/null || need+=(chromium)
  echo "${need[*]}"
}

ensure_apt() {
  local need
  read -ra need <<<"$(apt_missing)"
  [[ ${#need[@]} == 0 ]] && return 0
  progress_build apt-packages "apt-get install ${need[*]}" "$APT_FIGURE" apt_install "${need[@]}"
}

# apt_install PACKAGE...: apt-get install without starting the packages' system services.
apt_install() {
  local need=("$@") sudo=""
  [[ $(id -u) == 0 ]] || sudo=sudo
  log "apt-get install ${need[*]}"
  $sudo apt-get update -qq || return 1
  # The packages' maintainer scripts must not start system services (prometheus would listen on
  # 0.0.0.0:9090, postgresql on 5432): policy-rc.d "exit 101" forbids it for this install only.
  local added=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    added=1
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 || rc=$?
  [[ $added == 1 ]] && $sudo rm -f /usr/sbin/policy-rc.d
  [[ $rc == 0 ]] || { log "apt-get install ${need[*]} failed"; return 1; }
}

build_temporal() {
  # v1.5.1 is the newest CLI the proxy serves without a replace directive (see hack/README.md).
  go_env GOBIN="$1" go install \
    -ldflags="-X github.com/temporalio/cli/temporalcli.Version=$TEMPORAL_CLI_VERSION" \
    "github.com/temporalio/cli/cmd/temporal@v$TEMPORAL_CLI_VERSION"
}

build_etcd() {
  # go install refuses etcd's server module (replace directives): build it from a wrapper module.
  local d=$SKEWGUARD_CACHE/build/etcd-$ETCD_VERSION
  mkdir -p "$d"
  cat >"$d/go.mod" <<EOF
module local/etcdbuild

go 1.26.0

require (
	go.etcd.io/etcd/server/v3 v$ETCD_VERSION
	go.etcd.io/etcd/etcdctl/v3 v$ETCD_VERSION
)
EOF
  cat >"$d/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
EOF
  (cd "$d" && go_env go mod tidy &&
    go_env CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$1/etcd" go.etcd.io/etcd/server/v3 &&
    go_env CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$1/etcdctl" go.etcd.io/etcd/etcdctl/v3)
}

build_kubernetes() {
  # k8s.io/kubernetes replaces its staging modules with ./staging paths, so a wrapper module points
  # each of them at the published v0.X.Y module instead.
  local d=$SKEWGUARD_CACHE/build/k8s-$K8S_VERSION staging=v0.${K8S_VERSION#1.} mod
  mkdir -p "$d"
  if [[ ! -f $d/go.sum ]]; then
    mod=$(mod_gomod "k8s.io/kubernetes@v$K8S_VERSION")
    {
      printf 'module local/k8sbuild\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$K8S_VERSION"
      grep '=> ./staging/' "$mod" | awk -v v="$staging" '$1 !~ /sample-/ {print "\t" $1 " => " $1 " " v}'
      printf ')\n'
    } >"$d/go.mod"
    cat >"$d/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
    (cd "$d" && go_env go mod tidy) || return 1
  fi
  # Without the version stamps the server reports v0.0.0-master and kubectl cannot parse it.
  local ld="-s -w" p n t0
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$(cut -d. -f2 <<<"$K8S_VERSION") -X $p.gitTreeState=clean"
  done
  for n in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [[ -x $1/$n ]] && continue
    log "  building $n v$K8S_VERSION"
    t0=$(now_ms)
    (cd "$d" && go_env CGO_ENABLED=0 go build -trimpath -ldflags="$ld" -o "$1/$n.tmp" "k8s.io/kubernetes/cmd/$n") || return 1
    mv "$1/$n.tmp" "$1/$n"
    progress_log "build kubernetes $K8S_VERSION: $n built in $(human_s $((($(now_ms) - t0) / 1000)))"
  done
}

build_kwok() {
  go_env GOBIN="$1" CGO_ENABLED=0 go install -trimpath \
    -ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION" || return 1
  # Standalone kwok has no built-in stages; take the node stages kwokctl uses from its module.
  # Pods use our own stage (hack/kwok/pod-running.yaml) so that the launcher decides readiness.
  local src
  src=$(mod_dir "sigs.k8s.io/kwok@v$KWOK_VERSION")
  mkdir -p "$1/stages"
  cp "$src/kustomize/stage/node/fast/node-initialize.yaml" \
    "$src/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
    "$src/kustomize/stage/pod/fast/pod-complete.yaml" "$src/kustomize/stage/pod/fast/pod-delete.yaml" "$1/stages/"
  chmod u+w "$1"/stages/*.yaml
}

build_traefik() {
  # go install cannot build Traefik here: replace directives, a nested module missing from the
  # module zip, and dependencies the proxy refuses. Copy the source and apply 4 small patches.
  local src=$1/src moddir
  moddir=$(mod_dir "github.com/traefik/traefik/v3@v$TRAEFIK_VERSION")
  [[ -d $moddir ]] || { log "module download of traefik v$TRAEFIK_VERSION failed"; return 1; }
  rm -rf "$src"
  cp -r "$moddir" "$src"
  chmod -R u+w "$src"
  (
    cd "$src" || exit 1
    # 1. the nested module github.com/traefik/traefik/dynamic/ext (empty extension points upstream)
    mkdir -p pkg/config/dynamic/ext || exit 1
    printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24.0\n' >pkg/config/dynamic/ext/go.mod || exit 1
    cat >pkg/config/dynamic/ext/ext.go <<'EOF'
package ext

// Empty stand-ins for the extension points that Traefik's build expects from this nested module.
type HTTP struct{}
type Router struct{}
type RouterIng struct{}

func (RouterIng) ToRouter() Router { return Router{} }
EOF
    # 2. the containous go-http-auth fork is not served: use upstream abbot/go-http-auth,
    # 3. which lacks RequireAuthStale (a stale=true hint); RequireAuth is the closest call.
    go_env go mod edit -replace "github.com/abbot/go-http-auth=github.com/abbot/go-http-auth@v0.4.1-0.20220112235402-e1cee1c72f2f" || exit 1
    sed -i 's|d\.auth\.RequireAuthStale(rw, req)|d.auth.RequireAuth(rw, req)|' pkg/middlewares/auth/digest_auth.go || exit 1
    # 4. drop lego's all-DNS-providers registry (its SDKs are refused by the proxy); ACME DNS-01 is unused.
    sed -i '\|"github.com/go-acme/lego/v5/providers/dns"|d' pkg/provider/acme/provider.go || exit 1
    sed -i 's|dns\.NewDNSChallengeProviderByName(|newDNSChallengeProviderByName(|' pkg/provider/acme/provider.go || exit 1
    cat >pkg/provider/acme/dns_stub.go <<'EOF'
package acme

import (
	"fmt"

	"github.com/go-acme/lego/v5/challenge"
)

// newDNSChallengeProviderByName is a stub: DNS-01 providers are not compiled into this build.
func newDNSChallengeProviderByName(name string) (challenge.Provider, error) {
	return nil, fmt.Errorf("ACME DNS challenge provider %q not available in this build", name)
}
EOF
    env GOFLAGS="-mod=mod -buildvcs=false" GOWORK=off GOTOOLCHAIN=local go build -trimpath \
      -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=v$TRAEFIK_VERSION" \
      -o "$1/traefik" ./cmd/traefik
  )
}

copy_gateway_crds() {
  local src
  src=$(mod_dir "sigs.k8s.io/gateway-api@v$GATEWAY_API_VERSION")
  [[ -d $src/config/crd/standard ]] || return 1
  mkdir -p "$1/standard"
  cp "$src"/config/crd/standard/gateway.networking.k8s.io_*.yaml "$1/standard/"
  chmod u+w "$1"/standard/*.yaml
}

# ensure_tools: everything the stack runs, cached outside the clone. Serial on purpose.
ensure_tools() {
  local t0 fn figure dir row rows
  t0=$(now_ms)
  tools_plan
  ensure_apt || die "apt-get install failed"
  mapfile -t rows < <(TOOL_TABLE)
  for row in "${rows[@]}"; do
    read -r fn figure dir <<<"$row"
    timed_build "$dir" "$fn" "$figure"
  done
  log "tools ready in $(since "$t0") ($SKEWGUARD_CACHE)"
}

# build_stack_programs: our own test/demo programs, built from this checkout into the stack dir
# (the first build compiles client-go: minutes; later ones take seconds).
build_stack_programs() {
  mkdir -p "$SKEWGUARD_STACK_DIR/bin"
  progress_build stack-programs "build hack/launcher and hack/echo-backend" 172 \
    in_dir "$REPO_DIR" env CGO_ENABLED=0 go build -trimpath -o "$SKEWGUARD_STACK_DIR/bin/" ./hack/launcher ./hack/echo-backend ||
    die "building hack/launcher and hack/echo-backend failed"
}

# in_dir DIR CMD...: CMD run in DIR.
in_dir() { (cd "$1" && "${@:2}"); }
