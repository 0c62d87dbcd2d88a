"""Labels as one map (commonLabels override, selectors never move), names cut in one helper, one calling convention."""

import re

import pytest
import yaml

from conftest import (
    CHART,
    CI_VALUES,
    RELEASE,
    UniqueKeyLoader,
    load_all_unique,
    pod_spec,
    render,
    render_error,
    workloads,
)

MAXIMAL = CI_VALUES / "maximal-values.yaml"
SELECTOR_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component")
OVERRIDABLE_LABELS = {
    "app.kubernetes.io/part-of": "eternia",
    "app.kubernetes.io/version": "9.9.9",
    "helm.sh/chart": "custom-chart",
    "app.kubernetes.io/managed-by": "argocd",
}
# helm refuses release names longer than 53 characters.
LONG_RELEASE_WITH_CHART_NAME = "eternia-backup-" + "x" * 24 + "-production-eu"
LONG_RELEASE_WITHOUT_CHART_NAME = "tenant-" + "a" * 32 + "-production"


def common_label(key, value):
    return "commonLabels." + key.replace(".", "\\.") + "=" + value


def label_maps(obj):
    """(where, labels) of the object and of the Job/pod templates inside it."""
    where = f'{obj["kind"]}/{obj["metadata"]["name"]}'
    yield where, obj["metadata"].get("labels") or {}
    if obj["kind"] == "CronJob":
        yield where + " jobTemplate", obj["spec"]["jobTemplate"]["metadata"]["labels"]
    if obj["kind"] in ("CronJob", "Deployment"):
        spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
        yield where + " pod template", spec["template"]["metadata"]["labels"]


def selectors(rendered):
    """Every label selector the chart renders, by where it is."""
    found = {}
    for obj in rendered.docs:
        where = f'{obj["kind"]}/{obj["metadata"]["name"]}'
        if obj["kind"] == "Deployment":
            found[where] = obj["spec"]["selector"]["matchLabels"]
        elif obj["kind"] == "Service":
            found[where] = obj["spec"]["selector"]
        elif obj["kind"] == "ServiceMonitor":
            found[where] = obj["spec"]["selector"]["matchLabels"]
        elif obj["kind"] == "NetworkPolicy":
            found[where] = obj["spec"]["podSelector"]["matchLabels"]
    return found


def test_the_strict_yaml_loader_rejects_a_duplicate_key():
    text = "metadata:\n  labels:\n    team: a\n    team: b\n"
    assert yaml.safe_load(text)["metadata"]["labels"] == {"team": "b"}
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'team'"):
        yaml.load(text, Loader=UniqueKeyLoader)
    assert load_all_unique("a: 1\n---\nb: {c: 2}\n") == [{"a": 1}, {"b": {"c": 2}}]


@pytest.mark.parametrize(("key", "value"), OVERRIDABLE_LABELS.items(), ids=list(OVERRIDABLE_LABELS))
def test_a_common_label_overriding_a_standard_label_leaves_one_key_with_the_users_value(key, value):
    # render() parses with UniqueKeyLoader: a repeated key fails the render itself.
    rendered = render(common_label(key, value), values_files=[MAXIMAL])
    for where, labels in (pair for obj in rendered.docs for pair in label_maps(obj)):
        assert labels.get(key) == value, f"{where}: {key}={labels.get(key)!r}"
        assert labels.get("team") == "platform", where


def test_an_objects_own_labels_override_the_common_labels_once():
    rendered = render(
        "commonLabels.team=platform",
        "backup.podLabels.team=backup-team",
        "webhook.podLabels.team=webhook-team",
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.labels.team=monitoring",
        "metrics.prometheusRule.enabled=true",
        "metrics.prometheusRule.labels.team=alerts",
    )
    backup = rendered.get("CronJob", "database-backup")
    assert backup["metadata"]["labels"]["team"] == "platform"
    assert backup["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]["team"] == "backup-team"
    webhook = rendered.get("Deployment", "eternia-backup-webhook")
    assert webhook["metadata"]["labels"]["team"] == "platform"
    assert webhook["spec"]["template"]["metadata"]["labels"]["team"] == "webhook-team"
    assert rendered.get("ServiceMonitor", "eternia-backup-webhook")["metadata"]["labels"]["team"] == "monitoring"
    assert rendered.get("PrometheusRule", "eternia-backup")["metadata"]["labels"]["team"] == "alerts"


def test_common_labels_leave_every_selector_unchanged():
    plain = render(values_files=[MAXIMAL])
    labelled = render(
        "commonLabels.team=platform", common_label("app.kubernetes.io/part-of", "eternia"), values_files=[MAXIMAL]
    )
    assert set(selectors(plain)) >= {
        "Deployment/eternia-backup-max-webhook",
        "Service/eternia-backup-max-webhook",
        "NetworkPolicy/eternia-backup-max-webhook",
        "ServiceMonitor/eternia-backup-max-webhook",
    }
    assert selectors(labelled) == selectors(plain)
    for where, selector in selectors(labelled).items():
        assert set(selector) == set(SELECTOR_LABELS), where
    deployment = labelled.of_kind("Deployment")[0]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels.items() >= deployment["spec"]["selector"]["matchLabels"].items()


@pytest.mark.parametrize("key", SELECTOR_LABELS)
def test_a_common_label_cannot_give_a_selector_label_another_value(key):
    error = render_error(common_label(key, "something-else"))
    assert f'cannot replace the selector label {key}=' in error


def test_a_pod_label_cannot_move_the_webhook_pods_out_of_their_deployments_selector():
    error = render_error("webhook.podLabels.app\\.kubernetes\\.io/component=api")
    assert 'cannot replace the selector label app.kubernetes.io/component="webhook"' in error


def test_a_common_label_repeating_a_selector_labels_own_value_is_accepted():
    rendered = render(common_label("app.kubernetes.io/instance", RELEASE))
    assert {labels["app.kubernetes.io/instance"] for obj in rendered.docs for _, labels in label_maps(obj)} == {RELEASE}


def long_release_render(release):
    assert 50 <= len(release) <= 53
    # The maximal values without their name overrides: every object, named after the release.
    return render("fullnameOverride=", "nameOverride=", values_files=[MAXIMAL], release=release)


@pytest.mark.parametrize("release", [LONG_RELEASE_WITH_CHART_NAME, LONG_RELEASE_WITHOUT_CHART_NAME])
def test_a_long_release_name_gives_every_name_at_most_63_characters_without_a_trailing_dash(release):
    rendered = long_release_render(release)
    names = [obj["metadata"]["name"] for obj in rendered.docs]
    names += [pod_spec(obj)["serviceAccountName"] for obj in workloads(rendered)]
    names += [cm["data"]["LEASE_NAME"] for cm in rendered.of_kind("ConfigMap") if "LEASE_NAME" in cm["data"]]
    assert len(names) > 30
    for name in names:
        assert len(name) <= 63 and not name.endswith("-"), name


def test_a_53_character_release_name_still_gives_distinct_names_that_reference_each_other():
    rendered = long_release_render(LONG_RELEASE_WITH_CHART_NAME)
    keys = [(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in rendered.docs]
    assert len(keys) == len(set(keys)), sorted(keys)
    names = {(o["kind"], o["metadata"]["name"]) for o in rendered.docs}
    for obj in workloads(rendered):
        spec = pod_spec(obj)
        assert ("ServiceAccount", spec["serviceAccountName"]) in names
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in names
    for binding in rendered.of_kind("RoleBinding"):
        assert ("Role", binding["roleRef"]["name"]) in names


def test_suffixed_names_are_cut_to_63_characters_in_one_helper():
    for path in (CHART / "templates").rglob("*"):
        if path.is_file() and path.name != "_helpers.tpl":
            assert "trunc" not in path.read_text(encoding="utf-8"), f"{path.name} cuts a name itself"
    helpers = (CHART / "templates" / "_helpers.tpl").read_text(encoding="utf-8")
    defines = dict(re.findall(r'\{\{-? define "([^"]+)" -?\}\}(.*?)(?=\{\{-? define |\Z)', helpers, re.S))
    assert len(defines) > 20
    cutting_derived_names = [n for n, b in defines.items() if "trunc" in b and '"eternia-backup.fullname"' in b]
    assert cutting_derived_names == ["eternia-backup.suffixedName"]


def test_every_helper_is_called_with_a_dict_holding_the_root_context():
    calls = []
    for path in (CHART / "templates").rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert not re.search(r'\{\{-?\s*template\s', text), f"{path.name} uses template instead of include"
            calls += [(path.name, m) for m in re.findall(r'include\s+"(eternia-backup\.[\w.]+"\s+.{0,20})', text)]
    assert len(calls) > 100
    root = re.compile(r'"\s+\(dict "ctx" (\$|\$ctx|\.ctx)[ )]')
    assert [(name, call) for name, call in calls if not root.search(call)] == []
