#!/usr/bin/env bash
# watt-pod.sh: the launcher's `watt` program. Runs the Watt app installed by hack/setup-watt.sh,
# wrapped by @platformatic/watt-extra, as one pod: bound to the pod IP and port, reporting to ICC
# (PLT_ICC_URL) with the pod's bound ServiceAccount token (PLT_TEST_TOKEN). The launcher starts it
# in a UTS namespace whose hostname is the pod name, which watt-extra uses as its pod id.
# Inputs from the launcher: POD_NAME, HOST, PORT, APP_NAME, APP_VERSION, PLT_ICC_URL, PLT_TEST_TOKEN,
# SKEWGUARD_WATT_DIR, and the literal env of the pod's container (e.g. PLT_DEPLOYMENT_ID).
set -euo pipefail
DIR=${SKEWGUARD_WATT_DIR:?SKEWGUARD_WATT_DIR unset}
[[ -d $DIR/app/node_modules/@platformatic/watt-extra ]] || {
  echo "watt-pod: $DIR has no watt-extra: run hack/setup-watt.sh" >&2
  exit 1
}
[[ $(hostname) == "$POD_NAME" ]] || echo "watt-pod: warning: hostname $(hostname) is not the pod name $POD_NAME" >&2
export PLT_APP_DIR=$DIR/app
export PLT_APP_HOSTNAME=$HOST # also where watt-extra's metrics server binds
export PLT_APP_PORT=$PORT
export PLT_METRICS_PORT=${PLT_METRICS_PORT:-9090} # on the pod's own IP, so every pod can use it
export PLT_APP_NAME=${PLT_APP_NAME:-$APP_NAME}
export PLT_LOG_LEVEL=${PLT_LOG_LEVEL:-info}
[[ -n ${PLT_ICC_URL:-} ]] || unset PLT_ICC_URL # unset = standalone: no ICC calls
NODE=$(readlink -f "$DIR/node")
export PATH=$(dirname "$NODE"):$PATH
cd "$PLT_APP_DIR"
exec "$NODE" "$DIR/app/node_modules/@platformatic/watt-extra/cli.js" start
