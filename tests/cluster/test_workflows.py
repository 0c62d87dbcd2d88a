"""Backup and restore as the chart runs them: Jobs created by the real Job controller from the chart's
CronJobs, their pods run by the job runner with each component's own ServiceAccount token, so the real RBAC
authorizer decides every call; server-side apply, the Lease and the rollout against the real API server."""

from __future__ import annotations

import json
import tarfile
from datetime import datetime, timezone

import yaml

from conftest import PgRestoreGate, install, psql, wait_until
from runner import JobRunner


def app_objects(ns: str) -> list[dict]:
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config", "namespace": ns},
         "data": {"mode": "production", "feature": "on"}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "gitops-config", "namespace": ns,
                      "annotations": {"argocd.argoproj.io/tracking-id": "eternia:/ConfigMap:x/gitops-config"}},
         "data": {"owner": "argocd"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app-secret", "namespace": ns},
         "stringData": {"api-key": "backed-up-key"}},
    ]


def backup_job(cluster, release, runner, name="manual-backup"):
    cluster.kubectl("create", "job", "--from=cronjob/database-backup", name, "-n", release.namespace)
    ran = runner.wait_for_job(release.namespace, name)
    assert ran.code == 0, ran.log
    return ran


def restore_job(cluster, release, runner, name):
    cluster.kubectl("create", "job", "--from=cronjob/database-restore", name, "-n", release.namespace)
    return runner.wait_for_job(release.namespace, name)


def archives(release) -> list[str]:
    return sorted(p.name for p in release.backups.iterdir() if p.name.endswith(".tar.gz"))


def test_the_runbooks_manual_backup_exports_the_app_namespace_and_writes_an_archive_on_the_volume(
        cluster, workdir, database):
    release = install(cluster, workdir, database)
    cluster.apply(app_objects(release.app_namespace))

    with JobRunner(cluster, [release.namespace], workdir) as runner:
        ran = backup_job(cluster, release, runner)

    assert ran.args[1:] == ["backup"], ran.args
    names = archives(release)
    assert len(names) == 1 and names[0].startswith("eternia-backup-"), names
    assert (release.backups / f"{names[0]}.manifest.json").exists(), "the sidecar is written beside it"
    with tarfile.open(release.backups / names[0]) as tar:
        members = tar.getnames()
    ns = release.app_namespace
    assert f"kubernetes/{ns}/ConfigMap/app-config.yaml" in members, members
    assert f"kubernetes/{ns}/Secret/app-secret.yaml" in members, members
    assert not any("kube-root-ca.crt" in m for m in members), "the cluster's CA bundle is not backed up"
    job = cluster.get("job", "manual-backup", release.namespace)
    assert job["status"].get("succeeded") == 1


def test_a_backup_exports_only_the_apps_own_objects_stripped_of_server_fields_and_honours_the_exclude_selector(
        cluster, workdir, database):
    release = install(cluster, workdir, database, values={"backup": {"excludeSelector": "backup.eternia.io/skip=true"}})
    ns = release.app_namespace
    cluster.apply(app_objects(ns) + [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "scratch", "namespace": ns,
                                                               "labels": {"backup.eternia.io/skip": "true"}},
         "data": {"tmp": "1"}},
        # What the cluster and Helm put there: never part of the application's state.
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
         "metadata": {"name": "default-token", "namespace": ns,
                      "annotations": {"kubernetes.io/service-account.name": "default"}}},
        {"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
         "metadata": {"name": "sh.helm.release.v1.eternia.v3", "namespace": ns}, "stringData": {"release": "x"}},
    ])
    wait_until("the token controller fills the ServiceAccount token",
               lambda: cluster.get("secret", "default-token", ns).get("data", {}).get("token"))

    with JobRunner(cluster, [release.namespace], workdir) as runner:
        backup_job(cluster, release, runner)

    with tarfile.open(release.backups / archives(release)[0]) as tar:
        objects = sorted(m for m in tar.getnames() if m.startswith("kubernetes/"))
        secret = yaml.safe_load(tar.extractfile(f"kubernetes/{ns}/Secret/app-secret.yaml"))
    assert objects == [f"kubernetes/{ns}/ConfigMap/app-config.yaml", f"kubernetes/{ns}/ConfigMap/gitops-config.yaml",
                       f"kubernetes/{ns}/Secret/app-secret.yaml"], objects
    for field in ("uid", "resourceVersion", "managedFields", "creationTimestamp"):
        assert field not in secret["metadata"], f"{field} is set by the server and not archived"
    assert secret["data"]["api-key"] == "YmFja2VkLXVwLWtleQ=="


def test_a_restore_job_restores_the_database_and_objects_skips_gitops_objects_and_rolls_the_app_out(
        cluster, workdir, database):
    release = install(cluster, workdir, database)
    ns = release.app_namespace
    cluster.apply(app_objects(ns))
    cluster.kubectl("rollout", "status", "deployment/eternia-backend", "-n", ns, "--timeout=60s")
    with JobRunner(cluster, [release.namespace], workdir) as runner:
        backup_job(cluster, release, runner)
        # The damage the restore repairs: rows deleted, a ConfigMap and a Secret changed, a GitOps one too.
        database.sql("DELETE FROM customers WHERE id > 10")
        cluster.kubectl("patch", "configmap", "app-config", "-n", ns, "--type=merge", "-p",
                        '{"data": {"mode": "broken"}}')
        cluster.kubectl("patch", "configmap", "gitops-config", "-n", ns, "--type=merge", "-p",
                        '{"data": {"owner": "changed-by-git"}}')
        cluster.kubectl("patch", "secret", "app-secret", "-n", ns, "--type=merge", "-p",
                        '{"stringData": {"api-key": "rotated-by-mistake"}}')
        before = cluster.get("deployment", "eternia-backend", ns)

        ran = restore_job(cluster, release, runner, "restore-1")

    assert ran.code == 0, ran.log
    assert ran.args[1:3] == ["restore", "latest"], ran.args
    assert database.sql("SELECT count(*) FROM customers") == "300"
    assert cluster.get("configmap", "app-config", ns)["data"]["mode"] == "production"
    secret = cluster.get("secret", "app-secret", ns)
    assert secret["data"]["api-key"] == "YmFja2VkLXVwLWtleQ==", "the archived Secret is applied over the live one"
    assert cluster.get("configmap", "gitops-config", ns)["data"]["owner"] == "changed-by-git", \
        "an Argo CD-managed object is left to Argo CD"
    after = cluster.get("deployment", "eternia-backend", ns)
    restarted = after["spec"]["template"]["metadata"].get("annotations", {})
    assert "kubectl.kubernetes.io/restartedAt" in restarted
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    replicasets = cluster.get("replicasets", namespace=ns)["items"]
    assert len(replicasets) == 2, "the restart rolled out a new ReplicaSet"
    assert after["status"].get("updatedReplicas") == 1 and after["status"].get("availableReplicas") == 1
    assert len(archives(release)) == 2, "the safety backup of the state before the restore is on the volume"
    assert "safety backup" in ran.log


def test_a_second_restore_while_one_holds_the_lease_fails_naming_the_holder_and_changes_nothing(
        cluster, workdir, database):
    gate = PgRestoreGate(workdir, closed=True)
    release = install(cluster, workdir, database, values={
        "extraEnv": [{"name": "PG_RESTORE_BIN", "value": str(gate.wrapper)}]})
    with JobRunner(cluster, [release.namespace], workdir) as runner:
        backup_job(cluster, release, runner)
        database.sql("DELETE FROM customers WHERE id > 10")
        cluster.kubectl("create", "job", "--from=cronjob/database-restore", "restore-first", "-n", release.namespace)
        # The first restore holds the Lease while its pg_restore waits at the gate.
        runner.wait_for_file(gate.reached, release.namespace, "restore-first")

        second = restore_job(cluster, release, runner, "restore-second")
        assert second.code == 1, second.log
        assert "restore-first" in second.log, f"the error names the holder: {second.log}"
        lease = cluster.get("lease", "eternia-backup-restore", release.namespace)
        assert "restore-first" in lease["spec"]["holderIdentity"]
        # A backup while a restore holds the Lease skips with exit 0 and writes nothing.
        before = archives(release)
        skipped = backup_job(cluster, release, runner, name="backup-during-restore")
        assert "restore" in skipped.log and archives(release) == before, skipped.log

        gate.open()
        first = runner.wait_for_job(release.namespace, "restore-first")
    assert first.code == 0, first.log
    assert database.sql("SELECT count(*) FROM customers") == "300"


def test_a_restore_that_scales_the_app_to_zero_loads_the_database_with_no_pod_left_and_scales_it_back(
        cluster, workdir, database):
    gate = PgRestoreGate(workdir, closed=True)
    release = install(cluster, workdir, database, values={
        "restore": {"scaleToZero": True},
        "extraEnv": [{"name": "PG_RESTORE_BIN", "value": str(gate.wrapper)}]})
    ns = release.app_namespace
    cluster.kubectl("scale", "deployment/eternia-backend", "-n", ns, "--replicas=2")
    cluster.kubectl("rollout", "status", "deployment/eternia-backend", "-n", ns, "--timeout=60s")
    with JobRunner(cluster, [release.namespace], workdir) as runner:
        backup_job(cluster, release, runner)
        database.sql("DELETE FROM customers WHERE id > 10")
        cluster.kubectl("create", "job", "--from=cronjob/database-restore", "restore-quiet", "-n", release.namespace)
        # pg_restore waits at the gate: the database is about to be loaded.
        runner.wait_for_file(gate.reached, release.namespace, "restore-quiet")
        during = cluster.get("deployment", "eternia-backend", ns)
        pods = cluster.get("pods", namespace=ns)["items"]
        gate.open()
        ran = runner.wait_for_job(release.namespace, "restore-quiet")

    assert ran.code == 0, ran.log
    assert during["spec"]["replicas"] == 0
    assert during["metadata"]["annotations"]["eternia-backup/replicas-before-restore"] == "2"
    assert during["status"].get("replicas", 0) == 0 and pods == [], "no pod of the application while it loads"
    after = cluster.get("deployment", "eternia-backend", ns)
    assert after["spec"]["replicas"] == 2, "back to its replica count"
    assert "eternia-backup/replicas-before-restore" not in after["metadata"].get("annotations", {})
    assert after["status"].get("availableReplicas") == 2, "the restore waited for it to come back"
    assert "deployment/eternia-backend (scaled back to 2)" in ran.log
    assert database.sql("SELECT count(*) FROM customers") == "300"


def test_the_backup_cronjob_set_to_every_minute_by_helm_upgrade_creates_a_job_on_time_and_an_archive_appears(
        cluster, workdir, database):
    release = install(cluster, workdir, database)
    with JobRunner(cluster, [release.namespace], workdir) as runner:
        release.upgrade("--set", "schedule=* * * * *")

        job = wait_until("the CronJob controller creates a Job", lambda: [
            j for j in cluster.get("jobs", namespace=release.namespace)["items"]
            if j["metadata"].get("ownerReferences", [{}])[0].get("name") == "database-backup"], timeout=90)
        ran = runner.wait_for_job(release.namespace, job[0]["metadata"]["name"])
        release.upgrade("--set", "suspend=true")
    assert ran.code == 0, ran.log
    assert len(archives(release)) >= 1
    cron = cluster.get("cronjob", "database-backup", release.namespace)
    assert cron["status"].get("lastSuccessfulTime"), "the CronJob controller saw the Job succeed"



def test_a_restore_whose_lease_is_taken_by_another_holder_stops_before_changing_anything_more(
        cluster, workdir, database):
    gate = PgRestoreGate(workdir, closed=True)
    release = install(cluster, workdir, database, values={
        "extraEnv": [{"name": "PG_RESTORE_BIN", "value": str(gate.wrapper)}]})
    ns = release.app_namespace
    cluster.apply(app_objects(ns))
    with JobRunner(cluster, [release.namespace], workdir) as runner:
        backup_job(cluster, release, runner)
        cluster.kubectl("patch", "configmap", "app-config", "-n", ns, "--type=merge", "-p",
                        '{"data": {"mode": "broken"}}')
        cluster.kubectl("create", "job", "--from=cronjob/database-restore", "restore-losing", "-n", release.namespace)
        runner.wait_for_file(gate.reached, release.namespace, "restore-losing")
        # What an API outage longer than the Lease allows: another restore takes the Lease meanwhile.
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        cluster.kubectl("patch", "lease", "eternia-backup-restore", "-n", release.namespace, "--type=merge", "-p",
                        json.dumps({"spec": {"holderIdentity": "other-restore", "renewTime": now}}))
        gate.open()
        ran = runner.wait_for_job(release.namespace, "restore-losing")

    assert ran.code == 1, ran.log
    assert "lost its lease" in ran.log and "other-restore" in ran.log, ran.log
    assert cluster.get("configmap", "app-config", ns)["data"]["mode"] == "broken", \
        "no object is applied once the Lease is gone"
    lease = cluster.get("lease", "eternia-backup-restore", release.namespace)
    assert lease["spec"]["holderIdentity"] == "other-restore", "the other holder's Lease is left alone"


def test_a_swap_restore_keeps_the_replaced_database_and_backs_up_only_the_objects_which_restore_alone(
        cluster, workdir, database):
    release = install(cluster, workdir, database, values={"restore": {"mode": "swap"}})
    ns = release.app_namespace
    cluster.apply(app_objects(ns))
    with JobRunner(cluster, [release.namespace], workdir) as runner:
        backup_job(cluster, release, runner)
        database.sql("DELETE FROM customers WHERE id > 10")
        cluster.kubectl("patch", "configmap", "app-config", "-n", ns, "--type=merge", "-p",
                        '{"data": {"mode": "broken"}}')

        ran = restore_job(cluster, release, runner, "restore-swap")
        assert ran.code == 0, ran.log
        assert database.sql("SELECT count(*) FROM customers") == "300"
        assert cluster.get("configmap", "app-config", ns)["data"]["mode"] == "production"
        kept = [d for d in psql("postgres", "SELECT datname FROM pg_database").split()
                if d.startswith(f"{database.name}_pre_restore_")]
        assert len(kept) == 1, "the replaced database is the way back for the data"
        assert psql(kept[0], "SELECT count(*) FROM customers") == "10"
        # The safety backup holds the objects alone: no dump of the database it replaced.
        safety = [p for p in release.backups.iterdir() if "-safety-" in p.name and p.name.endswith(".tar.gz")]
        assert len(safety) == 1, list(release.backups.iterdir())
        manifest = json.loads((release.backups / f"{safety[0].name}.manifest.json").read_text())["manifest"]
        assert manifest["objects_only"] is True
        assert all(e["path"].startswith("kubernetes/") for e in manifest["entries"]), manifest["entries"]
        assert "safety backup of the ConfigMaps/Secrets" in ran.log

        # Restoring it puts the objects back and touches no database.
        job = json.loads(cluster.kubectl("create", "job", "--from=cronjob/database-restore", "undo-objects",
                                         "-n", release.namespace, "--dry-run=client", "-o", "json"))
        job["spec"]["template"]["spec"]["containers"][0]["args"][1] = safety[0].name
        cluster.kubectl("create", "-f", "-", input=json.dumps(job))
        undo = runner.wait_for_job(release.namespace, "undo-objects")
    assert undo.code == 0, undo.log
    assert cluster.get("configmap", "app-config", ns)["data"]["mode"] == "broken", "the objects as they were"
    assert database.sql("SELECT count(*) FROM customers") == "300", "no database was touched"
    psql("postgres", f'DROP DATABASE "{kept[0]}" WITH (FORCE)')
