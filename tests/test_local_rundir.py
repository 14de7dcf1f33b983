"""The run folder of `denas run`: user files survive, a folder belongs to one job, failures read well.

Fast tests: no search or training runs here (tests/test_local_rerun.py runs real jobs).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from denas.job import load_job
from denas.local import rundir
from denas.local.failure import clean_lines, first_failure, read_failure, root_cause

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "deploy" / "samples" / "digits.yaml"


def job_file(tmp_path: Path, name: str = "digits", **spec_overrides) -> Path:
    manifest = yaml.safe_load(SAMPLE.read_text())
    manifest["metadata"]["name"] = name
    for path, value in spec_overrides.items():
        node = manifest["spec"]
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path = tmp_path / f"{name}-{abs(hash(json.dumps(spec_overrides, sort_keys=True)))}.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def denas_card(folder: Path) -> None:
    """An export folder as the export stage leaves it: its card.json has the keys every DeNAS card
    has (tests/test_export_run.py checks a real export passes `written_by_denas`)."""
    folder.mkdir()
    card = {"job": "digits", "denas_version": "0.1.0", "structure_hash": "h", "spec_hash": "s"}
    card["artifacts"] = {"onnx": {"files": ["model.onnx"], "bytes": 4}}
    (folder / "card.json").write_text(json.dumps(card))
    (folder / "card.md").write_text("# digits\n")
    (folder / "model.onnx").write_bytes(b"onnx")


def fake_finished_run(out: Path, job) -> None:
    """What a finished run leaves: the marker, status, result, every stage's folder and the export."""
    rundir.prepare(out, job)
    for sub in ("search", "train", "logs", "plots"):
        (out / sub).mkdir(exist_ok=True)
    (out / "search" / "result.json").write_text('{"best": []}')
    (out / "result.json").write_text('{"best": []}')
    (out / "train" / "metrics.json").write_text('{"metric": 0.9}')
    (out / "logs" / "search-0.log").write_text("log\n")
    (out / "report.html").write_text("<html></html>")
    denas_card(out / "model")
    conditions = [
        {"type": t, "status": "True", "reason": t, "message": "", "lastTransitionTime": "x"}
        for t in ("SearchSucceeded", "TrainingSucceeded", "Succeeded")
    ]
    conditions.append(
        {
            "type": "ExportFailed",
            "status": "False",
            "reason": "Exported",
            "message": "",
            "lastTransitionTime": "x",
        }
    )
    status = {
        "phase": "Succeeded",
        "conditions": conditions,
        "bestStructures": [{"rank": 0, "hash": "h"}],
        "modelRef": {"path": str(out / "model"), "formats": ["onnx"]},
        "stages": {s: {"seconds": 1.0} for s in ("validate", "search", "training", "export", "report")},
    }
    (out / "status.json").write_text(json.dumps(status))


# ----- never delete what DeNAS did not write -------------------------------------------------------
def test_fresh_with_out_dot_keeps_the_users_files(tmp_path: Path):
    """The issue's data loss: `denas run job.yaml --out . --fresh` in a folder with a user's file."""
    cwd = tmp_path / "project"
    cwd.mkdir()
    (cwd / "thesis.tex").write_text("three years of work")
    (cwd / "data").mkdir()
    (cwd / "data" / "x.csv").write_text("1,2\n")
    proc = subprocess.run(
        [sys.executable, "-m", "denas", "run", str(job_file(tmp_path)), "--out", ".", "--fresh"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert (cwd / "thesis.tex").read_text() == "three years of work"
    assert (cwd / "data" / "x.csv").exists()
    assert sorted(p.name for p in cwd.iterdir()) == ["data", "thesis.tex"]  # nothing written either
    assert "Traceback" not in proc.stderr
    # says what is there and what to do
    assert "thesis.tex" in proc.stderr and "data/" in proc.stderr
    assert "not a DeNAS run folder" in proc.stderr and "--out runs/digits" in proc.stderr


@pytest.mark.parametrize("fresh", [False, True])
def test_an_unmarked_non_empty_folder_is_refused(tmp_path: Path, fresh: bool):
    out = tmp_path / "out"
    out.mkdir()
    (out / "status.json").write_text("{}")  # e.g. an older DeNAS's run, or a user's own file
    with pytest.raises(rundir.RunDirError) as err:
        rundir.prepare(out, load_job(SAMPLE), fresh=fresh)
    message = str(err.value)
    assert "status.json" in message and rundir.MARKER in message and "older DeNAS" in message
    assert (out / "status.json").read_text() == "{}"


def test_fresh_removes_only_deNAS_entries_and_never_follows_symlinks(tmp_path: Path):
    job = load_job(SAMPLE)
    out = tmp_path / "out"
    fake_finished_run(out, job)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    (out / "notes.txt").write_text("mine")
    (out / "link-out").symlink_to(outside)  # a user's link at the top
    (out / "search" / "link-in").symlink_to(outside)  # and one inside a DeNAS folder
    (out / "plots" / "target-file").symlink_to(outside / "precious.txt")

    found = rundir.prepare(out, job, fresh=True)

    assert (outside / "precious.txt").read_text() == "keep me"
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "link-out").is_symlink() and (out / "search" / "link-in").is_symlink()
    assert (out / "plots" / "target-file").is_symlink()
    for gone in ("status.json", "result.json", "report.html", "train", "logs", "model"):
        assert not (out / gone).exists(), gone  # model/ held DeNAS's export card: DeNAS's
    assert not (out / "search" / "result.json").exists()
    assert {"notes.txt", "link-out", "search/link-in", "plots/target-file"} <= set(found.kept)
    assert rundir.read_marker(out)["job"] == "digits"  # still (again) a marked run folder


@pytest.mark.parametrize(
    "users_model",
    [
        {"weights.bin": "my own model"},  # no card at all
        {"card.json": '{"model": "resnet50", "author": "me"}', "weights.bin": "mine"},  # not DeNAS's card
        {"card.json": "not json", "weights.bin": "mine"},
    ],
)
def test_fresh_keeps_a_users_own_model_folder(tmp_path: Path, users_model: dict[str, str]):
    """model/ is DeNAS's only while it holds DeNAS's export card; a user's model/ survives --fresh."""
    job = load_job(SAMPLE)
    out = tmp_path / "out"
    fake_finished_run(out, job)
    shutil.rmtree(out / "model")
    (out / "model").mkdir()
    for name, text in users_model.items():
        (out / "model" / name).write_text(text)

    found = rundir.prepare(out, job, fresh=True)

    assert {p.name: p.read_text() for p in (out / "model").iterdir()} == users_model
    assert "model" in found.kept
    assert not (out / "train").exists() and not (out / "status.json").exists()  # DeNAS's went


def test_fresh_keeps_a_model_link_and_what_it_points_to(tmp_path: Path):
    job = load_job(SAMPLE)
    out = tmp_path / "out"
    fake_finished_run(out, job)
    shutil.rmtree(out / "model")
    elsewhere = tmp_path / "exports"
    denas_card(elsewhere)  # even a DeNAS export behind a link: the link is the user's
    (out / "model").symlink_to(elsewhere)

    found = rundir.prepare(out, job, fresh=True)

    assert (out / "model").is_symlink() and (elsewhere / "model.onnx").read_bytes() == b"onnx"
    assert "model" in found.kept


def test_the_marker_lists_the_export_folder_as_conditionally_owned(tmp_path: Path):
    out = tmp_path / "out"
    rundir.prepare(out, load_job(SAMPLE))
    marker = rundir.read_marker(out)
    assert "model/" in marker["ownEntries"] and "card.json" in marker["note"]


def test_out_that_is_a_file_or_under_a_file_is_refused(tmp_path: Path):
    job = load_job(SAMPLE)
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        with pytest.raises(rundir.RunDirError, match="file"):
            rundir.prepare(out, job)
    assert afile.read_text() == "x"


# ----- a run folder belongs to one job --------------------------------------------------------------
def test_another_jobs_folder_is_refused(tmp_path: Path):
    out = tmp_path / "out"
    fake_finished_run(out, load_job(SAMPLE))
    other = load_job(job_file(tmp_path, name="other"))
    with pytest.raises(rundir.RunDirError, match="holds the run of job 'digits', and this is job 'other'"):
        rundir.prepare(out, other)
    assert json.loads((out / "status.json").read_text())["phase"] == "Succeeded"


def test_the_unchanged_finished_job_is_done(tmp_path: Path):
    out = tmp_path / "out"
    job = load_job(SAMPLE)
    fake_finished_run(out, job)
    # replicas only change where the search runs, not what it finds (as for the operator)
    same = load_job(job_file(tmp_path, **{"search.replicas": 1, "training.backoffLimit": 7}))
    found = rundir.prepare(out, same)
    assert found.done and not found.rerun


def test_an_edited_search_field_reruns_search_and_training_and_names_the_field(tmp_path: Path):
    out = tmp_path / "out"
    fake_finished_run(out, load_job(SAMPLE))
    edited = load_job(job_file(tmp_path, **{"constraints.maxParams": 60000}))
    found = rundir.prepare(out, edited)
    assert not found.done and found.rerun == ["search", "training"]
    assert found.changes == ["spec.constraints.maxParams: 200000 -> 60000"]
    # no stale result can be shown as the new job's
    assert not (out / "result.json").exists() and not (out / "search" / "result.json").exists()
    assert not (out / "train" / "metrics.json").exists()
    status = json.loads((out / "status.json").read_text())
    assert status["phase"] == "Pending" and not status["conditions"] and "bestStructures" not in status
    assert (out / "logs" / "search-0.log").exists()  # logs of the earlier attempt are kept
    assert rundir.read_marker(out)["spec"]["constraints"]["maxParams"] == 60000


def test_an_edited_training_field_reruns_only_training(tmp_path: Path):
    out = tmp_path / "out"
    fake_finished_run(out, load_job(SAMPLE))
    edited = load_job(job_file(tmp_path, **{"training.epochs": 2}))
    found = rundir.prepare(out, edited)
    assert found.rerun == ["training"] and found.changes == ["spec.training.epochs: 8 -> 2"]
    assert (out / "search" / "result.json").exists() and (out / "result.json").exists()
    assert not (out / "train").exists()
    status = json.loads((out / "status.json").read_text())
    # the new model needs a new export: the old one's success, modelRef and time are forgotten
    assert {c["type"] for c in status["conditions"]} == {"SearchSucceeded"}
    assert "modelRef" not in status and list(status["stages"]) == ["validate", "search", "report"]
    assert (out / "model" / "card.json").exists()  # replaced by the new export, not deleted before it


def test_the_operator_and_denas_run_share_one_search_fingerprint():
    from denas_operator import pods

    from denas import fingerprints

    assert pods.search_fingerprint is fingerprints.search_fingerprint


# ----- failures in plain words ----------------------------------------------------------------------
TORCHRUN_WRAPPER = """\
E1204 05:24:52.825000 8809 torch/distributed/elastic/multiprocessing/api.py:874] failed (exitcode: 1) local_rank: 0
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/venv/lib/python3.11/site-packages/torch/distributed/launcher/api.py", line 277, in launch_agent
    raise ChildFailedError(
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
denas FAILED
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-04_05:24:52
  host      : localhost
  rank      : 1 (local_rank: 0)
  exitcode  : 1 (pid: 8837)
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================
"""


def test_the_root_cause_is_the_childs_error_not_torchruns_wrapper(tmp_path: Path):
    log = tmp_path / "train-1.log"
    log.write_text(
        "\n$ old command\nRuntimeError: an earlier attempt\n"
        "\n$ python -m torch.distributed.run ... -m denas train job.yaml\n"
        "Traceback (most recent call last):\n"
        '  File "/src/denas/train/loop.py", line 119, in train\n'
        "    state = checkpoint.load_checkpoint(ckpt_dir)\n"
        "RuntimeError: /out/train/checkpoint.pt: unreadable checkpoint (bad magic); delete it\n"
        + TORCHRUN_WRAPPER
    )
    failure = read_failure(log, "train-1", 1)
    assert (
        failure.cause
        == "RuntimeError: /out/train/checkpoint.pt: unreadable checkpoint (bad magic); delete it"
    )
    assert failure.rank == 1
    text = "\n".join(failure.tail)
    assert "Root Cause" not in text and "error_file" not in text and "ChildFailedError" not in text
    assert "an earlier attempt" not in text  # only the last invocation
    assert "load_checkpoint" in text


def test_a_denas_usage_error_is_the_root_cause():
    lines = clean_lines(
        "$ torchrun ...\n"
        "denas train: error: spec.training.dataset.path: data set 'cifar10' needs a path\n" + TORCHRUN_WRAPPER
    )
    assert (
        root_cause(lines) == "denas train: error: spec.training.dataset.path: data set 'cifar10' needs a path"
    )


def test_the_process_that_failed_first_is_shown_not_its_peers(tmp_path: Path):
    (tmp_path / "train-0.log").write_text("$ x\nRuntimeError: Connection reset by peer\n")
    (tmp_path / "train-1.log").write_text("$ x\nValueError: labels out of range\n")
    failures = [read_failure(tmp_path / f"train-{i}.log", f"train-{i}", 1) for i in (0, 1)]
    assert first_failure(failures).process == "train-1"


# ----- the report -----------------------------------------------------------------------------------
def test_human_numbers():
    from denas.local.report import human

    assert [human(89_812), human(1_198_000), human(950), human(2_500_000_000)] == [
        "89.8k",
        "1.2M",
        "950",
        "2.5G",
    ]


def test_the_training_curve_keeps_the_epoch_a_resumed_run_restarted_in(tmp_path: Path):
    """A resumed training emits {"event": "resumed", "epoch": 2}; it must not replace epoch 2's record."""
    from denas.local.plots import training_history

    (tmp_path / "logs").mkdir()
    events = [
        {"phase": "training", "epoch": 1, "loss": 1.0, "metric": 0.5},
        {"phase": "training", "epoch": 2, "loss": 0.8, "metric": 0.6},
        {"event": "resumed", "epoch": 2, "checkpoint": "x"},
        {"phase": "training", "epoch": 3, "loss": 0.6, "metric": 0.7},
    ]
    (tmp_path / "logs" / "training-events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    records, resumed_from = training_history(tmp_path)
    assert [(r["epoch"], r["loss"]) for r in records] == [(1, 1.0), (2, 0.8), (3, 0.6)]
    assert resumed_from == 2


def test_a_failed_runs_report_leads_with_the_failure(tmp_path: Path):
    from denas.local.report import write_html

    out = tmp_path / "out"
    rundir.prepare(out, load_job(SAMPLE))
    (out / "logs").mkdir()
    status = {
        "phase": "Failed",
        "conditions": [
            {"type": "SearchSucceeded", "status": "True", "reason": "SearchSucceeded", "message": ""},
            {"type": "TrainingRunning", "status": "False", "reason": "TrainingFailed", "message": ""},
            {
                "type": "Failed",
                "status": "True",
                "reason": "TrainingFailed",
                "message": "training process ...",
            },
        ],
        "bestStructures": [{"rank": 0, "hash": "abc", "deScore": 0.87739, "params": 93618, "flops": 2958000}],
        "stages": {
            "search": {"seconds": 31.4, "startTime": "t0", "completionTime": "t"},
            "training": {"seconds": 3.0, "startTime": "t1"},
        },
    }
    (out / "status.json").write_text(json.dumps(status))
    failure = {"process": "train-1", "rank": 1, "exit_code": 1, "cause": "ValueError: labels out of range"}
    (out / "logs" / "failure.json").write_text(json.dumps({**failure, "tail": ["line a", "line b"]}))
    page = write_html(out, "digits", []).read_text()
    body = page[page.index("<body>") :]
    assert body.index('id="failure"') < body.index('id="summary"') < body.index('id="top"')
    assert "ValueError: labels out of range" in body and "train-1" in body and "line b" in body
    assert "93.6k params" in body and "2.96M FLOPs" in body and "0.8774" in body
    assert "search 31 s, training 3 s (unfinished)" in body
