"""DeNASJob manifests are defaulted and validated exactly as the API server would (CRD schema + CEL)."""

from __future__ import annotations

import copy

import pytest

from denas.job import JobValidationError, explain, load_job, openapi_schema, read_manifest

DIGITS = "deploy/samples/digits.yaml"


def manifest(**spec) -> dict:
    return {
        "apiVersion": "denas.io/v1alpha1",
        "kind": "DeNASJob",
        "metadata": {"name": "job"},
        "spec": {"domain": "cnn", **spec},
    }


def errors_of(obj, old=None) -> list[str]:
    with pytest.raises(JobValidationError) as info:
        load_job(obj, old=old)
    return info.value.errors


def test_defaults_come_from_the_crd_schema_top_down():
    job = load_job(manifest())
    assert job.spec["search"]["strategy"] == "ea"
    assert job.spec["search"]["population"] == 20
    # a defaulted `{}` receives its own nested defaults, as structural defaulting does
    assert job.spec["score"]["latency"]["repeats"] == 10
    assert job.spec["training"]["dataset"] == {"name": "digits"}
    assert job.namespace == "default"


def test_explicit_values_win_over_defaults_and_the_input_is_not_modified():
    obj = manifest(search={"population": 7})
    before = copy.deepcopy(obj)
    job = load_job(obj)
    assert job.spec["search"]["population"] == 7
    assert obj == before


def test_digits_sample_is_valid():
    job = load_job(DIGITS)
    assert job.name == "digits" and job.domain == "cnn"
    assert job.spec["training"]["replicas"] == 2


MALFORMED = [
    # (spec patch or whole-manifest patch, the field the message must name)
    # any lower-case name passes the schema (plug-in spaces); the engine checks it exists
    ({"domain": "ResNet!"}, 'spec.domain: Invalid value: "ResNet!"'),
    ({"search": {"population": 1}}, "spec.search.population: Invalid value: 1"),
    ({"search": {"generations": 0}}, "spec.search.generations: Invalid value: 0"),
    ({"search": {"strategy": "grid"}}, 'spec.search.strategy: Unsupported value: "grid"'),
    ({"search": {"replicas": 0}}, "spec.search.replicas: Invalid value: 0"),
    ({"search": {"seed": -1}}, "spec.search.seed: Invalid value: -1"),
    ({"search": {"population": "ten"}}, "spec.search.population in body must be of type integer"),
    ({"search": {"strategy": "nsga2", "population": 3}}, "population must be at least 4 for strategy nsga2"),
    ({"constraints": {"maxParams": -5}}, "spec.constraints.maxParams: Invalid value: -5"),
    ({"constraints": {"maxLatencyMs": 0}}, "spec.constraints.maxLatencyMs in body should be greater than 0"),
    ({"constraints": {"maxFlop": 10}}, 'Unknown field: "spec.constraints.maxFlop"'),
    ({"trainning": {}}, 'Unknown field: "spec.trainning"'),
    ({"training": {"replicas": -1}}, "spec.training.replicas: Invalid value: -1"),
    (
        {"training": {"dataset": {"name": "imagenet"}}},
        'spec.training.dataset.name: Unsupported value: "imagenet"',
    ),
    ({"training": {"dataset": {"path": "/data"}}}, "spec.training.dataset.name: Required value"),
    ({"training": {"dataset": {"name": "squad"}}}, "spec.training.dataset.name does not fit spec.domain"),
    ({"training": {"enabled": True, "replicas": 0}}, "spec.training.replicas must be at least 1"),
    ({"training": {"backend": "mpi"}}, 'spec.training.backend: Unsupported value: "mpi"'),
    ({"training": {"learningRate": 0}}, "spec.training.learningRate in body should be greater than 0"),
    ({"training": {"epochs": 0}}, "spec.training.epochs: Invalid value: 0"),
    ({"score": {"batchSize": 1}}, "spec.score.batchSize: Invalid value: 1"),
    (
        {"score": {"weights": {"synflow": "high"}}},
        "spec.score.weights.synflow in body must be of type number",
    ),
    ({"score": {"latency": {"threads": 0}}}, "spec.score.latency.threads: Invalid value: 0"),
    ({"hardware": {"ipex": "yes"}}, 'spec.hardware.ipex: Unsupported value: "yes"'),
    (
        {"hardware": {"nodeSelector": {"zone": 1}}},
        "spec.hardware.nodeSelector.zone in body must be of type string",
    ),
    ({"hardware": {"pinnedCpus": -2}}, "spec.hardware.pinnedCpus: Invalid value: -2"),
    ({"imagePullPolicy": "Sometimes"}, 'spec.imagePullPolicy: Unsupported value: "Sometimes"'),
    ({"suspend": "yes"}, "spec.suspend in body must be of type boolean"),
    ({"ttlSecondsAfterFinished": -1}, "spec.ttlSecondsAfterFinished: Invalid value: -1"),
    ({"storage": {"claim": "pvc"}}, 'Unknown field: "spec.storage.claim"'),
]


@pytest.mark.parametrize(("patch", "expected"), MALFORMED, ids=[e for _, e in MALFORMED])
def test_malformed_specs_are_rejected_naming_the_field(patch, expected):
    errors = errors_of(manifest(**patch))
    assert any(expected in e for e in errors), errors


def test_every_problem_is_reported_at_once():
    errors = errors_of(manifest(domain="X", search={"population": 0}, constraints={"maxParams": 0}))
    assert len(errors) == 3


@pytest.mark.parametrize("name", ["Digits", "1digits", "a" * 41, "has_underscore"])
def test_names_that_cannot_name_pods_and_services_are_rejected(name):
    obj = manifest()
    obj["metadata"]["name"] = name
    assert any("metadata.name must be a DNS-1035 label" in e for e in errors_of(obj))


def test_wrong_kind_and_api_version_are_rejected():
    obj = manifest()
    obj["apiVersion"], obj["kind"] = "denas.io/v1", "Job"
    errors = errors_of(obj)
    assert any(e.startswith("apiVersion: Unsupported value") for e in errors)
    assert any(e.startswith("kind: Unsupported value") for e in errors)


def test_domain_is_immutable_on_update_only():
    old = load_job(manifest()).manifest
    assert load_job(manifest(domain="vit"))  # creating a vit job is fine
    errors = errors_of(manifest(domain="vit"), old=old)
    assert any("spec.domain is immutable" in e for e in errors)
    assert load_job(manifest(search={"population": 9}), old=old)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        read_manifest(tmp_path / "nope.yaml")


def test_a_file_with_two_jobs_is_rejected(tmp_path):
    p = tmp_path / "two.yaml"
    p.write_text(
        "apiVersion: denas.io/v1alpha1\nkind: DeNASJob\n---\napiVersion: denas.io/v1alpha1\nkind: DeNASJob\n"
    )
    with pytest.raises(JobValidationError, match="exactly one DeNASJob document, found 2"):
        load_job(p)


def test_every_spec_field_is_described_for_explain():
    def walk(node, path):
        for key, sub in (node.get("properties") or {}).items():
            if (
                path.startswith("status")
                or path == ""
                and key in ("apiVersion", "kind", "metadata", "status")
            ):
                continue
            assert sub.get("description"), f"{path}.{key} has no description"
            walk(sub, f"{path}.{key}".strip("."))

    walk(openapi_schema(), "")
    text = explain("spec.training.dataset")
    assert "FIELD:    spec.training.dataset <object>" in text and "name\t<string> -required-" in text
    with pytest.raises(KeyError, match="does not exist"):
        explain("spec.nothing")


@pytest.mark.parametrize(
    "name", ["digits", "a" * 40, "Digits", "1digits", "a" * 41, "has_underscore", "x-", "", None]
)
def test_validate_name_gives_exactly_the_name_lines_of_a_full_validation(name):
    # The operator validates a spec once for many jobs and each name with validate_name alone.
    from denas.job import validate_manifest, validate_name

    obj = manifest()
    obj["metadata"]["name"] = name
    if name is None:
        del obj["metadata"]["name"]
    full = validate_manifest(obj)  # the rest of the manifest is valid: every line is the name's
    assert validate_name(name) == full
    assert bool(full) == (name not in ("digits", "a" * 40))
