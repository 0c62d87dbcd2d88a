"""RBAC: the rendered Roles grant exactly chart/rbac-contract.yaml, per component and namespace, nothing more."""

import re

import pytest

from conftest import APP_NAMESPACE, CHART, CI_VALUES, NAMESPACE, load_yaml, pod_spec, render

CONTRACT = load_yaml(CHART / "rbac-contract.yaml")

# The least-privilege list (issue 6, narrowed to the calls the code makes, then checked against the real
# authorizer and audit log: tests/cluster/test_rbac.py, which found the restore's missing `list`), written out
# independently of the contract file, so that a change to the contract is a deliberate change of two places.
DOCUMENTED = {
    ("backup", "app"): {("", "configmaps"): {"list"}, ("", "secrets"): {"list"}},
    ("backup", "release"): {("coordination.k8s.io", "leases"): {"get"}},
    ("restore", "app"): {
        ("", "configmaps"): {"get", "list", "create", "patch"},
        ("", "secrets"): {"get", "list", "create", "patch"},
        ("apps", "deployments"): {"get", "patch"},
    },
    ("restore", "release"): {("coordination.k8s.io", "leases"): {"get", "create", "update"}},
    ("webhook", "release"): {
        ("batch", "cronjobs"): {"get"},
        ("batch", "jobs"): {"create", "get", "list"},
        ("", "pods"): {"list"},
        ("", "pods/log"): {"get"},
        ("coordination.k8s.io", "leases"): {"get"},
    },
}


def contract_grants():
    grants = {}
    for component, namespaces in CONTRACT["components"].items():
        for ns_role, rules in (namespaces or {}).items():
            table = grants.setdefault((component, ns_role), {})
            for rule in rules:
                key = (rule["apiGroup"], rule["resource"])
                assert key not in table, f"duplicate rule {key} for {component}/{ns_role}"
                table[key] = set(rule["verbs"])
    return grants


def rendered_grants(rendered, app_namespace=APP_NAMESPACE, release_namespace=NAMESPACE):
    """(component, 'app'|'release') -> {(apiGroup, resource): verbs}, from the Roles bound to each component."""
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in rendered.of_kind("Role")}
    grants = {}
    for binding in rendered.of_kind("RoleBinding"):
        ns = binding["metadata"]["namespace"]
        role = roles[(ns, binding["roleRef"]["name"])]
        assert binding["roleRef"]["kind"] == "Role"
        (subject,) = binding["subjects"]
        assert subject["kind"] == "ServiceAccount" and subject["namespace"] == release_namespace
        component = binding["metadata"]["labels"]["app.kubernetes.io/component"]
        assert subject["name"] == f"eternia-backup-{component}", "a Role is bound to its own component only"
        ns_role = {app_namespace: "app", release_namespace: "release"}[ns]
        if app_namespace == release_namespace:
            ns_role = binding["metadata"]["name"].rsplit("-", 1)[1]
        table = grants.setdefault((component, ns_role), {})
        for rule in role["rules"]:
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    table.setdefault((group, resource), set()).update(rule["verbs"])
    return grants


def test_the_rbac_contract_is_the_documented_least_privilege_list():
    assert contract_grants() == DOCUMENTED
    assert CONTRACT["components"]["drill"] == {}


def test_the_rendered_roles_grant_exactly_the_rbac_contract(default_render):
    assert rendered_grants(default_render) == contract_grants()


def test_roles_land_in_the_app_and_release_namespaces(default_render):
    namespaces = {(r["metadata"]["name"], r["metadata"]["namespace"]) for r in default_render.of_kind("Role")}
    assert namespaces == {
        ("eternia-backup-backup-app", APP_NAMESPACE),
        ("eternia-backup-backup-release", NAMESPACE),
        ("eternia-backup-restore-app", APP_NAMESPACE),
        ("eternia-backup-restore-release", NAMESPACE),
        ("eternia-backup-webhook-release", NAMESPACE),
    }


def test_the_app_namespace_is_configurable():
    rendered = render("app.namespace=shop")
    assert rendered_grants(rendered, app_namespace="shop") == contract_grants()


def test_the_app_can_live_in_the_release_namespace():
    rendered = render(f"app.namespace={NAMESPACE}")
    assert rendered_grants(rendered, app_namespace=NAMESPACE) == contract_grants()


@pytest.mark.parametrize("values", ["default", "maximal-values.yaml", "seed-values.yaml", "minimal-values.yaml"])
def test_no_cluster_wide_permission_is_ever_rendered(values):
    rendered = render() if values == "default" else render(values_files=[CI_VALUES / values])
    assert rendered.of_kind("ClusterRole") == []
    assert rendered.of_kind("ClusterRoleBinding") == []
    for role in rendered.of_kind("Role"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]


def test_without_the_webhook_only_backup_and_restore_get_roles():
    rendered = render("webhook.enabled=false")
    expected = {k: v for k, v in contract_grants().items() if k[0] != "webhook"}
    assert rendered_grants(rendered) == expected


def test_rbac_create_false_renders_no_roles_but_keeps_the_service_accounts():
    rendered = render("rbac.create=false")
    assert rendered.of_kind("Role") == [] and rendered.of_kind("RoleBinding") == []
    assert {sa["metadata"]["name"] for sa in rendered.of_kind("ServiceAccount")} == {
        "eternia-backup-backup",
        "eternia-backup-restore",
        "eternia-backup-webhook",
    }


def test_each_component_runs_under_its_own_service_account(default_render):
    assert pod_spec(default_render.get("CronJob", "database-backup"))["serviceAccountName"] == "eternia-backup-backup"
    assert pod_spec(default_render.get("CronJob", "database-restore"))["serviceAccountName"] == "eternia-backup-restore"
    webhook = default_render.get("Deployment", "eternia-backup-webhook")
    assert pod_spec(webhook)["serviceAccountName"] == "eternia-backup-webhook"


def test_drill_pods_get_no_role_and_no_api_token():
    rendered = render("drill.enabled=true")
    sa = rendered.get("ServiceAccount", "eternia-backup-drill")
    assert sa["automountServiceAccountToken"] is False
    spec = pod_spec(rendered.get("CronJob", "database-drill"))
    assert spec["serviceAccountName"] == "eternia-backup-drill"
    assert spec["automountServiceAccountToken"] is False
    assert not any(b["subjects"][0]["name"] == "eternia-backup-drill" for b in rendered.of_kind("RoleBinding"))


def test_existing_service_account_names_are_used_when_the_chart_does_not_create_them():
    rendered = render("serviceAccount.create=false", "serviceAccount.names.backup=irsa-backup")
    assert rendered.of_kind("ServiceAccount") == []
    assert pod_spec(rendered.get("CronJob", "database-backup"))["serviceAccountName"] == "irsa-backup"
    binding = rendered.get("RoleBinding", "eternia-backup-backup-app")
    assert binding["subjects"][0]["name"] == "irsa-backup"


def test_the_chart_readme_rbac_reference_matches_the_contract():
    text = (CHART / "README.md").read_text(encoding="utf-8")
    section = text.split("## RBAC reference", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `?(\w+)`? \| (app|release) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|", section, re.M)
    assert rows, "the RBAC reference table is missing"
    documented = {}
    for component, ns_role, group, resource, verbs in rows:
        group = group.strip(" `")
        group = "" if group == "core" else group
        documented.setdefault((component, ns_role), {})[(group, resource.strip(" `"))] = {
            v.strip(" `") for v in verbs.split(",")
        }
    assert documented == contract_grants()
