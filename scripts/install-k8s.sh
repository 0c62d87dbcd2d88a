#!/usr/bin/env bash
# Builds a real Kubernetes control plane for the tests from Go modules, once, into the cache:
#   $CACHE/k8s/<version>/bin/{etcd,kube-apiserver,kube-controller-manager,kube-scheduler,kubectl,kwok}
# (kwok's stage files are tests/k8s/kwok/stages, copied from its module, see there). Versions are pinned by tests/k8s/go.mod
# (k8s.io/kubernetes, etcd) and tests/k8s/kwok/go.mod (kwok). k8s.io/kubernetes cannot be `go install`ed: its
# go.mod replaces every k8s.io/* staging module with a local path, so tests/k8s/go.mod replaces each one with its
# published v0.N.M release instead (scripts/install-k8s.sh --regen-replaces derives that list again).
# Cold: ~20-35 minutes on 2 cores and a few GB of module/build cache; warm: instant. Prints the bin directory.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${ETERNIA_CACHE:-$HOME/.cache/eternia-backup}
MOD=$ROOT/tests/k8s
K8S_VERSION=$(awk '$1 == "k8s.io/kubernetes" || $2 == "k8s.io/kubernetes" {print $NF; exit}' "$MOD/go.mod")
KWOK_VERSION=$(awk '$1 == "sigs.k8s.io/kwok" || $2 == "sigs.k8s.io/kwok" {print $NF; exit}' "$MOD/kwok/go.mod")
log() { printf 'install-k8s: %s\n' "$*" >&2; }

if [[ ${1:-} == --regen-replaces ]]; then
  # Re-derive the replace block from the pinned k8s.io/kubernetes go.mod (after bumping its version).
  gomod=$(cd "$MOD" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  staging=${K8S_VERSION/v1./v0.}
  python3 - "$MOD/go.mod" "$gomod" "$staging" <<'PY'
import re, sys
path, upstream, staging = sys.argv[1:]
mods = re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", open(upstream).read(), re.M)
text = re.sub(r"\nreplace \([^)]*\)\n", "\n", open(path).read())
block = "\nreplace (\n" + "".join(f"\t{m} => {m} {staging}\n" for m in mods) + ")\n"
open(path, "w").write(text.rstrip("\n") + "\n" + block)
PY
  (cd "$MOD" && go mod tidy)
  exit 0
fi

DEST=$CACHE/k8s/$K8S_VERSION-kwok-$KWOK_VERSION
BIN=$DEST/bin
mkdir -p "$CACHE"
# One build at a time: a second caller (e.g. started early by scripts/test.sh) waits for the first.
exec 9>"$CACHE/.k8s.lock"
flock 9
want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)
missing=()
for b in "${want[@]}"; do [[ -x $BIN/$b ]] || missing+=("$b"); done
if ((${#missing[@]} == 0)); then
  echo "$BIN"
  exit 0
fi

mkdir -p "$BIN"
export GOFLAGS="-mod=mod -trimpath"
export CGO_ENABLED=0
minor=$(echo "$K8S_VERSION" | cut -d. -f2)
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
start=$SECONDS
if [[ " ${missing[*]} " == *" kube"* ]]; then  # any of kube-apiserver, -controller-manager, -scheduler, kubectl
  log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $K8S_VERSION (one-time, ~20-35 min on 2 cores)"
  (cd "$MOD" && go build -tags selinux,notest -ldflags "-s -w $ldflags" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  log "kubernetes built in $((SECONDS - start)) s"
fi
if [[ ! -x $BIN/etcd ]]; then
  t=$SECONDS
  (cd "$MOD" && go build -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3)
  log "etcd built in $((SECONDS - t)) s"
fi
if [[ ! -x $BIN/kwok ]]; then
  t=$SECONDS
  (cd "$MOD/kwok" && go build -ldflags "-s -w" -o "$BIN/kwok" sigs.k8s.io/kwok/cmd/kwok)
  log "kwok built in $((SECONDS - t)) s"
fi
log "control plane ready in $BIN ($((SECONDS - start)) s)"
echo "$BIN"
