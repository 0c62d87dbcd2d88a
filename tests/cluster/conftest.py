"""The product on a real Kubernetes control plane (scripts/k8s.sh): real API server with RBAC and admission,
real controller manager (Job, CronJob, Deployment, ReplicaSet controllers), real scheduler, kwok as the
kubelet of Deployments' pods, and a job runner (runner.py) that runs the pods of Jobs as local processes.

One control plane per test run (started here unless K8S_ENV names the env file of a running one); each test
gets namespaces of its own. Every component of the product talks to the API with its own ServiceAccount's
token, never as admin, so the real RBAC authorizer decides.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "chart"
CACHE = Path(os.environ.get("ETERNIA_CACHE", Path.home() / ".cache" / "eternia-backup"))
PG_URL = "postgres://postgres@127.0.0.1:5432"
_ids = itertools.count()


def binary() -> Path:
    """The eternia-backup binary the pods' `eternia-backup` entrypoint stands for (built by cargo)."""
    explicit = os.environ.get("ETERNIA_BIN")
    path = Path(explicit) if explicit else ROOT / "target" / "debug" / "eternia-backup"
    if not path.is_file():
        pytest.exit(f"{path} not found: run `cargo build` first (or set ETERNIA_BIN)", returncode=2)
    return path


def helm_binary() -> str:
    for candidate in (os.environ.get("HELM"), str(CACHE / "bin" / "helm"), shutil.which("helm")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.exit("helm not found: run scripts/install-tools.sh (or set HELM)", returncode=2)


class CommandFailed(Exception):
    def __init__(self, args: list[str], code: int, stdout: str, stderr: str):
        super().__init__(f"{' '.join(args)} exited {code}:\n{stderr}{stdout}")
        self.code, self.stdout, self.stderr = code, stdout, stderr


def run(args: list[str], *, input: str | None = None, env: dict | None = None, check: bool = True,
        timeout: float = 300) -> subprocess.CompletedProcess:
    p = subprocess.run(args, input=input, env=env, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise CommandFailed(args, p.returncode, p.stdout, p.stderr)
    return p


def wait_until(what: str, cond, timeout: float = 60, interval: float = 0.2):
    """Polls `cond` until it returns something truthy (returned), or fails naming `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except CommandFailed as e:
            last = e
            last_value = None
        else:
            last_value = last
        if last_value:
            return last_value
        time.sleep(interval)
    raise AssertionError(f"{what}: not reached in {timeout:.0f} s (last: {last!r})")


@dataclass
class Cluster:
    """The running control plane, driven with the real kubectl and helm."""

    env_file: Path
    kubeconfig: Path
    bin: Path
    api: str
    dir: Path

    @classmethod
    def from_env_file(cls, env_file: Path) -> "Cluster":
        values = {}
        for line in env_file.read_text().splitlines():
            if line.startswith("export "):
                k, _, v = line[len("export "):].partition("=")
                values[k] = v
        return cls(env_file, Path(values["KUBECONFIG"]), Path(values["K8S_BIN"]), values["K8S_API"],
                   Path(values["K8S_DIR"]))

    @property
    def kubectl_path(self) -> str:
        return str(self.bin / "kubectl")

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, kubeconfig: Path | None = None,
                timeout: float = 120) -> str:
        p = run([self.kubectl_path, "--kubeconfig", str(kubeconfig or self.kubeconfig), *args], input=input,
                check=check, timeout=timeout)
        return p.stdout

    def get(self, kind: str, name: str | None = None, namespace: str | None = None, selector: str | None = None,
            kubeconfig: Path | None = None) -> Any:
        args = ["get", kind] + ([name] if name else []) + (["-n", namespace] if namespace else ["-A"] if not name else [])
        if selector:
            args += ["-l", selector]
        return json.loads(self.kubectl(*args, "-o", "json", kubeconfig=kubeconfig))

    def apply(self, docs: Any, server_side: bool = False) -> str:
        text = docs if isinstance(docs, str) else yaml.safe_dump_all(docs if isinstance(docs, list) else [docs])
        extra = ["--server-side", "--field-manager", "eternia-tests"] if server_side else []
        return self.kubectl("apply", *extra, "-f", "-", input=text)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), HELM_CACHE_HOME=str(self.dir / "helm-cache"),
                   HELM_CONFIG_HOME=str(self.dir / "helm-config"), HELM_DATA_HOME=str(self.dir / "helm-data"))
        return run([helm_binary(), *args], env=env, check=check)

    def token(self, service_account: str, namespace: str, pod: str | None = None) -> str:
        args = ["create", "token", service_account, "-n", namespace, "--duration", "2h"]
        if pod:
            args += ["--bound-object-kind", "Pod", "--bound-object-name", pod]
        return self.kubectl(*args).strip()

    def kubeconfig_for(self, service_account: str, namespace: str, directory: Path, pod: str | None = None) -> Path:
        """A kubeconfig that authenticates as the ServiceAccount (a token from the TokenRequest API)."""
        admin = yaml.safe_load(self.kubeconfig.read_text())
        ca = admin["clusters"][0]["cluster"]["certificate-authority"]
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": self.api, "certificate-authority": ca}}],
            "users": [{"name": service_account, "user": {"token": self.token(service_account, namespace, pod)}}],
            "contexts": [{"name": "sa", "context": {"cluster": "c", "user": service_account,
                                                   "namespace": namespace}}],
            "current-context": "sa",
        }
        path = directory / f"{namespace}-{service_account}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def api_request(self, method: str, path: str, body: dict | None = None) -> dict:
        """One request to the API server as the admin (client certificate), without a kubectl process."""
        import ssl
        import urllib.request

        admin = yaml.safe_load(self.kubeconfig.read_text())
        user = admin["users"][0]["user"]
        ctx = ssl.create_default_context(cafile=admin["clusters"][0]["cluster"]["certificate-authority"])
        ctx.load_cert_chain(user["client-certificate"], user["client-key"])
        req = urllib.request.Request(self.api + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
            return json.loads(r.read())

    def can_i(self, verb: str, resource: str, namespace: str, service_account: str, sa_namespace: str,
              subresource: str = "", name: str = "") -> bool:
        """The real authorizer's answer (a SubjectAccessReview, as kube-apiserver decides every request)."""
        group, _, res = resource.rpartition("/") if "/" in resource else ("", "", resource)
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": f"system:serviceaccount:{sa_namespace}:{service_account}",
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{sa_namespace}", "system:authenticated"],
                "resourceAttributes": {"namespace": namespace, "verb": verb, "group": group, "resource": res,
                                       "subresource": subresource, "name": name},
            },
        }
        out = self.api_request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
        return bool(out["status"].get("allowed"))


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Cluster:
    given = os.environ.get("K8S_ENV")
    if given:
        yield Cluster.from_env_file(Path(given))
        return
    state = tmp_path_factory.mktemp("k8s")
    subprocess.run([str(ROOT / "scripts" / "k8s.sh"), "start", str(state)], check=True)
    try:
        yield Cluster.from_env_file(state / "env")
    finally:
        subprocess.run([str(ROOT / "scripts" / "k8s.sh"), "stop", str(state)], check=False)


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid() % 10000}-{next(_ids)}"


def psql(db: str, sql: str) -> str:
    p = run(["psql", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-qAt",
             "-c", sql], env={k: v for k, v in os.environ.items() if k != "PGPASSWORD"})
    return p.stdout.strip()


@dataclass
class Database:
    name: str

    @property
    def url(self) -> str:
        return f"{PG_URL}/{self.name}"

    def sql(self, sql: str) -> str:
        return psql(self.name, sql)


@pytest.fixture
def database():
    name = unique("eb_k8s").replace("-", "_")
    psql("postgres", f"CREATE DATABASE {name}")
    db = Database(name)
    db.sql("CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);"
           "INSERT INTO customers (name) SELECT 'customer ' || g FROM generate_series(1, 300) g;")
    yield db
    psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    for leftover in psql("postgres", f"SELECT datname FROM pg_database WHERE datname LIKE '{name}\\_%'").split():
        psql("postgres", f'DROP DATABASE IF EXISTS "{leftover}" WITH (FORCE)')


@dataclass
class Release:
    """One installed copy of the chart: release namespace, app namespace, backup volume."""

    cluster: Cluster
    name: str
    namespace: str
    app_namespace: str
    backups: Path
    values: dict = field(default_factory=dict)

    def full(self, component: str) -> str:
        return f"{self.name}-{component}"

    def upgrade(self, *args: str) -> subprocess.CompletedProcess:
        """`helm upgrade --reuse-values` with the extra arguments (e.g. --set schedule=...)."""
        return self.cluster.helm("upgrade", self.name, str(CHART), "-n", self.namespace, "--reuse-values",
                                 "--wait", "--timeout", "120s", *args)


def secret_doc(name: str, namespace: str, data: dict[str, str], labels: dict | None = None,
               annotations: dict | None = None) -> dict:
    meta = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def deployment_doc(name: str, namespace: str) -> dict:
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1, "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "app", "image": "registry.example.com/eternia/backend:1"}]}},
        },
    }


def install(cluster: Cluster, tmp: Path, database: Database, *extra: str, values: dict | None = None,
            release: str = "eternia-backup") -> Release:
    """Namespaces, the application (a Deployment), the seed's Secret backup-credentials, a PersistentVolume for
    the backup PVC (its hostPath is the local directory the job runner mounts), then `helm install` with
    seed-like values."""
    namespace, app_namespace = unique("backup"), unique("eternia-production")
    backups = tmp / "backups"
    backups.mkdir()
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("create", "namespace", app_namespace)
    cluster.apply([
        deployment_doc("eternia-backend", app_namespace),
        secret_doc("backup-credentials", namespace, {"database-url": database.url}),
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{namespace}-backups"},
         "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                  "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                  "claimRef": {"namespace": namespace, "name": f"{release}-backups"},
                  "hostPath": {"path": str(backups), "type": "Directory"}}},
    ])
    vals = {
        "app": {"namespace": app_namespace, "deployments": ["eternia-backend"]},
        "schedule": "0 2 * * *",
        "credentials": {"existingSecret": "backup-credentials"},
        "persistence": {"size": "10Gi", "storageClass": ""},
        "retention": {"days": 7},
        "logFormat": "text",
        "webhook": {"enabled": False},
    }
    deep_merge(vals, values or {})
    values_file = tmp / f"{namespace}-values.yaml"
    values_file.write_text(yaml.safe_dump(vals))
    cluster.helm("install", release, str(CHART), "-n", namespace, "-f", str(values_file), "--wait",
                 "--timeout", "120s", *extra)
    return Release(cluster, release, namespace, app_namespace, backups, vals)


def deep_merge(into: dict, extra: dict) -> dict:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            deep_merge(into[k], v)
        else:
            into[k] = v
    return into


class PgRestoreGate:
    """A `pg_restore` wrapper (for PG_RESTORE_BIN) that waits while the gate is closed, so a test sees a
    restore running (holding the Lease, its Job active) for exactly as long as it wants."""

    def __init__(self, workdir: Path, closed: bool):
        self.dir = workdir / "gate"
        self.dir.mkdir()
        self.reached = self.dir / "reached"
        self.wrapper = workdir / "pg_restore-gated"
        # `--version` (asked before the restore starts) is the real one's, and does not count as reaching it.
        self.wrapper.write_text(f"#!/bin/bash\n[[ $1 == --version ]] && exec pg_restore --version\n"
                                f"touch '{self.reached}'\n"
                                f"while [ -e '{self.dir}/closed' ]; do sleep 0.05; done\nexec pg_restore \"$@\"\n")
        self.wrapper.chmod(0o755)
        if closed:
            self.close()

    def close(self):
        (self.dir / "closed").write_text("")

    def open(self):
        (self.dir / "closed").unlink(missing_ok=True)


@pytest.fixture
def workdir():
    # Not under /tmp: pods mount an emptyDir at /tmp, and the job runner maps paths under a mount to its
    # local directory, which would also catch the test's own files.
    d = Path(tempfile.mkdtemp(prefix="eternia-k8s-", dir="/var/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)
