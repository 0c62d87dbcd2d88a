"""The restore webhook: its objects, its settings, and the switch that removes all of them."""

from conftest import (
    component_of,
    container,
    container_env,
    pod_spec,
    render,
)

JWKS = 'webhook.auth.jwks="{\\"keys\\":[]}"'
WEBHOOK_KINDS = {"Deployment", "Service", "Ingress", "NetworkPolicy", "ServiceMonitor"}


def everything_on(*extra):
    return render(
        "webhook.ingress.enabled=true",
        "webhook.networkPolicy.enabled=true",
        "metrics.serviceMonitor.enabled=true",
        "metrics.prometheusRule.enabled=true",
        *extra,
        set_string=["webhook.auth.jwtHs256Secret=s3cret", "webhook.slack.signingSecret=s1gn"],
        set_json=[JWKS],
    )


def test_the_webhook_runs_eternia_backup_serve_behind_a_service(default_render):
    deployment = default_render.get("Deployment", "eternia-backup-webhook", "backup")
    ctr = container(deployment, "webhook")
    assert ctr["args"] == ["serve"]
    assert ctr["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert ctr["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/readyz"
    service = default_render.get("Service", "eternia-backup-webhook", "backup")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["template"]["metadata"]["labels"].items() >= service["spec"]["selector"].items()


def test_the_webhook_knows_the_restore_template_and_the_job_namespace(default_render):
    ctr = container(default_render.get("Deployment", "eternia-backup-webhook"), "webhook")
    env = container_env(default_render, ctr)
    assert env["WEBHOOK_LISTEN"] == "0.0.0.0:8080"
    assert env["WEBHOOK_RESTORE_CRONJOB"] == "database-restore"
    assert env["WEBHOOK_JOB_NAMESPACE"] == "backup"
    assert env["LEASE_NAME"] == "eternia-backup-restore"
    assert env["LEASE_NAMESPACE"] == "fieldRef:metadata.namespace"
    assert default_render.find("CronJob", env["WEBHOOK_RESTORE_CRONJOB"]) is not None


def test_jwt_and_slack_settings_reach_the_webhook():
    rendered = render(
        "webhook.auth.issuer=https://token.actions.githubusercontent.com",
        "webhook.auth.jwksUrl=https://token.actions.githubusercontent.com/.well-known/jwks",
        "webhook.auth.allowedSubjects={repo:eternia/eternia:environment:production,repo:eternia/eternia:ref:*}",
        "webhook.slack.allowedUsers={U1,U2}",
        "webhook.slack.allowedChannels={C1}",
    )
    env = container_env(rendered, container(rendered.get("Deployment", "eternia-backup-webhook"), "webhook"))
    assert env["WEBHOOK_JWT_ISSUER"] == "https://token.actions.githubusercontent.com"
    assert env["WEBHOOK_JWT_AUDIENCE"] == "eternia-backup"
    assert env["WEBHOOK_JWKS_URL"].endswith("/.well-known/jwks")
    assert env["WEBHOOK_ALLOWED_SUBJECTS"] == "repo:eternia/eternia:environment:production,repo:eternia/eternia:ref:*"
    assert env["SLACK_ALLOWED_USERS"] == "U1,U2"
    assert env["SLACK_ALLOWED_CHANNELS"] == "C1"


def test_an_inline_jwks_is_mounted_as_a_file():
    rendered = render(set_json=[JWKS])
    deployment = rendered.get("Deployment", "eternia-backup-webhook")
    ctr = container(deployment, "webhook")
    env = container_env(rendered, ctr)
    assert env["WEBHOOK_JWKS_FILE"] == "/etc/eternia-backup/jwks/jwks.json"
    mount = next(m for m in ctr["volumeMounts"] if m["name"] == "jwks")
    assert mount["mountPath"] == "/etc/eternia-backup/jwks"
    volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == "jwks")
    cm = rendered.get("ConfigMap", volume["configMap"]["name"])
    assert "jwks.json" in cm["data"]


def test_the_backup_volume_is_not_mounted_into_the_webhook_unless_asked(default_render):
    ctr = container(default_render.get("Deployment", "eternia-backup-webhook"), "webhook")
    assert [m["name"] for m in ctr["volumeMounts"]] == ["tmp"]
    rendered = render("webhook.mountBackups=true")
    ctr = container(rendered.get("Deployment", "eternia-backup-webhook"), "webhook")
    mount = next(m for m in ctr["volumeMounts"] if m["name"] == "backups")
    assert mount["readOnly"] is True


def test_without_the_volume_the_webhook_lists_backups_from_s3():
    rendered = render("s3.enabled=true")
    env = container_env(rendered, container(rendered.get("Deployment", "eternia-backup-webhook"), "webhook"))
    assert env["BACKUP_STORE"] == "s3"


def test_the_ingress_routes_to_the_webhook_service():
    rendered = everything_on()
    ingress = rendered.get("Ingress", "eternia-backup-webhook")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "eternia-backup-webhook", "port": {"name": "http"}}


def test_the_network_policy_admits_only_the_configured_peers():
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    rendered = render(
        "webhook.networkPolicy.enabled=true",
        "webhook.networkPolicy.from[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=ingress-nginx",
    )
    policy = rendered.get("NetworkPolicy", "eternia-backup-webhook")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"][0]["from"] == [peer]
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "webhook"


def test_disabling_the_webhook_removes_all_its_objects():
    enabled = everything_on()
    disabled = everything_on("webhook.enabled=false")
    assert any(component_of(d) == "webhook" for d in enabled.docs)
    assert WEBHOOK_KINDS <= {d["kind"] for d in enabled.docs}
    assert [d for d in disabled.docs if component_of(d) == "webhook"] == []
    assert not WEBHOOK_KINDS & {d["kind"] for d in disabled.docs}
    names = {f'{d["kind"]}/{d["metadata"]["name"]}' for d in disabled.docs}
    assert not [n for n in names if "webhook" in n], names
    assert "WEBHOOK_LISTEN" not in repr(disabled.docs)
    test_pod = disabled.get("Pod", "eternia-backup-test")
    assert [c["name"] for c in test_pod["spec"]["containers"]] == ["list"]
    # what remains: backups and restores by hand
    assert disabled.find("CronJob", "database-backup") and disabled.find("CronJob", "database-restore")


def test_helm_test_calls_the_webhook_healthz_and_runs_eternia_backup_list(default_render):
    pod = default_render.get("Pod", "eternia-backup-test", "backup")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    healthz = container(pod, "webhook-healthz")
    assert healthz["command"] == ["curl"]
    assert healthz["args"][-1] == "http://eternia-backup-webhook.backup.svc:80/healthz"
    assert "--fail" in healthz["args"]
    listing = container(pod, "list")
    assert listing["args"] == ["list"]
    assert container_env(default_render, listing)["BACKUP_DIR"] == "/backups"
    mount = next(m for m in listing["volumeMounts"] if m["name"] == "backups")
    assert mount["readOnly"] is True


def test_helm_test_can_be_switched_off():
    assert render("tests.enabled=false").of_kind("Pod") == []


def test_behind_the_ingress_the_webhook_believes_x_forwarded_for_only_from_private_ranges(default_render):
    ctr = container(default_render.get("Deployment", "eternia-backup-webhook"), "webhook")
    assert "WEBHOOK_TRUSTED_PROXIES" not in container_env(default_render, ctr), "no ingress, no proxy to trust"
    rendered = everything_on()
    env = container_env(rendered, container(rendered.get("Deployment", "eternia-backup-webhook"), "webhook"))
    assert env["WEBHOOK_TRUSTED_PROXIES"] == "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
    assert "WEBHOOK_TRUST_FORWARDED_FOR" not in env, "the first, client-written entry is never believed"


def test_the_trusted_proxy_ranges_can_be_narrowed_to_the_ingress_controller():
    rendered = render("webhook.ingress.enabled=true", set_json=['webhook.trustedProxies=["10.42.0.0/16"]'])
    env = container_env(rendered, container(rendered.get("Deployment", "eternia-backup-webhook"), "webhook"))
    assert env["WEBHOOK_TRUSTED_PROXIES"] == "10.42.0.0/16"
