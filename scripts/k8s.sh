#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, as local processes, for the tests (no container engine):
#   scripts/k8s.sh start DIR   etcd, kube-apiserver (own CA, service-account keys, --authorization-mode=Node,RBAC,
#                              default admission), kube-controller-manager, kube-scheduler, and kwok as the fake
#                              kubelet of one Node `kwok-node-0`; writes DIR/admin.kubeconfig and DIR/env
#                              (KUBECONFIG, K8S_BIN, K8S_API, K8S_DIR) for `source`.
#   scripts/k8s.sh stop DIR    stops every process it started (TERM, then KILL after 10 s); nothing is left running.
# Binaries come from scripts/install-k8s.sh (built once into the cache). Pods of Deployments become Running and
# Ready through kwok; pods of Jobs are left Pending for the test harness' job runner (tests/k8s/kwok/stages).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cmd=${1:-}
DIR=${2:-}
[[ ($cmd == start || $cmd == stop) && -n $DIR ]] || { echo "usage: scripts/k8s.sh start|stop DIR" >&2; exit 2; }
log() { printf 'k8s: %s\n' "$*" >&2; }

stop() {
  local pids=()
  for f in "$DIR"/pids/*; do
    [[ -f $f ]] || continue
    pids+=("$(cat "$f")")
  done
  ((${#pids[@]})) || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 100); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
  rm -rf "$DIR/pids"
  log "stopped"
}

if [[ $cmd == stop ]]; then
  stop
  exit 0
fi

BIN=$("$ROOT/scripts/install-k8s.sh")
mkdir -p "$DIR"/{pki,logs,pids,etcd}
DIR=$(cd "$DIR" && pwd)
trap 'log "start failed: the last lines of each log:"; for l in "$DIR"/logs/*.log; do echo "== $l" >&2; tail -n 15 "$l" >&2; done; stop' ERR

free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
read -r ETCD_PORT PEER_PORT API_PORT KCM_PORT SCHED_PORT KWOK_PORT <<<"$(free_ports 6)"

# --- certificates: one CA; the API server's serving certificate; a client certificate per component -------
pki=$DIR/pki
openssl_q() { openssl "$@" 2>/dev/null; }
openssl_q req -x509 -newkey rsa:2048 -nodes -days 3 -subj "/CN=eternia-test-ca" \
  -keyout "$pki/ca.key" -out "$pki/ca.crt"
cert() { # name subject [extfile]
  openssl_q req -newkey rsa:2048 -nodes -subj "$2" -keyout "$pki/$1.key" -out "$pki/$1.csr"
  openssl_q x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 3 \
    ${3:+-extfile "$3"} -out "$pki/$1.crt"
}
cat >"$pki/apiserver.ext" <<EOF
subjectAltName = IP:127.0.0.1, IP:10.96.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage = serverAuth
EOF
echo "extendedKeyUsage = clientAuth" >"$pki/client.ext"
cert apiserver "/CN=kube-apiserver" "$pki/apiserver.ext"
cert admin "/O=system:masters/CN=kubernetes-admin" "$pki/client.ext"
cert controller-manager "/CN=system:kube-controller-manager" "$pki/client.ext"
cert scheduler "/CN=system:kube-scheduler" "$pki/client.ext"
openssl_q genrsa -out "$pki/sa.key" 2048
openssl_q rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

kubeconfig() { # file client-cert-name
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: eternia-test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $pki/$2.crt
    client-key: $pki/$2.key
contexts:
- name: $2@eternia-test
  context: {cluster: eternia-test, user: $2}
current-context: $2@eternia-test
EOF
}
kubeconfig "$DIR/admin.kubeconfig" admin
kubeconfig "$DIR/controller-manager.kubeconfig" controller-manager
kubeconfig "$DIR/scheduler.kubeconfig" scheduler

spawn() { # name command...
  local name=$1
  shift
  "$@" >"$DIR/logs/$name.log" 2>&1 &
  echo $! >"$DIR/pids/$name"
}
wait_until() { # what seconds command...
  local what=$1 secs=$2
  shift 2
  for _ in $(seq 1 $((secs * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  log "$what not ready after ${secs} s"
  return 1
}
t0=$SECONDS

# --- etcd ---------------------------------------------------------------------------------------------
spawn etcd "$BIN/etcd" --data-dir "$DIR/etcd" --name default --unsafe-no-fsync \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
  --initial-cluster "default=http://127.0.0.1:$PEER_PORT" --log-level warn
wait_until etcd 30 python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$ETCD_PORT/health')"

# --- kube-apiserver: flags as controller-runtime's envtest passes them, with Node,RBAC and default admission.
# Every request of a ServiceAccount is written to DIR/audit.log (the RBAC tests read which calls each component
# made and what the authorizer answered).
cat >"$DIR/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: [system:serviceaccounts]
  - level: None
EOF
spawn kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range 10.96.0.0/16 \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --allow-privileged=true \
  --endpoint-reconciler-type none \
  --audit-policy-file "$DIR/audit-policy.yaml" --audit-log-path "$DIR/audit.log" --audit-log-format json \
  --audit-log-mode blocking \
  --profiling=false
kubectl() { "$BIN/kubectl" --kubeconfig "$DIR/admin.kubeconfig" "$@"; }
wait_until kube-apiserver 90 kubectl get --raw /readyz

# --- controller manager, scheduler -------------------------------------------------------------------
spawn kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig "$DIR/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$DIR/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$DIR/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
  --use-service-account-credentials=true \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
  --controllers '*,-nodeipam' \
  --concurrent-cron-job-syncs 5
spawn kube-scheduler "$BIN/kube-scheduler" \
  --kubeconfig "$DIR/scheduler.kubeconfig" \
  --authentication-kubeconfig "$DIR/scheduler.kubeconfig" \
  --authorization-kubeconfig "$DIR/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false

# --- kwok: the fake kubelet of one node ------------------------------------------------------------------
stages=$DIR/kwok-stages.yaml
: >"$stages"
for f in "$ROOT"/tests/k8s/kwok/stages/*.yaml; do
  cat "$f" >>"$stages"
  echo "---" >>"$stages"
done
spawn kwok "$BIN/kwok" --kubeconfig "$DIR/admin.kubeconfig" --config "$stages" \
  --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
  --server-address "127.0.0.1:$KWOK_PORT" --cidr 10.244.0.1/24 --node-ip 127.0.0.1 --node-lease-duration-seconds 40
kubectl apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: kwok-node-0
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "1000"}
  capacity: {cpu: "32", memory: 256Gi, pods: "1000"}
EOF
wait_until "node kwok-node-0" 60 kubectl wait --for=condition=Ready node/kwok-node-0 --timeout=1s
wait_until "ServiceAccount default/default" 60 kubectl get serviceaccount default -n default
wait_until "kube-root-ca.crt" 60 kubectl get configmap kube-root-ca.crt -n default

cat >"$DIR/env" <<EOF
export KUBECONFIG=$DIR/admin.kubeconfig
export K8S_BIN=$BIN
export K8S_API=https://127.0.0.1:$API_PORT
export K8S_DIR=$DIR
export K8S_AUDIT_LOG=$DIR/audit.log
EOF
trap - ERR
log "control plane $("$BIN/kubectl" version --client=false -o json --kubeconfig "$DIR/admin.kubeconfig" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])') up on https://127.0.0.1:$API_PORT in $((SECONDS - t0)) s ($DIR)"
