"""The container image, read statically (no container engine here; hadolint lints it in scripts/test-chart.sh)."""

import json
import re

from conftest import ROOT, workloads

DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


def instructions():
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages():
    current = None
    out = {}
    for keyword, rest in instructions():
        if keyword == "FROM":
            current = rest.split(" AS ")[-1].strip() if " AS " in rest else rest
            out[current] = []
        elif current:
            out[current].append((keyword, rest))
    return out


def test_the_image_is_built_in_two_stages_on_the_same_debian_release():
    froms = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert froms == [
        "rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build",
        "debian:${DEBIAN_RELEASE}-slim AS runtime",
    ]
    assert "ARG DEBIAN_RELEASE=trixie" in DOCKERFILE


def test_the_build_stage_builds_the_locked_release_binary():
    runs = " ".join(rest for keyword, rest in stages()["build"] if keyword == "RUN")
    assert "cargo build --release --locked" in runs
    assert "target/release/eternia-backup" in runs


def test_the_rust_version_satisfies_the_crate_rust_version():
    import tomllib

    crate = tomllib.loads((ROOT / "Cargo.toml").read_text(encoding="utf-8"))["package"]
    wanted = tuple(int(x) for x in crate["rust-version"].split("."))
    image = re.search(r"ARG RUST_VERSION=(\d+)\.(\d+)", DOCKERFILE)
    assert (int(image.group(1)), int(image.group(2))) >= wanted[:2]


def test_the_runtime_has_the_postgresql_17_client_and_ca_certificates():
    runtime = stages()["runtime"]
    runs = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    assert "ARG PG_MAJOR=17" in DOCKERFILE
    assert '"postgresql-client-${PG_MAJOR}"' in runs and "ca-certificates" in runs
    assert "--no-install-recommends" in runs and "rm -rf /var/lib/apt/lists/*" in runs
    env = " ".join(rest for keyword, rest in runtime if keyword == "ENV")
    assert "/usr/lib/postgresql/${PG_MAJOR}/bin" in env


def test_the_runtime_runs_as_uid_65532_with_the_binary_as_exec_form_entrypoint():
    runtime = stages()["runtime"]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users == ["65532:65532"]
    (entrypoint,) = [rest for keyword, rest in runtime if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["/usr/local/bin/eternia-backup"]
    copies = [rest for keyword, rest in runtime if keyword == "COPY"]
    assert copies == ["--from=build /out/eternia-backup /usr/local/bin/eternia-backup"]


def test_the_chart_runs_the_image_as_the_image_user(default_render):
    for obj in workloads(default_render):
        from conftest import pod_spec

        assert pod_spec(obj)["securityContext"]["runAsUser"] == 65532


def test_the_build_context_leaves_out_what_the_build_does_not_need():
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    for entry in ("target", ".git", "chart", "tests/chart"):
        assert entry in ignored
    for needed in ("src", "Cargo.toml", "Cargo.lock"):
        assert needed not in ignored
