"""The restore Job template and the optional drill."""

from conftest import container, container_env, pod_spec, render, render_error


def restore(rendered):
    return rendered.get("CronJob", "database-restore", "backup")


def test_the_restore_template_is_a_suspended_cronjob_named_database_restore(default_render):
    spec = restore(default_render)["spec"]
    assert spec["suspend"] is True
    assert spec["schedule"] == "0 0 31 2 *", "February 31st never comes: the template never fires by itself"
    assert spec["concurrencyPolicy"] == "Forbid"


def test_a_job_created_from_the_template_restores_latest_after_a_safety_backup(default_render):
    ctr = container(restore(default_render), "restore")
    assert ctr["args"] == ["restore", "latest"]
    job = restore(default_render)["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0, "a failed restore is never retried behind the operator's back"
    # 2 x the backup's 7200 s (verify and load, the safety backup) + one 10m rollout wait + 10 min margin.
    assert job["activeDeadlineSeconds"] == 2 * 7200 + 600 + 600
    assert pod_spec(restore(default_render))["terminationGracePeriodSeconds"] == 60
    assert pod_spec(restore(default_render))["restartPolicy"] == "Never"


def test_restore_options_become_flags():
    rendered = render(
        "restore.backup=eternia-backup-20250101-020000.tar.gz",
        "restore.safetyBackup=false",
        "restore.includeKubernetes=false",
    )
    assert container(restore(rendered), "restore")["args"] == [
        "restore",
        "eternia-backup-20250101-020000.tar.gz",
        "--no-safety-backup",
        "--no-kubernetes",
    ]


def test_the_restore_restarts_the_app_deployments_and_takes_the_lease(default_render):
    env = container_env(default_render, container(restore(default_render), "restore"))
    assert env["RESTORE_DEPLOYMENTS"] == "deployment/eternia-backend"
    assert env["RESTORE_MODE"] == "clean"
    assert env["RESTORE_ROLLOUT_TIMEOUT"] == "10m"
    assert env["BACKUP_NAMESPACE"] == "eternia-production"
    assert env["LEASE_NAME"] == "eternia-backup-restore"
    assert env["LEASE_NAMESPACE"] == "fieldRef:metadata.namespace"


def test_several_deployments_and_swap_mode_are_passed_on():
    rendered = render("app.deployments={eternia-backend,eternia-worker}", "restore.mode=swap", "lease.name=lock")
    env = container_env(rendered, container(restore(rendered), "restore"))
    assert env["RESTORE_DEPLOYMENTS"] == "deployment/eternia-backend,deployment/eternia-worker"
    assert env["RESTORE_MODE"] == "swap"
    assert env["LEASE_NAME"] == "lock"


def test_an_unknown_restore_mode_fails_with_a_schema_error():
    from conftest import render_error

    assert "/restore/mode" in render_error("restore.mode=merge")


def test_the_backup_skips_while_a_restore_holds_the_same_lease(default_render):
    backup_env = container_env(default_render, container(default_render.get("CronJob", "database-backup"), "backup"))
    restore_env = container_env(default_render, container(restore(default_render), "restore"))
    assert backup_env["LEASE_NAME"] == restore_env["LEASE_NAME"]
    assert backup_env["LEASE_NAMESPACE"] == restore_env["LEASE_NAMESPACE"]


def test_the_drill_is_off_by_default_and_runs_weekly_when_enabled(default_render):
    assert default_render.find("CronJob", "database-drill") is None
    rendered = render("drill.enabled=true")
    drill = rendered.get("CronJob", "database-drill")
    assert drill["spec"]["schedule"] == "0 4 * * 0"
    assert drill["spec"]["concurrencyPolicy"] == "Forbid"
    ctr = container(drill, "drill")
    assert ctr["args"] == ["drill", "latest"]
    env = container_env(rendered, ctr)
    assert "LEASE_NAMESPACE" not in env


def test_the_restore_template_keeps_ten_finished_jobs_so_the_webhook_can_report_recent_restores(default_render):
    spec = default_render.get("CronJob", "database-restore", "backup")["spec"]
    assert spec["successfulJobsHistoryLimit"] == 10
    assert spec["failedJobsHistoryLimit"] == 10
    spec = render("restore.successfulJobsHistoryLimit=2", "restore.failedJobsHistoryLimit=4").get(
        "CronJob", "database-restore", "backup"
    )["spec"]
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (2, 4)


def test_the_restore_deadline_grows_with_the_backup_deadline_and_every_rollout_wait():
    rendered = render("backup.activeDeadlineSeconds=3600", "restore.rolloutTimeout=15m",
                      "app.deployments={api,worker}")
    job = restore(rendered)["spec"]["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == 2 * 3600 + 2 * 900 + 600


def test_an_explicit_restore_deadline_is_kept():
    job = restore(render("restore.activeDeadlineSeconds=5400"))["spec"]["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == 5400


def test_a_rollout_timeout_the_binary_cannot_read_is_refused_at_install_naming_the_value():
    for unreadable in ["ten minutes", "1h30m", "500ms"]:
        assert "rolloutTimeout" in render_error(f"restore.rolloutTimeout={unreadable}"), unreadable
