"""Successive halving over the top-K (denas.search.selection), with a fake fidelity."""

from __future__ import annotations

import math

import pytest

from denas.search.selection import SelectionSettings, choices, distinct_top, diverse_top, successive_halving


def cands(n: int) -> list[dict]:
    return [{"hash": f"h{i}", "structure": {"q": i}} for i in range(n)]


def test_rungs_follow_eta_and_stop_at_max_epochs():
    assert SelectionSettings(top_k=8, min_epochs=1, max_epochs=4, eta=2).rungs() == [(1, 8), (2, 4), (4, 2)]
    assert SelectionSettings(top_k=9, min_epochs=1, max_epochs=9, eta=3).rungs() == [(1, 9), (3, 3), (9, 1)]
    # epochs are capped at maxEpochs, and a single survivor ends the stage
    assert SelectionSettings(top_k=8, min_epochs=1, max_epochs=3, eta=2).rungs() == [(1, 8), (2, 4), (3, 2)]
    assert SelectionSettings(top_k=2, min_epochs=1, max_epochs=16, eta=2).rungs() == [(1, 2), (2, 1)]
    assert (
        SelectionSettings(top_k=8, min_epochs=1, max_epochs=4, eta=2, surrogate_extra=0).cost_epochs() == 24
    )
    # the surrogate's extra candidates train at rung 0 (minEpochs each)
    assert (
        SelectionSettings(top_k=8, min_epochs=1, max_epochs=4, eta=2, surrogate_extra=4).cost_epochs() == 28
    )


def test_winner_is_best_at_highest_rung_not_at_the_first():
    # q=0 learns fast but plateaus; q=5 starts slow and ends best
    def fidelity(structure, epochs):
        q = structure["q"]
        return {0: 0.9, 5: 0.5 + 0.12 * epochs}.get(q, 0.3 + 0.1 * epochs - 0.01 * q)

    calls = []
    out = successive_halving(
        cands(8), lambda s, e: calls.append((s["q"], e)) or fidelity(s, e), SelectionSettings(top_k=8)
    )
    assert out["winner"]["hash"] == "h5"
    # every run is recorded with its rung, epochs and metric; 8 + 4 + 2 trained
    assert [(r["rung"], r["epochs"]) for r in out["runs"]] == [(0, 1)] * 8 + [(1, 2)] * 4 + [(2, 4)] * 2
    assert set(out["runs"][0]) >= {"hash", "rung", "epochs", "metric", "status"}
    assert len(calls) == 14
    assert {r["hash"] for r in out["runs"] if r["rung"] == 2} == {"h0", "h5"}


def test_lower_is_better_metrics_pick_the_smallest():
    out = successive_halving(
        cands(4), lambda s, e: 10.0 - s["q"], SelectionSettings(top_k=4, max_epochs=2), higher_is_better=False
    )
    assert out["winner"]["hash"] == "h3"


def test_crashed_and_diverged_candidates_are_recorded_and_dropped():
    def fidelity(structure, epochs):
        if structure["q"] == 3:
            raise RuntimeError("out of memory")
        if structure["q"] == 2:
            return math.nan
        return structure["q"] / 10

    out = successive_halving(cands(4), fidelity, SelectionSettings(top_k=4, max_epochs=2))
    failed = {r["hash"]: r for r in out["runs"] if r["status"] == "failed"}
    assert set(failed) == {"h2", "h3"}
    assert "out of memory" in failed["h3"]["error"] and failed["h3"]["metric"] is None
    assert "diverged" in failed["h2"]["error"]
    assert out["winner"]["hash"] == "h1"  # the stage went on without them
    assert out["rungs"][0]["failed"] == 2


def test_every_candidate_failing_returns_no_winner():
    out = successive_halving(cands(3), lambda s, e: 1 / 0, SelectionSettings(top_k=3))
    assert out["winner"] is None and len(out["runs"]) == 3


def test_resume_skips_finished_runs_and_reaches_the_same_winner():
    fid = lambda s, e: s["q"] * e + (5 if s["q"] == 1 and e >= 2 else 0)  # noqa: E731
    full = successive_halving(cands(8), fid, SelectionSettings(top_k=8))
    saved = []
    with pytest.raises(KeyboardInterrupt):

        def dying(s, e):
            if len(saved) == 10:
                raise KeyboardInterrupt  # killed in rung 1
            return fid(s, e)

        successive_halving(cands(8), dying, SelectionSettings(top_k=8), on_run=saved.append)
    again = []
    out = successive_halving(
        cands(8), lambda s, e: again.append(1) or fid(s, e), SelectionSettings(top_k=8), done=saved
    )
    assert len(again) == 14 - 10  # only the runs not finished before the kill
    assert out["winner"] == full["winner"] and out["runs"] == full["runs"]


def test_distinct_top_skips_duplicates_and_infeasible():
    recs = [
        {"hash": "a", "feasible": True},
        {"hash": "a", "feasible": True},
        {"hash": "b", "feasible": False},
        {"hash": "c", "feasible": True},
    ]
    assert [r["hash"] for r in distinct_top(recs, 5)] == ["a", "c"]
    assert [r["hash"] for r in distinct_top(recs, 1)] == ["a"]


def _cell(name: str, ops: str, feasible: bool = True) -> dict:
    return {"hash": name, "structure": {"ops": ops.split()}, "feasible": feasible}


def test_choices_are_the_leaves_of_the_structure_with_their_position():
    assert choices({"ops": ["conv", "skip"]}) == {(".ops[0]", "'conv'"), (".ops[1]", "'skip'")}
    nested = {"stages": [{"width": 16, "depth": 2}], "stem": 8}
    assert choices(nested) == {(".stages[0].width", "16"), (".stages[0].depth", "2"), (".stem", "8")}
    # the same value at another position is another choice
    assert choices({"ops": ["a", "b"]}) != choices({"ops": ["b", "a"]})


def test_coverage_trains_the_best_alternative_a_converged_top_k_would_miss():
    # a converged search: ranks 1-3 recombine two ideas with "x" on the last edge; rank 4 is the
    # best cell with "skip" there. Plain top-3 never trains it; coverage does, in rank order.
    ranked = [
        _cell("r1", "A A x"),
        _cell("r1", "A A x"),  # the same candidate twice in the archive: trained once
        _cell("r2", "B B x"),
        _cell("r3", "A B x"),  # brings nothing r1 and r2 do not already have
        _cell("bad", "A A skip", feasible=False),  # infeasible: never picked
        _cell("r4", "A A skip"),
        _cell("r5", "B A skip"),
    ]
    assert [r["hash"] for r in diverse_top(ranked, 3, "none")] == ["r1", "r2", "r3"]
    assert [r["hash"] for r in diverse_top(ranked, 3, "coverage")] == ["r1", "r2", "r4"]
    # once no candidate brings anything new, the best-ranked remaining ones fill the places
    assert [r["hash"] for r in diverse_top(ranked, 4, "coverage")] == ["r1", "r2", "r4", "r3"]


def test_coverage_skips_a_better_ranked_near_copy_for_a_new_choice():
    ranked = [
        _cell("a", "conv conv conv"),
        _cell("b", "conv conv conv2"),
        _cell("c", "conv conv conv2"),  # same choices as b, another hash: nothing new once b is in
        _cell("d", "skip conv conv"),
    ]
    assert [r["hash"] for r in diverse_top(ranked, 3, "coverage")] == ["a", "b", "d"]
    assert [r["hash"] for r in diverse_top(ranked, 3, "none")] == ["a", "b", "c"]
    # deterministic, and never more than there are distinct feasible candidates
    assert diverse_top(ranked, 3) == diverse_top(list(ranked), 3)
    assert len(diverse_top(ranked, 10)) == 4


# --- the selection surrogate (spec.search.selection.surrogateExtra) ---------------------------


class _LineSpace:
    """A space whose structure is one number ``x``; encode is that number."""

    def encode(self, structure: dict) -> list[float]:
        return [float(structure["x"])]


def _cand(x: float, fitness: float = 0.0) -> dict:
    return {"hash": f"h{x}", "structure": {"x": x}, "scores": {"de_score": fitness}, "fitness": fitness}


def test_surrogate_picks_the_pool_members_it_learned_to_expect_best():
    from denas.search.selection_surrogate import pick_extra

    # rung 0 says: larger x learns better; the train-free order of the pool says the opposite
    trained = [(_cand(x), 50.0 + 3.0 * x) for x in (1, 2, 3, 4)]
    pool = [_cand(x) for x in (0.5, 1.5, 9, 7, 0, 8)]
    picked, info = pick_extra(_LineSpace(), trained, pool, 2)
    assert [c["structure"]["x"] for c in picked] == [9, 8]
    assert info["fitted_on"] == 4 and [p["hash"] for p in info["picked"]] == ["h9", "h8"]
    # lower-is-better metrics (a loss) flip the direction
    picked, _ = pick_extra(_LineSpace(), trained, pool, 2, higher_is_better=False)
    assert [c["structure"]["x"] for c in picked] == [0, 0.5]


def test_surrogate_without_enough_results_falls_back_on_the_train_free_order():
    from denas.search.selection_surrogate import pick_extra

    pool = [_cand(x) for x in (5, 6, 7)]
    picked, info = pick_extra(_LineSpace(), [(_cand(1), 1.0)], pool, 2)
    assert picked == pool[:2] and "fallback" in info


def test_expand_adds_candidates_to_rung_zero_that_can_win():
    from denas.search.selection import SelectionSettings, successive_halving

    top = [_cand(x) for x in (1, 2, 3, 4)]
    extra = _cand(10)
    settings = SelectionSettings(enabled=True, top_k=4, min_epochs=1, max_epochs=2, eta=2, surrogate_extra=1)
    seen: list[list[tuple[str, float]]] = []

    def expand(trained):
        seen.append([(c["hash"], r["metric"]) for c, r in trained])
        return [extra, top[0]]  # a duplicate of a top-K candidate is not trained twice

    out = successive_halving(top, lambda s, e: s["x"] * e, settings, expand=expand)
    assert seen == [[("h1", 1.0), ("h2", 2.0), ("h3", 3.0), ("h4", 4.0)]]
    rung0 = [r["hash"] for r in out["runs"] if r["rung"] == 0]
    assert rung0 == ["h1", "h2", "h3", "h4", "h10"]
    assert out["winner"]["hash"] == "h10"
    assert out["rungs"][0]["trained"] == 5
    # without it the extra candidate is never trained
    assert successive_halving(top, lambda s, e: s["x"] * e, settings)["winner"]["hash"] == "h4"
    assert settings.cost_epochs() == 4 + 2 * 2 + 1
