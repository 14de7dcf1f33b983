"""DeNASCampaign manifests: validate them as the API server would, and expand the matrix into cells.

Pure functions over plain dicts (no kopf, no torch): the operator and `denas run` build the same
child DeNASJobs from the same campaign.  A cell is one target x one constraint set (x one domain);
its job is the template with the target's hardware and the constraint set applied, named
``<campaign>-<target>-<constraints>[-<domain>]`` so that names are stable and readable and an
unchanged cell keeps its job (and its progress) when the matrix is edited.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from denas import job as J
from denas.manifest_file import ManifestFileError, read_yaml_documents

KIND = "DeNASCampaign"
PLURAL = "denascampaigns"
CRD_FILE = "denascampaigns.denas.io.yaml"
#: documented in the CRD (spec.matrix CEL rule): more cells belong in several campaigns
MAX_CELLS = 64
LABEL_CAMPAIGN = "denas.io/campaign"
LABEL_TARGET = "denas.io/target"
LABEL_CONSTRAINTS = "denas.io/constraints"
LABEL_DOMAIN = "denas.io/domain-set"
ANNOTATION_CELL_HASH = "denas.io/cell-spec-hash"
CONSTRAINT_FIELDS = ("maxParams", "maxFlops", "maxLatencyMs")


class CampaignValidationError(J.JobValidationError):
    """A campaign the API server (or the template check) would reject; one line per problem."""

    def __init__(self, name: str, errors: list[str]):
        super().__init__(name, errors)
        lines = "\n".join(f"  * {e}" for e in errors)
        self.args = (f'{KIND}.{J.GROUP} "{name}" is invalid:\n{lines}',)


@dataclass(frozen=True)
class Cell:
    name: str  # the child DeNASJob's name
    target: str
    constraints: str
    domain: str | None = None

    @property
    def key(self) -> str:
        return "/".join(p for p in (self.target, self.constraints, self.domain) if p)


@dataclass
class Campaign:
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return self.manifest["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.manifest["metadata"].get("namespace", "default")

    @property
    def spec(self) -> dict[str, Any]:
        return self.manifest["spec"]

    def cells(self) -> list[Cell]:
        return campaign_cells(self.name, self.spec)


@functools.cache
def crd() -> dict[str, Any]:
    return yaml.safe_load(resources.files("denas.crd").joinpath(CRD_FILE).read_text())


def openapi_schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@functools.cache
def _validator():
    import jsonschema

    return jsonschema.Draft4Validator(J._to_json_schema(openapi_schema()))


def campaign_cells(name: str, spec: Mapping[str, Any]) -> list[Cell]:
    matrix = spec.get("matrix") or {}
    domains = [d["name"] for d in matrix.get("domains") or []] or [None]
    return [
        Cell("-".join(p for p in (name, t["name"], c["name"], d) if p), t["name"], c["name"], d)
        for t in matrix.get("targets") or []
        for c in matrix.get("constraints") or []
        for d in domains
    ]


def score_store_dir(name: str, spec: Mapping[str, Any]) -> str | None:
    """The store's directory on the claim, or None when the cells cannot share one."""
    store = spec.get("scoreStore") or {}
    claim = (spec.get("template") or {}).get("storage", {}).get("claimName")
    if not store.get("enabled", True) or not claim:
        return None
    return store.get("subPath") or f"{name}-scores"


def cell_spec(name: str, spec: Mapping[str, Any], cell: Cell) -> dict[str, Any]:
    """The cell's DeNASJob spec: the template with the target, constraint set and domain applied."""
    matrix = spec["matrix"]
    target = next(t for t in matrix["targets"] if t["name"] == cell.target)
    budget = next(c for c in matrix["constraints"] if c["name"] == cell.constraints)
    out = copy.deepcopy(dict(spec.get("template") or {}))
    if cell.domain is not None:
        domain = next(d for d in matrix["domains"] if d["name"] == cell.domain)
        out["domain"] = domain["domain"]
        out["searchSpace"] = copy.deepcopy(domain.get("searchSpace") or {})
    hardware = out.setdefault("hardware", {})
    for key in ("nodeSelector", "tolerations"):
        if key in target:
            hardware[key] = copy.deepcopy(target[key])
    if "resources" in target:  # latency is measured in the search pods: they get the target's size
        out.setdefault("search", {})["resources"] = copy.deepcopy(target["resources"])
        out.setdefault("training", {})["resources"] = copy.deepcopy(target["resources"])
    constraints = out.setdefault("constraints", {})
    constraints.update({k: budget[k] for k in CONSTRAINT_FIELDS if k in budget})
    # cells that differ only in budgets then propose the same structures wherever their
    # populations agree, so the score store serves them (the template may say "single")
    out.setdefault("search", {}).setdefault("randomStreams", "perSlot")
    store = score_store_dir(name, spec)
    if store:
        out.setdefault("storage", {})["scoreStore"] = store
    return out


def cell_manifest(campaign: Campaign, cell: Cell) -> dict[str, Any]:
    """The child DeNASJob (owner references are the operator's business)."""
    spec = cell_spec(campaign.name, campaign.spec, cell)
    labels = {LABEL_CAMPAIGN: campaign.name, LABEL_TARGET: cell.target, LABEL_CONSTRAINTS: cell.constraints}
    if cell.domain:
        labels[LABEL_DOMAIN] = cell.domain
    return {
        "apiVersion": J.API_VERSION,
        "kind": J.KIND,
        "metadata": {
            "name": cell.name,
            "namespace": campaign.namespace,
            "labels": labels,
            "annotations": {ANNOTATION_CELL_HASH: spec_hash(spec)},
        },
        "spec": spec,
    }


def spec_hash(spec: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _template_errors(campaign: Campaign, engine: bool) -> list[str]:
    """Each cell's job validated as a DeNASJob; paths renamed to the campaign field they come from."""
    errors: list[str] = []
    for cell in campaign.cells():
        manifest = cell_manifest(campaign, cell)
        lines = J.validate_manifest(manifest)
        if not lines and engine:
            from denas.preflight import spec_problems

            # what `denas run` checks before work starts: proxies, weights, data sets, the space
            lines = spec_problems(manifest["spec"], local=True, engine=True)
        for line in lines:
            line = line.replace(f" of {J.KIND};", " of a DeNASJob spec;")
            if line.startswith("spec."):
                field = line.split(":", 1)[0]
                where = _matrix_origin(campaign.spec, cell, field)
                line = (where or "spec.template." + field[len("spec.") :]) + line[len(field) :]
            if line not in errors:
                errors.append(line)
    return errors


def _matrix_origin(spec: Mapping[str, Any], cell: Cell, field: str) -> str | None:
    """`spec.matrix.<axis>[i].<key>` when the matrix (not the template) set the failing field."""
    matrix = spec["matrix"]
    parts = field.split(".")
    if parts[1:2] == ["constraints"] and len(parts) > 2:
        i = next(i for i, c in enumerate(matrix["constraints"]) if c["name"] == cell.constraints)
        if parts[2] in matrix["constraints"][i]:
            return f"spec.matrix.constraints[{i}].{'.'.join(parts[2:])}"
    if parts[1:2] == ["hardware"] and len(parts) > 2:
        i = next(i for i, t in enumerate(matrix["targets"]) if t["name"] == cell.target)
        if parts[2] in matrix["targets"][i]:
            return f"spec.matrix.targets[{i}].{'.'.join(parts[2:])}"
    return None


def validate_campaign(manifest: dict[str, Any], engine: bool = False) -> list[str]:
    """Default `manifest` in place and return every error line (schema, CEL, then the template)."""
    errors: list[str] = []
    if manifest.get("apiVersion") != J.API_VERSION:
        errors.append(f"apiVersion: Unsupported value: {json.dumps(manifest.get('apiVersion'))}")
    if manifest.get("kind") != KIND:
        errors.append(
            f'kind: Unsupported value: {json.dumps(manifest.get("kind"))}: supported values: "{KIND}"'
        )
    if not isinstance((manifest.get("metadata") or {}).get("name"), str):
        errors.append("metadata.name: Required value: name is required")
    schema = openapi_schema()
    J.apply_defaults(schema, manifest)
    schema_errors = sorted(_validator().iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path)))
    for error in schema_errors:
        errors.extend(line.replace(f" of {J.KIND};", f" of {KIND};") for line in J._schema_error_lines(error))
    if schema_errors or errors:
        return errors
    errors.extend(J._cel_rules(schema, manifest, [], None))
    if errors:
        return errors
    manifest["metadata"].setdefault("namespace", "default")
    return _template_errors(Campaign(manifest), engine)


def read_campaign(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; pass the path of a DeNASCampaign manifest (YAML)")
    try:  # the same strict reading as a DeNASJob's: file:line:column, duplicate keys, encoding
        docs = [d for d in read_yaml_documents(path) if isinstance(d, dict) and d.get("kind") == KIND]
    except ManifestFileError as exc:
        raise CampaignValidationError(path.name, [str(exc)]) from None
    if len(docs) != 1:
        raise CampaignValidationError(path.name, [f"<root>: {path} must hold exactly one {KIND} document"])
    return docs[0]


def load_campaign(source: str | Path | Mapping[str, Any], engine: bool = False) -> Campaign:
    manifest = read_campaign(source)
    errors = validate_campaign(manifest, engine=engine)
    if errors:
        raise CampaignValidationError(
            str((manifest.get("metadata") or {}).get("name") or "<unnamed>"), errors
        )
    return Campaign(manifest)


def manifest_kind(path: str | Path) -> str | None:
    """The kind of the (first) document in a file: lets `denas run`/`validate` take either kind."""
    try:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if isinstance(d, dict)]
    except (OSError, ValueError, yaml.YAMLError):  # unreadable, not UTF-8, not YAML: the job loader says so
        return None
    kinds = {d.get("kind") for d in docs}
    return KIND if KIND in kinds else (docs[0].get("kind") if docs else None)
