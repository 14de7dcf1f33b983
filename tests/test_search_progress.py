"""Progress where the time goes: what start-up does, candidates scored inside a generation, stage times."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from search_support import spec, write_job

from denas import status as st
from denas.search.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
SLEEPY = "denas.search.fakes:sleep_scorer"


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "operator")]), **extra}


def test_json_progress_reports_candidates_inside_each_generation(tmp_path: Path):
    job = write_job(tmp_path / "job.yaml", spec(population=6, generations=2))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "denas",
            "search",
            str(job),
            "--out",
            str(tmp_path / "out"),
            "--scorer",
            SLEEPY,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(DENAS_FAKE_SCORE_S="0.01"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[0] == {
        "event": "startup",
        "stage": "imports",
        "message": "importing torch and the search space",
    }
    first_generation = events.index(next(e for e in events if e["event"] == "generation"))
    inside = [e for e in events[:first_generation] if e["event"] == "scored"]
    # before generation 1 ends: 0 of 6, then the first scored candidate (with an ETA), then 6 of 6
    assert [e["done"] for e in inside][:2] == [0, 1] and inside[-1]["done"] == inside[-1]["total"] == 6
    assert all(e["of_generation"] == 1 and e["generations"] == 2 for e in inside)
    assert inside[1]["eta_s"] is not None and inside[1]["eta_s"] >= 0
    assert any(e["event"] == "scored" and e["of_generation"] == 2 for e in events[first_generation:])


def test_scored_lines_are_throttled_but_keep_the_first_and_last():
    stream = io.StringIO()
    progress = Progress(3, stream=stream, bar=False)
    progress.start_generation(1, 500)
    for done in range(1, 501):  # far faster than one line per second
        progress.scored(1, done, 500)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["done"] for e in lines] == [0, 1, 500]


def _torch_import_line(lines: list[str]) -> int:
    """The line -X importtime writes when the `torch` package (at any nesting depth) is imported."""
    return next(
        i
        for i, line in enumerate(lines)
        if line.startswith("import time:") and line.split("|")[-1].strip() == "torch"
    )


def test_denas_search_says_what_start_up_does_before_importing_torch(tmp_path: Path):
    job = write_job(tmp_path / "job.yaml", spec(population=4, generations=1))
    proc = subprocess.run(  # -X importtime logs each import to stderr as it completes
        [sys.executable, "-X", "importtime", "-m", "denas", "search", str(job), "--out", str(tmp_path / "o")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        env=_env(),
    )
    lines = proc.stdout.splitlines()
    startup = next(i for i, line in enumerate(lines) if '"event": "startup"' in line)
    assert startup < _torch_import_line(lines), "\n".join(lines[:5])


def test_denas_run_prints_its_start_up_line_before_importing_torch(tmp_path: Path):
    manifest = {
        "apiVersion": "denas.io/v1alpha1",
        "kind": "DeNASJob",
        "metadata": {"name": "startup"},
        "spec": {"domain": "cnn", "searchSpace": {"colour": "red"}},  # fails at the space check
    }
    job = tmp_path / "job.yaml"
    job.write_text(json.dumps(manifest))
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "denas", "run", str(job), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(),
    )
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    first = next(i for i, line in enumerate(lines) if not line.startswith("import time:"))
    assert lines[first].startswith(f"denas run: checking {job}")
    assert first < _torch_import_line(lines)
    assert "spec.searchSpace.colour" in proc.stderr


def test_stage_times_are_recorded_in_order_and_summarised():
    status: dict = {}
    st.record_stage_time(status, "validate", 0.42)
    st.record_stage_time(status, "search", 12.3456)
    st.record_stage_time(status, "training", 185.0)
    assert status["stages"] == {
        "validate": {"seconds": 0.42},
        "search": {"seconds": 12.346},
        "training": {"seconds": 185.0},
    }
    assert st.stage_times_line(status) == "validate 0.4 s, search 12 s, training 3 min 05 s"
    status["stages"]["report"] = {"startTime": "t"}  # begun, not timed yet: left out of the line
    assert st.stage_times_line(status).endswith("training 3 min 05 s")


def test_the_terminal_bars_show_start_up_lines_and_a_bar_inside_the_generation(capsys):
    from denas.local.command import _Bars

    bars = _Bars("bar")
    bars("search", {"event": "startup", "stage": "imports", "message": "importing torch"})
    for done in (0, 3):
        bars("search", {"event": "scored", "of_generation": 1, "generations": 2, "done": done, "total": 6})
    inner = bars.current["search-generation"]
    assert (inner.n, inner.total) == (3, 6)
    bars("search", {"event": "scored", "of_generation": 2, "generations": 2, "done": 1, "total": 4})
    assert bars.current["search-generation"] is not inner and bars.current["search-generation"].total == 4
    bars(
        "search",
        {"event": "generation", "generation": 1, "generations": 2, "evaluated": 6, "best_score": 0.5},
    )
    assert bars.current["search"].n == 1
    bars.close()
    assert "search: importing torch" in capsys.readouterr().err


def test_the_rung_bars_grow_when_the_surrogate_adds_runs_to_rung_0():
    """Rung 0 starts with topK runs; the selection surrogate's picks join it (12 + 4 by default):
    the bar's total follows, in `denas run` and in `denas search` alike."""
    from denas.local.command import _Bars

    first = {"rung": 0, "rungs": 3, "done": 12, "total": 12}
    grown = {"rung": 0, "rungs": 3, "done": 14, "total": 16}
    bars = _Bars("bar")
    for sel in (first, grown):
        bars("search", {"event": "selection", "selection": sel})
    bar = bars.current["selection rung 1/3"]
    assert (bar.n, bar.total) == (14, 16)
    bars.close()

    progress = Progress(3, stream=io.StringIO(), bar=True)
    for sel in (first, grown):
        progress.event({"event": "selection", "selection": sel})
    assert (progress.rung_bar.n, progress.rung_bar.total) == (14, 16)
    progress.close()
