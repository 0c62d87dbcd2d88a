"""The Grafana dashboard's queries, checked against what really exports the metrics they name.

Shared by tests/chart/test_dashboard.py (the queries parse with Prometheus' own grammar; kube-state-metrics
metrics and labels against tests/dashboard/kube-state-metrics.txt) and tests/cluster/test_dashboard.py (the
eternia_* metrics and labels against the /metrics of a running webhook). Import it with
`sys.path.insert(0, str(ROOT / "tests" / "dashboard"))`.

    queries(dashboard)          every PromQL query: panel targets and the variables' label_values() selectors
    substitute(expr, values)    the dashboard's variables replaced as Grafana would, with sample values
    parse(queries)              each query through promql-check (Prometheus' parser): error, or selectors and labels
    exposition(text)            metric -> label names of a Prometheus text exposition (/metrics)
    usage_problems(...)         metrics or labels a parsed query uses that the given exporter does not have

promql-check is built by scripts/install-promql-check.sh (into $ETERNIA_CACHE/promql-check, once per source);
$PROMQL_CHECK names a binary to use instead.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

ROOT = Path(__file__).resolve().parents[2]
DOCS_JSON = ROOT / "docs" / "grafana-dashboard.json"
CHART_JSON = ROOT / "chart" / "dashboards" / "eternia-backup.json"
KUBE_STATE_METRICS = Path(__file__).resolve().parent / "kube-state-metrics.txt"
INSTALL = ROOT / "scripts" / "install-promql-check.sh"

# What Prometheus (prometheus-operator's ServiceMonitor scrape) adds to every series of the webhook's /metrics.
TARGET_LABELS = frozenset({"namespace", "service", "pod", "container", "endpoint", "job", "instance"})
# Grafana's built-in variables, with values like those Grafana gives them.
BUILTIN_VALUES = {"__rate_interval": "2m", "__interval": "1m", "__range": "7d", "__range_s": "604800",
                  "__interval_ms": "60000"}
# Sample values of the dashboard's query variables (its textbox variables default to their own `query`).
SAMPLE_VALUES = {"namespace": "backup"}
PRODUCT_PREFIX = "eternia_"
# $name, ${name} or ${name:format}, [[name]] (Grafana's variable syntaxes).
VARIABLE = re.compile(r"\$\{(\w+)(?::[\w-]+)?\}|\$(\w+)|\[\[(\w+)\]\]")
LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*$", re.S)


@dataclass
class Query:
    where: str                # "panel <title> / <refId>" or "variable <name>"
    expr: str                 # as written in the dashboard
    # label_values(selector, label): the label the variable reads, which the selector's metric must carry.
    reads_label: str | None = None


@dataclass
class Parsed:
    query: Query
    promql: str               # the expression Prometheus receives (variables substituted)
    error: str | None = None
    selectors: list[dict] = field(default_factory=list)
    label_uses: list[dict] = field(default_factory=list)


def load(path: Path = DOCS_JSON) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def panels(dashboard: dict) -> list[dict]:
    """Every panel, those inside (collapsed) rows included."""
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def variables(dashboard: dict) -> list[dict]:
    return dashboard.get("templating", {}).get("list", [])


def queries(dashboard: dict) -> list[Query]:
    found = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            if "expr" in target:
                found.append(Query(f'panel "{panel.get("title")}" / {target.get("refId")}', target["expr"]))
    for variable in variables(dashboard):
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = LABEL_VALUES.match(text)
        if match:
            found.append(Query(f'variable "{variable["name"]}"', match.group(1), reads_label=match.group(2)))
        else:
            found.append(Query(f'variable "{variable["name"]}"', text))
    return found


def variable_values(dashboard: dict) -> dict[str, str]:
    """A value for each of the dashboard's variables: textbox/constant/custom ones their default, query ones a
    sample, built-in ones what Grafana would give."""
    values = dict(BUILTIN_VALUES)
    for variable in variables(dashboard):
        name = variable["name"]
        if variable["type"] in ("textbox", "constant", "custom"):
            values[name] = str(variable["query"]).split(",")[0].strip()
        elif name in SAMPLE_VALUES:
            values[name] = SAMPLE_VALUES[name]
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    """expr with every variable replaced; a variable without a value is an error (Grafana would send it as is)."""

    def value(match: re.Match) -> str:
        name = next(g for g in match.groups() if g)
        if name not in values:
            raise KeyError(f"unknown dashboard variable ${name} in {expr!r}")
        return values[name]

    return VARIABLE.sub(value, expr)


@functools.lru_cache(maxsize=1)
def promql_check() -> str:
    explicit = os.environ.get("PROMQL_CHECK")
    if explicit:
        return explicit
    proc = subprocess.run([str(INSTALL)], capture_output=True, text=True, check=False, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{INSTALL} failed (exit {proc.returncode}):\n{proc.stderr}")
    return proc.stdout.strip().splitlines()[-1]


def parse(dashboard: dict) -> list[Parsed]:
    """Every query of the dashboard, variables substituted, parsed by Prometheus' parser (promql-check)."""
    values = variable_values(dashboard)
    found = queries(dashboard)
    promql = [substitute(q.expr, values) for q in found]
    proc = subprocess.run([promql_check()], input=json.dumps(promql), capture_output=True, text=True,
                          check=True, timeout=60)
    results = json.loads(proc.stdout)
    assert len(results) == len(found), proc.stdout
    parsed = []
    for query, text, result in zip(found, promql, results):
        p = Parsed(query, text, result.get("error"), result.get("selectors") or [], result.get("label_uses") or [])
        if query.reads_label and not p.error:
            p.label_uses.append({"how": "label_values", "labels": [query.reads_label],
                                 "metrics": sorted({s["metric"] for s in p.selectors})})
        parsed.append(p)
    return parsed


def kube_state_metrics(path: Path = KUBE_STATE_METRICS) -> dict[str, set[str]]:
    """metric -> documented labels, from the vendored list."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            assert words[0] not in found, f"{words[0]} is listed twice in {path.name}"
            found[words[0]] = set(words[1:])
    return found


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+")
SAMPLE_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"')


def exposition(text: str) -> dict[str, set[str]]:
    """metric -> label names, from a Prometheus text exposition: names from `# HELP`/`# TYPE` lines (printed even
    while a metric has no sample) and samples; labels from the samples present."""
    found: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            found.setdefault(line.split()[2], set())
        elif line and not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            found.setdefault(match.group(1), set()).update(SAMPLE_LABEL.findall(match.group(2) or ""))
    return found


def usage_problems(parsed: Iterable[Parsed], known: dict[str, set[str]], in_scope: Callable[[str], bool],
                   source: str) -> list[str]:
    """What the parsed queries use of the metrics in scope that `known` (metric -> the labels its series carry)
    does not have: an unknown metric, or a label a selector matches on, or a grouping/join/label_values needs,
    that the metric lacks. Parse errors and selectors without a metric name are problems whatever the scope."""
    problems = []
    for p in parsed:
        where = p.query.where
        if p.error:
            problems.append(f"{where}: does not parse: {p.error}\n    {p.promql}")
            continue
        for selector in p.selectors:
            metric = selector["metric"]
            if not metric:
                problems.append(f"{where}: a selector without a metric name")
            elif in_scope(metric):
                if metric not in known:
                    problems.append(f"{where}: {metric} is not in {source}")
                    continue
                for label in selector["labels"]:
                    if label not in known[metric]:
                        problems.append(f"{where}: matches on {label}, which {metric} lacks in {source} "
                                        f"(it has {sorted(known[metric])})")
        for use in p.label_uses:
            for metric in use["metrics"]:
                if metric and in_scope(metric) and metric in known:
                    for label in use["labels"]:
                        if label not in known[metric]:
                            problems.append(f"{where}: {use['how']} ({label}) needs {label} on {metric}, which "
                                            f"{source} does not give it (it has {sorted(known[metric])})")
    return problems


def is_product_metric(metric: str) -> bool:
    return metric.startswith(PRODUCT_PREFIX)


def product_metrics_used(parsed: Iterable[Parsed]) -> set[str]:
    return {s["metric"] for p in parsed for s in p.selectors if is_product_metric(s["metric"])}
