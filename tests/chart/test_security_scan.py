"""checkov over the rendered chart: no failed check; every skip in .ci/checkov.yaml has a reason and still fires.

The chart is rendered with the default values and with chart/ci/maximal-values.yaml (every optional template), one
file per object, and each render is scanned by a checkov run of its own (the two side by side): checkov's graph
checks (which NetworkPolicy selects which pod) match labels across every file of a run, so two renders in one run
would answer for each other. Each run uses .ci/checkov.yaml minus its skip-check list, so that it also shows where
each skipped check fires (compared with docs/security.md); the failures of the checks that list does not name are
what `checkov --config-file .ci/checkov.yaml` reports, and there must be none. (Skips are plain check ids, which
checkov drops by id; a second run per render with the skips would double the ~10 s the scan takes on 2 cores,
three quarters of it checkov's start-up.)

checkov comes from $CHECKOV, else $ETERNIA_CACHE/checkov/bin/checkov (scripts/install-tools.sh installs it there,
in a venv of its own). The scan needs no network: skip-download in the config, no update check, an empty HOME and
working directory (no .checkov.yaml other than the project's is read), no BC_/CKV_/PRISMA_ variable passed on.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import CI_VALUES, ROOT, component_of, load_yaml, render, workloads

CONFIG = ROOT / ".ci" / "checkov.yaml"
SECURITY = ROOT / "docs" / "security.md"
RENDERS = {"default": [], "maximal": [CI_VALUES / "maximal-values.yaml"]}
# Both runs together take ~10 s on 2 idle cores; this bounds a hung run.
TIMEOUT_SECONDS = 300


def checkov_binary() -> str:
    cache = Path(os.environ.get("ETERNIA_CACHE", Path.home() / ".cache" / "eternia-backup"))
    for candidate in (os.environ.get("CHECKOV"), str(cache / "checkov" / "bin" / "checkov")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("checkov not found: run scripts/install-tools.sh (or set CHECKOV)")


def skipped_checks() -> list[str]:
    return list(load_yaml(CONFIG).get("skip-check") or [])


def write_render(values_files: list[Path], directory: Path) -> dict[str, str]:
    """One file per rendered object; returns file name -> component (or kind/name for objects without one)."""
    directory.mkdir()
    rendered = render(values_files=values_files)
    owners = {}
    for number, obj in enumerate(rendered.docs):
        name = f'{number:02d}-{obj["kind"]}-{obj["metadata"]["name"]}.yaml'
        (directory / name).write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")
        owners[name] = component_of(obj) or f'{obj["kind"]}/{obj["metadata"]["name"]}'
    return owners


def results(report) -> dict:
    """checkov's JSON report of one framework: {"summary": ..., "results": {...}} (or a bare summary when empty)."""
    if isinstance(report, list):
        assert len(report) == 1, [r.get("check_type") for r in report]
        report = report[0]
    return report


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    checkov = checkov_binary()
    work = tmp_path_factory.mktemp("checkov")
    home = work / "home"
    home.mkdir()
    unskipped = work / "unskipped.yaml"
    config = load_yaml(CONFIG)
    unskipped.write_text(yaml.safe_dump({k: v for k, v in config.items() if k != "skip-check"}), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BC_", "CKV_", "PRISMA_", "CHECKOV_"))}
    env.update(HOME=str(home), CKV_SKIP_PACKAGE_UPDATE_CHECK="true")

    owners, runs = {}, {}
    for render_name, values_files in RENDERS.items():
        directory = work / render_name
        owners[render_name] = write_render(values_files, directory)
        out, err = work / f"{render_name}.json", work / f"{render_name}.log"
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            proc = subprocess.Popen(
                [checkov, "--config-file", str(unskipped), "-d", str(directory), "-o", "json"],
                cwd=home, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            )
        runs[render_name] = (proc, out, err)

    deadline = time.monotonic() + TIMEOUT_SECONDS
    reports = {}
    try:
        for key, (proc, out, err) in runs.items():
            try:
                code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"checkov did not finish within {TIMEOUT_SECONDS} s ({key})")
            # 0: no failed check; 1: failed checks (reported in the JSON); anything else: checkov itself failed.
            assert code in (0, 1), f"checkov {key} exited {code}:\n{err.read_text(errors='replace')[-4000:]}"
            reports[key] = results(json.loads(out.read_text(encoding="utf-8")))
    finally:
        for proc, _, _ in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return {"reports": reports, "owners": owners}


def failures(report) -> list[dict]:
    return (report.get("results") or {}).get("failed_checks") or []


def documented_findings() -> dict[str, tuple[set[str], str]]:
    """docs/security.md "Scanner findings": check id -> (components it fires on, reason)."""
    text = SECURITY.read_text(encoding="utf-8")
    assert "\n## Scanner findings\n" in text, "docs/security.md has no Scanner findings section"
    section = text.split("\n## Scanner findings\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(CKV2?_K8S_\d+)`[^|]*\| ([^|]*) \| ([^|]*) \|$", section, re.M)
    assert rows, "the Scanner findings table is missing"
    found = {}
    for check, fires_on, reason in rows:
        assert check not in found, f"{check} is listed twice"
        found[check] = (set(re.findall(r"`([a-z][a-z-]*)`", fires_on)), reason.strip())
    return found


@pytest.mark.parametrize("render_name", list(RENDERS))
def test_checkov_finds_nothing_with_the_projects_config(scans, render_name):
    report = scans["reports"][render_name]
    summary = report["summary"]
    skips = set(skipped_checks())
    found = [r for r in failures(report) if r["check_id"] not in skips]
    listing = "\n".join(
        f'  {r["check_id"]} {r["check_name"]}: {r["resource"]} ({Path(r["file_path"]).name})' for r in found
    )
    assert not found, f"checkov found {len(found)} problem(s) in the {render_name} render:\n{listing}"
    assert summary["parsing_errors"] == 0, summary
    assert summary["skipped"] == 0, "a checkov.io/skip annotation in a template: skips belong in .ci/checkov.yaml"


@pytest.mark.parametrize("render_name", list(RENDERS))
def test_checkov_checked_every_workload(scans, render_name):
    report = scans["reports"][render_name]
    checked = {Path(r["file_path"]).name for r in report["results"]["passed_checks"]}
    workload_files = {
        name for name, owner in scans["owners"][render_name].items()
        if name.split("-", 2)[1] in ("CronJob", "Deployment", "Job", "Pod")
    }
    assert len(workload_files) == len(workloads(render(values_files=RENDERS[render_name])))
    assert workload_files <= checked, sorted(workload_files - checked)


def test_every_skip_in_the_config_has_its_reason_above_it():
    lines = CONFIG.read_text(encoding="utf-8").splitlines()
    start = lines.index("skip-check:")
    # A comment block gives the reason of the item (or the run of consecutive items) right below it.
    reason: list[str] = []
    after_item = False
    seen = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        stripped = line.strip()
        if stripped.startswith("#"):
            if after_item:
                reason, after_item = [], False
            reason.append(stripped.lstrip("# "))
        elif stripped.startswith("- "):
            check = stripped[2:].strip()
            assert len(" ".join(reason).split()) >= 10, f"{check} has no reason (or a too short one) above it"
            seen.append(check)
            after_item = True
    assert seen == skipped_checks() and seen, "skip-check items must be plain ids, each under its reason"
    assert all(re.fullmatch(r"CKV2?_K8S_\d+", c) for c in seen), "skip only kubernetes checks, by id"


def test_every_skip_still_fires_and_only_on_the_components_docs_security_names(scans):
    fired: dict[str, set[str]] = {}
    for render_name in RENDERS:
        owners = scans["owners"][render_name]
        for failure in failures(scans["reports"][render_name]):
            fired.setdefault(failure["check_id"], set()).add(owners[Path(failure["file_path"]).name])
    skips = skipped_checks()
    assert set(fired) <= set(skips), "a failure the config does not skip fails test_checkov_finds_nothing_..."
    assert set(skips) <= set(fired), f"skipped but no longer firing (remove the skip): {sorted(set(skips) - set(fired))}"
    documented = documented_findings()
    assert set(documented) == set(skips), "docs/security.md Scanner findings must list exactly the skipped checks"
    for check in skips:
        components, reason = documented[check]
        assert fired[check] == components, f"{check} fires on {sorted(fired[check])}, docs say {sorted(components)}"
        assert len(reason.split()) >= 10, f"docs/security.md gives {check} no real reason"
