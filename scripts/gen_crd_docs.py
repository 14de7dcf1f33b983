#!/usr/bin/env python3
"""Generate docs/denasjob-reference.md (and docs/denascampaign-reference.md) from the CRDs' schemas.

Every field with its type, default, allowed values, bounds and description, one table per
object, plus the CEL validation rules and the printer columns. The CRD is the source; the page
is never edited by hand.

    python scripts/gen_crd_docs.py           # rewrite the reference pages
    python scripts/gen_crd_docs.py --check   # exit 1 if a page is out of date (CI)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "denas" / "crd" / "denasjobs.denas.io.yaml"
TARGET = ROOT / "docs" / "denasjob-reference.md"
#: every CRD source and its reference page
PAGES = (
    (SOURCE, TARGET),
    (ROOT / "denas" / "crd" / "denascampaigns.denas.io.yaml", ROOT / "docs" / "denascampaign-reference.md"),
)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "))


def _cell(text: str) -> str:
    """Markdown table cells: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def type_of(node: dict[str, Any]) -> str:
    kind = node.get("type")
    if kind == "array":
        return f"array of {type_of(node.get('items', {}))}"
    if kind == "object":
        if "additionalProperties" in node:
            return f"map of string to {type_of(node['additionalProperties'])}"
        if node.get("x-kubernetes-preserve-unknown-fields") and not node.get("properties"):
            return "object (free-form)"
        return "object"
    if kind is None and node.get("x-kubernetes-preserve-unknown-fields"):
        return "any"
    return f"{kind} ({node['format']})" if "format" in node else str(kind)


def constraints_of(node: dict[str, Any], required: bool) -> str:
    parts = []
    if required:
        parts.append("**required**")
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    if "minimum" in node:
        op = ">" if node.get("exclusiveMinimum") is True else "≥"
        parts.append(f"{op} {node['minimum']}")
    if "maximum" in node:
        op = "<" if node.get("exclusiveMaximum") is True else "≤"
        parts.append(f"{op} {node['maximum']}")
    for key, label in (("minItems", "min items"), ("maxItems", "max items"), ("minLength", "min length")):
        if key in node:
            parts.append(f"{label} {node[key]}")
    if "maxLength" in node:
        parts.append(f"max length {node['maxLength']}")
    if node.get("x-kubernetes-list-type") == "map":
        parts.append(
            "list keyed by " + ", ".join(f"`{k}`" for k in node.get("x-kubernetes-list-map-keys", []))
        )
    if node.get("x-kubernetes-preserve-unknown-fields") and node.get("properties"):
        parts.append("other keys kept")
    return "; ".join(parts)


def objects(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object with declared properties, parents before children."""
    if node.get("properties"):
        yield path, node
        for name, child in node["properties"].items():
            yield from objects(child, f"{path}.{name}")
    items = node.get("items")
    if isinstance(items, dict):
        yield from objects(items, f"{path}[]")


def rules(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for rule in node.get("x-kubernetes-validations", []):
        yield path, rule
    for name, child in (node.get("properties") or {}).items():
        yield from rules(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from rules(node["items"], f"{path}[]")


def field_table(path: str, node: dict[str, Any]) -> list[str]:
    lines = [
        f"### `{path}`",
        "",
        *([_cell(node["description"]), ""] if node.get("description") else []),
        "| Field | Type | Default | Constraints | Description |",
        "| --- | --- | --- | --- | --- |",
    ]
    required = set(node.get("required", []))
    for name, child in node["properties"].items():
        default = f"`{_json(child['default'])}`" if "default" in child else ""
        link = f"[`{name}`](#{(path + '.' + name).replace('.', '').replace('[]', '').lower()})"
        shown = (
            link if child.get("properties") or (child.get("items") or {}).get("properties") else f"`{name}`"
        )
        lines.append(
            f"| {shown} | {_cell(type_of(child))} | {_cell(default)} | "
            f"{_cell(constraints_of(child, name in required))} | {_cell(child.get('description', ''))} |"
        )
    return [*lines, ""]


def render(crd: dict[str, Any], source: Path = SOURCE) -> str:
    spec = crd["spec"]
    names = spec["names"]
    (version,) = [v for v in spec["versions"] if v.get("storage")]
    schema = version["schema"]["openAPIV3Schema"]
    out = [
        f"# {names['kind']} reference",
        "",
        f"<!-- GENERATED by scripts/gen_crd_docs.py from {source.relative_to(ROOT)}: do not edit. -->",
        "",
        _cell(schema.get("description", "")),
        "",
        "| | |",
        "| --- | --- |",
        f"| API | `{spec['group']}/{version['name']}`, kind `{names['kind']}` |",
        f"| Scope | {spec['scope']} |",
        f"| Names | `{names['plural']}`, `{names['singular']}`, short: "
        + ", ".join(f"`{s}`" for s in names.get("shortNames", []))
        + " |",
        f"| Categories | {', '.join(names.get('categories', []))} |",
        "",
        "Fields left out take the defaults below: the API server fills them in (structural",
        "defaulting) and so does `denas run`, with this same schema. `denas explain spec.<field>`",
        "prints the same information in a terminal.",
        "",
        "## `kubectl get` columns",
        "",
        "| Column | Type | From | Description |",
        "| --- | --- | --- | --- |",
    ]
    for column in version.get("additionalPrinterColumns", []):
        out.append(
            f"| {column['name']} | {column['type']} | `{column['jsonPath']}` | {_cell(column.get('description', ''))} |"
        )
    out += ["", "## Spec", ""]
    for path, node in objects(schema["properties"]["spec"], "spec"):
        out += field_table(path, node)
    out += [
        "## Validation rules",
        "",
        "Checked by the API server (CEL `x-kubernetes-validations`) and by `denas validate`.",
        "",
        "| On | Rule | Message |",
        "| --- | --- | --- |",
    ]
    for path, rule in rules(schema, ""):
        out.append(
            f"| `{path.lstrip('.') or '.'}` | `{_cell(rule['rule'])}` | {_cell(rule.get('message', ''))} |"
        )
    out += ["", "## Status", "", "Written only by the operator (and by `denas run` into status.json).", ""]
    for path, node in objects(schema["properties"]["status"], "status"):
        out += field_table(path, node)
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="fail if the page differs from what the CRD gives"
    )
    args = parser.parse_args(argv)
    stale = 0
    for source, target in PAGES:
        text = render(yaml.safe_load(source.read_text()), source)
        current = target.read_text() if target.exists() else None
        if current == text:
            continue
        stale += 1
        if args.check:
            print(
                f"{target.relative_to(ROOT)} is out of date: run `python scripts/gen_crd_docs.py`",
                file=sys.stderr,
            )
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"wrote {target.relative_to(ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
