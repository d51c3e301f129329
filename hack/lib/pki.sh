# shellcheck shell=bash
# pki.sh: the cluster's CA, serving certificate, ServiceAccount signing key and one client
# certificate per component, made once per stack dir with openssl; and a kubeconfig per identity.

PKI_DIR() { echo "$SKEWGUARD_STACK_DIR/pki"; }

# Identities. Group skewguard:stack-components is bound to cluster-admin by bootstrap.yaml: kwok,
# Traefik and the launcher are test infrastructure, not parts under test.
CLIENT_IDENTITIES=(
  "admin kubernetes-admin system:masters"
  "kube-controller-manager system:kube-controller-manager -"
  "kube-scheduler system:kube-scheduler -"
  "kwok skewguard:kwok skewguard:stack-components"
  "traefik skewguard:traefik skewguard:stack-components"
  "launcher skewguard:launcher skewguard:stack-components"
)

ensure_pki() {
  local pki id name cn org subj
  pki=$(PKI_DIR)
  mkdir -p "$pki"
  [[ -f $pki/.done ]] && return 0
  local t0
  t0=$(now_ms)
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 3650 \
    -subj "/CN=skewguard-stack-ca" 2>/dev/null || die "openssl: CA"
  openssl req -newkey rsa:2048 -nodes -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" \
    -subj "/CN=kube-apiserver" 2>/dev/null || die "openssl: apiserver key"
  printf 'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n' >"$pki/server-ext.cnf"
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -out "$pki/apiserver.crt" -days 3650 -extfile "$pki/server-ext.cnf" 2>/dev/null || die "openssl: apiserver cert"
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null || die "openssl: sa key"
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null || die "openssl: sa pub"
  printf 'extendedKeyUsage=clientAuth\n' >"$pki/client-ext.cnf"
  for id in "${CLIENT_IDENTITIES[@]}"; do
    read -r name cn org <<<"$id"
    subj="/CN=$cn"
    [[ $org != - ]] && subj="/O=$org/CN=$cn"
    openssl req -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -out "$pki/$name.csr" -subj "$subj" 2>/dev/null &&
      openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
        -out "$pki/$name.crt" -days 3650 -extfile "$pki/client-ext.cnf" 2>/dev/null || die "openssl: $name cert"
  done
  chmod 600 "$pki"/*.key
  touch "$pki/.done"
  log "PKI created in $(since "$t0")"
}

# write_kubeconfigs: one per identity, pointing at this stack's API server port.
write_kubeconfigs() {
  local pki id name rest
  pki=$(PKI_DIR)
  mkdir -p "$SKEWGUARD_STACK_DIR/kubeconfigs"
  for id in "${CLIENT_IDENTITIES[@]}"; do
    read -r name rest <<<"$id"
    cat >"$SKEWGUARD_STACK_DIR/kubeconfigs/$name" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: skewguard-stack
  cluster:
    server: https://127.0.0.1:$SKEWGUARD_APISERVER_PORT
    certificate-authority: $pki/ca.crt
users:
- name: $name
  user:
    client-certificate: $pki/$name.crt
    client-key: $pki/$name.key
contexts:
- name: skewguard-stack
  context: {cluster: skewguard-stack, user: $name, namespace: default}
current-context: skewguard-stack
EOF
  done
  cp "$SKEWGUARD_STACK_DIR/kubeconfigs/admin" "$SKEWGUARD_STACK_DIR/kubeconfig"
}
