"""Chart hygiene: deterministic renders, labels from one helper, one resource per file, schema strictness."""

import re
import subprocess

import pytest
import yaml

from conftest import (
    CHART,
    CI_VALUES,
    NAMESPACE,
    RELEASE,
    SCHEMA_ERROR,
    component_of,
    helm_binary,
    labels_of,
    render,
    render_error,
)

VALUES_FILES = sorted(CI_VALUES.glob("*.yaml"))
STANDARD_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/component",
)


def raw_template(*args):
    proc = subprocess.run(
        [helm_binary(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


@pytest.mark.parametrize("values", VALUES_FILES, ids=lambda p: p.name)
def test_the_same_values_always_render_the_same_manifests(values):
    assert raw_template("-f", str(values)) == raw_template("-f", str(values))


def test_no_template_uses_random_time_or_cluster_lookups():
    forbidden = re.compile(r"\b(randAlphaNum|randAlpha|randNumeric|randAscii|randBytes|uuidv4|now|genCA|"
                           r"genPrivateKey|genSelfSignedCert|genSignedCert|lookup|htpasswd|derivePassword)\b")
    offenders = []
    for path in (CHART / "templates").rglob("*"):
        if path.is_file():
            for action in re.findall(r"\{\{(.*?)\}\}", path.read_text(encoding="utf-8"), re.S):
                if not action.lstrip("- ").startswith("/*") and forbidden.search(action):
                    offenders.append(f"{path.relative_to(CHART)}: {{{{{action.strip()}}}}}")
    assert offenders == []


@pytest.mark.parametrize("values", VALUES_FILES, ids=lambda p: p.name)
def test_every_resource_carries_the_standard_labels(values):
    rendered = render(values_files=[values])
    for obj in rendered.docs:
        labels = labels_of(obj)
        for label in STANDARD_LABELS:
            assert labels.get(label), f'{obj["kind"]}/{obj["metadata"]["name"]} lacks {label}'
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_labels_are_written_once_in_the_helpers():
    for path in (CHART / "templates").rglob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        assert "app.kubernetes.io/name:" not in text, f"{path.name} repeats labels inline"
        assert "helm.sh/chart:" not in text, f"{path.name} repeats labels inline"


def test_every_template_file_renders_at_most_one_resource(maximal_render):
    assert len(maximal_render.sources) == len(set(maximal_render.sources)), maximal_render.sources
    assert len(maximal_render.sources) == len(maximal_render.docs)


def test_the_maximal_values_render_every_template_file(maximal_render):
    templates = {
        str(p.relative_to(CHART.parent)).replace("chart/", "eternia-backup/", 1)
        for p in (CHART / "templates").rglob("*.yaml")
    }
    assert templates - set(maximal_render.sources) == set()


def test_every_object_is_namespaced_explicitly(maximal_render):
    for obj in maximal_render.docs:
        assert obj["metadata"].get("namespace"), f'{obj["kind"]}/{obj["metadata"]["name"]}'


def test_a_config_change_changes_the_pod_checksum_annotation(default_render):
    def checksum(rendered):
        cronjob = rendered.get("CronJob", "database-backup")
        return cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    webhook = default_render.get("Deployment", "eternia-backup-webhook")
    assert len(webhook["spec"]["template"]["metadata"]["annotations"]["checksum/config"]) == 64
    assert checksum(default_render) == checksum(render())
    assert checksum(default_render) != checksum(render("retention.days=8"))


def test_prerequisites_sync_before_the_cronjobs(maximal_render):
    def wave(obj):
        return int(obj["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))

    cronjob_wave = min(wave(o) for o in maximal_render.of_kind("CronJob"))
    for kind in ("PersistentVolumeClaim", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Secret"):
        for obj in maximal_render.of_kind(kind):
            if component_of(obj) == "monitoring":
                # The Grafana dashboard's ConfigMap: read by Grafana, not by a pod; it syncs with the monitoring.
                assert wave(obj) > cronjob_wave, f'{kind}/{obj["metadata"]["name"]}'
                continue
            assert wave(obj) < cronjob_wave, f'{kind}/{obj["metadata"]["name"]}'


@pytest.mark.parametrize(
    "setting",
    ["unknownTopLevel=1", "backup.unknownKey=1", "webhook.auth.unknown=x", "persistence.sizee=10Gi", "s3.buckets=x"],
)
def test_an_unknown_value_key_fails_with_a_schema_error(setting):
    error = render_error(setting)
    assert SCHEMA_ERROR in error
    assert "additional properties" in error.lower() or "additionalProperties" in error


@pytest.mark.parametrize(
    ("setting", "path"),
    [
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("logFormat=xml", "/logFormat"),
        ("backup.compression=bzip2", "/backup/compression"),
        ("app.namespace=Eternia_Production", "/app/namespace"),
        ("webhook.port=80", "/webhook/port"),
        ("suspend=maybe", "/suspend"),
    ],
)
def test_a_value_of_the_wrong_shape_fails_with_a_schema_error(setting, path):
    error = render_error(setting)
    assert SCHEMA_ERROR in error and path in error


def test_helm_lint_passes_in_strict_mode_for_every_values_file():
    for values in [None, *VALUES_FILES]:
        args = [helm_binary(), "lint", str(CHART), "--strict"] + (["-f", str(values)] if values else [])
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_value_has_a_description():
    import values_doc

    undocumented = [path for path, desc, has_children in values_doc.parse() if desc is None and not has_children]
    assert undocumented == []


def test_every_described_value_exists_in_values_yaml():
    import values_doc

    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    for path, desc, _ in values_doc.parse():
        values_doc.default_of(values, path)  # raises KeyError when the parser and YAML disagree


def test_the_chart_readme_values_table_matches_values_yaml():
    import values_doc

    readme = (CHART / "README.md").read_text(encoding="utf-8")
    assert values_doc.readme_table(readme) == values_doc.table(), (
        "chart/README.md is stale: run python3 tests/chart/values_doc.py --write"
    )


def test_the_schema_lists_every_top_level_value():
    import json

    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert schema["additionalProperties"] is False
    assert set(values) == set(schema["properties"])


def render_notes(tmp_path, *args):
    """NOTES.txt is only rendered by helm install; render it through a copy of the chart as a YAML string."""
    import shutil

    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text(encoding="utf-8")
    (chart / "templates" / "notes-as-yaml.yaml").write_text(
        "notes: |\n" + "\n".join("  " + line for line in notes.splitlines()) + "\n", encoding="utf-8"
    )
    out = subprocess.run(
        [helm_binary(), "template", RELEASE, str(chart), "--namespace", NAMESPACE,
         "--show-only", "templates/notes-as-yaml.yaml", *args],
        capture_output=True, text=True, check=True,
    ).stdout
    return yaml.safe_load(out)["notes"]


def test_the_notes_say_how_to_back_up_list_and_restore(tmp_path):
    notes = render_notes(tmp_path)
    assert "kubectl create job --from=cronjob/database-backup manual-backup -n backup" in notes
    assert "helm test eternia-backup -n backup --logs" in notes
    assert "kubectl create job --from=cronjob/database-restore restore-" in notes
    assert "/v1/restores" in notes
    assert "helm.sh/resource-policy: keep" in notes


def test_the_notes_list_backups_without_helm_test_when_it_is_off(tmp_path):
    notes = render_notes(tmp_path, "-f", str(CI_VALUES / "minimal-values.yaml"))
    assert "helm test" not in notes
    assert '.args = ["list"]' in notes
    assert "/v1/restores" not in notes, "no webhook in the minimal install"


def test_the_committed_schema_is_the_generated_one():
    import values_schema

    assert (CHART / "values.schema.json").read_text(encoding="utf-8") == values_schema.text(), (
        "chart/values.schema.json is stale: run python3 tests/chart/values_schema.py --write"
    )


@pytest.mark.parametrize("setting", ["credentials.existingSecret=Backup_Credentials", "lease.name=Restore Lock"])
def test_an_optional_name_must_still_be_a_kubernetes_name(setting):
    assert SCHEMA_ERROR in render_error(setting)
