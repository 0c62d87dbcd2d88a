"""The chart's values reference, read from the "# --" comments of chart/values.yaml (helm-docs style).

    python3 tests/chart/values_doc.py           print the Markdown table
    python3 tests/chart/values_doc.py --write   replace the table in chart/README.md (between the markers)

test_values_documentation.py checks that every value has a description and that chart/README.md holds the
table this module generates, so the README cannot drift from values.yaml.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[2] / "chart"
START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"
KEY = re.compile(r"^(\s*)([A-Za-z0-9_]+):(.*)$")
DOC = re.compile(r"^\s*# -- (.*)$")


def parse(path: Path = CHART / "values.yaml") -> list[tuple[str, str | None, bool]]:
    """[(dotted.path, description or None, has_children)] in file order; documented keys are units."""
    entries: list[list] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented)
    pending: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        doc = DOC.match(line)
        if doc:
            pending = doc.group(1).strip()
            continue
        match = KEY.match(line)
        if not match or line.lstrip().startswith("#"):
            if line.strip() and not line.lstrip().startswith("#"):
                pending = None
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if any(documented for _, _, documented in stack):
            pending = None
            continue
        if stack:
            for entry in entries:
                if entry[0] == ".".join(k for _, k, _ in stack):
                    entry[2] = True
        dotted = ".".join([k for _, k, _ in stack] + [match.group(2)])
        entries.append([dotted, pending, False])
        stack.append((indent, match.group(2), pending is not None))
        pending = None
    return [tuple(e) for e in entries]


def default_of(values: dict, dotted: str):
    node = values
    for part in dotted.split("."):
        node = node[part]
    return node


def fmt(value) -> str:
    text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False)
    if len(text) > 60:
        return "see values.yaml"
    return f"`{text}`".replace("|", "\\|")


def table() -> str:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    rows = ["| Key | Default | Description |", "| --- | --- | --- |"]
    for dotted, desc, has_children in parse():
        if desc is None:
            continue
        escaped = desc.replace("|", "\\|")
        rows.append(f"| `{dotted}` | {fmt(default_of(values, dotted))} | {escaped} |")
    return "\n".join(rows)


def readme_table(readme: str) -> str:
    return readme.split(START, 1)[1].split(END, 1)[0].strip()


def main(argv: list[str]) -> int:
    if argv[1:] == ["--write"]:
        readme_path = CHART / "README.md"
        readme = readme_path.read_text(encoding="utf-8")
        before, rest = readme.split(START, 1)
        _, after = rest.split(END, 1)
        readme_path.write_text(f"{before}{START}\n{table()}\n{END}{after}", encoding="utf-8")
        return 0
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
