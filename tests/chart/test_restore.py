"""The restore Job template and the optional drill."""

import json
import re

from conftest import SCHEMA_ERROR, container, container_env, pod_spec, render, render_error


def restore(rendered):
    return rendered.get("CronJob", "database-restore", "backup")


def test_the_restore_template_is_a_suspended_cronjob_named_database_restore(default_render):
    spec = restore(default_render)["spec"]
    assert spec["suspend"] is True
    assert spec["schedule"] == "0 0 31 2 *", "February 31st never comes: the template never fires by itself"
    assert spec["concurrencyPolicy"] == "Forbid"


def test_a_job_created_from_the_template_restores_latest_after_a_safety_backup(default_render):
    ctr = container(restore(default_render), "restore")
    assert ctr["args"] == ["restore", "latest"]
    job = restore(default_render)["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0, "a failed restore is never retried behind the operator's back"
    # 2 x the backup's 7200 s (verify and load, the safety backup) + one 10m rollout wait + 10 min margin.
    assert job["activeDeadlineSeconds"] == 2 * 7200 + 600 + 600
    assert pod_spec(restore(default_render))["terminationGracePeriodSeconds"] == 60
    assert pod_spec(restore(default_render))["restartPolicy"] == "Never"


def test_restore_options_become_flags():
    rendered = render(
        "restore.backup=eternia-backup-20250101-020000.tar.gz",
        "restore.safetyBackup=false",
        "restore.includeKubernetes=false",
    )
    assert container(restore(rendered), "restore")["args"] == [
        "restore",
        "eternia-backup-20250101-020000.tar.gz",
        "--no-safety-backup",
        "--no-kubernetes",
    ]


def test_the_restore_restarts_the_app_deployments_and_takes_the_lease(default_render):
    env = container_env(default_render, container(restore(default_render), "restore"))
    assert env["RESTORE_DEPLOYMENTS"] == "deployment/eternia-backend"
    assert env["RESTORE_MODE"] == "clean"
    assert env["RESTORE_ROLLOUT_TIMEOUT"] == "10m"
    assert env["BACKUP_NAMESPACE"] == "eternia-production"
    assert env["LEASE_NAME"] == "eternia-backup-restore"
    assert env["LEASE_NAMESPACE"] == "fieldRef:metadata.namespace"


def test_several_deployments_and_swap_mode_are_passed_on():
    rendered = render("app.deployments={eternia-backend,eternia-worker}", "restore.mode=swap", "lease.name=lock")
    env = container_env(rendered, container(restore(rendered), "restore"))
    assert env["RESTORE_DEPLOYMENTS"] == "deployment/eternia-backend,deployment/eternia-worker"
    assert env["RESTORE_MODE"] == "swap"
    assert env["LEASE_NAME"] == "lock"


def test_an_unknown_restore_mode_fails_with_a_schema_error():
    from conftest import render_error

    assert "/restore/mode" in render_error("restore.mode=merge")


def test_the_backup_skips_while_a_restore_holds_the_same_lease(default_render):
    backup_env = container_env(default_render, container(default_render.get("CronJob", "database-backup"), "backup"))
    restore_env = container_env(default_render, container(restore(default_render), "restore"))
    assert backup_env["LEASE_NAME"] == restore_env["LEASE_NAME"]
    assert backup_env["LEASE_NAMESPACE"] == restore_env["LEASE_NAMESPACE"]


def test_the_drill_is_off_by_default_and_runs_weekly_when_enabled(default_render):
    assert default_render.find("CronJob", "database-drill") is None
    rendered = render("drill.enabled=true")
    drill = rendered.get("CronJob", "database-drill")
    assert drill["spec"]["schedule"] == "0 4 * * 0"
    assert drill["spec"]["concurrencyPolicy"] == "Forbid"
    ctr = container(drill, "drill")
    assert ctr["args"] == ["drill", "latest"]
    env = container_env(rendered, ctr)
    assert "LEASE_NAMESPACE" not in env


def test_the_restore_template_keeps_ten_finished_jobs_so_the_webhook_can_report_recent_restores(default_render):
    spec = default_render.get("CronJob", "database-restore", "backup")["spec"]
    assert spec["successfulJobsHistoryLimit"] == 10
    assert spec["failedJobsHistoryLimit"] == 10
    spec = render("restore.successfulJobsHistoryLimit=2", "restore.failedJobsHistoryLimit=4").get(
        "CronJob", "database-restore", "backup"
    )["spec"]
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (2, 4)


def test_the_restore_deadline_grows_with_the_backup_deadline_and_every_rollout_wait():
    rendered = render("backup.activeDeadlineSeconds=3600", "restore.rolloutTimeout=15m",
                      "app.deployments={api,worker}")
    job = restore(rendered)["spec"]["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == 2 * 3600 + 2 * 900 + 600


def test_an_explicit_restore_deadline_is_kept():
    job = restore(render("restore.activeDeadlineSeconds=5400"))["spec"]["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == 5400


def test_a_rollout_timeout_the_binary_cannot_read_is_refused_at_install_naming_the_value():
    for unreadable in ["ten minutes", "1h30m", "500ms"]:
        assert "rolloutTimeout" in render_error(f"restore.rolloutTimeout={unreadable}"), unreadable


OWNERSHIP_ENV = (
    "RESTORE_NO_OWNER",
    "RESTORE_NO_PRIVILEGES",
    "RESTORE_ROLE",
    "RESTORE_OWNER_MAP",
    "RESTORE_NO_CREATE_ROLES",
    "RESTORE_ROLE_PASSWORDS_DIR",
)


def restore_env(rendered):
    return container_env(rendered, container(restore(rendered), "restore"))


def test_by_default_the_restore_keeps_the_owners_creates_missing_roles_and_sets_no_ownership_variable(default_render):
    env = restore_env(default_render)
    assert [name for name in OWNERSHIP_ENV if name in env] == []
    assert "role-passwords" not in {v["name"] for v in pod_spec(restore(default_render))["volumes"]}


def test_each_ownership_option_becomes_its_variable_in_the_restore_container_only():
    rendered = render(
        "drill.enabled=true",
        "restore.ownership.noOwner=true",
        "restore.ownership.noPrivileges=true",
        "restore.ownership.role=tenant_admin",
        "restore.roles.create=false",
    )
    env = restore_env(rendered)
    assert env["RESTORE_NO_OWNER"] == "true"
    assert env["RESTORE_NO_PRIVILEGES"] == "true"
    assert env["RESTORE_ROLE"] == "tenant_admin"
    assert env["RESTORE_NO_CREATE_ROLES"] == "true"
    assert "RESTORE_OWNER_MAP" not in env
    for kind, name, ctr in (("CronJob", "database-drill", "drill"), ("CronJob", "database-backup", "backup"),
                            ("Deployment", "eternia-backup-webhook", "webhook")):
        other = container_env(rendered, container(rendered.get(kind, name), ctr))
        assert [v for v in OWNERSHIP_ENV if v in other] == [], name


def test_the_owner_map_becomes_old_equals_new_pairs_sorted_by_the_old_owner():
    rendered = render(set_json=['restore.ownership.ownerMap={"eternia_owner":"tenant_admin","analytics":"tenant_ro"}'])
    assert restore_env(rendered)["RESTORE_OWNER_MAP"] == "analytics=tenant_ro,eternia_owner=tenant_admin"


def test_the_role_passwords_secret_is_mounted_read_only_and_named_to_the_restore():
    rendered = render("restore.roles.passwordsSecret=eternia-role-passwords")
    ctr = container(restore(rendered), "restore")
    env = container_env(rendered, ctr)
    assert env["RESTORE_ROLE_PASSWORDS_DIR"] == "/etc/eternia-backup/role-passwords"
    assert "RESTORE_NO_CREATE_ROLES" not in env, "a passwords Secret is for roles the restore creates"
    mount = next(m for m in ctr["volumeMounts"] if m["name"] == "role-passwords")
    assert mount == {"name": "role-passwords", "mountPath": "/etc/eternia-backup/role-passwords", "readOnly": True}
    volume = next(v for v in pod_spec(restore(rendered))["volumes"] if v["name"] == "role-passwords")
    assert volume["secret"]["secretName"] == "eternia-role-passwords"
    assert volume["secret"]["defaultMode"] == 0o440, "readable by the pod's group (fsGroup), by no one else"
    assert "items" not in volume["secret"], "every key is a role name: each becomes a file"
    assert [v for v in env.values() if getattr(v, "secret", None) == "eternia-role-passwords"] == [], (
        "passwords are files, never environment variables"
    )


def test_the_drill_never_gets_the_role_passwords():
    rendered = render("drill.enabled=true", "restore.roles.passwordsSecret=eternia-role-passwords")
    drill = rendered.get("CronJob", "database-drill")
    assert "role-passwords" not in {v["name"] for v in pod_spec(drill)["volumes"]}
    assert "RESTORE_ROLE_PASSWORDS_DIR" not in container_env(rendered, container(drill, "drill"))


def test_an_owner_map_entry_with_an_equals_sign_or_a_comma_is_refused_by_the_schema():
    for bad in ('{"app_owner":"tenant=admin"}', '{"app_owner":"tenant,admin"}', '{"app=owner":"tenant"}',
                '{"app,owner":"tenant"}', '{"app_owner":""}', '{"app_owner":" tenant"}'):
        error = render_error(set_json=[f"restore.ownership.ownerMap={bad}"])
        assert SCHEMA_ERROR in error and "/restore/ownership/ownerMap" in error, bad


def test_no_owner_and_an_owner_map_together_are_refused_naming_both_values():
    error = render_error("restore.ownership.noOwner=true", set_json=['restore.ownership.ownerMap={"a":"b"}'])
    assert "restore.ownership.noOwner" in error and "restore.ownership.ownerMap" in error


def test_a_passwords_secret_that_is_not_a_kubernetes_name_is_refused_by_the_schema():
    assert "/restore/roles/passwordsSecret" in render_error("restore.roles.passwordsSecret=Role_Passwords")


QUIET_ENV = ("RESTORE_SCALE_TO_ZERO", "RESTORE_PRE_HOOK", "RESTORE_POST_HOOK")
HOOK_COMMAND = """echo "restore of $ETERNIA_BACKUP: ${ETERNIA_RESULT:-started}" >&2; test -n '{{ not a template }}'"""


def kubelet_expanded(value, defined=("PGPASSWORD", "DATABASE_URL")):
    """What the container sees of an env value: $$ -> $, $(VAR) -> VAR's value when VAR is defined."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else (f"<{m.group(1)}>" if m.group(1) in defined else m.group(0)),
                  value)


def test_a_hook_never_gets_a_variable_expanded_by_the_kubelet():
    command = 'psql -c "select 1" || echo "$(PGPASSWORD) $$ $(date +%s)"'
    env = restore_env(render(set_json=[f"restore.hooks.pre={json.dumps(command)}"]))
    assert kubelet_expanded(env["RESTORE_PRE_HOOK"]) == command, "no secret spliced in, no $$ eaten"


def test_by_default_the_restore_neither_scales_the_application_to_zero_nor_runs_a_hook(default_render):
    assert [name for name in QUIET_ENV if name in restore_env(default_render)] == []


def test_scale_to_zero_and_the_hooks_become_their_variables_in_the_restore_container_only():
    rendered = render(
        "drill.enabled=true",
        "restore.scaleToZero=true",
        set_json=[
            'restore.hooks.pre="https://maintenance.example.com/on?app=eternia"',
            f"restore.hooks.post={json.dumps(HOOK_COMMAND)}",
        ],
    )
    env = restore_env(rendered)
    assert env["RESTORE_SCALE_TO_ZERO"] == "true"
    assert env["RESTORE_PRE_HOOK"] == "https://maintenance.example.com/on?app=eternia"
    # Every $ doubled: the kubelet turns $$ into $, so the shell gets the command exactly as written (quotes,
    # $VARIABLES, braces) and the kubelet never expands a $(VAR) in it.
    assert env["RESTORE_POST_HOOK"] == HOOK_COMMAND.replace("$", "$$")
    assert kubelet_expanded(env["RESTORE_POST_HOOK"]) == HOOK_COMMAND
    for cm in rendered.of_kind("ConfigMap"):
        assert [v for v in QUIET_ENV if v in (cm.get("data") or {})] == [], cm["metadata"]["name"]
    for kind, name, ctr in (("CronJob", "database-drill", "drill"), ("CronJob", "database-backup", "backup"),
                            ("Deployment", "eternia-backup-webhook", "webhook")):
        other = container_env(rendered, container(rendered.get(kind, name), ctr))
        assert [v for v in QUIET_ENV if v in other] == [], name


def test_each_hook_is_rendered_alone_when_only_it_is_set():
    env = restore_env(render(set_json=['restore.hooks.post="true"']))
    assert env["RESTORE_POST_HOOK"] == "true"
    assert "RESTORE_PRE_HOOK" not in env and "RESTORE_SCALE_TO_ZERO" not in env
    env = restore_env(render(set_json=['restore.hooks.pre="true"']))
    assert env["RESTORE_PRE_HOOK"] == "true" and "RESTORE_POST_HOOK" not in env


def test_scale_to_zero_without_kubernetes_is_refused_naming_both_values():
    error = render_error("restore.scaleToZero=true", "restore.includeKubernetes=false")
    assert "restore.scaleToZero" in error and "restore.includeKubernetes" in error


def test_a_hook_that_is_not_a_string_or_scale_to_zero_that_is_not_a_boolean_is_refused_by_the_schema():
    assert "/restore/hooks/pre" in render_error(set_json=['restore.hooks.pre={"url":"https://x"}'])
    assert "/restore/scaleToZero" in render_error(set_string=["restore.scaleToZero=yes"])
    assert "/restore/hooks" in render_error(set_json=['restore.hooks.during="true"'])


def test_the_restore_deadline_adds_the_scale_down_wait_and_each_hook():
    rendered = render("backup.activeDeadlineSeconds=3600", "restore.rolloutTimeout=15m",
                      "app.deployments={api,worker}", "restore.scaleToZero=true",
                      set_json=['restore.hooks.pre="true"', 'restore.hooks.post="true"'])
    job = restore(rendered)["spec"]["jobTemplate"]["spec"]
    # Per Deployment: its pods going away, then its rollout after the scale back; 600 s per hook.
    assert job["activeDeadlineSeconds"] == 2 * 3600 + 2 * 2 * 900 + 2 * 600 + 600


# Several databases in one backup (docs/restore.md, "Several databases").

def drill(rendered):
    return rendered.get("CronJob", "database-drill", "backup")


def test_backup_databases_becomes_one_comma_separated_variable_for_the_backup(default_render):
    backup_env = lambda r: container_env(r, container(r.get("CronJob", "database-backup", "backup"), "backup"))
    assert "BACKUP_DATABASES" not in backup_env(default_render), "by default the one database only"
    assert backup_env(render("backup.databases={analytics,billing}"))["BACKUP_DATABASES"] == "analytics,billing"
    assert backup_env(render("backup.databases={all}"))["BACKUP_DATABASES"] == "all"


def test_backup_databases_mixing_all_with_names_is_refused():
    assert "backup.databases is [all] or a list" in render_error("backup.databases={all,analytics}")
    assert "/backup/databases" in render_error("backup.databases={analytics,analytics}")
    assert "/backup/databases" in render_error(set_json=['backup.databases=["a,b"]'])


def test_the_restore_loads_one_named_database_or_all_and_the_drill_drills_all():
    env = container_env(r := render("restore.database=analytics"), container(restore(r), "restore"))
    assert env["RESTORE_DATABASE"] == "analytics" and "RESTORE_ALL_DATABASES" not in env
    rendered = render("restore.allDatabases=true", "drill.enabled=true", "drill.allDatabases=true")
    env = container_env(rendered, container(restore(rendered), "restore"))
    assert env["RESTORE_ALL_DATABASES"] == "true" and "RESTORE_DATABASE" not in env
    assert container(drill(rendered), "drill")["args"] == ["drill", "latest", "--all-databases"]
    drill_env = container_env(rendered, container(drill(rendered), "drill"))
    assert "RESTORE_ALL_DATABASES" not in drill_env, "the drill's own value decides, not the restore's"


def test_restore_database_and_all_databases_exclude_each_other():
    error = render_error("restore.database=analytics", "restore.allDatabases=true")
    assert "restore.database" in error and "restore.allDatabases" in error
