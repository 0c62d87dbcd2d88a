"""The Grafana dashboard (docs/grafana-dashboard.json) names only what the binary exports: every eternia_* metric
a panel or variable query uses, with every label it matches on, groups by or joins on, is in the /metrics of a
running webhook (plus the labels Prometheus adds when it scrapes: namespace, pod, job, ...).

The webhook runs as its Deployment's pod would (test_webhook.Webhook), with the backup volume mounted
(webhook.mountBackups, so the `local` store's gauges have samples) and one backup on it, and is sent a few
requests first so that the labelled counters have samples too: a backup listing with a valid token (route,
status), one without a token (reason), a dry-run restore (result). Metric names come from the `# HELP` lines,
which every metric prints even before its first sample; labels from the samples. The test waits until every
product metric the dashboard reads has a sample, so a metric the webhook declares but never fills fails too.

The queries are parsed by tests/dashboard/dashboard_queries.py (Prometheus' own parser, promql-check), the
module tests/chart/test_dashboard.py uses for the kube-state-metrics half. No restore runs: the dry-run
restore's Job stays pending (no job runner then), and the namespaces are deleted at the end."""

from __future__ import annotations

import sys

import pytest

from conftest import ROOT, wait_until
from test_webhook import served_webhook

sys.path.insert(0, str(ROOT / "tests" / "dashboard"))
import dashboard_queries as dq  # noqa: E402


@pytest.fixture(scope="module")
def parsed() -> list[dq.Parsed]:
    return dq.parse(dq.load(dq.DOCS_JSON))


@pytest.fixture(scope="module")
def metrics(cluster, parsed) -> str:
    """The webhook's /metrics once every product metric the dashboard reads has a sample."""
    with served_webhook(cluster, {}, [{"name": "WEBHOOK_METRICS_REFRESH", "value": "5s"}]) as (_, hook, key):
        status, body, _ = hook.api("GET", "/v1/backups", key.token())
        assert status == 200, body
        status, body, _ = hook.request("GET", "/v1/backups")
        assert status == 401, body
        status, body, _ = hook.api("POST", "/v1/restores", key.token(),
                                   {"backup": "latest", "dryRun": True, "reason": "dashboard"})
        assert status == 202, body

        wanted = dq.product_metrics_used(parsed)

        def sampled() -> set[str]:
            status, text, _ = hook.request("GET", "/metrics")
            assert status == 200, text
            lines = text.splitlines()
            return {m for m in wanted if any(line.startswith((m + " ", m + "{")) for line in lines)}

        try:
            wait_until("every product metric the dashboard reads has a sample in /metrics",
                       lambda: sampled() == wanted, timeout=60, interval=1)
        except AssertionError:
            pytest.fail(f"no sample of {sorted(wanted - sampled())} in the webhook's /metrics:\n"
                        f"{hook.request('GET', '/metrics')[1]}\n"
                        f"webhook log:\n{hook.log.read_text(errors='replace')[-4000:]}")
        status, text, _ = hook.request("GET", "/metrics")
        assert status == 200, text
        yield text


def test_the_dashboard_reads_the_products_per_store_restore_and_webhook_metrics(parsed):
    assert {"eternia_backup_newest_timestamp_seconds", "eternia_backup_newest_size_bytes", "eternia_backup_count",
            "eternia_restore_total", "eternia_restore_in_progress", "eternia_webhook_requests_total",
            "eternia_webhook_auth_failures_total"} <= dq.product_metrics_used(parsed)


def test_every_product_metric_the_dashboard_names_is_in_a_running_webhooks_metrics_with_its_labels(
        parsed, metrics):
    exported = dq.exposition(metrics)
    known = {name: labels | dq.TARGET_LABELS for name, labels in exported.items()}
    problems = dq.usage_problems(parsed, known, dq.is_product_metric, "the webhook's /metrics")
    assert problems == [], "\n".join(problems) + f"\n\n/metrics:\n{metrics}"


def test_the_per_store_gauges_carry_the_store_of_the_backup_the_webhook_sees(metrics):
    exported = dq.exposition(metrics)
    for name in ("eternia_backup_count", "eternia_backup_newest_timestamp_seconds", "eternia_backup_newest_size_bytes"):
        assert exported.get(name) == {"store"}, f"{name}: {exported.get(name)}\n{metrics}"
        assert f'{name}{{store="local"}} ' in metrics, metrics
