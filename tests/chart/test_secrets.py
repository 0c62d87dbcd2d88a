"""Credentials: the seed's backup-credentials Secret (created or existing), wired only through secretKeyRef."""

from conftest import (
    SecretRef,
    all_containers,
    container,
    container_env,
    render,
    workloads,
)

SENTINELS = {
    "credentials.awsAccessKey": "sentinel-access-key-1111",
    "credentials.awsSecretKey": "sentinel-secret-key-2222",
    "credentials.databaseUrl": "postgres://u:sentinel-db-pass-3333@db:5432/eternia",
    "credentials.pgPassword": "sentinel-pg-password-4444",
    "credentials.slackWebhookUrl": "https://hooks.slack.com/services/sentinel-5555",
    "webhook.auth.jwtHs256Secret": "sentinel-jwt-secret-6666",
    "webhook.slack.signingSecret": "sentinel-slack-signing-7777",
}


def with_all_secrets(*extra):
    return render(
        "s3.enabled=true",
        "notifications.slack.enabled=true",
        *extra,
        set_string=[f"{k}={v}" for k, v in SENTINELS.items()],
    )


def backup_env(rendered):
    return container_env(rendered, container(rendered.get("CronJob", "database-backup"), "backup"))


def test_the_chart_creates_backup_credentials_with_the_seed_key_names():
    rendered = with_all_secrets("s3.bucket=eternia-backups")
    secret = rendered.get("Secret", "backup-credentials", "backup")
    assert secret["stringData"] == {
        "s3-bucket": "eternia-backups",
        "aws-access-key": SENTINELS["credentials.awsAccessKey"],
        "aws-secret-key": SENTINELS["credentials.awsSecretKey"],
        "database-url": SENTINELS["credentials.databaseUrl"],
        "pg-password": SENTINELS["credentials.pgPassword"],
        "slack-webhook-url": SENTINELS["credentials.slackWebhookUrl"],
    }


def test_the_chart_created_secret_leaves_out_empty_values(default_render):
    secret = default_render.get("Secret", "backup-credentials")
    assert secret["stringData"] == {}


def test_s3_credentials_are_read_from_the_chart_created_secret():
    env = backup_env(with_all_secrets())
    assert env["S3_BUCKET"] == SecretRef("backup-credentials", "s3-bucket")
    assert env["AWS_ACCESS_KEY_ID"] == SecretRef("backup-credentials", "aws-access-key")
    assert env["AWS_SECRET_ACCESS_KEY"] == SecretRef("backup-credentials", "aws-secret-key")
    assert env["DATABASE_URL"] == SecretRef("backup-credentials", "database-url")
    assert env["PGPASSWORD"] == SecretRef("backup-credentials", "pg-password")
    assert env["NOTIFY_SLACK_WEBHOOK_URL"] == SecretRef("backup-credentials", "slack-webhook-url")


def test_an_existing_secret_is_referenced_and_no_credentials_secret_is_created():
    rendered = render("credentials.existingSecret=seed-credentials", "s3.enabled=true")
    assert rendered.find("Secret", "backup-credentials") is None
    assert [s["metadata"]["name"] for s in rendered.of_kind("Secret")] == []
    for name, ctr_name in (("database-backup", "backup"), ("database-restore", "restore")):
        env = container_env(rendered, container(rendered.get("CronJob", name), ctr_name))
        assert env["AWS_ACCESS_KEY_ID"] == SecretRef("seed-credentials", "aws-access-key")
        assert env["AWS_SECRET_ACCESS_KEY"] == SecretRef("seed-credentials", "aws-secret-key")
        assert env["S3_BUCKET"] == SecretRef("seed-credentials", "s3-bucket")
        assert env["DATABASE_URL"] == SecretRef("seed-credentials", "database-url")


def test_key_names_are_configurable():
    rendered = render(
        "credentials.existingSecret=vault-synced",
        "s3.enabled=true",
        "credentials.keys.awsAccessKey=AWS_ACCESS_KEY_ID",
        "credentials.keys.awsSecretKey=AWS_SECRET_ACCESS_KEY",
        "credentials.keys.databaseUrl=uri",
    )
    env = backup_env(rendered)
    assert env["AWS_ACCESS_KEY_ID"] == SecretRef("vault-synced", "AWS_ACCESS_KEY_ID")
    assert env["AWS_SECRET_ACCESS_KEY"] == SecretRef("vault-synced", "AWS_SECRET_ACCESS_KEY")
    assert env["DATABASE_URL"] == SecretRef("vault-synced", "uri")


def test_an_empty_key_name_is_not_read_so_the_configmap_bucket_applies():
    rendered = render("s3.enabled=true", "s3.bucket=other-bucket", "credentials.keys.s3Bucket=")
    env = backup_env(rendered)
    assert env["S3_BUCKET"] == "other-bucket"


def test_s3_credentials_are_not_wired_when_s3_is_off(default_render):
    env = backup_env(default_render)
    for name in ("S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_ENDPOINT"):
        assert name not in env


def test_database_host_user_and_name_go_to_the_configmap_and_the_password_to_the_secret():
    rendered = render("database.host=db.eternia.svc", "database.user=eternia", "database.name=eternia")
    env = backup_env(rendered)
    assert env["PGHOST"] == "db.eternia.svc"
    assert env["PGPORT"] == "5432"
    assert env["PGUSER"] == "eternia"
    assert env["PGDATABASE"] == "eternia"
    assert env["PGPASSWORD"] == SecretRef("backup-credentials", "pg-password")


def test_no_secret_value_ever_appears_in_a_configmap():
    rendered = with_all_secrets("webhook.auth.jwksUrl=https://example.com/jwks")
    for cm in rendered.of_kind("ConfigMap"):
        text = repr(cm)
        for key, value in SENTINELS.items():
            assert value not in text, f"{key} leaked into ConfigMap {cm['metadata']['name']}"


def test_no_container_gets_a_secret_value_as_a_plain_env_value():
    rendered = with_all_secrets()
    for obj in workloads(rendered):
        for ctr in all_containers(obj):
            text = repr(ctr.get("env", [])) + repr(ctr.get("args", []))
            for key, value in SENTINELS.items():
                assert value not in text, f"{key} is inlined in {obj['metadata']['name']}/{ctr['name']}"


def test_secret_values_only_live_in_secrets():
    rendered = with_all_secrets()
    for obj in rendered.docs:
        if obj["kind"] == "Secret":
            continue
        text = repr(obj)
        for key, value in SENTINELS.items():
            assert value not in text, f"{key} appears in {obj['kind']}/{obj['metadata']['name']}"


def test_the_webhook_gets_no_database_credentials():
    rendered = with_all_secrets()
    env = container_env(rendered, container(rendered.get("Deployment", "eternia-backup-webhook"), "webhook"))
    assert "DATABASE_URL" not in env and "PGPASSWORD" not in env


def test_webhook_secrets_come_from_the_webhook_secret():
    rendered = with_all_secrets()
    secret = rendered.get("Secret", "eternia-backup-webhook")
    assert secret["stringData"] == {
        "jwt-hs256-secret": SENTINELS["webhook.auth.jwtHs256Secret"],
        "slack-signing-secret": SENTINELS["webhook.slack.signingSecret"],
    }
    env = container_env(rendered, container(rendered.get("Deployment", "eternia-backup-webhook"), "webhook"))
    assert env["WEBHOOK_JWT_HS256_SECRET"] == SecretRef("eternia-backup-webhook", "jwt-hs256-secret")
    assert env["SLACK_SIGNING_SECRET"] == SecretRef("eternia-backup-webhook", "slack-signing-secret")


def test_an_existing_webhook_secret_is_referenced_and_none_is_created():
    rendered = render("webhook.auth.existingSecret=ci-tokens")
    assert rendered.find("Secret", "eternia-backup-webhook") is None
    env = container_env(rendered, container(rendered.get("Deployment", "eternia-backup-webhook"), "webhook"))
    assert env["WEBHOOK_JWT_HS256_SECRET"] == SecretRef("ci-tokens", "jwt-hs256-secret")


def test_the_age_identity_is_mounted_for_restore_and_drill_but_not_for_backup():
    rendered = render(
        "drill.enabled=true",
        "encryption.identity.existingSecret=age-key",
        "encryption.recipients[0]=age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
    )
    for name, ctr_name in (("database-restore", "restore"), ("database-drill", "drill")):
        ctr = container(rendered.get("CronJob", name), ctr_name)
        env = container_env(rendered, ctr)
        assert env["AGE_IDENTITY_FILE"] == "/etc/eternia-backup/age/age-identity"
        mount = next(m for m in ctr["volumeMounts"] if m["name"] == "age-identity")
        assert mount["readOnly"] is True
    backup = container(rendered.get("CronJob", "database-backup"), "backup")
    env = container_env(rendered, backup)
    assert "AGE_IDENTITY_FILE" not in env
    assert env["BACKUP_ENCRYPT_TO"].startswith("age1")
