"""Bad configurations fail fast, with a message naming the field and how to fix it."""

from __future__ import annotations

import json

import pytest
from search_support import FAKE, cli, config, read_result, spec, write_job

from denas.search import SearchConfig, SearchError, run_search
from denas.search.evaluator import load_scorer


@pytest.mark.parametrize(
    "search,field",
    [
        ({"strategy": "hill-climb"}, "spec.search.strategy"),
        ({"population": -3}, "spec.search.population"),
        ({"generations": 0}, "spec.search.generations"),
        ({"warmup": -1}, "spec.search.warmup"),
        ({"moveProposals": -2}, "spec.search.moveProposals"),
        ({"selectNum": 30}, "spec.search.selectNum"),
        ({"mutationNum": 0, "crossoverNum": 0}, "spec.search.mutationNum"),
        ({"mutationProb": 1.5}, "spec.search.mutationProb"),
        ({"strategy": "nsga2", "population": 3}, "spec.search.population"),
    ],
)
def test_bad_search_fields_are_named(search, field):
    s = spec()
    s["search"].update(search)
    with pytest.raises(SearchError) as err:
        SearchConfig.from_spec(s)
    assert str(err.value).startswith(field)


@pytest.mark.parametrize(
    "constraints,field",
    [
        ({"maxParams": 0}, "spec.constraints.maxParams"),
        ({"maxLatencyMs": -1.0}, "spec.constraints.maxLatencyMs"),
    ],
)
def test_bad_constraint_values_are_named(constraints, field):
    s = {**spec(), "constraints": constraints}
    with pytest.raises(SearchError, match=field):
        SearchConfig.from_spec(s)


@pytest.mark.parametrize(
    "constraints,field",
    [
        ({"maxParams": 1000}, "spec.constraints.maxParams"),
        ({"maxFlops": 1000}, "spec.constraints.maxFlops"),
        ({"maxLatencyMs": 0.001}, "spec.constraints.maxLatencyMs"),
    ],
)
def test_impossible_constraints_fail_before_any_scoring(constraints, field, tmp_path):
    with pytest.raises(SearchError) as err:
        run_search(config(constraints=constraints), tmp_path, scorer=_NeverScores())
    assert str(err.value).startswith(field)


class _NeverScores:
    """Measures latency (for the up-front check) but fails the test if asked to score."""

    def __call__(self, *args):
        raise AssertionError("a candidate was scored although the budgets are impossible")

    def latency(self, space, structure, config):
        return 5.0


def test_unknown_space_key_names_the_search_space_field(tmp_path):
    s = spec()
    s["searchSpace"]["depth_of_madness"] = 3
    with pytest.raises(SearchError, match=r"spec\.searchSpace\.depth_of_madness"):
        run_search(SearchConfig.from_spec(s), tmp_path, scorer=load_scorer(FAKE))


def test_cli_refuses_a_non_empty_out_dir_without_resume(tmp_path):
    job = write_job(tmp_path / "job.yaml", spec(population=4, generations=1))
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = cli(str(job), "--out", str(out), "--scorer", FAKE)
    assert proc.returncode == 2
    assert "not empty" in proc.stderr and "--resume" in proc.stderr
    assert not (out / "result.json").exists()


def test_cli_reports_schema_errors_with_the_field(tmp_path):
    s = spec()
    s["search"]["population"] = 1
    job = write_job(tmp_path / "job.yaml", s)
    proc = cli(str(job), "--out", str(tmp_path / "out"), "--scorer", FAKE)
    assert proc.returncode == 2
    assert "spec.search.population" in proc.stderr


def test_cli_writes_result_history_plots_and_progress(tmp_path):
    job = write_job(tmp_path / "job.yaml", spec(population=4, generations=2))
    out = tmp_path / "out"
    proc = cli(str(job), "--out", str(out), "--scorer", FAKE, "--progress-file", str(tmp_path / "p.json"))
    assert proc.returncode == 0, proc.stderr
    result = read_result(out)
    assert set(result) >= {
        "best",
        "pareto",
        "domain",
        "strategy",
        "seed",
        "evaluated",
        "generations",
        "hardware",
    }
    best = result["best"][0]
    assert set(best) >= {"structure", "hash", "params", "flops", "latency_ms", "scores"}
    assert "de_score" in best["scores"]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    gens = [e for e in events if e["event"] == "generation"]
    assert [e["generation"] for e in gens] == [1, 2]
    assert set(gens[0]) >= {"generation", "generations", "evaluated", "best_score", "elapsed_s"}
    assert json.loads((tmp_path / "p.json").read_text())["event"] == "result"
    lines = (out / "history.jsonl").read_text().splitlines()
    assert sum('"candidate"' in line for line in lines) == result["evaluated"]
    assert (out / "search_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert events[-1]["event"] == "result" and events[-1]["best_hash"] == best["hash"]


def test_resume_with_other_settings_is_refused(tmp_path):
    run_search(config(population=4, generations=1), tmp_path, scorer=load_scorer(FAKE), plots=False)
    with pytest.raises(SearchError, match=r"spec\.search changed"):
        run_search(config(population=6, generations=1), tmp_path, resume=True, scorer=load_scorer(FAKE))


def test_progress_mirrors_to_callback_and_kube_reporter(tmp_path, monkeypatch):
    import sys
    import types

    seen = {"progress": [], "result": [], "closed": 0}

    class Reporter:
        def progress(self, event):
            seen["progress"].append(event)

        def result(self, result):
            seen["result"].append(result)

        def close(self):
            seen["closed"] += 1

    module = types.ModuleType("denas.kube_report")
    module.reporter_from_env = lambda role, rank: Reporter() if (role, rank) == ("search", 0) else None
    monkeypatch.setitem(sys.modules, "denas.kube_report", module)
    monkeypatch.setenv("DENAS_RESULT_CONFIGMAP", "job-result")
    from denas.search.progress import Progress, kube_reporter

    events = []
    progress = Progress(2, on_event=events.append, reporter=kube_reporter(), bar=False)
    result = run_search(
        config(population=4, generations=2),
        tmp_path,
        scorer=load_scorer(FAKE),
        progress=progress,
        plots=False,
    )
    assert [e["generation"] for e in seen["progress"]] == [1, 2]
    assert seen["result"] == [result] and seen["closed"] == 1
    assert [e["event"] for e in events] == ["generation", "generation", "result"]
