"""What a hurried user types, through the real CLI: one clear message, exit code 2, no traceback.

Each case is a manifest (or flags) and what the message must name: the field path or the file
position, so the user knows where to look. Most cases go through `denas validate` (no work
starts); a few through `denas run`, `denas search` and `denas score`, which must refuse the same
input before doing any work. Add a row for every new mistake seen in the wild.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
GOOD = """\
apiVersion: denas.io/v1alpha1
kind: DeNASJob
metadata:
  name: bad-input
spec:
  domain: cnn
  searchSpace: {preset: tiny}
  search: {population: 4, generations: 1}
  training:
    enabled: true
    dataset: {name: digits}
"""


def with_spec(**patch) -> str:
    """GOOD with spec keys replaced (dotted paths: training.dataset)."""
    manifest = yaml.safe_load(GOOD)
    for dotted, value in patch.items():
        node = manifest["spec"]
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return yaml.safe_dump(manifest, sort_keys=False)


@dataclass
class Case:
    id: str
    #: the job file's content (str or bytes), or a callable making the job path in tmp_path
    job: str | bytes | Callable[[Path], Path]
    #: substrings the message must hold ({job} is the job file's path, {tmp} the test folder)
    expect: tuple[str, ...]
    command: tuple[str, ...] = ("validate",)
    extra: tuple[str, ...] = ()


def _cifar_tarball(tmp: Path) -> Path:
    (tmp / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b")
    return _job(
        tmp,
        with_spec(**{"training.dataset": {"name": "cifar10", "path": str(tmp / "cifar-10-python.tar.gz")}}),
    )


def _empty_dir_dataset(name: str, **extra: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        (tmp / "data").mkdir()
        return _job(
            tmp, with_spec(**{"training.dataset": {"name": name, "path": str(tmp / "data"), **extra}})
        )

    return make


def _imagefolder_loose_images(tmp: Path) -> Path:
    (tmp / "data").mkdir()
    (tmp / "data" / "a.png").write_bytes(b"png")
    return _job(tmp, with_spec(**{"training.dataset": {"name": "imagefolder", "path": str(tmp / "data")}}))


def _imagefolder_no_images(tmp: Path) -> Path:
    (tmp / "data" / "cat").mkdir(parents=True)
    (tmp / "data" / "cat" / "notes.txt").write_text("no images here")
    return _job(tmp, with_spec(**{"training.dataset": {"name": "imagefolder", "path": str(tmp / "data")}}))


def _imagefolder_is_a_file(tmp: Path) -> Path:
    (tmp / "data.png").write_bytes(b"png")
    return _job(
        tmp, with_spec(**{"training.dataset": {"name": "imagefolder", "path": str(tmp / "data.png")}})
    )


def _asr_job(tmp: Path, name: str) -> Path:
    (tmp / "data").mkdir(exist_ok=True)
    dataset = {"name": name, "path": str(tmp / "data")}
    return _job(tmp, with_spec(domain="asr", searchSpace={"preset": "tiny"}, **{"training.dataset": dataset}))


def _librispeech_missing_audio(tmp: Path) -> Path:
    chapter = tmp / "data" / "train-clean" / "19" / "198"
    chapter.mkdir(parents=True)
    (chapter / "19-198.trans.txt").write_text("19-198-0001 HELLO WORLD\n")
    return _asr_job(tmp, "librispeech")


def _squad_tokenizer_missing(tmp: Path) -> Path:
    (tmp / "train-v1.1.json").write_text('{"data": []}')
    dataset = {"name": "squad", "path": str(tmp / "train-v1.1.json"), "tokenizer": str(tmp / "tok")}
    return _job(
        tmp, with_spec(domain="bert", searchSpace={"preset": "tiny"}, **{"training.dataset": dataset})
    )


def _a_directory(tmp: Path) -> Path:
    (tmp / "jobs").mkdir()
    return tmp / "jobs"


def _missing(tmp: Path) -> Path:
    return tmp / "no-such-job.yaml"


def _job(tmp: Path, text: str | bytes, name: str = "job.yaml") -> Path:
    path = tmp / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _out_is_a_file(tmp: Path) -> Path:
    (tmp / "taken").write_text("a file of the user's")
    return _job(tmp, GOOD)


def _out_under_a_file(tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("a file of the user's")
    return _job(tmp, GOOD)


CASES = [
    # ----- the file itself ---------------------------------------------------------------------
    Case("missing-file", _missing, ("no-such-job.yaml", "no such file")),
    Case("directory", _a_directory, ("jobs", "is a directory")),
    Case("empty-file", "", ("holds no YAML document",)),
    Case("only-a-comment", "# nothing yet\n", ("holds no YAML document",)),
    Case(
        "yaml-syntax",
        GOOD.replace("  domain: cnn", "  domain: cnn\n   search: {"),
        ("{job}:7:", "mapping values"),
    ),
    Case(
        "unclosed-bracket", GOOD.replace("{preset: tiny}", "{preset: tiny"), ("{job}:", "fix the YAML syntax")
    ),
    Case("tab-indent", GOOD.replace("  name: bad-input", "\tname: bad-input"), ("{job}:4:1", "tabs")),
    Case(
        "latin1-bytes",
        GOOD.replace("bad-input", "caf\xe9").encode("latin-1"),
        ("{job}:4:", "not UTF-8", "0xe9"),
    ),
    Case("binary-file", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ("{job}:1:1", "not UTF-8")),
    Case("duplicate-top-key", GOOD + "spec:\n  domain: vit\n", ("duplicate key 'spec'", "line 5", "line 12")),
    Case(
        "duplicate-nested-key",
        GOOD.replace("  domain: cnn\n", "  domain: cnn\n  domain: vit\n"),
        ("duplicate key 'domain'", "line 6", "line 7"),
    ),
    Case("unhashable-key", "? [a, b]\n: 1\n", ("{job}:1:", "plain name")),
    Case("a-list", "- apiVersion: denas.io/v1alpha1\n", ("is a list, not a mapping",)),
    Case("a-scalar", "hello\n", ("is a str, not a mapping",)),
    Case("two-jobs", GOOD + "---\n" + GOOD, ("exactly one DeNASJob", "found 2")),
    # ----- kind, apiVersion, metadata ------------------------------------------------------------
    Case(
        "wrong-kind",
        GOOD.replace("kind: DeNASJob", "kind: DenasJob"),
        ('kind: Unsupported value: "DenasJob"', '"DeNASJob"'),
    ),
    Case(
        "wrong-api-version",
        GOOD.replace("denas.io/v1alpha1", "denas.io/v1"),
        ('apiVersion: Unsupported value: "denas.io/v1"',),
    ),
    Case(
        "no-metadata", GOOD.replace("metadata:\n  name: bad-input\n", ""), ("metadata.name: Required value",)
    ),
    Case(
        "no-name",
        GOOD.replace("  name: bad-input\n", "  labels: {a: b}\n"),
        ("metadata.name: Required value",),
    ),
    Case(
        "numeric-name",
        GOOD.replace("name: bad-input", "name: 123"),
        ("metadata.name: Invalid value: 123", "quote"),
    ),
    Case(
        "metadata-string",
        GOOD.replace("metadata:\n  name: bad-input", "metadata: bad-input"),
        ("metadata: Invalid value",),
    ),
    Case("uppercase-name", GOOD.replace("name: bad-input", "name: Bad_Input"), ("DNS-1035",)),
    # ----- spec fields ---------------------------------------------------------------------------
    Case("no-spec", GOOD[: GOOD.index("spec:")], ("spec: Required value",)),
    Case("spec-scalar", GOOD[: GOOD.index("spec:")] + "spec: 3\n", ("spec: Invalid value: 3",)),
    Case("typo-field", with_spec(serach={"population": 4}), ("spec.serach: Unknown field",)),
    Case("unknown-domain", with_spec(domain="gan"), ("spec.domain: unknown space 'gan'", "denas.spaces")),
    Case("domain-spelling", with_spec(domain="Res Net"), ('spec.domain: Invalid value: "Res Net"',)),
    Case("population-text", with_spec(**{"search.population": "ten"}), ("spec.search.population", "integer")),
    Case(
        "population-zero",
        with_spec(**{"search.population": 0}),
        ("spec.search.population: Invalid value: 0",),
    ),
    Case(
        "unknown-weight",
        with_spec(score={"weights": {"foo": 1}}),
        ('spec.score.weights.foo: Unsupported value: "foo"', "layer_gain"),
    ),
    Case("weight-not-a-number", with_spec(score={"weights": {"snip": "high"}}), ("spec.score.weights.snip",)),
    Case(
        "unknown-proxy",
        with_spec(score={"proxies": ["snip", "synflo"]}),
        ('spec.score.proxies[1]: Unsupported value: "synflo"',),
    ),
    Case("unknown-space-key", with_spec(searchSpace={"colour": "red"}), ("spec.searchSpace.colour",)),
    Case(
        "dataset-for-another-domain",
        with_spec(**{"training.dataset": {"name": "squad"}}),
        ("spec.training.dataset.name does not fit spec.domain",),
    ),
    Case(
        "unknown-dataset",
        with_spec(**{"training.dataset": {"name": "mnist"}}),
        ('spec.training.dataset.name: Unsupported value: "mnist"',),
    ),
    # ----- the data set ----------------------------------------------------------------------------
    Case(
        "cifar10-no-path",
        with_spec(**{"training.dataset": {"name": "cifar10"}}),
        ("spec.training.dataset.path: Required value", "cifar-10-batches-py"),
    ),
    Case(
        "cifar10-missing-path",
        with_spec(**{"training.dataset": {"name": "cifar10", "path": "./no/such/cifar"}}),
        ("spec.training.dataset.path", "no such file or directory", "resolved to"),
    ),
    Case(
        "cifar10-empty-dir",
        _empty_dir_dataset("cifar10"),
        ("spec.training.dataset.path", "no CIFAR-10 batches found"),
    ),
    Case("cifar10-tarball", _cifar_tarball, ("spec.training.dataset.path", "extract it")),
    Case(
        "imagefolder-no-classes",
        _imagefolder_loose_images,
        ("spec.training.dataset.path", "images lie directly in it"),
    ),
    Case("imagefolder-no-images", _imagefolder_no_images, ("spec.training.dataset.path", "no images")),
    Case("imagefolder-a-file", _imagefolder_is_a_file, ("spec.training.dataset.path", "not a directory")),
    Case(
        "librispeech-no-transcripts",
        lambda t: _asr_job(t, "librispeech"),
        ("spec.training.dataset.path", "trans.txt"),
    ),
    Case(
        "librispeech-missing-audio",
        _librispeech_missing_audio,
        ("spec.training.dataset.path", "19-198-0001.flac"),
    ),
    Case(
        "squad-no-tokenizer",
        with_spec(
            domain="bert",
            searchSpace={"preset": "tiny"},
            **{"training.dataset": {"name": "squad", "path": "/data/squad"}},
        ),
        ("spec.training.dataset.tokenizer: Required value",),
    ),
    Case(
        "squad-tokenizer-missing",
        _squad_tokenizer_missing,
        ("spec.training.dataset.tokenizer", "no such file or directory"),
    ),
    Case(
        "spoken-words-empty",
        lambda t: _asr_job(t, "spoken-words"),
        ("spec.training.dataset.path", "<word>/<clip>.wav"),
    ),
    # ----- the other commands refuse the same input before any work --------------------------------
    Case(
        "run-unknown-weight",
        with_spec(score={"weights": {"foo": 1}}),
        ("spec.score.weights.foo",),
        ("run",),
        ("--out", "{tmp}/out"),
    ),
    Case(
        "run-cifar10-no-path",
        with_spec(**{"training.dataset": {"name": "cifar10"}}),
        ("spec.training.dataset.path",),
        ("run",),
        ("--out", "{tmp}/out"),
    ),
    Case(
        "run-yaml-syntax",
        GOOD.replace("{preset: tiny}", "{preset: tiny"),
        ("{job}:",),
        ("run",),
        ("--out", "{tmp}/out"),
    ),
    Case(
        "run-out-is-a-file",
        _out_is_a_file,
        ("--out", "taken", "is a file"),
        ("run",),
        ("--out", "{tmp}/taken"),
    ),
    Case(
        "run-out-under-a-file",
        _out_under_a_file,
        ("--out", "lies under", "notes.txt"),
        ("run",),
        ("--out", "{tmp}/notes.txt/run"),
    ),
    Case("run-missing-file", _missing, ("no-such-job.yaml",), ("run",), ("--out", "{tmp}/out")),
    Case(
        "search-unknown-proxy",
        with_spec(score={"proxies": ["nope"]}),
        ("spec.score.proxies[0]",),
        ("search",),
        ("--out", "{tmp}/out"),
    ),
    Case(
        "search-duplicate-key",
        GOOD.replace("  domain: cnn\n", "  domain: cnn\n  domain: vit\n"),
        ("duplicate key 'domain'",),
        ("search",),
        ("--out", "{tmp}/out"),
    ),
    Case(
        "search-out-under-a-file",
        _out_under_a_file,
        ("--out", "notes.txt"),
        ("search",),
        ("--out", "{tmp}/notes.txt/run"),
    ),
    Case(
        "score-unknown-weight",
        with_spec(score={"weights": {"foo": 1}}),
        ("spec.score.weights.foo",),
        ("score",),
    ),
    Case("score-unknown-proxy-flag", GOOD, ("--proxies", '"nope"'), ("score",), ("--proxies", "nope")),
    Case(
        "score-structure-not-json", GOOD, ("--structure", "not JSON"), ("score",), ("--structure", "{{oops")
    ),
    Case(
        "score-structure-missing-file",
        GOOD,
        ("--structure", "no such file"),
        ("score",),
        ("--structure", "{tmp}/result.json"),
    ),
    Case("score-random-zero", GOOD, ("--random: Invalid value: 0",), ("score",), ("--random", "0")),
]


def test_the_table_covers_at_least_thirty_bad_inputs():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_message_with_exit_code_2(case: Case, tmp_path: Path):
    job = case.job(tmp_path) if callable(case.job) else _job(tmp_path, case.job)
    fill = {"job": str(job), "tmp": str(tmp_path)}
    extra = [a.format(**fill) for a in case.extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "operator")])}
    proc = subprocess.run(
        [sys.executable, "-m", "denas", *case.command, str(job), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "Traceback" not in output, output
    for expected in case.expect:
        assert expected.format(**fill) in proc.stderr, proc.stderr
    # one message, not a log: a short block on stderr, nothing half-done left behind
    assert len(proc.stderr.strip().splitlines()) <= 8, proc.stderr
    assert not (tmp_path / "out").exists()
