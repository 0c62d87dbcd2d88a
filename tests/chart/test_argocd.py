"""The Argo CD Applications: the chart, pinned, self-healing, with the value files of each environment."""

import pytest

from conftest import ROOT, container, load_yaml, render

ARGOCD = ROOT / "argocd"
CHART_APPS = sorted(ARGOCD.glob("eternia-backup-*.yaml"))


@pytest.fixture(params=CHART_APPS, ids=lambda p: p.name)
def application(request):
    return request.param, load_yaml(request.param)


def test_there_is_an_application_per_environment():
    assert {p.name for p in CHART_APPS} == {"eternia-backup-production.yaml", "eternia-backup-staging.yaml"}


def test_the_application_deploys_the_chart_at_a_pinned_revision(application):
    _, app = application
    assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
    source = app["spec"]["source"]
    assert source["path"] == "chart"
    assert source["helm"]["releaseName"] == "eternia-backup"
    revision = source["targetRevision"]
    assert revision not in ("HEAD", "main", "master", "") and not revision.endswith("*")
    assert revision[0] == "v" and revision[1].isdigit(), "a release tag"
    assert app["spec"]["destination"]["namespace"] == "backup"


def test_the_application_syncs_automatically_with_prune_self_heal_and_namespace_creation(application):
    _, app = application
    policy = app["spec"]["syncPolicy"]
    assert policy["automated"] == {"prune": True, "selfHeal": True}
    assert "CreateNamespace=true" in policy["syncOptions"]
    assert "RespectIgnoreDifferences=true" in policy["syncOptions"]


def test_the_value_files_exist_and_render(application):
    path, app = application
    chart_dir = ROOT / app["spec"]["source"]["path"]
    files = [(chart_dir / f).resolve() for f in app["spec"]["source"]["helm"]["valueFiles"]]
    assert files
    for f in files:
        assert f.is_file(), f
        assert ROOT in f.parents, "Argo CD only reads value files inside the repository"
    rendered = render(values_files=files)
    app_namespace = load_yaml(files[-1])["app"]["namespace"]
    restore = container(rendered.get("CronJob", "database-restore"), "restore")
    assert restore["args"][0] == "restore"
    assert rendered.get("Role", "eternia-backup-restore-app")["metadata"]["namespace"] == app_namespace


def test_restore_changes_are_ignored_not_reverted(application):
    _, app = application
    rules = app["spec"]["ignoreDifferences"]
    deployment = next(r for r in rules if r["kind"] == "Deployment")
    assert deployment["group"] == "apps"
    assert "/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt" in deployment["jsonPointers"]
    for kind in ("ConfigMap", "Secret"):
        rule = next(r for r in rules if r["kind"] == kind)
        assert rule["managedFieldsManagers"] == ["eternia-backup"]


def test_the_production_values_keep_the_reference_deployment():
    values = load_yaml(ARGOCD / "values-production.yaml")
    assert values["schedule"] == "0 2 * * *"
    assert values["app"]["namespace"] == "eternia-production"
    assert values["credentials"]["existingSecret"] == "backup-credentials"
    assert values["persistence"]["size"] == "10Gi"
    assert values["s3"]["bucket"] == "eternia-backups"
    assert values["retention"]["days"] == 7


def test_the_app_application_example_ignores_the_restart_annotation():
    app = load_yaml(ARGOCD / "eternia-production-app.yaml")
    pointers = [p for r in app["spec"]["ignoreDifferences"] for p in r.get("jsonPointers", [])]
    assert "/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt" in pointers
