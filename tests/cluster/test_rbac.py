"""The chart's RBAC against what the components really do, decided by the real authorizer.

Each component (backup, restore, webhook) runs its real work on the control plane with its own
ServiceAccount's token. The API server's audit log records every request each ServiceAccount sent and the
answer it got. The test then requires: no request was refused (403); every call is granted by
chart/rbac-contract.yaml; every grant of the contract is used by some call (no privilege nobody needs); and
the installed Roles grant exactly the contract, asked of the authorizer itself (SubjectAccessReview).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from conftest import ROOT, wait_until, install
from runner import JobRunner
from test_webhook import Rs256Key, Webhook, ISSUER, AUDIENCE, SUBJECT
from test_workflows import app_objects, backup_job, restore_job

CONTRACT = yaml.safe_load((ROOT / "chart" / "rbac-contract.yaml").read_text())
COMPONENTS = ("backup", "restore", "webhook")


def contract_grants(component: str) -> set[tuple[str, str, str, str]]:
    rules = CONTRACT["components"].get(component) or {}
    return {(role, r["apiGroup"], r["resource"], verb)
            for role, rs in rules.items() for r in rs for verb in r["verbs"]}


def audited_calls(audit_log: Path, release) -> dict[str, list[dict]]:
    """Every request each of the release's ServiceAccounts sent, as the API server recorded it."""
    users = {f"system:serviceaccount:{release.namespace}:{release.full(c)}": c for c in COMPONENTS}
    calls: dict[str, list[dict]] = {c: [] for c in COMPONENTS}
    for line in audit_log.read_text().splitlines():
        event = json.loads(line)
        component = users.get(event.get("user", {}).get("username"))
        if component and event.get("stage") == "ResponseComplete":
            calls[component].append(event)
    return calls


def as_contract_terms(event: dict, release) -> set[tuple[str, str, str, str]]:
    ref = event.get("objectRef", {})
    role = {release.app_namespace: "app", release.namespace: "release"}.get(ref.get("namespace"), ref.get("namespace"))
    resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    verb = event["verb"]
    terms = {(role, ref.get("apiGroup", ""), resource, verb)}
    if verb == "patch" and event.get("responseStatus", {}).get("code") == 201:
        # A server-side apply that created the object is also authorized as a create.
        terms.add((role, ref.get("apiGroup", ""), resource, "create"))
    return terms


def test_every_call_each_component_makes_is_granted_by_the_chart_and_every_grant_is_used(
        cluster, workdir, database):
    key = Rs256Key(workdir)
    release = install(cluster, workdir, database, values={
        "webhook": {"enabled": True, "auth": {"jwks": key.jwks, "issuer": ISSUER, "audience": AUDIENCE,
                                              "allowedSubjects": [SUBJECT]}},
        "extraEnv": [{"name": "WEBHOOK_POLL_INTERVAL", "value": "1s"}]})
    ns = release.app_namespace
    cluster.apply(app_objects(ns))
    with JobRunner(cluster, [release.namespace], workdir) as runner:
        # backup: export; restore: safety backup, apply (an update and a create), restart, rollout, Lease.
        backup_job(cluster, release, runner)
        # Both objects gone: applying them back is a create (a server-side apply that creates is authorized
        # as create and patch).
        cluster.kubectl("delete", "secret", "app-secret", "-n", ns)
        cluster.kubectl("delete", "configmap", "app-config", "-n", ns)
        ran = restore_job(cluster, release, runner, "restore-rbac")
        assert ran.code == 0, ran.log
        # webhook: a restore (template, Lease, running Jobs, create), its status, and a failed one's log tail.
        hook = Webhook(cluster, release, workdir)
        try:
            status, body, _ = hook.api("POST", "/v1/restores", key.token(), {"backup": "latest"})
            assert status == 202, body
            assert runner.wait_for_job(release.namespace, body["job"]).code == 0
            status, body, _ = hook.api("POST", "/v1/restores", key.token(),
                                       {"backup": "eternia-backup-20000101-000000.tar.gz"})
            assert status == 202, body
            assert runner.wait_for_job(release.namespace, body["job"]).code != 0
            wait_until("the failed restore is reported", lambda: hook.api(
                "GET", f"/v1/restores/{body['id']}", key.token())[1]["status"] == "failed")
        finally:
            hook.close()

    calls = audited_calls(Path(cluster.dir / "audit.log"), release)
    for component in COMPONENTS:
        refused = [(e["verb"], e["requestURI"]) for e in calls[component]
                   if e.get("responseStatus", {}).get("code") == 403]
        assert not refused, f"{component}: the real authorizer refused {refused}"
        made = set().union(*(as_contract_terms(e, release) for e in calls[component]))
        granted = contract_grants(component)
        assert made - granted == set(), f"{component}: calls the contract does not grant"
        assert granted - made == set(), f"{component}: grants no call uses"


def test_the_installed_roles_grant_each_service_account_exactly_the_contract(cluster, workdir, database):
    release = install(cluster, workdir, database, values={"webhook": {"enabled": True}})
    where = {"app": release.app_namespace, "release": release.namespace}
    verbs = ("get", "list", "watch", "create", "update", "patch", "delete")
    for component in ("backup", "restore", "webhook", "drill"):
        granted = contract_grants(component)
        resources = {(g, r) for _, g, r, _ in set().union(*(contract_grants(c) for c in COMPONENTS))}
        for role, namespace in where.items():
            for group, resource in sorted(resources):
                for verb in verbs:
                    name, _, sub = resource.partition("/")
                    allowed = cluster.can_i(verb, f"{group}/{name}" if group else name, namespace,
                                            release.full(component), release.namespace, subresource=sub)
                    expected = (role, group, resource, verb) in granted
                    assert allowed == expected, \
                        f"{component} {verb} {resource} in the {role} namespace: authorizer says {allowed}"
