"""The backup volume: a 10Gi PVC at /backups that survives helm uninstall, or an existing claim, or S3."""

import pytest

from conftest import container, container_env, render, render_error


def claim(rendered):
    (pvc,) = rendered.of_kind("PersistentVolumeClaim")
    return pvc


def test_the_backup_volume_is_a_10gi_claim_mounted_at_backups(default_render):
    pvc = claim(default_render)
    assert pvc["metadata"]["namespace"] == "backup"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    cronjob = default_render.get("CronJob", "database-backup")
    ctr = container(cronjob, "backup")
    mount = next(m for m in ctr["volumeMounts"] if m["name"] == "backups")
    assert mount["mountPath"] == "/backups"
    assert not mount.get("readOnly", False)
    volume = next(
        v for v in cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"] if v["name"] == "backups"
    )
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert container_env(default_render, ctr)["BACKUP_DIR"] == "/backups"


def test_persistence_size_sets_the_claim_size():
    assert claim(render("persistence.size=50Gi"))["spec"]["resources"]["requests"]["storage"] == "50Gi"


def test_a_size_that_is_not_a_quantity_fails_with_a_schema_error():
    assert "/persistence/size" in render_error("persistence.size=ten gigabytes")


def test_the_claim_is_kept_when_the_release_is_uninstalled(default_render):
    annotations = claim(default_render)["metadata"]["annotations"]
    assert annotations["helm.sh/resource-policy"] == "keep"
    assert annotations["argocd.argoproj.io/sync-options"] == "Delete=false"


def test_storage_class_is_passed_to_the_claim():
    assert claim(render("persistence.storageClass=fast-ssd"))["spec"]["storageClassName"] == "fast-ssd"


def test_no_storage_class_leaves_the_cluster_default(default_render):
    assert "storageClassName" not in claim(default_render)["spec"]


def test_an_existing_claim_is_mounted_and_no_claim_is_created():
    rendered = render("persistence.existingClaim=seed-backups")
    assert rendered.of_kind("PersistentVolumeClaim") == []
    for name in ("database-backup", "database-restore"):
        spec = rendered.get("CronJob", name)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        volume = next(v for v in spec["volumes"] if v["name"] == "backups")
        assert volume["persistentVolumeClaim"]["claimName"] == "seed-backups"


@pytest.mark.parametrize(
    ("persistence", "s3", "store"),
    [("true", "false", "local"), ("true", "true", "both"), ("false", "true", "s3")],
)
def test_the_store_follows_where_backups_are_kept(persistence, s3, store):
    rendered = render(f"persistence.enabled={persistence}", f"s3.enabled={s3}")
    env = container_env(rendered, container(rendered.get("CronJob", "database-backup"), "backup"))
    assert env["BACKUP_STORE"] == store
    if persistence == "false":
        assert rendered.of_kind("PersistentVolumeClaim") == []


def test_keeping_backups_nowhere_fails_with_a_clear_message():
    error = render_error("persistence.enabled=false", "s3.enabled=false")
    assert "backups would be kept nowhere" in error


def test_s3_settings_reach_the_backup_container():
    rendered = render(
        "s3.enabled=true",
        "s3.bucket=eternia-backups",
        "s3.endpoint=https://s3.example.com",
        "s3.forcePathStyle=true",
        "s3.region=eu-west-3",
        "s3.prefix=prod/",
        "s3.storageClass=STANDARD_IA",
        "s3.sse=aws:kms",
        "s3.sseKmsKeyId=key-1",
    )
    env = container_env(rendered, container(rendered.get("CronJob", "database-backup"), "backup"))
    assert env["S3_ENDPOINT"] == "https://s3.example.com"
    assert env["S3_FORCE_PATH_STYLE"] == "true"
    assert env["S3_CHECKSUM"] == "when-required"
    assert env["AWS_REGION"] == "eu-west-3"
    assert env["S3_PREFIX"] == "prod/"
    assert env["S3_STORAGE_CLASS"] == "STANDARD_IA"
    assert env["S3_SSE"] == "aws:kms"
    assert env["S3_SSE_KMS_KEY_ID"] == "key-1"


def test_an_unknown_checksum_mode_fails_with_a_schema_error():
    assert "/s3/checksum" in render_error("s3.enabled=true", "s3.checksum=always")
