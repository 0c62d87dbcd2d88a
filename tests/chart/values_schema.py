"""chart/values.schema.json, generated: the cron pattern (Kubernetes' rules, case-insensitive month and day
names) is too long to maintain by hand.

    python3 tests/chart/values_schema.py           print the schema
    python3 tests/chart/values_schema.py --write   write chart/values.schema.json

test_rendering.py checks that the committed schema is this module's output.
"""

import json
import sys
from pathlib import Path

CHART = Path(__file__).resolve().parents[2] / "chart"

def ci(word):  # case-insensitive literal, RE2/ECMA compatible
    return "".join(f"[{c.upper()}{c.lower()}]" for c in word)

months = "|".join(ci(m) for m in "jan feb mar apr may jun jul aug sep oct nov dec".split())
days = "|".join(ci(d) for d in "sun mon tue wed thu fri sat".split())

def field(value):
    term = f"(\\*|\\?|({value})(-({value}))?)(/[1-9][0-9]*)?"
    return f"{term}(,{term})*"

minute = field("[0-5]?[0-9]")
hour = field("[01]?[0-9]|2[0-3]")
dom = field("0?[1-9]|[12][0-9]|3[01]")
month = field(f"0?[1-9]|1[0-2]|{months}")
dow = field(f"0?[0-6]|{days}")
five = f"{minute} +{hour} +{dom} +{month} +{dow}"
descriptors = "@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
every = "@every ([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+"
CRON = f"^(({five})|{descriptors}|{every})$"

def obj(props, required=None, desc=None):
    o = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        o["required"] = required
    if desc:
        o["description"] = desc
    return o

def s(desc, **kw):
    return {"type": "string", "description": desc, **kw}

def b(desc):
    return {"type": "boolean", "description": desc}

def i(desc, minimum=None, nullable=False):
    o = {"type": ["integer", "null"] if nullable else "integer", "description": desc}
    if minimum is not None:
        o["minimum"] = minimum
    return o

def strmap(desc):
    return {"type": "object", "description": desc, "additionalProperties": {"type": "string"}}

def anyobj(desc):
    return {"type": "object", "description": desc}

def objlist(desc):
    return {"type": "array", "description": desc, "items": {"type": "object"}}

def strlist(desc, **item):
    return {"type": "array", "description": desc, "items": {"type": "string", **item}}

DNS_LABEL = {"pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
DNS_SUBDOMAIN = {"pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253}
OPTIONAL_DNS_SUBDOMAIN = {"pattern": "^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$", "maxLength": 253}
CRONJOB_NAME = {"pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 52}
SECRET_KEY_OR_EMPTY = {"pattern": "^[-._a-zA-Z0-9]*$", "maxLength": 253}
SECRET_KEY = {"pattern": "^[-._a-zA-Z0-9]+$", "maxLength": 253}
# A PostgreSQL role name in a comma-separated OLD=NEW list (RESTORE_OWNER_MAP): no '=' or ',', no surrounding
# blanks (the binary trims them), at most 63 bytes (NAMEDATALEN - 1; counted here in characters).
ROLE_NAME = {"pattern": "^[^=,\\s]([^=,]{0,61}[^=,\\s])?$", "maxLength": 63}
# A database name in a comma-separated list (BACKUP_DATABASES): no ',', no surrounding blanks, at most 63.
DB_NAME = {"pattern": "^[^,\\s]([^,]{0,61}[^,\\s])?$", "maxLength": 63}
# Prometheus durations (scrape settings).
DURATION = {"pattern": "^([0-9]+(ms|s|m|h))+$"}
# Durations eternia-backup reads (`units::parse_duration`): one number, optionally s, m or h.
BINARY_DURATION = {"pattern": "^[0-9]+[smh]?$"}
QUANTITY = {"pattern": "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"}
TIMEZONE = {"pattern": "^$|^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"}
cron = lambda desc: {"type": "string", "description": desc, "pattern": CRON}
positive = lambda desc: {
    "description": desc,
    "oneOf": [
        {"type": "integer", "minimum": 1},
        {"type": "string", "pattern": "^[1-9][0-9]*$"},
    ],
}
resources = anyobj("Container resources (requests/limits).")

schema = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "eternia-backup chart values",
    "description": "Validated by helm install/upgrade/template/lint. Unknown keys are rejected at every level except free-form maps (labels, annotations, resources, security contexts, affinity).",
    "type": "object",
    "additionalProperties": False,
    "required": ["image", "schedule", "app", "persistence", "retention", "backup", "restore", "webhook"],
    "properties": {
        "nameOverride": s("Override the chart name.", maxLength=63),
        "fullnameOverride": s("Override the full name prefix.", maxLength=63),
        "commonLabels": strmap("Extra labels on every resource."),
        "image": obj({
            "repository": s("Image repository.", minLength=1),
            "tag": s("Image tag (default: appVersion)."),
            "digest": s("Image digest.", pattern="^$|^sha256:[a-f0-9]{64}$"),
            "pullPolicy": s("Pull policy.", enum=["Always", "IfNotPresent", "Never"]),
        }, ["repository"]),
        "imagePullSecrets": {"type": "array", "description": "Image pull Secrets.", "items": {
            "type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}}}},
        "schedule": cron("Backup schedule (Kubernetes CronJob syntax)."),
        "timeZone": s("IANA time zone of the schedules.", **TIMEZONE),
        "suspend": b("Suspend scheduled backups."),
        "logFormat": s("Log format.", enum=["json", "text"]),
        "app": obj({
            "namespace": s("Application namespace.", **DNS_LABEL),
            "deployments": {"type": "array", "description": "Deployments restarted after a restore.",
                            "items": {"type": "string", **DNS_SUBDOMAIN}},
        }, ["namespace"]),
        "database": obj({
            "host": s("PGHOST."),
            "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "PGPORT."},
            "name": s("PGDATABASE."),
            "user": s("PGUSER."),
            "sslMode": s("PGSSLMODE.", enum=["", "disable", "allow", "prefer", "require", "verify-ca", "verify-full"]),
        }),
        "credentials": obj({
            "existingSecret": s("Existing credentials Secret.", **OPTIONAL_DNS_SUBDOMAIN),
            "name": s("Name of the chart-created Secret.", **DNS_SUBDOMAIN),
            "keys": obj({k: s(f"Secret key for {k} (empty: not read).", **SECRET_KEY_OR_EMPTY)
                         for k in ["s3Bucket", "awsAccessKey", "awsSecretKey", "databaseUrl", "pgPassword", "slackWebhookUrl"]}),
            **{k: s(f"{k} written to the chart-created Secret.") for k in
               ["awsAccessKey", "awsSecretKey", "databaseUrl", "pgPassword", "slackWebhookUrl"]},
        }, ["name", "keys"]),
        "persistence": obj({
            "enabled": b("Keep backups on a PVC."),
            "existingClaim": s("Existing PVC."),
            "size": s("PVC size.", **QUANTITY),
            "storageClass": s("StorageClass."),
            "accessModes": {"type": "array", "minItems": 1, "description": "Access modes.", "items": {
                "type": "string", "enum": ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]}},
            "annotations": strmap("PVC annotations."),
            "mountPath": s("Backup directory.", pattern="^/.*"),
        }, ["enabled", "size", "mountPath"]),
        "s3": obj({
            "enabled": b("Store backups in S3."),
            "bucket": s("Bucket.", pattern="^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"),
            "prefix": s("Key prefix."),
            "region": s("Region."),
            "endpoint": s("Endpoint URL.", pattern="^$|^https?://.+"),
            "forcePathStyle": b("Path-style addressing."),
            "checksum": s("Request checksum mode.", enum=["when-required", "when-supported"]),
            "storageClass": s("Object storage class."),
            "sse": s("Server-side encryption.", enum=["", "AES256", "aws:kms", "aws:kms:dsse"]),
            "sseKmsKeyId": s("KMS key id."),
        }),
        "retention": obj({
            "days": positive("Retention in days (a positive integer)."),
            "keepLast": i("Keep last N.", 1, True),
            "keepDaily": i("Keep daily N.", 1, True),
            "keepWeekly": i("Keep weekly N.", 1, True),
            "keepMonthly": i("Keep monthly N.", 1, True),
            "safetyDays": positive("Days a restore's safety backups are kept."),
        }, ["days"]),
        "encryption": obj({
            "recipients": strlist("age recipients.", pattern="^age1[0-9a-z]+$"),
            "identity": obj({
                "existingSecret": s("Secret with the age identity."),
                "key": s("Key in that Secret.", **SECRET_KEY),
                "mountPath": s("Mount directory.", pattern="^/.*"),
            }),
        }),
        "notifications": obj({"slack": obj({"enabled": b("Slack notifications."), "onSuccess": b("Notify on success.")})}),
        "backup": obj({
            "cronJobName": s("Backup CronJob name.", **CRONJOB_NAME),
            "prefix": s("Archive prefix.", pattern="^[A-Za-z0-9][A-Za-z0-9._-]*$"),
            "compression": s("Compression.", enum=["gzip", "zstd"]),
            "compressionLevel": i("Compression level.", None, True),
            "databases": {**strlist("Further databases (or [all]).", **DB_NAME), "uniqueItems": True},
            "includeKubernetes": b("Export ConfigMaps/Secrets."),
            "includeSelector": s("Include label selector."),
            "excludeSelector": s("Exclude label selector."),
            "successfulJobsHistoryLimit": i("Successful Jobs kept.", 0),
            "failedJobsHistoryLimit": i("Failed Jobs kept.", 0),
            "startingDeadlineSeconds": i("Starting deadline.", 1),
            "backoffLimit": i("Retries.", 0),
            "activeDeadlineSeconds": i("Job deadline.", 1),
            "extraArgs": strlist("Extra arguments."),
            "resources": resources,
            "podAnnotations": strmap("Pod annotations."),
            "podLabels": strmap("Pod labels."),
        }, ["cronJobName"]),
        "restore": obj({
            "cronJobName": s("Restore template CronJob name.", **CRONJOB_NAME),
            "backup": s("Archive name or latest.", minLength=1),
            "mode": s("Restore mode.", enum=["clean", "swap"]),
            "safetyBackup": b("Safety backup first."),
            "database": s("The archived database to restore; empty: the first.", maxLength=63),
            "allDatabases": b("Restore every archived database."),
            "includeKubernetes": b("Apply ConfigMaps/Secrets."),
            "rolloutTimeout": s("Rollout timeout.", **BINARY_DURATION),
            "backoffLimit": i("Retries.", 0),
            "activeDeadlineSeconds": i("Job deadline (null: computed from the backup's).", 1, True),
            "terminationGracePeriodSeconds": i("Seconds between SIGTERM and SIGKILL.", 1),
            "ttlSecondsAfterFinished": i("TTL of finished Jobs.", 0, True),
            "successfulJobsHistoryLimit": i("Successful restore Jobs kept.", 0),
            "failedJobsHistoryLimit": i("Failed restore Jobs kept.", 0),
            "extraArgs": strlist("Extra arguments."),
            "ownership": obj({
                "noOwner": b("--no-owner (not with ownerMap)."),
                "noPrivileges": b("--no-privileges."),
                "role": s("--role (SET ROLE); empty: the connecting role.", maxLength=63),
                "ownerMap": {
                    "type": "object",
                    "description": "--owner-map OLD=NEW, as {OLD: NEW}: two role names, neither with '=' or ','.",
                    # patternProperties, not propertyNames: helm then names the path and the refused key.
                    "patternProperties": {ROLE_NAME["pattern"]: {"type": "string", **ROLE_NAME}},
                    "additionalProperties": False,
                },
            }),
            "roles": obj({
                "create": b("Create the roles the backup needs that the server lacks."),
                "passwordsSecret": s("Secret of the created roles' passwords (key: role name).",
                                     **OPTIONAL_DNS_SUBDOMAIN),
            }),
            "scaleToZero": b("Scale app.deployments to zero during the restore, back afterwards."),
            "hooks": obj({
                "pre": s("Pre-restore hook: a shell command or an http(s) URL; empty: none."),
                "post": s("Post-restore hook: a shell command or an http(s) URL; empty: none."),
            }),
            "resources": resources,
            "podAnnotations": strmap("Pod annotations."),
            "podLabels": strmap("Pod labels."),
        }, ["cronJobName"]),
        "lease": obj({"name": s("Lease name.", **OPTIONAL_DNS_SUBDOMAIN)}),
        "drill": obj({
            "enabled": b("Scheduled drill."),
            "cronJobName": s("Drill CronJob name.", **CRONJOB_NAME),
            "schedule": cron("Drill schedule (Kubernetes CronJob syntax)."),
            "suspend": b("Suspend drills."),
            "backup": s("Archive name or latest.", minLength=1),
            "allDatabases": b("Drill every archived database."),
            "successfulJobsHistoryLimit": i("Successful Jobs kept.", 0),
            "failedJobsHistoryLimit": i("Failed Jobs kept.", 0),
            "backoffLimit": i("Retries.", 0),
            "activeDeadlineSeconds": i("Job deadline.", 1),
            "extraArgs": strlist("Extra arguments."),
            "resources": resources,
        }),
        "webhook": obj({
            "enabled": b("Run the webhook."),
            "replicaCount": i("Replicas.", 0),
            "port": {"type": "integer", "minimum": 1024, "maximum": 65535, "description": "Listen port (non-root: >= 1024)."},
            "mountBackups": b("Mount the backup volume."),
            "auth": obj({
                "existingSecret": s("Existing webhook Secret."),
                "keys": obj({
                    "jwtHs256Secret": s("Key of the HS256 secret.", **SECRET_KEY),
                    "slackSigningSecret": s("Key of the Slack signing secret.", **SECRET_KEY),
                }),
                "jwtHs256Secret": s("HS256 secret."),
                "jwks": s("Inline JWKS JSON."),
                "jwksUrl": s("JWKS URL.", pattern="^$|^https?://.+"),
                "issuer": s("Required issuer."),
                "audience": s("Required audience."),
                "allowedSubjects": strlist("Allowed subjects.", minLength=1),
            }),
            "slack": obj({
                "signingSecret": s("Slack signing secret."),
                "allowedUsers": strlist("Allowed Slack users.", minLength=1),
                "allowedChannels": strlist("Allowed Slack channels.", minLength=1),
            }),
            "service": obj({
                "type": s("Service type.", enum=["ClusterIP", "NodePort", "LoadBalancer"]),
                "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "Service port."},
                "annotations": strmap("Service annotations."),
            }),
            "ingress": obj({
                "enabled": b("Ingress."),
                "className": s("IngressClass."),
                "annotations": strmap("Ingress annotations."),
                "hosts": {"type": "array", "description": "Hosts.", "items": obj({
                    "host": s("Host name."),
                    "paths": {"type": "array", "items": obj({
                        "path": s("Path.", pattern="^/.*"),
                        "pathType": s("Path type.", enum=["Prefix", "Exact", "ImplementationSpecific"]),
                    }, ["path", "pathType"])},
                }, ["host", "paths"])},
                "tls": objlist("TLS."),
            }),
            "trustedProxies": strlist("Proxies whose X-Forwarded-For is believed.",
                                      pattern="^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$"),
            "networkPolicy": obj({"enabled": b("NetworkPolicy."), "from": objlist("Allowed peers.")}),
            "resources": resources,
            "podAnnotations": strmap("Pod annotations."),
            "podLabels": strmap("Pod labels."),
        }),
        "metrics": obj({
            "serviceMonitor": obj({
                "enabled": b("ServiceMonitor."),
                "interval": s("Scrape interval.", **DURATION),
                "scrapeTimeout": s("Scrape timeout.", **DURATION),
                "labels": strmap("Labels."),
            }),
            "prometheusRule": obj({
                "enabled": b("PrometheusRule."),
                "backupMissingAfterHours": i("Hours without a backup before alerting.", 1),
                "severity": s("Severity label.", minLength=1),
                "labels": strmap("Labels."),
            }),
            "grafanaDashboard": obj({
                "enabled": b("Grafana dashboard ConfigMap."),
                "label": s("Sidecar label key.", pattern="^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", maxLength=317),
                "labelValue": s("Sidecar label value.", pattern="^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$", maxLength=63),
                "namespace": s("Namespace of the ConfigMap (empty: the release namespace).", pattern="^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$", maxLength=63),
                "labels": strmap("Labels."),
                "annotations": strmap("Annotations."),
            }),
        }),
        "serviceAccount": obj({
            "create": b("Create ServiceAccounts."),
            "annotations": strmap("ServiceAccount annotations."),
            "names": obj({c: s(f"ServiceAccount of {c}.") for c in ["backup", "restore", "webhook", "drill"]}),
        }),
        "rbac": obj({"create": b("Create Roles/RoleBindings.")}),
        "podSecurityContext": anyobj("Pod security context."),
        "securityContext": anyobj("Container security context."),
        "tmpSizeLimit": s("Size limit of /tmp.", **QUANTITY),
        "extraEnv": objlist("Extra env of every container."),
        "nodeSelector": strmap("Node selector."),
        "tolerations": objlist("Tolerations."),
        "affinity": anyobj("Affinity."),
        "priorityClassName": s("PriorityClass."),
        "tests": obj({"enabled": b("helm test pod."), "curlImage": s("curl image.", minLength=1)}),
        "global": anyobj("Reserved for parent charts."),
    },
}


def text() -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        (CHART / "values.schema.json").write_text(text(), encoding="utf-8")
    else:
        sys.stdout.write(text())
