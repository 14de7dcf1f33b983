"""The search loop: ask the strategy, score the new candidates (on every rank), tell, checkpoint.

Rank 0 owns the strategy, the archive of every scored candidate and the output directory; other
ranks only score.  After every generation the whole state (strategy with its RNG and optuna
study, archive, curve, elapsed time) is checkpointed atomically, so a kill loses at most the
generation in flight, and the score cache means even that generation's finished candidates are
not scored again.  A resumed search reaches the same result as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from denas.search import checkpoint as ckpt
from denas.search import hardware as hw
from denas.search.config import SearchConfig, SearchError
from denas.search.constraints import LatencyPredictor, check_satisfiable, make_admit
from denas.search.distributed import DistributedPool, LocalPool, default_threads, world_from_env
from denas.search.evaluator import Evaluator, Scorer
from denas.search.metrics import SearchMetrics
from denas.search.pool_latency import calibrate, flag_if_far_off
from denas.search.progress import Progress, kube_reporter, startup
from denas.search.score_store import SELECTION_DIR, ScoreStore
from denas.search.steer import Steering
from denas.search.strategies import Context, create, rank_records
from denas.search.surrogate import make_surrogate_rank

log = logging.getLogger(__name__)

PUBLIC_FIELDS = ("structure", "hash", "params", "flops", "latency_ms", "scores", "fitness", "generation")


def hardware_fingerprint() -> dict[str, Any]:
    try:
        from denas.scores import hardware_fingerprint as fingerprint
    except ImportError:
        import torch

        return {"machine": platform.machine(), "processor": platform.processor(), "torch": torch.__version__}
    result = fingerprint()
    return result.to_dict() if hasattr(result, "to_dict") else dict(result)


def load_space(config: SearchConfig) -> Any:
    from denas import spaces

    try:
        return spaces.get(config.domain, config.search_space)
    except ValueError as e:  # StructureError names "searchSpace.<key>" or "domain"
        raise SearchError(f"spec.{e}") from None


def prepare_out_dir(out_dir: Path, resume: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise SearchError(f"--out {out_dir}: exists and is not a directory")
    if out_dir.exists() and any(out_dir.iterdir()) and not resume:
        raise SearchError(
            f"--out {out_dir}: the directory is not empty; pass --resume to continue the search "
            "checkpointed there, or choose an empty (or new) directory"
        )
    out_dir.mkdir(parents=True, exist_ok=True)


def pareto_front(records: list[dict], objectives: tuple[str, ...]) -> list[dict]:
    """Non-dominated records: ``fitness`` is maximised, every other objective minimised."""

    def vec(r: dict) -> tuple[float, ...]:
        out = []
        for key in objectives:
            value = r.get(key)
            if key == "latency_ms" and value is None:
                value = r["flops"]  # unmeasured: FLOPs stand in for latency
            out.append(-float(value) if key == "fitness" else float(value))
        return tuple(out)

    points = [(vec(r), r) for r in records]
    front = []
    for p, r in points:
        dominated = any(all(a <= b for a, b in zip(q, p)) and q != p for q, _ in points)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: (-r["fitness"], r["hash"]))


def public(record: dict) -> dict:
    out = {k: record.get(k) for k in PUBLIC_FIELDS}
    if record.get("latency_flag"):
        out["latency_flag"] = record["latency_flag"]
    return out


def run_search(
    config: SearchConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    scorer: Scorer | None = None,
    threads: int | None = None,
    dist_timeout_s: float = 1800.0,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    progress_file: str | Path | None = None,
    progress: Progress | None = None,
    plots: bool = True,
    score_cache: str | Path | None = None,
    metrics: SearchMetrics | None = None,
    score_store: str | Path | None = None,
    select: Any | None = None,
) -> dict[str, Any] | None:
    """Run (or resume) a search; rank 0 returns the result dict, other ranks return None.

    ``select``: what trains one selection / steering run (default ``select_stage.RunHandler``:
    short training on the job's data); benchmarks replay a table through it."""
    import torch

    config.check()
    out_dir = Path(out_dir)
    space = load_space(config)
    rank, world = world_from_env()
    torch.set_num_threads(threads or default_threads())
    store = ScoreStore(score_store) if score_store else None
    hardware = hardware_fingerprint()
    evaluator = Evaluator(space, config, scorer, store=store, hardware=hardware)
    evaluator.prepare()  # the job's data (scoring batch) loads, or the search fails now naming it
    metrics = metrics or SearchMetrics()

    def evaluate(structure: dict) -> dict:
        record = evaluator.evaluate(structure)
        metrics.observe(record)
        return record

    from denas.search.select_stage import RunHandler

    # short training of the selection stage, on every rank (runs shared through the campaign's store)
    select = select or RunHandler(space, config, store=store.sub(SELECTION_DIR) if store else None)
    handlers = {"select": select}
    if world > 1:
        if rank == 0:
            startup("join", f"waiting for {world} search processes to join")
        pool: Any = DistributedPool(
            evaluate, rank, world, dist_timeout_s, cost=space.count_flops, handlers=handlers
        )
        if rank != 0:
            try:
                hw.check_ranks(pool.store, rank, world, hardware)
                # pay lazy imports and first-call set-up now, while rank 0 prepares the search,
                # instead of inside the first generation (where rank 0 would wait for it)
                evaluator.warm_up()
                if config.selection.enabled:
                    select.get_trainer()  # load the data now, not when the first rung starts
                pool.serve()
            finally:
                pool.close()
            return None
    else:
        pool = LocalPool(evaluate, handlers)
    try:
        if isinstance(pool, DistributedPool):
            hw.check_ranks(pool.store, rank, world, hardware)
        return _coordinate(
            config=config,
            hardware=hardware,
            out_dir=out_dir,
            resume=resume,
            space=space,
            evaluator=evaluator,
            pool=pool,
            on_event=on_event,
            progress_file=progress_file,
            progress=progress,
            plots=plots,
            cache_path=score_cache,
            metrics=metrics,
            select=select,
        )
    except BaseException as e:
        if isinstance(pool, DistributedPool):
            pool.abort(str(e))
        raise
    finally:
        pool.close()


def _coordinate(
    *,  # thirteen settings of one run: by name only, so none can land in another's place
    config,
    hardware,
    out_dir,
    resume,
    space,
    evaluator,
    pool,
    on_event,
    progress_file,
    progress,
    plots,
    cache_path,
    metrics,
    select,
):
    prepare_out_dir(out_dir, resume)
    cache = ckpt.ScoreCache(
        Path(cache_path) if cache_path else out_dir / ckpt.CACHE,
        f"{config.score_key()}:{json.dumps(hardware, sort_keys=True)}",
        evaluator.provenance,
    )
    state = ckpt.load_checkpoint(out_dir) if resume else None
    # through the evaluator: shared with the campaign's jobs on identical hardware (a store)
    latency_of = evaluator.latency_of if callable(getattr(evaluator.scorer, "latency", None)) else None
    if state is None:
        if config.constraints.max_latency_ms is not None and latency_of is not None:
            startup(
                "latency-calibration",
                "measuring latency of the smallest structures (can spec.constraints.maxLatencyMs be met?)",
            )
        check_satisfiable(space, config, latency_of)
        state = {"strategy": create(config), "archive": {}, "curve": [], "elapsed_s": 0.0, "history_size": 0}
        state["config"] = config.to_json()
        state["hardware"] = hw.stamp(hardware)  # where this search's latencies are measured
        (out_dir / ckpt.HISTORY).write_text("")
    else:
        _check_same_config(state, config, out_dir)
        hw.check_resume(state.get("hardware"), hardware, out_dir)
        state.setdefault("hardware", hw.stamp(hardware))
        with open(out_dir / ckpt.HISTORY, "r+b") as f:  # drop lines of the generation that was lost
            f.truncate(state["history_size"])
    if (
        config.constraints.max_latency_ms is not None
        and latency_of is not None
        and "latency_calibration" not in state
    ):
        # the pre-filter's predictor is fitted on this pool's own measurements from the start
        state["latency_calibration"] = calibrate(space, config, latency_of)
    strategy, archive, curve = state["strategy"], state["archive"], state["curve"]
    steering = Steering(config, space, pool, select) if config.selection.interleave > 0 else None
    progress = progress or Progress(
        config.generations, on_event=on_event, progress_file=progress_file, reporter=kube_reporter()
    )
    started = time.monotonic() - state["elapsed_s"]
    c = config.constraints

    while strategy.generation < config.generations:
        generation = strategy.generation
        if steering is not None and steering.due(state, generation):
            _steer(steering, state, archive, generation, out_dir)
        predictor = None
        if c.max_latency_ms is not None:
            predictor = LatencyPredictor(
                space, [*state.get("latency_calibration", ()), *archive.values()], domain=config.domain
            )
        steer_rank = steering.ranker(state, select.get_trainer().higher_is_better) if steering else None
        ctx = Context(
            space=space,
            config=config,
            admit=make_admit(space, c, predictor),
            archive=archive,
            surrogate_rank=steer_rank
            or (make_surrogate_rank(space, archive, config.seed) if config.surrogate else None),
        )
        logged = len(getattr(strategy, "parent_log", ()))
        structures = strategy.ask(ctx)
        hashes = [space.hash(s) for s in structures]
        todo: dict[str, dict] = {}
        for s, h in zip(structures, hashes):
            if h not in archive and cache.get(h) is None:
                todo.setdefault(h, s)
        for record in pool.map(
            list(todo.values()), on_record=_reporting(cache.put, progress, pool, generation, len(todo))
        ):
            cache.put(record)
        lines = []
        for h in hashes:
            if h not in archive:
                archive[h] = {**cache.get(h), "generation": generation, "index": len(archive)}
                flag_if_far_off(archive[h], predictor)
                lines.append(json.dumps({"event": "candidate", **archive[h]}))
        strategy.tell(ctx, [archive[h] for h in hashes])
        best = rank_records(list(archive.values()))[:1]
        best_score = best[0]["fitness"] if best and best[0]["feasible"] else None
        metrics.set_best(best_score)
        metrics.set_generation(strategy.generation)
        event = {
            "event": "generation",
            "generation": strategy.generation,
            "generations": config.generations,
            "evaluated": len(archive),
            "new": len(lines),
            "best_score": best_score,
            "elapsed_s": round(time.monotonic() - started, 3),
        }
        parents = {h for _, ps in getattr(strategy, "parent_log", ())[logged:] for h in ps}
        if parents:  # which population members this generation's children came from
            event["parents"] = sorted(parents)
        if ctx.rejected:
            event["rejected"] = dict(ctx.rejected)
        if steer_rank is not None:  # this generation's proposals were ordered by the steering runs
            event["steered"] = True
        curve.append({k: event[k] for k in ("generation", "evaluated", "best_score")})
        lines.append(json.dumps(event))
        with open(out_dir / ckpt.HISTORY, "a") as f:
            f.write("".join(line + "\n" for line in lines))
        state.update(elapsed_s=event["elapsed_s"], history_size=(out_dir / ckpt.HISTORY).stat().st_size)
        ckpt.save_checkpoint(out_dir, state)
        progress.event(event)

    result = build_result(config, strategy, archive, hardware, time.monotonic() - started)
    # float32 kernels sum in another order with another thread count: `denas score` of these
    # structures uses the same count, so it prints exactly these scores
    result["threads"] = _torch_threads()
    result["scoreInputs"] = evaluator.inputs_label()  # "dataset:<name>" or "synthetic"
    if config.selection.enabled:  # the next stage: short training of the top-K (its own module)
        from denas.search.select_stage import run_selection

        run_selection(
            config=config,
            out_dir=out_dir,
            archive=archive,
            result=result,
            pool=pool,
            handler=select,
            progress=progress,
            metrics=metrics,
            resume=resume,
            steered=state.get("steer_runs", []),
        )
    ckpt.atomic_write_json(out_dir / ckpt.RESULT, result)
    if plots:
        _plot(out_dir, config, curve, archive, result)
    progress.event({"event": "result", "result": result})
    progress.close()
    return result


def _steer(steering: Steering, state: dict, archive: dict, generation: int, out_dir: Path) -> None:
    """One steering round before ``generation``: train, log, checkpoint (a kill repeats only it)."""
    runs = steering.train(state, archive, generation)
    log.info(
        "steering before generation %d: %s",
        generation,
        ", ".join(
            f"{r['hash'][:8]} {r['metric']}" if r["status"] == "ok" else f"{r['hash'][:8]} failed"
            for r in runs
        ),
    )
    event = {
        "event": "steer",
        "generation": generation,
        "runs": [{k: v for k, v in r.items() if k != "structure"} for r in runs],
    }
    with open(out_dir / ckpt.HISTORY, "a") as f:
        f.write(json.dumps(event) + "\n")
    state["history_size"] = (out_dir / ckpt.HISTORY).stat().st_size
    ckpt.save_checkpoint(out_dir, state)


def _reporting(put: Callable[[dict], None], progress: Any, pool: Any, generation: int, total: int):
    """``put`` (the score cache), then tell ``progress`` how far this generation's scoring is.

    Rank 0 sees only its own records; the shared work counter of a distributed pool says how
    many candidates all ranks took, of which at most one per other rank is still in flight."""
    start, scored = getattr(progress, "start_generation", None), getattr(progress, "scored", None)
    if start is None or scored is None:  # a caller's own progress object
        return put
    start(generation + 1, total)
    mine = 0

    def on_record(record: dict) -> None:
        nonlocal mine
        put(record)
        mine += 1
        taken = getattr(pool, "taken", mine)
        done = max(mine, taken - (getattr(pool, "world_size", 1) - 1))
        scored(generation + 1, min(done, total), total)

    return on_record


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _check_same_config(state: dict, config: SearchConfig, out_dir: Path) -> None:
    old = state.get("config") or {}
    new = config.to_json()
    if old and old != new:
        diff = sorted(
            f"spec.{section}" for section in set(old) | set(new) if old.get(section) != new.get(section)
        )
        raise SearchError(
            f"--resume: the checkpoint in {out_dir} belongs to a search with different settings "
            f"({', '.join(diff)} changed); resume with the same manifest or use a new --out directory"
        )


def build_result(
    config: SearchConfig, strategy: Any, archive: dict, hardware: dict, elapsed_s: float
) -> dict:
    feasible = [r for r in archive.values() if r["feasible"] and r["fitness"] is not None]
    ranked = rank_records(feasible)
    front = pareto_front(feasible, strategy.objectives())
    return {
        "best": [public(r) for r in ranked[: config.top_k]],
        "pareto": [public(r) for r in front],
        "pareto_objectives": list(strategy.objectives()),
        "domain": config.domain,
        "strategy": config.strategy,
        "seed": config.seed,
        "evaluated": len(archive),
        "infeasible": len(archive) - len(feasible),
        # DE-Scores this search computed vs took from a campaign's score store (another job's)
        "scoresComputed": sum(1 for r in archive.values() if r.get("score_source", "computed") == "computed"),
        "scoresReused": sum(1 for r in archive.values() if r.get("score_source") == "store"),
        "generations": strategy.generation,
        "hardware": hardware,
        # doubtful latency measurements (disturbed in every timing round), so nobody trusts them blindly
        "latency_flagged": [
            {"hash": r["hash"], "latency_ms": r["latency_ms"], "flag": r["latency_flag"]}
            for r in archive.values()
            if r.get("latency_flag")
        ],
        "elapsed_s": round(elapsed_s, 3),
        "config": config.to_json(),
    }


def _plot(out_dir: Path, config: SearchConfig, curve: list, archive: dict, result: dict) -> None:
    from denas.search.plots import plot_curve, plot_pareto

    title = f"{config.domain} / {config.strategy} (seed {config.seed})"
    try:
        plot_curve(curve, out_dir / "search_curve.png", title)
        feasible = [r for r in archive.values() if r["feasible"] and r["fitness"] is not None]
        plot_pareto(feasible, result["pareto"], out_dir / "pareto.png", title)
    except Exception as e:  # noqa: BLE001 - a figure must never lose a finished search
        log.warning("could not draw the search plots: %s", e)
