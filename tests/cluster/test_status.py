"""`GET /v1/status` and `eternia-backup status` on the real control plane: the newest backup with its duration
(from its manifest), and the last drill, found as the newest Job the drill CronJob owns (run by the Job
controller and the job runner, as the chart's drill CronJob makes them), its result and duration. A failed
last drill makes the status unhealthy (exit 1 for a monitoring check). The webhook asks with its own
ServiceAccount token, so the chart's Role must let it list the drill Jobs."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import binary, wait_until
from runner import JobRunner
from test_webhook import served_webhook


@pytest.fixture(scope="module")
def drilled(cluster):
    with served_webhook(cluster, {}, [], values={"drill": {"enabled": True}}) as (release, hook, key):
        yield release, hook, key


def status_of(hook, key) -> dict:
    status, body, _ = hook.api("GET", "/v1/status", key.token())
    assert status == 200, body
    return body


def drill_job(cluster, release, runner, name: str, backup: str = "latest"):
    """A Job of the drill CronJob, as `kubectl create job --from=cronjob/database-drill` makes it (owned by the
    CronJob), drilling `backup`; waits until the Job controller marks it Complete or Failed."""
    job = json.loads(cluster.kubectl("create", "job", "--from=cronjob/database-drill", name, "-n",
                                     release.namespace, "--dry-run=client", "-o", "json"))
    job["spec"]["template"]["spec"]["containers"][0]["args"][1] = backup
    cluster.kubectl("create", "-f", "-", input=json.dumps(job))
    return runner.wait_for_job(release.namespace, name)


def cli_status(cluster, release) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "KUBECONFIG": str(cluster.kubeconfig), "BACKUP_DIR": str(release.backups),
           "LEASE_NAMESPACE": release.namespace, "DRILL_CRONJOB": "database-drill"}
    return subprocess.run([str(binary()), "status", "--output", "json"], env=env, capture_output=True, text=True,
                          timeout=60)


def test_the_status_gives_the_newest_backups_duration_and_no_drill_before_one_ran(drilled):
    release, hook, key = drilled
    body = status_of(hook, key)
    store = body["stores"][0]
    assert store["health"] == "OK", body
    assert 0 <= store["duration_seconds"] < 300, store
    assert "last_drill" not in body and "last_drill_error" not in body, body
    assert body["healthy"] is True


def test_a_passed_then_a_failed_drill_are_the_last_drill_in_turn_and_a_failed_one_makes_the_status_unhealthy(
        cluster, workdir, drilled):
    release, hook, key = drilled
    with JobRunner(cluster, [release.namespace], workdir) as runner:
        ran = drill_job(cluster, release, runner, "drill-passes")
        assert ran.code == 0, ran.log
        passed = status_of(hook, key)
        assert passed["last_drill"]["job"] == "drill-passes", passed
        assert passed["last_drill"]["result"] == "succeeded"
        assert passed["last_drill"]["duration_seconds"] >= 0
        assert passed["healthy"] is True

        ran = drill_job(cluster, release, runner, "drill-fails", backup="eternia-backup-20000101-000000.tar.gz")
        assert ran.code != 0, ran.log
    failed = wait_until("the status reports the failed drill", lambda: (
        s if (s := status_of(hook, key)).get("last_drill", {}).get("job") == "drill-fails" else None))
    assert failed["last_drill"]["result"] == "failed", failed
    assert failed["healthy"] is False, "a failed last drill needs attention"

    cli = cli_status(cluster, release)
    assert cli.returncode == 1, cli.stderr
    assert json.loads(cli.stdout)["last_drill"]["job"] == "drill-fails"
    assert "the last drill (drill-fails) FAILED" in cli.stderr, cli.stderr
