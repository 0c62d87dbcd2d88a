"""Alerts and scraping: backup missing for more than 26 h, last backup failed, restore failed."""

from conftest import render


def rules(rendered):
    (rule,) = rendered.of_kind("PrometheusRule")
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}


def test_monitoring_objects_are_off_by_default(default_render):
    assert default_render.of_kind("PrometheusRule") == []
    assert default_render.of_kind("ServiceMonitor") == []


def test_the_rule_alerts_when_no_backup_succeeded_for_26_hours():
    alert = rules(render("metrics.prometheusRule.enabled=true"))["EterniaBackupMissing"]
    assert "kube_cronjob_status_last_successful_time" in alert["expr"]
    assert 'cronjob="database-backup"' in alert["expr"] and 'namespace="backup"' in alert["expr"]
    assert "> 93600" in alert["expr"], "26 h = 93600 s"
    assert alert["labels"]["severity"] == "critical"


def test_the_missing_backup_window_is_configurable():
    alert = rules(render("metrics.prometheusRule.enabled=true", "metrics.prometheusRule.backupMissingAfterHours=50"))
    assert "> 180000" in alert["EterniaBackupMissing"]["expr"]


def test_the_rule_alerts_on_failed_backups_and_failed_restores():
    alerts = rules(render("metrics.prometheusRule.enabled=true"))
    assert 'owner_name="database-backup"' in alerts["EterniaBackupFailed"]["expr"]
    assert 'owner_name="database-restore"' in alerts["EterniaRestoreFailed"]["expr"]
    for name in ("EterniaBackupFailed", "EterniaRestoreFailed"):
        assert "kube_job_status_failed" in alerts[name]["expr"]
        assert "{{ $labels.job_name }}" in alerts[name]["annotations"]["description"]


def test_the_service_monitor_scrapes_the_webhook_metrics():
    rendered = render("metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom")
    (monitor,) = rendered.of_kind("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    service = rendered.get("Service", "eternia-backup-webhook")
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
