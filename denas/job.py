"""DeNASJob manifests: load, default and validate them exactly as the API server would.

Both executors (the operator and `denas run`) go through `load_job`, and both use the schema of
the CRD that ships in this package (`denas/crd/denasjobs.denas.io.yaml`), so a manifest that the
cluster would reject fails locally with the same message, field path first.

What the API server does, and what this module reproduces:
1. strict field validation: an unknown field is an error (`kubectl apply` has defaulted to
   `--validate=strict` since 1.27), except below `x-kubernetes-preserve-unknown-fields`;
2. structural defaulting from the schema's `default`s, top-down, so nested defaults apply too;
3. OpenAPI validation (types, enums, minimum/maximum, required);
4. the CEL `x-kubernetes-validations` rules (transition rules with `oldSelf` only on updates).

This module must not import torch: the operator image does not ship the engine.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

GROUP = "denas.io"
VERSION = "v1alpha1"
KIND = "DeNASJob"
API_VERSION = f"{GROUP}/{VERSION}"
PLURAL = "denasjobs"
CRD_FILE = "denasjobs.denas.io.yaml"


class JobValidationError(ValueError):
    """A manifest the API server would reject. `.errors` holds one Kubernetes-style line per problem."""

    def __init__(self, name: str, errors: list[str]):
        self.name = name
        self.errors = errors
        lines = "\n".join(f"  * {e}" for e in errors)
        super().__init__(f'{KIND}.{GROUP} "{name}" is invalid:\n{lines}')


@dataclass
class Job:
    """A validated DeNASJob: `spec` has every schema default applied."""

    manifest: dict[str, Any]
    spec: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.spec = self.manifest["spec"]

    @property
    def name(self) -> str:
        return self.manifest["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.manifest["metadata"].get("namespace", "default")

    @property
    def domain(self) -> str:
        return self.spec["domain"]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.manifest, sort_keys=False)


# ----- the CRD and its schema ---------------------------------------------------------------


@functools.cache
def crd() -> dict[str, Any]:
    """The CustomResourceDefinition shipped with the package."""
    text = resources.files("denas.crd").joinpath(CRD_FILE).read_text()
    return yaml.safe_load(text)


def openapi_schema(version: str = VERSION) -> dict[str, Any]:
    for v in crd()["spec"]["versions"]:
        if v["name"] == version:
            return v["schema"]["openAPIV3Schema"]
    raise KeyError(version)


def _to_json_schema(node: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAPI v3 structural schema -> JSON Schema draft 4 with strict unknown-field checks."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {k: _to_json_schema(v) for k, v in value.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(value, Mapping)):
            out[key] = _to_json_schema(value)
        elif key.startswith("x-kubernetes-") or key in ("default", "description", "format"):
            continue  # handled elsewhere or not validation
        else:
            out[key] = copy.deepcopy(value)
    if (
        node.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def _validator():
    import jsonschema

    return jsonschema.Draft4Validator(_to_json_schema(openapi_schema()))


# ----- defaulting ---------------------------------------------------------------------------


def apply_defaults(schema: Mapping[str, Any], obj: Any) -> Any:
    """Structural defaulting, in place and top-down (a defaulted `{}` receives its own defaults)."""
    if isinstance(obj, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
            if key in obj:
                apply_defaults(sub, obj[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for key in set(obj) - set(schema.get("properties", {})):
                apply_defaults(extra, obj[key])
    elif isinstance(obj, list) and "items" in schema:
        for item in obj:
            apply_defaults(schema["items"], item)
    return obj


# ----- error formatting ---------------------------------------------------------------------


def _path(parts) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


def _value(v: Any) -> str:
    if isinstance(v, dict):
        return '"object"'
    if isinstance(v, list):
        return '"array"'
    return json.dumps(v)


def _schema_error_lines(error) -> Iterator[str]:
    path = _path(error.absolute_path)
    v = error.validator
    if v == "additionalProperties":
        known = set(error.schema.get("properties", {}))
        for key in sorted(set(error.instance) - known):
            prefix = f"{path}." if error.absolute_path else ""
            yield f'{prefix}{key}: Unknown field: "{prefix}{key}" is not a field of {KIND}; known fields here: {", ".join(sorted(known))}'
    elif v == "required":
        missing = error.message.split("'")[1]
        full = f"{path}.{missing}" if error.absolute_path else missing
        yield f"{full}: Required value"
    elif v == "enum":
        allowed = ", ".join(json.dumps(x) for x in error.validator_value)
        yield f"{path}: Unsupported value: {_value(error.instance)}: supported values: {allowed}"
    elif v == "type":
        yield f"{path}: Invalid value: {_value(error.instance)}: {path} in body must be of type {error.validator_value}"
    elif v in ("minimum", "maximum"):
        bound = error.validator_value
        exclusive = error.schema.get("exclusiveMinimum" if v == "minimum" else "exclusiveMaximum")
        relation = {
            ("minimum", False): "greater than or equal to",
            ("minimum", True): "greater than",
            ("maximum", False): "less than or equal to",
            ("maximum", True): "less than",
        }[(v, bool(exclusive))]
        yield f"{path}: Invalid value: {_value(error.instance)}: {path} in body should be {relation} {bound}"
    elif v in ("maxItems", "minItems"):
        yield f"{path}: Too many: {len(error.instance)}: must have at most {error.validator_value} items"
    else:
        yield f"{path}: Invalid value: {_value(error.instance)}: {error.message}"


# ----- CEL rules ----------------------------------------------------------------------------


@functools.cache
def _cel_program(rule: str):
    import celpy

    env = celpy.Environment()
    return env.program(env.compile(rule))


def _cel_rules(
    schema: Mapping[str, Any], obj: Any, path: list, old: Any, cel_obj: Any = None
) -> Iterator[str]:
    """Evaluate every x-kubernetes-validations rule that applies to `obj`, depth first.

    `cel_obj` is `obj` already converted to CEL (a slice of the parent's conversion): converting
    once at the top instead of per rule and per level is most of validate_manifest's cost."""
    import celpy

    for rule in schema.get("x-kubernetes-validations", []):
        is_transition = "oldSelf" in rule["rule"]
        if is_transition and old is None:
            continue  # the API server only runs transition rules on updates
        if cel_obj is None:
            cel_obj = celpy.json_to_cel(obj)
        activation = {"self": cel_obj}
        if is_transition:
            activation["oldSelf"] = celpy.json_to_cel(old)
        try:
            ok = bool(_cel_program(rule["rule"]).evaluate(activation))
        except Exception:  # noqa: BLE001 - a rule that cannot evaluate is a rejection, as in the
            # API server; the evaluator's internals mean nothing to the user, the rule's message does
            ok = False
        if not ok:
            message = rule.get("message") or f"failed rule: {rule['rule']}"
            yield f"{_path(path)}: Invalid value: {_value(obj)}: {message}"
    if isinstance(obj, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in obj:
                child_old = old.get(key) if isinstance(old, dict) else None
                child_cel = None if cel_obj is None else cel_obj[celpy.celtypes.StringType(key)]
                yield from _cel_rules(sub, obj[key], [*path, key], child_old, child_cel)
    elif isinstance(obj, list) and "items" in schema:
        for i, item in enumerate(obj):
            child_cel = None if cel_obj is None else cel_obj[i]
            yield from _cel_rules(schema["items"], item, [*path, i], None, child_cel)


# ----- entry points ---------------------------------------------------------------------------


def read_manifest(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A manifest from a path or a dict (copied; never modified).

    File problems (missing, a directory, not UTF-8, YAML syntax, duplicate keys) raise
    `denas.manifest_file.ManifestFileError`, a JobValidationError whose message is file:line:col."""
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    from denas.manifest_file import ManifestFileError, read_yaml_documents

    path = Path(source)
    docs = read_yaml_documents(path)
    jobs = [d for d in docs if isinstance(d, dict) and d.get("kind") == KIND]
    if len(jobs) == 1:
        return jobs[0]
    if len(docs) == 1 and isinstance(docs[0], dict):
        return docs[0]  # one mapping of another kind: validate_manifest names the wrong field
    if not docs:
        raise ManifestFileError(
            f"{path}: holds no YAML document; a {KIND} manifest starts with apiVersion: {API_VERSION}, "
            f"kind: {KIND}, metadata: {{name: ...}} and spec: (see deploy/samples/)"
        )
    if len(docs) == 1:
        raise ManifestFileError(
            f"{path}: the document is a {type(docs[0]).__name__}, not a mapping; a {KIND} manifest is a "
            "mapping with apiVersion, kind, metadata and spec (see deploy/samples/)"
        )
    kinds = [d.get("kind") if isinstance(d, dict) else type(d).__name__ for d in docs]
    raise ManifestFileError(
        f"{path}: must hold exactly one {KIND} document, found {len(jobs)} among {len(docs)} documents "
        f"(kinds: {', '.join(map(str, kinds))}); keep one {KIND} per file"
    )


def validate_manifest(manifest: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> list[str]:
    """Default `manifest` in place and return the API server's error lines (empty when valid)."""
    errors: list[str] = []
    if manifest.get("apiVersion") != API_VERSION:
        errors.append(
            f'apiVersion: Unsupported value: {_value(manifest.get("apiVersion"))}: supported values: "{API_VERSION}"'
        )
    if manifest.get("kind") != KIND:
        errors.append(f'kind: Unsupported value: {_value(manifest.get("kind"))}: supported values: "{KIND}"')
    metadata = manifest.get("metadata")
    name_errors = _metadata_errors(metadata)
    errors += name_errors
    errors.extend(_selection_without_data(manifest))  # before defaults fill in a dataset
    schema = openapi_schema()
    apply_defaults(schema, manifest)
    schema_errors = sorted(_validator().iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path)))
    for error in schema_errors:
        if list(error.absolute_path)[:1] == ["metadata"] and name_errors:
            continue  # already said, in plain words, by _metadata_errors
        errors.extend(_schema_error_lines(error))
    if not schema_errors and not name_errors:  # the API server skips CEL when structural checks failed
        errors.extend(_cel_rules(schema, manifest, [], old))
    return errors


def _metadata_errors(metadata: Any) -> list[str]:
    """Plain messages for a missing or malformed metadata/name (before any CEL rule reads it)."""
    if metadata is None:
        return ["metadata.name: Required value: add metadata: {name: my-job} (a lowercase DNS-1035 label)"]
    if not isinstance(metadata, Mapping):
        return [
            f"metadata: Invalid value: {_value(metadata)}: metadata must be a mapping such as "
            "metadata: {name: my-job}"
        ]
    name = metadata.get("name")
    if name is None or name == "":
        return ["metadata.name: Required value: add metadata.name, a lowercase DNS-1035 label such as my-job"]
    if not isinstance(name, str):
        return [
            f"metadata.name: Invalid value: {_value(name)}: must be a string, a lowercase DNS-1035 label "
            f'such as "job-{name}" (quote it in YAML)'
        ]
    return []


def _selection_without_data(manifest: Mapping[str, Any]) -> list[str]:
    """The selection stage trains on spec.training.dataset; with training off, only a dataset the
    user named counts (the schema's default `digits` would silently train on the wrong data)."""
    spec = manifest.get("spec")
    if not isinstance(spec, Mapping):
        return []
    search, training = spec.get("search") or {}, spec.get("training") or {}
    selection = search.get("selection") if isinstance(search, Mapping) else None
    if (
        not isinstance(selection, Mapping)
        or selection.get("enabled") is not True
        or not isinstance(training, Mapping)
    ):
        return []
    if training.get("enabled", True) is False and not training.get("dataset"):
        return [
            "spec.search.selection.enabled: Invalid value: true: selection trains the top candidates on "
            "spec.training.dataset, which is unset while spec.training.enabled is false; name the data set "
            "(spec.training.dataset.name) or set spec.search.selection.enabled: false"
        ]
    return []


def validate_name(name: Any) -> list[str]:
    """The error lines `validate_manifest` gives for this `metadata.name` alone: the root rules
    that read only the metadata. Lets a caller validate a spec once for many jobs (the operator
    caches spec validation by spec, and checks each job's name with this)."""
    errors = _metadata_errors({"name": name})
    if errors:
        return errors
    root = openapi_schema()
    rules = [r for r in root.get("x-kubernetes-validations", []) if "self.spec" not in r["rule"]]
    metadata = {} if name is None else {"name": name}
    errors += _cel_rules({"x-kubernetes-validations": rules}, {"metadata": metadata}, [], None)
    return errors


def load_job(source: str | Path | Mapping[str, Any], old: Mapping[str, Any] | None = None) -> Job:
    """Read, default and validate a DeNASJob; raise JobValidationError listing every problem."""
    manifest = read_manifest(source)
    errors = validate_manifest(manifest, old)
    if errors:
        metadata = manifest.get("metadata")
        name = (metadata.get("name") if isinstance(metadata, Mapping) else None) or "<unnamed>"
        raise JobValidationError(str(name), errors)
    manifest["metadata"].setdefault("namespace", "default")
    return Job(manifest)


def explain(path: str = "") -> str:
    """`kubectl explain`-style text for a field path such as `spec.search` (empty: the whole kind)."""
    node = openapi_schema()
    parts = [p for p in path.split(".") if p]
    if parts and parts[0] == KIND.lower():
        parts = parts[1:]
    for part in parts:
        props = node.get("properties") or {}
        if part not in props:
            raise KeyError(f'field "{part}" does not exist under "{path}"; known: {", ".join(sorted(props))}')
        node = props[part]
    lines = [f"KIND:     {KIND}", f"VERSION:  {API_VERSION}", ""]
    lines.append(f"FIELD:    {path or KIND} <{node.get('type', 'object')}>")
    if node.get("description"):
        lines += ["", "DESCRIPTION:", f"    {node['description']}"]
    facts = _facts(node)
    if facts:
        lines += ["", f"    {facts}"]
    props = node.get("properties") or {}
    if props:
        lines += ["", "FIELDS:"]
        required = set(node.get("required", []))
        for key, sub in props.items():
            req = " -required-" if key in required else ""
            lines.append(f"  {key}\t<{sub.get('type', 'object')}>{req}")
            if sub.get("description"):
                lines.append(f"    {sub['description']}")
            facts = _facts(sub)
            if facts:
                lines.append(f"    {facts}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _facts(node: Mapping[str, Any]) -> str:
    bits = []
    if "default" in node:
        bits.append(f"default: {json.dumps(node['default'])}")
    if "enum" in node:
        bits.append("enum: " + ", ".join(map(str, node["enum"])))
    if "minimum" in node:
        bits.append(f"minimum: {node['minimum']}{' (exclusive)' if node.get('exclusiveMinimum') else ''}")
    if "maximum" in node:
        bits.append(f"maximum: {node['maximum']}")
    return "; ".join(bits)
