"""A job runner: the kubelet for the pods of Jobs, in the test harness.

No container runs on this machine, so the pods the Job controller creates for the chart's Jobs (backup,
restore, drill, `kubectl create job --from=cronjob/...`) are run here as local processes, as a kubelet would
run the container:
- command and args from the pod spec; the image's entrypoint (`/usr/local/bin/eternia-backup`) is the binary
  cargo built;
- the environment resolved from the API as the kubelet does: `value`, `secretKeyRef`, `configMapKeyRef`
  (`optional` honoured), `fieldRef`, `envFrom`;
- volumes: a PersistentVolumeClaim is the hostPath of the PersistentVolume bound to it, an emptyDir a fresh
  directory, Secret and ConfigMap volumes their files; a path inside a mount (BACKUP_DIR=/backups) is
  rewritten to the local directory;
- the API credentials are the pod's ServiceAccount's token (TokenRequest, bound to the pod), as a kubeconfig;
- the pod's phase follows the process: Running while it runs, then Succeeded or Failed with the exit code, so
  the real Job controller decides Complete/Failed (kwok leaves these pods alone, see tests/k8s/kwok/stages).

Only pods in the namespaces a test hands to the runner are touched.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from conftest import Cluster, binary

ENTRYPOINT = "/usr/local/bin/eternia-backup"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Ran:
    namespace: str
    pod: str
    job: str
    args: list[str]
    code: int
    log: str
    started: float = 0.0  # when the process was spawned (epoch seconds)
    finished: float = 0.0  # when it exited


class LocalPod:
    """What a pod's first container needs to run here: argv, environment, working directories."""

    def __init__(self, cluster: Cluster, pod: dict, scratch: Path, overrides: dict[str, str] | None = None):
        self.cluster, self.pod = cluster, pod
        self.namespace = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{self.name[:40]}-", dir=scratch))
        self.container = pod["spec"]["containers"][0]
        self.mounts = self._mounts()
        self.env = self._env(overrides or {})
        self.argv = self._argv()

    # --- volumes ---------------------------------------------------------------------------------------
    def _mounts(self) -> dict[str, Path]:
        volumes = {v["name"]: v for v in self.pod["spec"].get("volumes", [])}
        mounts = {}
        for m in self.container.get("volumeMounts", []):
            v = volumes[m["name"]]
            if "persistentVolumeClaim" in v:
                claim = self.cluster.get("pvc", v["persistentVolumeClaim"]["claimName"], self.namespace)
                pv = self.cluster.get("pv", claim["spec"]["volumeName"])
                local = Path(pv["spec"]["hostPath"]["path"])
            elif "emptyDir" in v:
                local = self.scratch / "volumes" / m["name"]
                local.mkdir(parents=True, exist_ok=True)
            elif "secret" in v or "configMap" in v:
                local = self.scratch / "volumes" / m["name"]
                local.mkdir(parents=True, exist_ok=True)
                self._materialise(v, local)
            else:
                continue  # projected service-account token: the kubeconfig below carries the credentials
            mounts[m["mountPath"].rstrip("/")] = local
        return mounts

    def _materialise(self, volume: dict, into: Path):
        kind, ref = ("secret", volume["secret"]) if "secret" in volume else ("configmap", volume["configMap"])
        obj = self.cluster.get(kind, ref.get("secretName") or ref.get("name"), self.namespace)
        data = obj.get("data") or {}
        items = ref.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            raw = data[item["key"]]
            content = base64.b64decode(raw) if kind == "secret" else raw.encode()
            (into / item["path"]).write_bytes(content)

    def _local(self, value: str) -> str:
        for mount, local in self.mounts.items():
            if value == mount or value.startswith(mount + "/"):
                return str(local) + value[len(mount):]
        return value

    # --- environment -----------------------------------------------------------------------------------
    def _ref(self, kind: str, ref: dict) -> str | None:
        obj = self.cluster.kubectl("get", kind, ref["name"], "-n", self.namespace, "--ignore-not-found", "-o", "json")
        data = (json.loads(obj).get("data") or {}) if obj.strip() else None
        if data is None or ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise RuntimeError(f"pod {self.name}: {kind} {ref['name']} key {ref['key']} missing (CreateContainerConfigError)")
        raw = data[ref["key"]]
        return base64.b64decode(raw).decode() if kind == "secret" else raw

    def _field(self, path: str) -> str:
        value = self.pod
        for part in path.split("."):
            value = value[part]
        return value

    def _env(self, overrides: dict[str, str]) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in self.container.get("envFrom", []):
            kind = "secret" if "secretRef" in source else "configmap"
            ref = source.get("secretRef") or source.get("configMapRef")
            obj = json.loads(self.cluster.kubectl("get", kind, ref["name"], "-n", self.namespace, "-o", "json"))
            for k, v in (obj.get("data") or {}).items():
                env[source.get("prefix", "") + k] = base64.b64decode(v).decode() if kind == "secret" else v
        for e in self.container.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
                continue
            vf = e.get("valueFrom", {})
            value = None
            if "secretKeyRef" in vf:
                value = self._ref("secret", vf["secretKeyRef"])
            elif "configMapKeyRef" in vf:
                value = self._ref("configmap", vf["configMapKeyRef"])
            elif "fieldRef" in vf:
                value = self._field(vf["fieldRef"]["fieldPath"])
            if value is not None:
                env[e["name"]] = value
        # Paths inside the pod's mounts become the local directories; then what the kubelet and the runner add
        # (the container's hostname is the pod's name), never rewritten.
        env = {k: self._local(v) for k, v in env.items()}
        env.update({"PATH": os.environ["PATH"], "HOME": str(self.scratch), "HOSTNAME": self.name})
        sa = self.pod["spec"].get("serviceAccountName", "default")
        if self.pod["spec"].get("automountServiceAccountToken", True) is not False:
            env["KUBECONFIG"] = str(self.cluster.kubeconfig_for(sa, self.namespace, self.scratch, pod=self.name))
        else:
            env["KUBECONFIG"] = str(self.scratch / "no-credentials.kubeconfig")
        env.update(overrides)
        return env

    def _argv(self) -> list[str]:
        command = self.container.get("command") or [ENTRYPOINT]
        argv = [self._local(a) for a in command + self.container.get("args", [])]
        # The image's entrypoint is the binary cargo built (which may itself live under /tmp: not rewritten).
        return [str(binary()) if a == ENTRYPOINT else a for a in argv]

    def spawn(self, log: Path) -> subprocess.Popen:
        return subprocess.Popen(self.argv, env=self.env, cwd=self.scratch, stdout=log.open("wb"),
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


class JobRunner:
    """Runs every pod of a Job in the given namespaces, one process each, as it is scheduled."""

    def __init__(self, cluster: Cluster, namespaces: list[str], scratch: Path):
        self.cluster, self.namespaces, self.scratch = cluster, namespaces, scratch
        self.ran: list[Ran] = []
        self.errors: list[str] = []
        self._seen: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> "JobRunner":
        t = threading.Thread(target=self._watch, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=120)

    def _watch(self):
        while not self._stop.is_set():
            for ns in self.namespaces:
                try:
                    pods = self.cluster.get("pods", namespace=ns, selector="batch.kubernetes.io/job-name")["items"]
                except Exception as e:  # the namespace may be going away at the end of a test
                    self.errors.append(str(e))
                    continue
                for pod in pods:
                    uid = pod["metadata"]["uid"]
                    if uid in self._seen or not pod["spec"].get("nodeName"):
                        continue
                    if pod.get("status", {}).get("phase", "Pending") != "Pending":
                        continue
                    self._seen.add(uid)
                    t = threading.Thread(target=self._run, args=(pod,), daemon=True)
                    t.start()
                    self._threads.append(t)
            self._stop.wait(0.2)

    def _status(self, pod: dict, phase: str, state: dict, ready: bool, started: str | None = None):
        name = pod["spec"]["containers"][0]["name"]
        image = pod["spec"]["containers"][0]["image"]
        t = now()
        status = {
            "status": {
                "phase": phase,
                "startTime": started or t,
                "hostIP": "127.0.0.1",
                "podIP": "127.0.0.1",
                "conditions": [
                    {"type": "Initialized", "status": "True", "lastTransitionTime": t},
                    {"type": "Ready", "status": str(ready), "lastTransitionTime": t},
                    {"type": "ContainersReady", "status": str(ready), "lastTransitionTime": t},
                ],
                "containerStatuses": [{"name": name, "image": image, "imageID": "", "ready": ready,
                                       "restartCount": 0, "started": ready, "state": state}],
            }
        }
        self.cluster.kubectl("patch", "pod", pod["metadata"]["name"], "-n", pod["metadata"]["namespace"],
                             "--subresource=status", "--type=merge", "-p", json.dumps(status))

    def _run(self, pod: dict):
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        job = pod["metadata"]["labels"].get("batch.kubernetes.io/job-name", "")
        log = self.scratch / f"{ns}-{name}.log"
        try:
            local = LocalPod(self.cluster, pod, self.scratch)
        except Exception as e:
            log.write_text(f"job runner: cannot start the container: {e}\n")
            self._status(pod, "Failed", {"terminated": {"exitCode": 128, "reason": "ContainerCannotRun",
                                                        "message": str(e)[:500]}}, False)
            with self._lock:
                self.ran.append(Ran(ns, name, job, [], 128, log.read_text()))
            return
        started, t_started = now(), time.time()
        proc = local.spawn(log)
        self._status(pod, "Running", {"running": {"startedAt": started}}, True, started)
        code = proc.wait()
        t_finished = time.time()
        phase = "Succeeded" if code == 0 else "Failed"
        self._status(pod, phase, {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                                 "startedAt": started, "finishedAt": now()}}, False, started)
        with self._lock:
            self.ran.append(Ran(ns, name, job, local.argv, code, log.read_text(errors="replace"), t_started,
                                t_finished))

    def wait_for_file(self, path: Path, namespace: str, job: str, timeout: float = 120):
        """Waits until a wrapper run by `job` creates `path`; fails with the job's log if the job ended first."""
        from conftest import wait_until

        def reached():
            ended = [r for r in self.ran if r.namespace == namespace and r.job == job]
            assert not ended, f"{job} ended (exit {ended[0].code}) before {path.name}:\n{ended[0].log}"
            return path.exists()

        wait_until(f"{job} creates {path.name}", reached, timeout=timeout)

    def wait_for_job(self, namespace: str, job: str, timeout: float = 180) -> Ran:
        """Waits until the Job controller marks the Job Complete or Failed; returns the (last) run of its pod."""
        from conftest import wait_until

        def finished():
            j = self.cluster.get("job", job, namespace)
            for c in j.get("status", {}).get("conditions", []):
                if c["type"] in ("Complete", "Failed") and c["status"] == "True":
                    return c["type"]
            return None

        try:
            wait_until(f"Job {namespace}/{job} finished", finished, timeout=timeout)
        except AssertionError as e:
            logs = "".join(f"\n--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
                           for p in self.scratch.glob(f"{namespace}-{job}-*.log"))
            raise AssertionError(f"{e}; its pods' output so far:{logs or ' none (no pod ran)'}") from None
        runs = [r for r in self.ran if r.namespace == namespace and r.job == job]
        assert runs, f"Job {job} finished without a pod run by the job runner"
        return runs[-1]


def run_pod_template_locally(cluster: Cluster, pod: dict, scratch: Path, log: Path,
                             overrides: dict[str, str] | None = None) -> subprocess.Popen:
    """Starts the container of a live pod (e.g. the webhook Deployment's pod, which kwok keeps Ready) as a local
    process with the pod's own environment and ServiceAccount token."""
    return LocalPod(cluster, pod, scratch, overrides).spawn(log)


def stop(proc: subprocess.Popen):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

