"""The operations runbook follows the seed runbook section by section, with commands that exist now."""

import re

from conftest import CHART, ROOT, load_yaml

OPERATIONS = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")

# The seed runbook's sections, in its order (copied here: tests never read ../shared).
SEED_SECTIONS = [
    "Overview",
    "Architecture",
    "Backup Schedule",
    "Backup Storage",
    "Local Storage",
    "Cloud Storage",
    "Backup Retention",
    "Backup Contents",
    "Manual Backups",
    "Viewing Backups",
    "Recovery Procedures",
    "Preparing for Recovery",
    "Initiating a Recovery",
    "Verifying the Recovery",
    "Troubleshooting",
    "Common Issues",
    "Viewing Logs",
    "Maintenance",
    "Updating Backup Configuration",
    "Testing Backups",
    "Best Practices",
]


def headings(text):
    return [m.group(2).strip() for m in re.finditer(r"^(#{2,4}) (.+)$", text, re.M)]


def test_the_runbook_keeps_every_seed_section_in_the_seed_order():
    found = headings(OPERATIONS)
    positions = [found.index(section) for section in SEED_SECTIONS]
    assert positions == sorted(positions)


def test_the_runbook_adds_slack_and_ci_setup():
    assert {"Slack setup", "CI setup"} <= set(headings(OPERATIONS))


def test_the_runbook_keeps_the_commands_operators_know():
    for command in (
        "kubectl create job --from=cronjob/database-backup manual-backup -n backup",
        "kubectl create job --from=cronjob/database-restore",
        "kubectl rollout restart deployment/eternia-backend -n eternia-production",
        "kubectl logs -f deployment/eternia-backend -n eternia-production",
        "eternia-backup list",
        "helm upgrade eternia-backup ./chart -n backup --reuse-values --set schedule=",
    ):
        assert command in OPERATIONS, command


def test_the_runbook_explains_what_replaces_ls_in_a_backup_pod():
    section = OPERATIONS.split("## Viewing Backups", 1)[1].split("\n## ", 1)[0]
    assert "ls -la /backups" in section and "eternia-backup list" in section


def test_the_runbook_names_cronjobs_and_values_the_chart_really_has():
    values = load_yaml(CHART / "values.yaml")
    assert values["backup"]["cronJobName"] in OPERATIONS
    assert values["restore"]["cronJobName"] in OPERATIONS
    assert values["drill"]["cronJobName"] in OPERATIONS
    for dotted in re.findall(r"`((?:retention|persistence|s3|webhook|backup|restore|drill|encryption|"
                             r"notifications|metrics|credentials)\.[A-Za-z.]+)(?:=[^`]*)?`", OPERATIONS):
        node = values
        for part in dotted.split("."):
            assert isinstance(node, dict) and part in node, f"docs/operations.md names unknown value {dotted}"
            node = node[part]
