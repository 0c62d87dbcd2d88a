"""Install and upgrade as users do: `helm install` of chart/ into a real API server (real validation, defaulting
and admission), `helm upgrade`, and the runbook's `kubectl create job --from=cronjob/...`."""

from __future__ import annotations

import pytest

from conftest import CommandFailed, install, wait_until


def test_helm_install_with_seed_like_values_creates_every_object_the_chart_renders(cluster, workdir, database):
    release = install(cluster, workdir, database, values={"webhook": {"enabled": True}})

    manifest = cluster.helm("get", "manifest", release.name, "-n", release.namespace).stdout
    kinds = {line.split(":", 1)[1].strip() for line in manifest.splitlines() if line.startswith("kind:")}
    assert {"CronJob", "PersistentVolumeClaim", "Role", "RoleBinding", "ServiceAccount", "Deployment",
            "Service", "ConfigMap"} <= kinds
    cron = cluster.get("cronjob", "database-backup", release.namespace)
    assert cron["spec"]["schedule"] == "0 2 * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    # Defaulting by the real API server: fields the chart leaves out are filled in.
    assert cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirst"
    restore = cluster.get("cronjob", "database-restore", release.namespace)
    assert restore["spec"]["suspend"] is True, "the restore template never runs on its own"
    assert cluster.get("pvc", "eternia-backup-backups", release.namespace)["status"]["phase"] == "Bound"
    # The webhook Deployment rolls out (its pod is made Ready by kwok, the fake kubelet).
    cluster.kubectl("rollout", "status", "deployment/eternia-backup-webhook", "-n", release.namespace,
                    "--timeout=60s")


def test_helm_upgrade_changes_the_live_cronjob_schedule(cluster, workdir, database):
    release = install(cluster, workdir, database)

    release.upgrade("--set", "schedule=30 3 * * *")

    assert cluster.get("cronjob", "database-backup", release.namespace)["spec"]["schedule"] == "30 3 * * *"
    history = cluster.helm("history", release.name, "-n", release.namespace, "-o", "json").stdout
    assert '"revision":2' in history.replace(" ", "")


@pytest.mark.parametrize("bad, says", [
    (["--set", "retention.days=-1"], "/retention/days"),
    (["--set", "schedule=every day"], "/schedule"),
    (["--set", "persistence.enabled=false"], "s3.enabled"),
])
def test_bad_values_are_refused_before_anything_changes_in_the_cluster(cluster, workdir, database, bad, says):
    release = install(cluster, workdir, database)
    before = cluster.get("cronjob", "database-backup", release.namespace)["metadata"]["resourceVersion"]

    with pytest.raises(CommandFailed) as refused:
        release.upgrade(*bad)

    assert says in refused.value.stderr, refused.value.stderr
    after = cluster.get("cronjob", "database-backup", release.namespace)["metadata"]["resourceVersion"]
    assert after == before, "the live CronJob is untouched"


def test_the_runbooks_manual_backup_command_creates_a_job_whose_pod_the_job_controller_creates(
        cluster, workdir, database):
    release = install(cluster, workdir, database)

    cluster.kubectl("create", "job", "--from=cronjob/database-backup", "manual-backup", "-n", release.namespace)

    job = cluster.get("job", "manual-backup", release.namespace)
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    pod = wait_until("the Job controller creates the pod", lambda: cluster.get(
        "pods", namespace=release.namespace, selector="batch.kubernetes.io/job-name=manual-backup")["items"])
    assert pod[0]["spec"]["containers"][0]["args"][0] == "backup"
    assert pod[0]["spec"]["serviceAccountName"] == "eternia-backup-backup"
    wait_until("the scheduler binds the pod to the node", lambda: cluster.get(
        "pod", pod[0]["metadata"]["name"], release.namespace)["spec"].get("nodeName"))
