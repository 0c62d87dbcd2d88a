"""docs/openapi.json is exact: schemathesis (a schema-driven fuzzer, pinned in tests/cluster/requirements.txt)
generates requests from the document in the tree and sends them to the webhook, run as its Deployment's pod
would (its own ServiceAccount token, its env from the chart), with a valid RS256 token verified through the
chart's JWKS and Slack requests signed with the chart's signing secret. Every answer must be documented
(status, content type, body schema, headers); every request the document allows must be accepted (2xx, or
401/403/404/409/429/5xx), every request it forbids refused (4xx), and a method a route lacks answered 405.

The file, not the served /openapi.json: the binary embeds the document at compile time, so the file is what the
next build serves (tests/backup/webhook.rs checks that they are the same).

Bounded: 12 generated requests per operation in the fuzzing phase (OPENAPI_MAX_EXAMPLES=400 for a deeper run,
about 2 minutes), plus the examples and coverage phases' fixed cases, each request with a 10 s timeout; the
module takes about 30 s. One pytest test per operation, from `schema.parametrize()`: schemathesis's fixture
loader (`schemathesis.pytest.from_fixture`) does not work with pytest 9.2 (it sets `node._nodeid`).

No restore runs: the job runner stops after the backup, so the restore Jobs the fuzzer starts stay pending in
the test's own release namespace (a non-dry-run one is then "running": later requests get 409), and the
namespaces are deleted at the end."""

from __future__ import annotations

import hashlib
import hmac
import os
import time

import hypothesis.configuration
import pytest
import requests
import schemathesis

from conftest import CACHE, ROOT
from test_webhook import SLACK_SECRET, served_webhook

DOCUMENT = ROOT / "docs" / "openapi.json"
# Hypothesis's own caches (its Unicode tables) go to the tools' cache, not to .hypothesis/ in the tree.
hypothesis.configuration.set_hypothesis_home_dir(CACHE / "hypothesis")
# What schemathesis sends as credentials (it knows them from CONFIG, so its own checks can take them away or
# spoil them); Credentials puts the real ones in their place on the wire.
BEARER = "valid-token"
SIGN_ME = "sign-me"

# Bounded: a few generated requests per operation and phase, no shrinking, an in-memory example database
# (nothing written to the tree), a timeout per request.
CONFIG = f"""
request-timeout = 10

[generation]
max-examples = {os.environ.get("OPENAPI_MAX_EXAMPLES", "12")}
no-shrink = true
database = ":memory:"

[auth.openapi.bearer]
bearer = "{BEARER}"

[auth.openapi.slackSignature]
api_key = "{SIGN_ME}"

# The form field `payload` holds JSON (a Slack interaction), which OpenAPI 3.0 cannot describe inside a form:
# a generated string is rarely such JSON, and the webhook answers it 400, as the document says.
[[operations]]
include-name = "POST /slack/interactions"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]
"""

# Loaded at import, from the file: one test per operation. The webhook's address and the real credentials are
# only known once the release is installed, so they come with each request (`webhook` below).
schema = schemathesis.openapi.from_path(DOCUMENT, config=schemathesis.Config.from_str(CONFIG))


class Credentials(requests.auth.AuthBase):
    """The real credentials, for requests that carry schemathesis's stand-ins: the RS256 token for
    `Bearer valid-token`; for `X-Slack-Signature: sign-me` with a timestamp header, the timestamp now and the
    signature Slack would send (v0= HMAC-SHA256 over v0:<timestamp>:<raw body>). Anything else (no
    credentials, a spoilt token or signature, no timestamp) goes out as it is, to be refused."""

    def __init__(self, token: str):
        self.token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if r.headers.get("Authorization") == f"Bearer {BEARER}":
            r.headers["Authorization"] = f"Bearer {self.token}"
        if r.headers.get("X-Slack-Signature") == SIGN_ME and "X-Slack-Request-Timestamp" in r.headers:
            ts = str(int(time.time()))
            body = r.body or b""
            body = body.encode() if isinstance(body, str) else body
            r.headers["X-Slack-Request-Timestamp"] = ts
            r.headers["X-Slack-Signature"] = "v0=" + hmac.new(
                SLACK_SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
        return r


@pytest.fixture(scope="module")
def served(cluster):
    """One release for the module: webhook (RS256 JWKS, Slack), the backup volume mounted into it, one backup
    on the volume, no rate limit (the fuzzer sends a few hundred requests)."""
    with served_webhook(cluster,
                        {"slack": {"signingSecret": SLACK_SECRET, "allowedUsers": ["U_ALICE"],
                                   "allowedChannels": ["C_OPS"]}},
                        [{"name": "WEBHOOK_RATE_LIMIT", "value": "0"},
                         {"name": "SLACK_RESPONSE_URL_PREFIX", "value": "http://127.0.0.1:9/"}]) as served:
        yield served


@pytest.fixture(scope="module")
def webhook(served):
    """The webhook's base URL and a session that sends the real credentials."""
    _, hook, key = served
    session = requests.Session()
    session.auth = Credentials(key.token())
    yield hook.base, session
    session.close()


fuzzed: set[str] = set()


@schema.parametrize()
def test_every_request_the_document_allows_is_accepted_and_every_answer_is_documented(case, webhook):
    base, session = webhook
    fuzzed.add(case.operation.label)
    case.call_and_validate(base_url=base, session=session)


def test_a_started_restore_looked_up_by_its_id_answers_as_the_document_says(webhook):
    base, session = webhook
    token = {"Authorization": f"Bearer {BEARER}"}
    start = schema["/v1/restores"]["POST"].Case(body={"backup": "latest", "dryRun": True, "reason": "openapi"},
                                                headers=token)
    started = start.call_and_validate(base_url=base, session=session)
    assert started.status_code == 202, started.text
    restore = started.json()
    status = schema["/v1/restores/{id}"]["GET"].Case(path_parameters={"id": restore["id"]}, headers=token)
    looked_up = status.call_and_validate(base_url=base, session=session)
    assert looked_up.status_code == 200, looked_up.text
    assert looked_up.json()["id"] == restore["id"]
    backups = schema["/v1/backups"]["GET"].Case(headers=token).call_and_validate(base_url=base, session=session)
    assert [b["kind"] for b in backups.json()] == ["backup"], backups.text


def test_the_generated_requests_got_past_the_credentials(webhook):
    """Otherwise the run above proves little: a document whose every request is refused 401 passes it."""
    if len(fuzzed) < len(list(schema.get_all_operations())):
        pytest.skip("runs after every operation was fuzzed (run the whole module)")
    base, session = webhook
    metrics = session.get(base + "/metrics").text
    for route, status in [("/v1/restores", 202), ("/v1/restores", 409), ("/v1/restores", 400),
                          ("/v1/backups", 200), ("/slack/commands", 200), ("/slack/interactions", 400)]:
        assert f'route="{route}",status="{status}"' in metrics, f"no {status} from {route}:\n{metrics}"
