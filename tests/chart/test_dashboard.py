"""The Grafana dashboard: one JSON file (docs/grafana-dashboard.json, shipped by the chart as
chart/dashboards/eternia-backup.json), whose every query parses with Prometheus' own grammar (promql-check, built
from github.com/prometheus/prometheus/promql/parser by scripts/install-promql-check.sh) and names only metrics and
labels that exist: kube-state-metrics' documented ones (tests/dashboard/kube-state-metrics.txt), and the product's,
here as src/webhook/metrics.rs declares them (tests/cluster/test_dashboard.py checks them against the /metrics of a
running webhook). The chart's ConfigMap carries the file for the Grafana sidecar, only when enabled.
"""

from __future__ import annotations

import copy
import json
import re
import sys

import pytest

from conftest import CHART, ROOT, component_of, load_yaml, render

sys.path.insert(0, str(ROOT / "tests" / "dashboard"))
import dashboard_queries as dq  # noqa: E402

METRICS_SOURCE = ROOT / "src" / "webhook" / "metrics.rs"
CONFIGMAP = "eternia-backup-dashboard"
DATA_KEY = "eternia-backup.json"
ENABLED = "metrics.grafanaDashboard.enabled=true"


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return dq.load(dq.DOCS_JSON)


@pytest.fixture(scope="module")
def parsed(dashboard) -> list[dq.Parsed]:
    return dq.parse(dashboard)


def declared_product_metrics() -> dict[str, set[str]]:
    """metric -> label names, as src/webhook/metrics.rs writes them: the names of its header() calls (HELP/TYPE),
    the labels of its sample format strings (`name{{label=\\"{value}\\"}}`)."""
    source = METRICS_SOURCE.read_text(encoding="utf-8")
    found = {name: set() for name in re.findall(r'header\(\s*&mut out,\s*"(eternia_\w+)"', source)}
    for name, labels in re.findall(r'"(eternia_\w+)\{\{(.*?)\}\}', source):
        found.setdefault(name, set()).update(re.findall(r'(\w+)=\\"', labels))
    return found


# --- one file, the shape Grafana expects ---------------------------------------------------------


def test_the_dashboard_in_docs_and_the_one_the_chart_ships_are_the_same_file():
    assert dq.CHART_JSON.read_bytes() == dq.DOCS_JSON.read_bytes(), (
        "chart/dashboards/eternia-backup.json differs from docs/grafana-dashboard.json: "
        "edit docs/grafana-dashboard.json, then cp docs/grafana-dashboard.json chart/dashboards/eternia-backup.json"
    )


def test_the_dashboard_has_its_uid_and_chooses_the_prometheus_data_source_and_namespace(dashboard):
    assert dashboard["uid"] == "eternia-backup"
    assert dashboard["schemaVersion"] == 39
    assert dashboard["id"] is None, "an id would clash with the id of another dashboard on import"
    variables = {v["name"]: v for v in dq.variables(dashboard)}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    namespace = variables["namespace"]
    assert namespace["type"] == "query" and namespace["includeAll"] and namespace["multi"]
    assert namespace["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    order = [v["name"] for v in dq.variables(dashboard)]
    assert order.index("backup_cronjob") < order.index("namespace"), "namespace's query reads $backup_cronjob"


def test_the_cronjob_variables_default_to_the_charts_cronjob_names(dashboard):
    values = load_yaml(CHART / "values.yaml")
    variables = {v["name"]: v for v in dq.variables(dashboard)}
    for variable, name in (("backup_cronjob", values["backup"]["cronJobName"]),
                           ("drill_cronjob", values["drill"]["cronJobName"])):
        assert variables[variable]["type"] == "textbox"
        assert variables[variable]["query"] == name
        assert variables[variable]["current"]["value"] == name


def test_every_panel_queries_the_chosen_data_source_and_says_what_it_shows(dashboard):
    ids = [p["id"] for p in dq.panels(dashboard)]
    assert len(ids) == len(set(ids)), ids
    graphs = [p for p in dq.panels(dashboard) if p["type"] != "row"]
    assert len(graphs) >= 12
    for panel in graphs:
        title = panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert len(panel.get("description", "").split()) >= 12, f"{title}: describe what the panel answers"
        assert panel["targets"], title
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], title
            assert target["expr"].strip(), title
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, title


def test_the_dashboard_has_the_panels_the_docs_describe(dashboard):
    titles = {p["title"] for p in dq.panels(dashboard)}
    docs = (ROOT / "docs" / "dashboard.md").read_text(encoding="utf-8")
    section = docs.split("\n## Panels\n", 1)[1].split("\n## ", 1)[0]
    described = set(re.findall(r"^### (.+)$", section, re.M))
    assert titles - {"Backups", "Restore drills", "Restores", "Webhook"} == described


# --- the queries ---------------------------------------------------------------------------------


def test_every_query_parses_with_prometheus_own_grammar(parsed):
    assert len(parsed) >= 15
    broken = [f"{p.query.where}: {p.error}\n    {p.promql}" for p in parsed if p.error]
    assert broken == [], "\n".join(broken)


def test_every_dashboard_variable_a_query_uses_is_substituted_before_parsing(parsed):
    for p in parsed:
        assert "$" not in p.promql and "[[" not in p.promql, p.promql


def test_the_substitution_refuses_a_variable_the_dashboard_does_not_define(dashboard):
    values = dq.variable_values(dashboard)
    assert dq.substitute('x{namespace=~"$namespace"}[$__rate_interval]', values) == 'x{namespace=~"backup"}[2m]'
    assert dq.substitute('x{a="${backup_cronjob}"}', values) == 'x{a="database-backup"}'
    with pytest.raises(KeyError, match="namespce"):
        dq.substitute('x{namespace=~"$namespce"}', values)


def test_every_metric_a_query_names_is_the_products_or_in_kube_state_metrics_documented_set(parsed):
    ksm = dq.kube_state_metrics()
    problems = dq.usage_problems(parsed, ksm, lambda m: not dq.is_product_metric(m),
                                 "kube-state-metrics' documented set (tests/dashboard/kube-state-metrics.txt)")
    assert problems == [], "\n".join(problems)


def test_every_kube_state_metrics_metric_listed_is_one_the_dashboard_reads(parsed):
    used = {s["metric"] for p in parsed for s in p.selectors}
    assert set(dq.kube_state_metrics()) - used == set(), "remove what the dashboard no longer reads"


def test_the_product_metrics_the_dashboard_reads_are_declared_by_the_webhook_with_those_labels(parsed):
    declared = declared_product_metrics()
    assert "eternia_backup_newest_size_bytes" in declared and declared["eternia_backup_count"] == {"store"}
    known = {name: labels | dq.TARGET_LABELS for name, labels in declared.items()}
    problems = dq.usage_problems(parsed, known, dq.is_product_metric, "src/webhook/metrics.rs")
    assert problems == [], "\n".join(problems)


def test_the_dashboard_reads_the_per_store_backup_restore_and_webhook_metrics(parsed):
    assert dq.product_metrics_used(parsed) >= {
        "eternia_backup_newest_timestamp_seconds", "eternia_backup_newest_size_bytes", "eternia_backup_count",
        "eternia_restore_total", "eternia_restore_in_progress", "eternia_webhook_requests_total",
        "eternia_webhook_auth_failures_total",
    }


def test_the_checks_catch_a_syntax_error_an_unknown_metric_and_a_label_a_metric_lacks():
    bad = {
        "templating": {"list": []},
        "panels": [{"title": "bad", "targets": [
            {"refId": "A", "expr": "sum(rate(kube_job_status_active[5m])"},
            {"refId": "B", "expr": 'kube_job_status_succeded{namespace="x"}'},
            {"refId": "C", "expr": 'max by (cronjob) (kube_job_status_active{owner_name="x"})'},
            {"refId": "D", "expr": "a * on (namespace, job_name) group_left (owner_nme) kube_job_owner"},
            {"refId": "E", "expr": 'eternia_backup_count{stor="local"}'},
        ]}],
    }
    parsed = dq.parse(bad)
    ksm = dq.usage_problems(parsed, dq.kube_state_metrics(), lambda m: not dq.is_product_metric(m) and m != "a",
                            "ksm")
    assert any("bad\" / A: does not parse" in p for p in ksm), ksm
    assert any("kube_job_status_succeded is not in ksm" in p for p in ksm), ksm
    assert any("matches on owner_name, which kube_job_status_active lacks" in p for p in ksm), ksm
    assert any("by (cronjob) needs cronjob on kube_job_status_active" in p for p in ksm), ksm
    assert any("group_left (owner_nme) needs owner_nme on kube_job_owner" in p for p in ksm), ksm
    product = dq.usage_problems(parsed, {"eternia_backup_count": {"store"}}, dq.is_product_metric, "metrics")
    assert [p for p in product if "does not parse" not in p] == [
        "panel \"bad\" / E: matches on stor, which eternia_backup_count lacks in metrics (it has ['store'])"]


def test_the_exposition_parser_reads_names_from_help_lines_and_labels_from_samples():
    text = (
        "# HELP eternia_backup_count Complete backups per store.\n# TYPE eternia_backup_count gauge\n"
        'eternia_backup_count{store="local"} 3\n'
        "# HELP eternia_restore_in_progress 1 while a restore runs.\n# TYPE eternia_restore_in_progress gauge\n"
        'eternia_webhook_requests_total{route="/v1/restores/{id}",status="404"} 1\n'
    )
    assert dq.exposition(text) == {"eternia_backup_count": {"store"}, "eternia_restore_in_progress": set(),
                                   "eternia_webhook_requests_total": {"route", "status"}}


# --- the chart's ConfigMap -----------------------------------------------------------------------


def dashboard_configmaps(rendered):
    return [cm for cm in rendered.of_kind("ConfigMap") if DATA_KEY in (cm.get("data") or {})]


def test_the_dashboard_configmap_is_only_rendered_when_enabled(default_render):
    assert dashboard_configmaps(default_render) == []
    assert len(dashboard_configmaps(render(ENABLED))) == 1


def test_the_configmap_carries_the_sidecar_label_and_the_json_file_itself():
    cm = render(ENABLED).get("ConfigMap", CONFIGMAP, "backup")
    labels = cm["metadata"]["labels"]
    assert labels["grafana_dashboard"] == "1"
    assert component_of(cm) == "monitoring"
    assert cm["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "1"
    assert cm["data"] == {DATA_KEY: dq.CHART_JSON.read_text(encoding="utf-8")}


def test_the_sidecar_label_extra_labels_folder_annotation_and_namespace_are_configurable():
    rendered = render(ENABLED, "metrics.grafanaDashboard.label=dashboards", "metrics.grafanaDashboard.labelValue=eternia",
                      "metrics.grafanaDashboard.namespace=monitoring",
                      "metrics.grafanaDashboard.labels.release=kube-prometheus-stack",
                      "metrics.grafanaDashboard.annotations.grafana_folder=Backups")
    cm = rendered.get("ConfigMap", CONFIGMAP, "monitoring")
    labels = cm["metadata"]["labels"]
    assert labels["dashboards"] == "eternia" and "grafana_dashboard" not in labels
    assert labels["release"] == "kube-prometheus-stack"
    assert cm["metadata"]["annotations"]["grafana_folder"] == "Backups"


def test_other_cronjob_names_become_the_shipped_dashboards_variable_defaults_and_nothing_else_changes():
    cm = render(ENABLED, "backup.cronJobName=nightly-backup", "drill.cronJobName=weekly-drill").get(
        "ConfigMap", CONFIGMAP)
    shipped = json.loads(cm["data"][DATA_KEY])
    expected = copy.deepcopy(dq.load(dq.CHART_JSON))
    for variable in dq.variables(expected):
        name = {"backup_cronjob": "nightly-backup", "drill_cronjob": "weekly-drill"}.get(variable["name"])
        if name:
            variable.update(query=name, current={"selected": True, "text": name, "value": name},
                            options=[{"selected": True, "text": name, "value": name}])
    assert shipped == expected
