"""Recovery time on the real control plane (scripts/bench-rto.sh runs this; not a test).

From a signed restore request to the application's rollout being complete, for a copy of the ~1.1 GB
benchmark database (scripts/bench-backup.sh creates eb_bench_x1), against bare `pg_restore -j2` from a local
dump file of the same database in the same run. The chart's defaults: clean mode, safety backup on.
Breakdown: queueing (request -> Job created), Job start (-> pod running), then the restore's own phases from
its log (verify, safety backup, database restore, apply, rollout), and the rest (-> Job Complete).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import Cluster, Database, install, psql  # noqa: E402
from runner import JobRunner  # noqa: E402
from test_webhook import Webhook  # noqa: E402
from test_workflows import app_objects, backup_job  # noqa: E402

SOURCE = os.environ.get("BENCH_DB", "eb_bench_x1")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
HS256 = "bench-rto-hs256-secret-0123456789abcdef"


def hs256_token() -> str:
    import base64
    import hashlib
    import hmac

    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    now = int(time.time())
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "bench:rto", "aud": "eternia-backup", "iat": now, "exp": now + 900}).encode())
    sig = hmac.new(HS256.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def ts(s: str) -> float:
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


# The restore's own phases, each from the log line that ends the one before it (the restore prints them).
BOUNDARIES = [
    ("verify", re.compile(r"\brestoring\b")),
    ("safety backup", re.compile(r"verified: every checksum matches")),
    ("database restore", re.compile(r"safety backup taken")),
    ("apply ConfigMaps/Secrets", re.compile(r"row counts match")),
    ("restart + rollout wait", re.compile(r"kubernetes object .*action=")),
    ("exit", re.compile(r"rollout complete")),
]
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def phase_times(log: str) -> dict[str, float]:
    """When each phase began: the first matching line (the last one for apply, which logs once per object)."""
    starts: dict[str, float] = {}
    for line in log.splitlines():
        line = ANSI.sub("", line)
        m = LOG_TIME.match(line)
        if not m:
            continue
        for name, pattern in BOUNDARIES:
            if pattern.search(line) and (name not in starts or name == "restart + rollout wait"):
                starts[name] = ts(m.group(1))
    return starts


def main():
    cluster = Cluster.from_env_file(Path(os.environ["K8S_ENV"]))
    work = Path(tempfile.mkdtemp(prefix="eb-rto-"))
    db = Database("eb_rto")
    psql("postgres", "DROP DATABASE IF EXISTS eb_rto WITH (FORCE)")
    psql("postgres", f"CREATE DATABASE eb_rto TEMPLATE {SOURCE}")
    size = psql("postgres", "SELECT pg_size_pretty(pg_database_size('eb_rto'))")
    dump = work / "db.dump"
    subprocess.run(["pg_dump", "-h", "127.0.0.1", "-U", "postgres", "-d", "eb_rto", "-Fc", "-Z0", "-f", str(dump)],
                   check=True)
    release = install(cluster, work, db, values={
        "backup": {"compression": "zstd"},
        "restore": {"rolloutTimeout": "5m"},
        "webhook": {"enabled": True, "auth": {"jwtHs256Secret": HS256}},
        "extraEnv": [{"name": "WEBHOOK_POLL_INTERVAL", "value": "1s"}]})
    cluster.apply(app_objects(release.app_namespace))
    rows = []
    with JobRunner(cluster, [release.namespace], work) as runner:
        backup_job(cluster, release, runner)
        hook = Webhook(cluster, release, work)
        try:
            for rnd in range(ROUNDS):
                # Baseline: bare pg_restore -j2 from a local file into a fresh database.
                psql("postgres", "DROP DATABASE IF EXISTS eb_rto_bare WITH (FORCE)")
                psql("postgres", "CREATE DATABASE eb_rto_bare")
                psql("postgres", "CHECKPOINT")
                t = time.monotonic()
                subprocess.run(["pg_restore", "-h", "127.0.0.1", "-U", "postgres", "-j2", "-d", "eb_rto_bare",
                                str(dump)], check=True)
                bare = time.monotonic() - t
                psql("postgres", "DROP DATABASE eb_rto_bare WITH (FORCE)")
                psql("postgres", "CHECKPOINT")

                # The database being replaced is a settled, live one (hint bits set, vacuumed), not the freshly
                # loaded result of the previous round, whose first full read (the safety dump) writes every page.
                db.sql("VACUUM")
                psql("postgres", "CHECKPOINT")
                t0 = time.time()
                status, body, _ = hook.api("POST", "/v1/restores", hs256_token(), {"backup": "latest"})
                t_created = time.time()  # the webhook answers 202 once the Job exists
                assert status == 202, body
                ran = runner.wait_for_job(release.namespace, body["job"], timeout=1800)
                assert ran.code == 0, ran.log
                cluster.kubectl("rollout", "status", "deployment/eternia-backend", "-n", release.app_namespace,
                                "--timeout=60s")
                t_end = time.time()
                phases = phase_times(ran.log)
                # The process's exit ends the last phase; the Job controller's Complete and the final rollout
                # check are the rest.
                rows.append({"bare": bare, "total": t_end - t0, "queue": t_created - t0,
                             "start": ran.started - t_created, "phases": phases, "complete": ran.finished,
                             "after": t_end - ran.finished})
                print(f"round {rnd + 1}: bare {bare:.2f} s, request -> rollout complete {t_end - t0:.2f} s",
                      file=sys.stderr)
                # Each restore adds a safety backup: keep only the original for the next round.
                for p in sorted(release.backups.glob("eternia-backup-*"))[2:]:
                    p.unlink()
        finally:
            hook.close()
    bare = statistics.median(r["bare"] for r in rows)
    total = statistics.median(r["total"] for r in rows)
    print(f"\nrecovery of {SOURCE} copy ({size}), {os.cpu_count()} cores, median of {ROUNDS} rounds\n")
    print("| phase | s (median) |\n|---|---|")
    print(f"| queueing: request -> Job created (202) | {statistics.median(r['queue'] for r in rows):.2f} |")
    print(f"| Job start: Job created -> pod scheduled and its process started | "
          f"{statistics.median(r['start'] for r in rows):.2f} |")
    for i, (name, _) in enumerate(BOUNDARIES):
        spans = []
        for r in rows:
            p = r["phases"]
            if name not in p:
                continue
            later = [p[n] for n, _ in BOUNDARIES[i + 1:] if n in p] + [r["complete"]]
            spans.append(min(later) - p[name])
        if spans:
            print(f"| {name} | {statistics.median(spans):.2f} |")
    print(f"| process exit -> Job Complete seen, rollout checked | {statistics.median(r['after'] for r in rows):.2f} |")
    print(f"| request -> rollout complete | **{total:.2f}** |")
    print(f"| bare pg_restore -j2 from a local file | {bare:.2f} |")
    print(f"\nratio: **{total / bare:.2f}x** bare pg_restore -j2 (target <= 1.3x)")
    psql("postgres", "DROP DATABASE IF EXISTS eb_rto WITH (FORCE)")


if __name__ == "__main__":
    main()
