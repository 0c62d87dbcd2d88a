"""The backup schedule: defaults, `helm upgrade --set schedule=...`, and schedules Kubernetes would refuse."""

import pytest

from conftest import SCHEMA_ERROR, render, render_error


def backup_cronjob(rendered):
    return rendered.get("CronJob", "database-backup", "backup")


def test_the_backup_runs_daily_at_two_am_utc_by_default(default_render):
    spec = backup_cronjob(default_render)["spec"]
    assert spec["schedule"] == "0 2 * * *"
    assert spec["timeZone"] == "Etc/UTC"
    assert spec["suspend"] is False


def test_helm_upgrade_with_set_schedule_changes_the_cronjob_schedule():
    spec = backup_cronjob(render("schedule=30 3 * * *"))["spec"]
    assert spec["schedule"] == "30 3 * * *"


def test_a_descriptor_schedule_and_another_time_zone_are_accepted():
    spec = backup_cronjob(render("schedule=@daily", "timeZone=Europe/Paris"))["spec"]
    assert spec["schedule"] == "@daily"
    assert spec["timeZone"] == "Europe/Paris"


def test_the_backup_cronjob_forbids_concurrent_runs_and_bounds_its_jobs(default_render):
    spec = backup_cronjob(default_render)["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulJobsHistoryLimit"] == 3
    assert spec["failedJobsHistoryLimit"] == 3
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 1
    assert job["activeDeadlineSeconds"] == 7200
    assert job["template"]["spec"]["restartPolicy"] == "Never"


def test_suspend_pauses_the_scheduled_backups():
    assert backup_cronjob(render("suspend=true"))["spec"]["suspend"] is True


def test_the_backup_container_runs_eternia_backup_backup(default_render):
    (ctr,) = backup_cronjob(default_render)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert ctr["args"] == ["backup"]
    assert "command" not in ctr, "the image's entrypoint is the binary; the chart passes only arguments"


@pytest.mark.parametrize(
    "schedule",
    [
        "61 2 * * *",  # minute out of range
        "0 24 * * *",  # hour out of range
        "0 2 32 * *",  # day of month out of range
        "0 2 * 13 *",  # month out of range
        "0 2 * * 7",  # Kubernetes (robfig/cron) allows 0-6 only
        "*/0 * * * *",  # zero step
        "0 2 * *",  # four fields
        "0 0 2 * * *",  # six fields (seconds are not supported)
        "daily",
        "@fortnightly",
        "TZ=UTC 0 2 * * *",  # Kubernetes rejects TZ in the schedule; use timeZone
        "",
    ],
)
def test_a_schedule_kubernetes_would_refuse_fails_with_a_schema_error(schedule):
    error = render_error(set_string=[f"schedule={schedule}"])
    assert SCHEMA_ERROR in error
    assert "/schedule" in error


def test_a_bad_drill_schedule_fails_with_a_schema_error():
    error = render_error("drill.enabled=true", set_string=["drill.schedule=0 2 * * * *"])
    assert SCHEMA_ERROR in error and "/drill/schedule" in error


@pytest.mark.parametrize(
    "schedule",
    ["*/15 * * * *", "0 2 * * MON-FRI", "0 2 1-7 jan-mar sun", "5 4 * * 0", "0 0 1 */3 *", "@hourly", "@every 6h"],
)
def test_schedules_kubernetes_accepts_are_accepted(schedule):
    assert backup_cronjob(render(set_string=[f"schedule={schedule}"]))["spec"]["schedule"] == schedule
