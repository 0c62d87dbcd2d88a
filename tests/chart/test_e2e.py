"""The kind end-to-end workflow (it cannot run here): its steps, its helpers, and docs/e2e.md in sync."""

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys

from conftest import ROOT, container, load_yaml, render

WORKFLOW = ROOT / ".github" / "workflows" / "e2e.yml"
E2E = ROOT / ".github" / "e2e"
DOC = ROOT / "docs" / "e2e.md"


def run_blocks():
    workflow = load_yaml(WORKFLOW)
    (job,) = workflow["jobs"].values()
    return [s for s in job["steps"] if "run" in s and s.get("if") != "failure()"]


def commands(text):
    """The kubectl/helm/kind/docker/curl/python3 invocations of a shell text, whitespace-normalised."""
    text = re.sub(r"\\\n\s*", " ", text)
    for line in text.splitlines():
        line = " ".join(line.split())
        line = re.sub(r"^\w+=\$\(", "", line)
        for part in re.split(r" \| | && | \|\| |; ", line):
            part = re.sub(r"^(do|then) ", "", part.strip()).rstrip(")")
            if re.match(r"(kubectl|helm|kind|docker|curl|python3) ", part):
                yield part


def test_the_workflow_runs_on_kind_with_the_image_it_built():
    workflow = load_yaml(WORKFLOW)
    (job,) = workflow["jobs"].values()
    uses = [s.get("uses", "") for s in job["steps"]]
    assert any(u.startswith("helm/kind-action@") for u in uses)
    assert any(u.startswith("docker/build-push-action@") for u in uses)
    script = "\n".join(s["run"] for s in run_blocks())
    assert 'kind load docker-image "$IMAGE"' in script
    assert "-f .github/e2e/values-e2e.yaml" in script


def test_the_workflow_backs_up_with_the_runbook_command():
    script = "\n".join(s["run"] for s in run_blocks())
    assert "kubectl create job --from=cronjob/database-backup manual-backup -n backup" in script
    assert "wait --for=condition=complete job/manual-backup" in script


def test_the_workflow_drops_a_table_and_restores_through_the_webhook_with_a_bearer_token():
    script = "\n".join(s["run"] for s in run_blocks())
    assert "DROP TABLE customers" in script
    assert "python3 .github/e2e/jwt.py" in script
    assert '-H "Authorization: Bearer $TOKEN"' in script
    assert "-d '{\"backup\":\"latest\"}' http://127.0.0.1:8080/v1/restores" in script
    assert 'test "$code" = 401' in script, "an unauthenticated restore must be refused"
    assert 'test "$rows" = "ada,grace,edsger"' in script
    assert r"kubectl\.kubernetes\.io/restartedAt" in script
    assert "rollout status deployment/eternia-backend" in script


def test_every_workflow_command_is_in_docs_e2e():
    doc = "\n".join(commands(DOC.read_text(encoding="utf-8")))
    doc_text = "\n".join(" ".join(line.split()) for line in re.sub(r"\\\n\s*", " ", DOC.read_text()).splitlines())
    missing = []
    for step in run_blocks():
        for command in commands(step["run"]):
            if command not in doc_text:
                missing.append(f'{step["name"]}: {command}')
    assert doc and missing == []


def test_the_jwt_helper_signs_an_hs256_token_the_webhook_can_verify():
    env = dict(os.environ, JWT_SECRET="unit-test-secret")
    token = subprocess.run(
        [sys.executable, str(E2E / "jwt.py"), "--sub", "ci:e2e", "--ttl", "60"],
        capture_output=True, text=True, check=True, env=env,
    ).stdout.strip()
    header_b64, claims_b64, signature_b64 = token.split(".")

    def decode(part):
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    expected = hmac.new(b"unit-test-secret", f"{header_b64}.{claims_b64}".encode(), hashlib.sha256).digest()
    assert hmac.compare_digest(decode(signature_b64), expected)
    assert json.loads(decode(header_b64)) == {"alg": "HS256", "typ": "JWT"}
    claims = json.loads(decode(claims_b64))
    assert claims["sub"] == "ci:e2e" and claims["aud"] == "eternia-backup" and claims["iss"] == "eternia-e2e"
    assert claims["exp"] - claims["iat"] == 60


def test_the_e2e_values_accept_the_token_the_workflow_signs():
    rendered = render(values_files=[E2E / "values-e2e.yaml"])
    webhook = container(rendered.get("Deployment", "eternia-backup-webhook"), "webhook")
    data = rendered.configmap_data("eternia-backup-webhook")
    assert data["WEBHOOK_JWT_ISSUER"] == "eternia-e2e"
    assert data["WEBHOOK_JWT_AUDIENCE"] == "eternia-backup"
    assert data["WEBHOOK_ALLOWED_SUBJECTS"] == "ci:*"
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in webhook["env"] if "valueFrom" in e
                  and "secretKeyRef" in e["valueFrom"]}
    assert secret_env["WEBHOOK_JWT_HS256_SECRET"]["name"] == "eternia-backup-webhook"
    assert secret_env["WEBHOOK_JWT_HS256_SECRET"]["key"] == "jwt-hs256-secret"
    assert container(rendered.get("CronJob", "database-backup"), "backup")["image"] == "eternia-backup:e2e"
