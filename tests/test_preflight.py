"""`denas.preflight`: what DeNAS checks before work starts, for validate, run, search and the operator."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from test_data_vision import _write_images, write_cifar_binary, write_cifar_pickle

from denas import preflight
from denas.data import LOADERS, DataError, load_dataset
from denas.data.layouts import LAYOUTS, dataset_problems
from denas.job import JobValidationError, openapi_schema

# ----- the name tables agree with the registries they stand in for ---------------------------


def test_proxy_names_are_the_registry_and_weightable_names_the_descore_transforms():
    from denas.scores import descore, registry

    assert list(preflight.PROXY_NAMES) == registry.names()
    assert list(preflight.WEIGHTABLE) == sorted(descore.TRANSFORMS)


def test_every_loader_has_a_layout_and_the_crd_enum_lists_exactly_them():
    enum = openapi_schema()["properties"]["spec"]["properties"]["training"]["properties"]["dataset"]
    assert set(LAYOUTS) == set(LOADERS) == set(enum["properties"]["name"]["enum"])


def test_the_data_package_imports_without_torch():
    import subprocess

    code = "import sys, denas.preflight, denas.data; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----- score names ---------------------------------------------------------------------------


def test_unknown_weights_and_proxies_name_the_field_and_the_known_names():
    problems = preflight.score_problems(
        {"proxies": ["snip", "nope"], "weights": {"foo": 1, "snip": 2, "latency": 0.1, "zico": "x"}}
    )
    assert len(problems) == 3
    assert (
        problems[0].startswith('spec.score.proxies[1]: Unsupported value: "nope"') and '"snip"' in problems[0]
    )
    assert (
        problems[1].startswith('spec.score.weights.foo: Unsupported value: "foo"')
        and '"latency"' in problems[1]
    )
    assert problems[2].startswith("spec.score.weights.zico: Invalid value")
    assert preflight.score_problems({"weights": {"layer_gain": 1, "latency": 0.5}}) == []


# ----- data sets: preflight accepts what the loaders load and rejects what they reject ----------


def _cifar_tar(p: Path) -> Path:
    p.mkdir()
    (p / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b")
    return p / "cifar-10-python.tar.gz"


@pytest.mark.parametrize(
    "name, make",
    [
        ("cifar10", lambda p: write_cifar_pickle(p, 2)),
        ("cifar10", lambda p: write_cifar_binary(p, 2)),
        ("cifar10", lambda p: write_cifar_pickle(p, 2) or (p / "cifar-10-batches-py")),  # the dir itself
        ("imagefolder", lambda p: _write_images(p, n=2)),
        ("imagefolder", lambda p: (_write_images(p / "train", n=2), _write_images(p / "val", n=1)) and None),
    ],
)
def test_a_layout_the_loader_reads_passes(tmp_path: Path, name, make):
    root = tmp_path / "data"
    root.mkdir()
    path = make(root) or root
    assert dataset_problems({"name": name, "path": str(path)}, local=True) == []
    assert len(load_dataset(name, path=str(path), config={"in_channels": 3, "image_size": 8}).train) > 0


@pytest.mark.parametrize(
    "name, make, message",
    [
        ("cifar10", lambda p: None, "no such file or directory"),
        ("cifar10", lambda p: p.mkdir(), "no CIFAR-10 batches found"),
        ("cifar10", lambda p: (p.mkdir(), (p / "test_batch").write_bytes(b"junk")), "data_batch"),
        ("imagefolder", lambda p: p.mkdir(), "no class sub-directories"),
        ("imagefolder", lambda p: (p.mkdir(), (p / "cat").mkdir()), "no images"),
    ],
)
def test_a_layout_the_loader_rejects_fails_before_any_work(tmp_path: Path, name, make, message):
    path = tmp_path / "data"
    make(path)
    with pytest.raises(DataError):
        load_dataset(name, path=str(path), config={})
    problems = dataset_problems({"name": name, "path": str(path)}, local=True)
    assert len(problems) == 1 and problems[0].startswith("spec.training.dataset.path: Invalid value")
    assert message in problems[0] and str(path) in problems[0]


def test_text_and_speech_layouts(tmp_path: Path):
    chapter = tmp_path / "libri" / "train-clean-5" / "19" / "198"
    chapter.mkdir(parents=True)
    (chapter / "19-198.trans.txt").write_text("19-198-0000 YES NO\n")
    (chapter / "19-198-0000.flac").write_bytes(b"")
    assert dataset_problems({"name": "librispeech", "path": str(tmp_path / "libri")}, local=True) == []
    (tmp_path / "words" / "yes").mkdir(parents=True)
    (tmp_path / "words" / "yes" / "a.wav").write_bytes(b"")
    assert dataset_problems({"name": "spoken-words", "path": str(tmp_path / "words")}, local=True) == []
    (tmp_path / "squad.json").write_text('  {"data": []}')
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.txt").write_text("[PAD]\n")
    ok = {"name": "squad", "path": str(tmp_path / "squad.json"), "tokenizer": str(tmp_path / "tok")}
    assert dataset_problems(ok, local=True) == []
    (tmp_path / "bad.json").write_text("<html>")
    bad = dataset_problems({**ok, "path": str(tmp_path / "bad.json"), "tokenizer": str(tmp_path)}, local=True)
    assert [p.split(":")[0] for p in bad] == ["spec.training.dataset.path", "spec.training.dataset.tokenizer"]


def test_the_cifar_archive_gets_the_extract_command(tmp_path: Path):
    problems = dataset_problems({"name": "cifar10", "path": str(_cifar_tar(tmp_path / "d"))}, local=True)
    assert "tar xzf" in problems[0]


def test_on_the_cluster_only_a_missing_path_is_an_error():
    assert dataset_problems({"name": "cifar10", "path": "/var/lib/denas/nowhere"}, local=False) == []
    missing = dataset_problems({"name": "cifar10"}, local=False)
    assert len(missing) == 1 and missing[0].startswith("spec.training.dataset.path: Required value")
    assert "mounted in the pods" in missing[0]
    assert dataset_problems({"name": "digits"}, local=True) == []
    squad = dataset_problems({"name": "squad", "path": "/data"}, local=False)
    assert [p.split(":")[0] for p in squad] == ["spec.training.dataset.tokenizer"]


def test_a_disabled_training_does_not_need_its_data_set():
    spec = {"domain": "cnn", "training": {"enabled": False, "dataset": {"name": "cifar10"}}}
    assert preflight.spec_problems(spec, local=True) == []
    spec["training"]["enabled"] = True
    assert len(preflight.spec_problems(spec, local=True)) == 1


# ----- the same checks in every entry point ------------------------------------------------------


def test_the_operator_rejects_unknown_weights_and_a_missing_path_but_not_pod_paths():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))
    from denas_operator.reconcile import validate_body

    def body(**spec):
        return {
            "apiVersion": "denas.io/v1alpha1",
            "kind": "DeNASJob",
            "metadata": {"name": "op"},
            "spec": {"domain": "cnn", **spec},
        }

    spec, errors = validate_body(body(score={"weights": {"foo": 1}}))
    assert spec is None and errors[0].startswith("spec.score.weights.foo: Unsupported value")
    spec, errors = validate_body(body(training={"enabled": True, "dataset": {"name": "cifar10"}}))
    assert spec is None and errors[0].startswith("spec.training.dataset.path: Required value")
    pod_path = {"name": "cifar10", "path": "/var/lib/denas/datasets/cifar-10-batches-py"}
    spec, errors = validate_body(body(training={"enabled": True, "dataset": pod_path}))
    assert errors == [] and spec is not None


def test_load_checked_job_lists_every_problem(tmp_path: Path):
    manifest = {
        "apiVersion": "denas.io/v1alpha1",
        "kind": "DeNASJob",
        "metadata": {"name": "x"},
        "spec": {
            "domain": "cnn",
            "score": {"weights": {"foo": 1}},
            "training": {"enabled": True, "dataset": {"name": "imagefolder", "path": str(tmp_path / "no")}},
        },
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(JobValidationError) as info:
        preflight.load_checked_job(tmp_path / "job.yaml")
    assert [e.split(":")[0] for e in info.value.errors] == [
        "spec.score.weights.foo",
        "spec.training.dataset.path",
    ]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda t: (t / "f").write_text("x") and t / "f", "is a file"),
        (lambda t: (t / "f").write_text("x") and t / "f" / "sub" / "run", "lies under"),
        (lambda t: t / "new" / "run", None),
        (lambda t: t, None),
    ],
)
def test_out_dir_problem(tmp_path: Path, make, message):
    problem = preflight.out_dir_problem(make(tmp_path))
    assert (problem is None) if message is None else (message in problem and problem.startswith("--out "))
