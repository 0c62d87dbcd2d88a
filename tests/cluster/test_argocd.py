"""The Argo CD path, as far as it can be real here (no Argo CD controller runs): the chart rendered as each
Application in argocd/ says (its releaseName, destination namespace, valueFiles; no Helm hooks, as Argo CD
renders), then applied wave by wave in argocd.argoproj.io/sync-wave order with `kubectl apply --server-side`,
as Argo CD's sync does; every wave must be accepted and its workloads available before the next.

What stands in for the cluster's add-ons: a PersistentVolume for the backup claim (a provisioner would make
one), the Secrets the values say exist outside git, and the prometheus-operator CRDs (ServiceMonitor,
PrometheusRule) with permissive schemas: the Applications assume kube-prometheus-stack is installed; their
objects' own schemas are checked offline by scripts/test-chart.sh."""

from __future__ import annotations

import subprocess
from collections import defaultdict

import pytest
import yaml

from conftest import ROOT, helm_binary, secret_doc, deployment_doc

APPLICATIONS = sorted(p for p in (ROOT / "argocd").glob("eternia-backup-*.yaml"))


def crd(kind: str, plural: str) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                 "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}}}]},
    }


def render(application: dict) -> list[dict]:
    source = application["spec"]["source"]
    chart_dir = ROOT / source["path"]
    args = [helm_binary(), "template", source["helm"]["releaseName"], str(chart_dir), "--no-hooks",
            "--namespace", application["spec"]["destination"]["namespace"], "--kube-version", "1.37.2"]
    for f in source["helm"].get("valueFiles", []):
        args += ["-f", str((chart_dir / f).resolve())]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def wave(doc: dict) -> int:
    return int(doc["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))


@pytest.mark.parametrize("path", APPLICATIONS, ids=[p.stem for p in APPLICATIONS])
def test_each_application_syncs_wave_by_wave_and_its_workloads_become_available(cluster, workdir, path):
    application = yaml.safe_load(path.read_text())
    destination = application["spec"]["destination"]["namespace"]
    docs = render(application)
    app_namespace = next(d["metadata"]["namespace"] for d in docs
                         if d["kind"] == "Role" and d["metadata"]["namespace"] != destination)
    cluster.apply([crd("ServiceMonitor", "servicemonitors"), crd("PrometheusRule", "prometheusrules")])
    cluster.kubectl("wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com",
                    "crd/prometheusrules.monitoring.coreos.com", "--timeout=30s")
    backups = workdir / "volume"
    backups.mkdir()
    try:
        # CreateNamespace=true; the app's namespace and Deployment belong to the app's own Application.
        cluster.kubectl("create", "namespace", destination)
        cluster.kubectl("create", "namespace", app_namespace)
        claim = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
        cluster.apply([
            deployment_doc("eternia-backend", app_namespace),
            secret_doc("backup-credentials", destination, {"database-url": "postgres://db/eternia"}),
            secret_doc("eternia-backup-webhook", destination, {"jwt-hs256-secret": "x" * 40}),
            {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{destination}-argocd-volume"},
             "spec": {"capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
                      "accessModes": claim["spec"]["accessModes"], "storageClassName": "",
                      "claimRef": {"namespace": destination, "name": claim["metadata"]["name"]},
                      "hostPath": {"path": str(backups)}}},
        ])
        by_wave = defaultdict(list)
        for d in docs:
            by_wave[wave(d)].append(d)
        assert {-1, 0} <= set(by_wave) <= {-1, 0, 1}, f"the chart's sync waves: {sorted(by_wave)}"

        for w in sorted(by_wave):
            out = cluster.apply(by_wave[w], server_side=True)
            assert out.count("serverside-applied") == len(by_wave[w]), out
            for d in by_wave[w]:
                kind, name, ns = d["kind"], d["metadata"]["name"], d["metadata"].get("namespace", destination)
                if kind == "Deployment":
                    cluster.kubectl("wait", "--for=condition=Available", f"deployment/{name}", "-n", ns,
                                    "--timeout=90s")
                elif kind == "PersistentVolumeClaim":
                    cluster.kubectl("wait", "--for=jsonpath={.status.phase}=Bound", f"pvc/{name}", "-n", ns,
                                    "--timeout=60s")
        values = yaml.safe_load((ROOT / "chart" / application["spec"]["source"]["helm"]["valueFiles"][0]).read_text())
        cron = cluster.get("cronjob", "database-backup", destination)
        assert cron["spec"]["schedule"] == values["schedule"], "the live CronJob has the Application's schedule"
    finally:
        cluster.kubectl("delete", "namespace", destination, app_namespace, "--timeout=120s", check=False)
        cluster.kubectl("delete", "pv", f"{destination}-argocd-volume", "--wait=false", check=False)

