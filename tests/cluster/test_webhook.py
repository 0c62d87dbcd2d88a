"""The whole chain on the real control plane: a signed request (Slack slash command + confirmation click, or
a CI token signed RS256 and verified through the chart's JWKS) reaches the webhook, which runs as its
Deployment's pod would (its own ServiceAccount token, its env from the chart), creates a restore Job from the
live suspended CronJob; the Job controller makes its pod, the job runner runs the restore against the real
PostgreSQL, which applies the ConfigMaps, restarts the Deployment and waits for the rollout; the Job
controller marks the Job Complete, and the webhook reports it (GET /v1/restores/{id}, Slack's response_url)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.server
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import Database, PgRestoreGate, install, psql, unique, wait_until
from runner import JobRunner, run_pod_template_locally, stop
from test_workflows import app_objects, backup_job

SLACK_SECRET = "8f14e45fceea167a5a36dedd4bea2543"
AUDIENCE = "eternia-backup"
ISSUER = "https://token.actions.example.test"
SUBJECT = "repo:eternia/eternia:environment:production"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Rs256Key:
    """An RSA key made with openssl: its JWKS document, and RS256 tokens signed with it."""

    def __init__(self, directory: Path):
        self.pem = directory / "ci-signing-key.pem"
        subprocess.run(["openssl", "genrsa", "-out", str(self.pem), "2048"], check=True, capture_output=True)
        modulus = subprocess.run(["openssl", "rsa", "-in", str(self.pem), "-noout", "-modulus"], check=True,
                                 capture_output=True, text=True).stdout.strip().split("=", 1)[1]
        self.jwks = json.dumps({"keys": [{"kty": "RSA", "kid": "ci-1", "alg": "RS256", "use": "sig",
                                          "n": b64url(bytes.fromhex(modulus)), "e": b64url((65537).to_bytes(3, "big"))}]})

    def token(self, **claims) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": SUBJECT, "iat": now, "exp": now + 600, **claims}
        signing_input = f"{b64url(json.dumps({'alg': 'RS256', 'kid': 'ci-1', 'typ': 'JWT'}).encode())}." \
                        f"{b64url(json.dumps(body).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.pem)], input=signing_input.encode(),
                             check=True, capture_output=True).stdout
        return f"{signing_input}.{b64url(sig)}"


class ResponseUrl:
    """A local stand-in for Slack's response_url: records every message posted to it."""

    def __init__(self):
        self.messages: list[dict] = []
        received = self.messages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.prefix = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.url = self.prefix + "actions/T1/1/abc"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self) -> list[str]:
        return [json.dumps(m) for m in self.messages]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Webhook:
    """The webhook Deployment's pod, run as a local process with its own environment and token."""

    def __init__(self, cluster, release, workdir: Path):
        pods = wait_until("the webhook pod is Ready (kwok)", lambda: [
            p for p in cluster.get("pods", namespace=release.namespace,
                                   selector="app.kubernetes.io/component=webhook")["items"]
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))])
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.log = workdir / "webhook.log"
        self.proc = run_pod_template_locally(cluster, pods[0], workdir, self.log,
                                             {"WEBHOOK_LISTEN": f"127.0.0.1:{port}"})
        wait_until("the webhook answers /readyz", lambda: self.request("GET", "/readyz")[0] == 200, timeout=30)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode(), r.headers
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), e.headers
        except OSError as e:
            return 0, str(e), {}

    def api(self, method: str, path: str, token: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        status, text, headers = self.request(method, path, data, {"Authorization": f"Bearer {token}",
                                                                  "Content-Type": "application/json"})
        return status, (json.loads(text) if text.startswith("{") else text), headers

    def slack(self, path: str, form: dict) -> tuple[int, dict]:
        body = urllib.parse.urlencode(form).encode()
        ts = str(int(time.time()))
        sig = "v0=" + hmac.new(SLACK_SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
        status, text, _ = self.request("POST", path, body, {
            "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sig})
        return status, (json.loads(text) if text.startswith("{") else {"text": text})

    def close(self):
        stop(self.proc)


@contextlib.contextmanager
def served_webhook(cluster, webhook: dict, extra_env: list[dict], values: dict | None = None):
    """A release of its own (for a module fixture): its database with 50 customers, the webhook with the backup
    volume mounted and RS256 tokens verified through the chart's JWKS (plus `webhook` values, and any other
    `values`), one backup on the volume, the webhook running as its pod would. Yields (release, webhook, key);
    everything is removed after."""
    workdir = Path(tempfile.mkdtemp(prefix="eternia-k8s-", dir="/var/tmp"))
    workdir.chmod(0o755)
    database = Database(unique("eb_k8s").replace("-", "_"))
    psql("postgres", f"CREATE DATABASE {database.name}")
    database.sql("CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);"
                 "INSERT INTO customers (name) SELECT 'customer ' || g FROM generate_series(1, 50) g;")
    key = Rs256Key(workdir)
    release = None
    try:
        release = install(cluster, workdir, database, values={
            "webhook": {"enabled": True, "mountBackups": True,
                        "auth": {"jwks": key.jwks, "issuer": ISSUER, "audience": AUDIENCE,
                                 "allowedSubjects": [SUBJECT]},
                        **webhook},
            "extraEnv": extra_env,
            **(values or {}),
        })
        cluster.apply(app_objects(release.app_namespace))
        with JobRunner(cluster, [release.namespace], workdir) as runner:
            backup_job(cluster, release, runner)
        hook = Webhook(cluster, release, workdir)
        try:
            yield release, hook, key
        finally:
            hook.close()
    finally:
        if release is not None:
            cluster.kubectl("delete", "namespace", release.namespace, release.app_namespace, "--wait=false",
                            check=False)
            cluster.kubectl("delete", "pv", f"{release.namespace}-backups", "--wait=false", check=False)
        psql("postgres", f"DROP DATABASE IF EXISTS {database.name} WITH (FORCE)")
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def webhook_release(cluster, workdir, database):
    key = Rs256Key(workdir)
    receiver = ResponseUrl()
    gate = PgRestoreGate(workdir, closed=False)
    release = install(cluster, workdir, database, values={
        "webhook": {"enabled": True,
                    "auth": {"jwks": key.jwks, "issuer": ISSUER, "audience": AUDIENCE, "allowedSubjects": [SUBJECT]},
                    "slack": {"signingSecret": SLACK_SECRET, "allowedUsers": ["U_ALICE"],
                              "allowedChannels": ["C_OPS"]}},
        "extraEnv": [{"name": "SLACK_RESPONSE_URL_PREFIX", "value": receiver.prefix},
                     {"name": "WEBHOOK_POLL_INTERVAL", "value": "1s"},
                     {"name": "PG_RESTORE_BIN", "value": str(gate.wrapper)}],
    })
    cluster.apply(app_objects(release.app_namespace))
    with JobRunner(cluster, [release.namespace], workdir) as runner:
        backup_job(cluster, release, runner)
        database.sql("DELETE FROM customers WHERE id > 10")
        cluster.kubectl("patch", "configmap", "app-config", "-n", release.app_namespace, "--type=merge", "-p",
                        '{"data": {"mode": "broken"}}')
        hook = Webhook(cluster, release, workdir)
        try:
            yield release, hook, key, receiver, runner, gate
        finally:
            hook.close()
            receiver.server.shutdown()


def restored(cluster, release, database):
    assert database.sql("SELECT count(*) FROM customers") == "300"
    assert cluster.get("configmap", "app-config", release.app_namespace)["data"]["mode"] == "production"
    deployment = cluster.get("deployment", "eternia-backend", release.app_namespace)
    assert "kubectl.kubernetes.io/restartedAt" in deployment["spec"]["template"]["metadata"].get("annotations", {})
    cluster.kubectl("rollout", "status", "deployment/eternia-backend", "-n", release.app_namespace, "--timeout=5s")


def test_a_ci_token_signed_rs256_restores_through_a_job_and_the_status_says_succeeded(
        cluster, webhook_release, database):
    release, hook, key, _, runner, gate = webhook_release
    gate.close()

    status, body, headers = hook.api("POST", "/v1/restores", key.token(), {"backup": "latest", "reason": "e2e"})
    assert status == 202, body
    assert headers["Location"] == f"/v1/restores/{body['id']}"
    runner.wait_for_file(gate.reached, release.namespace, body["job"])
    status, running, _ = hook.api("GET", f"/v1/restores/{body['id']}", key.token())
    assert running["status"] == "running", running
    status, conflict, _ = hook.api("POST", "/v1/restores", key.token(), {"backup": "latest"})
    assert status == 409, conflict
    assert body["job"] in json.dumps(conflict), "the conflict names the running restore"

    gate.open()
    ran = runner.wait_for_job(release.namespace, body["job"])
    assert ran.code == 0, ran.log
    status, done, _ = hook.api("GET", f"/v1/restores/{body['id']}", key.token())
    assert (status, done["status"]) == (200, "succeeded"), done
    assert done["requestedBy"] == f"jwt:{SUBJECT}"
    restored(cluster, release, database)


def test_a_slack_restore_confirmed_by_the_same_user_runs_and_the_result_reaches_the_response_url(
        cluster, webhook_release, database):
    release, hook, key, receiver, runner, _ = webhook_release
    command = {"team_id": "T1", "channel_id": "C_OPS", "user_id": "U_ALICE", "user_name": "alice",
               "command": "/eternia-backup", "text": "restore latest", "response_url": receiver.url,
               "trigger_id": "trigger-1"}

    status, reply = hook.slack("/slack/commands", command)
    assert status == 200, reply
    value = reply["blocks"][1]["elements"][0]["value"]
    assert not cluster.get("jobs", namespace=release.namespace, selector="app.kubernetes.io/component=restore")[
        "items"], "nothing starts before the confirmation"
    click = {"type": "block_actions", "user": {"id": "U_ALICE"}, "channel": {"id": "C_OPS"},
             "trigger_id": "click-1", "response_url": receiver.url,
             "actions": [{"action_id": "confirm_restore", "value": value}]}
    status, started = hook.slack("/slack/interactions", {"payload": json.dumps(click)})
    assert status == 200, started

    job = wait_until("the webhook creates the restore Job", lambda: cluster.get(
        "jobs", namespace=release.namespace, selector="app.kubernetes.io/component=restore")["items"])[0]
    ran = runner.wait_for_job(release.namespace, job["metadata"]["name"])
    assert ran.code == 0, ran.log
    restored(cluster, release, database)
    wait_until("the result reaches the response_url",
               lambda: any("succeeded" in t.lower() for t in receiver.texts()), timeout=30)
    restore_id = job["metadata"]["labels"]["eternia-backup.io/restore-id"]
    status, done, _ = hook.api("GET", f"/v1/restores/{restore_id}", key.token())
    assert (status, done["status"], done["requestedBy"]) == (200, "succeeded", "slack:U_ALICE"), done
    assert SLACK_SECRET not in hook.log.read_text() and SLACK_SECRET not in "".join(receiver.texts())
