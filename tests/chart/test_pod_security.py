"""Every pod: non-root, read-only root filesystem, no capabilities, RuntimeDefault seccomp, scheduling settings."""

import pytest

from conftest import CI_VALUES, all_containers, pod_spec, render, workloads

VALUES = ["default", "seed-values.yaml", "minimal-values.yaml", "maximal-values.yaml"]


def rendered_for(values):
    return render() if values == "default" else render(values_files=[CI_VALUES / values])


@pytest.mark.parametrize("values", VALUES)
def test_every_pod_runs_as_non_root_with_a_read_only_root_and_no_capabilities(values):
    rendered = rendered_for(values)
    assert workloads(rendered)
    for obj in workloads(rendered):
        spec = pod_spec(obj)
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True
        assert pod_sc["runAsUser"] == 65532
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
        for ctr in all_containers(obj):
            sc = ctr["securityContext"]
            where = f'{obj["metadata"]["name"]}/{ctr["name"]}'
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in sc["capabilities"], where
            assert ctr["resources"]["limits"]["memory"], where


@pytest.mark.parametrize("values", VALUES)
def test_every_product_container_has_a_writable_tmp(values):
    rendered = rendered_for(values)
    for obj in workloads(rendered):
        volumes = {v["name"]: v for v in pod_spec(obj)["volumes"]}
        assert "emptyDir" in volumes["tmp"]
        for ctr in all_containers(obj):
            if ctr["name"] == "webhook-healthz":
                continue
            assert {"name": "tmp", "mountPath": "/tmp"} in ctr["volumeMounts"]


def test_scheduling_and_pull_settings_reach_every_pod(maximal_render):
    for obj in workloads(maximal_render):
        spec = pod_spec(obj)
        assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
        assert spec["tolerations"][0]["key"] == "dedicated"
        assert "nodeAffinity" in spec["affinity"]
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]
        assert spec["priorityClassName"] == "system-cluster-critical"


def test_the_image_digest_pins_every_product_container(maximal_render):
    digest = "registry.example.com/eternia/eternia-backup@sha256:" + "0" * 64
    for obj in workloads(maximal_render):
        for ctr in all_containers(obj):
            if ctr["name"] != "webhook-healthz":
                assert ctr["image"] == digest
                assert ctr["imagePullPolicy"] == "Always"


def test_the_image_tag_defaults_to_the_app_version(default_render):
    from conftest import CHART, load_yaml

    app_version = load_yaml(CHART / "Chart.yaml")["appVersion"]
    for obj in workloads(default_render):
        for ctr in all_containers(obj):
            if ctr["name"] != "webhook-healthz":
                assert ctr["image"] == f"ghcr.io/eternia/eternia-backup:{app_version}"


def test_extra_env_reaches_every_product_container():
    rendered = render("extraEnv[0].name=RUST_LOG", "extraEnv[0].value=debug")
    for obj in workloads(rendered):
        for ctr in all_containers(obj):
            if ctr["name"] != "webhook-healthz":
                assert {"name": "RUST_LOG", "value": "debug"} in ctr["env"]
