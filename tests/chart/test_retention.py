"""Retention: 7 days by default, positive numbers only, reaching the container's environment."""

import pytest

from conftest import SCHEMA_ERROR, container, container_env, render, render_error


def backup_env(rendered):
    return container_env(rendered, container(rendered.get("CronJob", "database-backup"), "backup"))


def test_backups_are_kept_seven_days_by_default(default_render):
    env = backup_env(default_render)
    assert env["BACKUP_RETENTION_DAYS"] == "7"
    for name in ("BACKUP_KEEP_LAST", "BACKUP_KEEP_DAILY", "BACKUP_KEEP_WEEKLY", "BACKUP_KEEP_MONTHLY"):
        assert name not in env


def test_retention_days_reaches_the_backup_container_environment():
    assert backup_env(render("retention.days=30"))["BACKUP_RETENTION_DAYS"] == "30"


def test_retention_days_given_as_a_string_is_accepted():
    assert backup_env(render(set_string=["retention.days=14"]))["BACKUP_RETENTION_DAYS"] == "14"


def test_keep_last_daily_weekly_monthly_reach_the_environment():
    env = backup_env(
        render("retention.keepLast=3", "retention.keepDaily=7", "retention.keepWeekly=4", "retention.keepMonthly=6")
    )
    assert env["BACKUP_KEEP_LAST"] == "3"
    assert env["BACKUP_KEEP_DAILY"] == "7"
    assert env["BACKUP_KEEP_WEEKLY"] == "4"
    assert env["BACKUP_KEEP_MONTHLY"] == "6"


def test_the_prefix_and_compression_reach_the_environment():
    env = backup_env(render("backup.prefix=nightly", "backup.compression=zstd", "backup.compressionLevel=9"))
    assert env["BACKUP_PREFIX"] == "nightly"
    assert env["BACKUP_COMPRESSION"] == "zstd"
    assert env["BACKUP_COMPRESSION_LEVEL"] == "9"


@pytest.mark.parametrize("days", ["-1", "0", "1.5", "seven"])
def test_a_retention_that_is_not_a_positive_integer_fails_with_a_schema_error(days):
    error = render_error(f"retention.days={days}")
    assert SCHEMA_ERROR in error
    assert "/retention/days" in error


@pytest.mark.parametrize("days", ["-3", "0", "07x"])
def test_a_retention_string_that_is_not_a_positive_integer_fails_with_a_schema_error(days):
    assert "/retention/days" in render_error(set_string=[f"retention.days={days}"])


def test_a_negative_keep_count_fails_with_a_schema_error():
    assert "/retention/keepLast" in render_error("retention.keepLast=-2")


def test_safety_backups_are_kept_a_week_by_default_and_the_days_are_configurable(default_render):
    assert backup_env(default_render)["BACKUP_SAFETY_RETENTION_DAYS"] == "7"
    assert backup_env(render("retention.safetyDays=30"))["BACKUP_SAFETY_RETENTION_DAYS"] == "30"
    assert SCHEMA_ERROR in render_error("retention.safetyDays=0")
