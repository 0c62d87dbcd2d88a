"""Helpers for the chart tests: render the chart with the real helm binary and look into the result.

helm comes from $HELM, else $ETERNIA_CACHE/bin/helm (scripts/install-tools.sh puts it there), else PATH.
Renders are parsed with UniqueKeyLoader, which rejects a mapping that repeats a key (PyYAML's own loaders
silently keep the last one), so every test fails on a manifest with duplicate keys.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "chart"
CI_VALUES = CHART / "ci"
RELEASE = "eternia-backup"
NAMESPACE = "backup"
APP_NAMESPACE = "eternia-production"


def helm_binary() -> str:
    candidates = [
        os.environ.get("HELM"),
        str(Path(os.environ.get("ETERNIA_CACHE", Path.home() / ".cache" / "eternia-backup")) / "bin" / "helm"),
        shutil.which("helm"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.exit("helm not found: run scripts/install-tools.sh (or set HELM)", returncode=2)


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that raises on a duplicate mapping key instead of keeping the last value."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key {key!r} (first at {seen[key]})", key_node.start_mark,
                    )
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


def load_all_unique(text: str) -> list[Any]:
    """The YAML documents of text (empty ones dropped), refusing duplicate keys."""
    return [d for d in yaml.load_all(text, Loader=UniqueKeyLoader) if d]


class RenderError(Exception):
    """helm refused to render; .stderr holds its message."""

    def __init__(self, stderr: str):
        super().__init__(stderr)
        self.stderr = stderr


@dataclass
class Rendered:
    docs: list[dict]
    sources: list[str]

    def of_kind(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict:
        found = [
            d
            for d in self.of_kind(kind)
            if d["metadata"]["name"] == name
            and (namespace is None or d["metadata"].get("namespace") == namespace)
        ]
        assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}: {self.names()}"
        return found[0]

    def find(self, kind: str, name: str) -> dict | None:
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        return found[0] if found else None

    def names(self) -> list[str]:
        return [f'{d["kind"]}/{d["metadata"]["name"]}' for d in self.docs]

    def configmap_data(self, name: str) -> dict[str, str]:
        return self.get("ConfigMap", name).get("data") or {}


def _helm_args(
    set_args: Iterable[str],
    values_files: Iterable[str | Path],
    set_string: Iterable[str],
    set_json: Iterable[str] = (),
) -> list[str]:
    args: list[str] = []
    for f in values_files:
        path = Path(f)
        if not path.is_absolute():
            path = ROOT / path
        args += ["-f", str(path)]
    for s in set_args:
        args += ["--set", s]
    for s in set_string:
        args += ["--set-string", s]
    for s in set_json:
        args += ["--set-json", s]
    return args


@functools.lru_cache(maxsize=256)
def _render_cached(args: tuple[str, ...], release: str = RELEASE) -> Rendered:
    proc = subprocess.run(
        [helm_binary(), "template", release, str(CHART), "--namespace", NAMESPACE, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RenderError(proc.stderr)
    sources = [
        line.removeprefix("# Source: ").strip()
        for line in proc.stdout.splitlines()
        if line.startswith("# Source: ")
    ]
    return Rendered(docs=load_all_unique(proc.stdout), sources=sources)


def render(
    *set_args: str,
    values_files: Iterable[str | Path] = (),
    set_string: Iterable[str] = (),
    set_json: Iterable[str] = (),
    release: str = RELEASE,
) -> Rendered:
    """helm template the chart (namespace backup, release eternia-backup unless given) with --set args, values files."""
    return _render_cached(tuple(_helm_args(set_args, values_files, set_string, set_json)), release)


def render_error(
    *set_args: str,
    values_files: Iterable[str | Path] = (),
    set_string: Iterable[str] = (),
    set_json: Iterable[str] = (),
) -> str:
    """Render expecting helm to refuse; returns helm's error message."""
    try:
        _render_cached(tuple(_helm_args(set_args, values_files, set_string, set_json)))
    except RenderError as err:
        return err.stderr
    raise AssertionError(
        f"helm rendered the chart although it should have refused: {set_args} {set_string} {set_json}"
    )


SCHEMA_ERROR = "values don't meet the specifications of the schema"


# --- looking into pods ---------------------------------------------------------------------------


def pod_spec(obj: dict) -> dict:
    kind = obj["kind"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return obj["spec"]["template"]["spec"]
    if kind == "Pod":
        return obj["spec"]
    raise KeyError(kind)


def workloads(rendered: Rendered) -> list[dict]:
    return [d for d in rendered.docs if d["kind"] in ("CronJob", "Deployment", "Job", "Pod")]


def container(obj: dict, name: str) -> dict:
    found = [c for c in pod_spec(obj)["containers"] if c["name"] == name]
    assert len(found) == 1, f"no container {name} in {obj['kind']}/{obj['metadata']['name']}"
    return found[0]


@dataclass(frozen=True)
class SecretRef:
    secret: str
    key: str


def container_env(rendered: Rendered, ctr: dict) -> dict[str, Any]:
    """The environment a container would see: ConfigMap envFrom first, then env (which wins).

    Plain values are strings; secretKeyRef values are SecretRef; fieldRef values are 'fieldRef:<path>'.
    """
    env: dict[str, Any] = {}
    for source in ctr.get("envFrom", []):
        if "configMapRef" in source:
            env.update(rendered.configmap_data(source["configMapRef"]["name"]))
        else:
            raise AssertionError(f"unexpected envFrom source {source}")
    for var in ctr.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = SecretRef(ref["name"], ref["key"])
        elif "fieldRef" in var["valueFrom"]:
            env[var["name"]] = "fieldRef:" + var["valueFrom"]["fieldRef"]["fieldPath"]
        else:
            env[var["name"]] = var["valueFrom"]
    return env


def all_containers(obj: dict) -> list[dict]:
    spec = pod_spec(obj)
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def labels_of(obj: dict) -> dict[str, str]:
    return obj["metadata"].get("labels") or {}


def component_of(obj: dict) -> str | None:
    return labels_of(obj).get("app.kubernetes.io/component")


def load_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="session")
def default_render() -> Rendered:
    return render()


@pytest.fixture(scope="session")
def maximal_render() -> Rendered:
    return render(values_files=[CI_VALUES / "maximal-values.yaml"])
