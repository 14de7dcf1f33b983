"""The selection stage inside `denas search`: short training of the top-K on the job's real data.

After the train-free search, rank 0 takes the top-K distinct feasible candidates and runs
successive halving (`denas.search.selection`).  A rung's runs are spread over the search ranks the
same way scoring is (`DistributedPool`, kind ``"select"``): every rank trains its share, longest
first.  Each finished run is appended to ``OUT/selection.jsonl`` (rank 0's own at once, the
others' when the rung is gathered), so ``--resume`` after a kill repeats only what was lost.
The winner (best metric at the highest rung) leads ``result["best"]``; every entry keeps its
train-free rank beside its selection metric.

Training is in-process and single-rank per run (the search's process group belongs to the pool),
with `denas.train`'s task, optimizer, schedule, compute path and evaluation, on a bounded sample
of the training data (``maxTrainSamples``), measured on a validation split held out of the training
data (``maxEvalSamples``; the test split stays for judging the final model), so a rung takes seconds.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from denas.search.config import SearchError
from denas.search.score_store import ScoreProvenance, ScoreStore, training_code_version
from denas.search.selection import SelectionSettings, distinct_top, diverse_top, run_one, successive_halving
from denas.search.selection_surrogate import pick_extra

log = logging.getLogger(__name__)

LOG_FILE = "selection.jsonl"
#: spec.search.selection.diversity (denas.search.selection.diverse_top)
DIVERSITY = ("coverage", "none")


def settings_from_spec(spec: Mapping[str, Any]) -> SelectionSettings:
    """``spec.search.selection`` with the CRD defaults; on by default when the job trains."""
    raw = dict((spec.get("search") or {}).get("selection") or {})
    training = dict(spec.get("training") or {})
    enabled = raw.get("enabled")
    if enabled is None:
        enabled = bool(training.get("enabled", False))
    elif enabled and training.get("enabled") is False and not training.get("dataset"):
        raise SearchError(
            "spec.search.selection.enabled: Invalid value: true: selection trains on spec.training.dataset, "
            "which is unset while spec.training.enabled is false; name the data set or disable selection"
        )
    search = spec.get("search") or {}
    # unset topK: the default, but never more than the search can score (a tiny search still works)
    scored = search.get("population", 20) * search.get("generations", 10)
    s = SelectionSettings(
        enabled=bool(enabled),
        top_k=raw.get("topK", min(SelectionSettings.top_k, scored)),
        diversity=raw.get("diversity", SelectionSettings.diversity),
        min_epochs=raw.get("minEpochs", SelectionSettings.min_epochs),
        max_epochs=raw.get("maxEpochs", SelectionSettings.max_epochs),
        eta=raw.get("eta", SelectionSettings.eta),
        max_train_samples=raw.get("maxTrainSamples", SelectionSettings.max_train_samples),
        max_eval_samples=raw.get("maxEvalSamples", SelectionSettings.max_eval_samples),
        surrogate_extra=raw.get("surrogateExtra", SelectionSettings.surrogate_extra),
        surrogate_pool=raw.get("surrogatePool", SelectionSettings.surrogate_pool),
        interleave=raw.get("interleave", SelectionSettings.interleave),
        interleave_runs=raw.get("interleaveRuns", SelectionSettings.interleave_runs),
        dataset=dict(training.get("dataset") or {"name": "digits"}),
        batch_size=training.get("batchSize", 64),
        learning_rate=training.get("learningRate", 0.05),
    )
    return s


def check_settings(s: SelectionSettings, candidates: int) -> None:
    """Raise SearchError naming the field of ``spec.search.selection`` that cannot work."""
    p = "spec.search.selection"
    for name, value, lo in (
        ("topK", s.top_k, 1),
        ("minEpochs", s.min_epochs, 1),
        ("maxEpochs", s.max_epochs, 1),
        ("eta", s.eta, 2),
        ("surrogateExtra", s.surrogate_extra, 0),
        ("surrogatePool", s.surrogate_pool, 1),
        ("interleave", s.interleave, 0),
        ("interleaveRuns", s.interleave_runs, 1),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < lo:
            raise SearchError(f"{p}.{name}: Invalid value: {value!r}: must be an integer >= {lo}")
    if s.interleave > 0 and not s.enabled:
        raise SearchError(
            f"{p}.interleave: Invalid value: {s.interleave}: steering trains on the selection stage's data "
            f"and settings, which is off; set {p}.enabled: true or interleave: 0"
        )
    if s.diversity not in DIVERSITY:
        raise SearchError(
            f"{p}.diversity: Unsupported value: {s.diversity!r}: supported values: "
            + ", ".join(f'"{d}"' for d in DIVERSITY)
        )
    if s.max_epochs < s.min_epochs:
        raise SearchError(
            f"{p}.maxEpochs: Invalid value: {s.max_epochs}: must be >= {p}.minEpochs ({s.min_epochs})"
        )
    if s.enabled and s.top_k > candidates:
        raise SearchError(
            f"{p}.topK: Invalid value: {s.top_k}: the search scores at most {candidates} candidates "
            "(spec.search.population x spec.search.generations); lower topK or search longer"
        )


class ShortTrainer:
    """``trainer(structure, epochs) -> metric``: a fresh model trained ``epochs`` on bounded data."""

    def __init__(self, space: Any, config: Any):
        from denas.train import accel
        from denas.train.taskdata import load_task_data
        from denas.train.tasks import task_for

        settings, seed = config.selection, config.seed
        # one code path with scoring and training: the same loader, the space fitted the same way
        task_data = load_task_data(config.domain, config.search_space, settings.dataset, seed)
        data = task_data.data
        self.task_data, self.space = task_data, task_data.space
        # runs are measured on a validation split held out of the *training* data: the test split
        # judges the final model, so choosing on it would leak (and flatter the winner)
        self.train_set, self.test_set = validation_split(
            data.train, settings.max_train_samples, settings.max_eval_samples, seed
        )
        self.data = data
        self.task = task_for(data.task, data.info)
        self.higher_is_better = bool(self.task.higher_is_better)
        self.metric_name = self.task.metric_name
        self.settings, self.seed = settings, seed
        self.path = accel.choose_compute_path(config.ipex, config.bf16, space.name)

    def __call__(self, structure: dict, epochs: int) -> float:
        import torch
        from torch import nn
        from torch.utils.data import DataLoader

        from denas.train import accel
        from denas.train.distributed import ProcessInfo
        from denas.train.loop import TrainConfig, TrainingDiverged, _optimizer, _warmup_cosine, evaluate

        self.space.validate(structure)
        g = torch.Generator().manual_seed(self.seed)
        loader = DataLoader(
            self.train_set,
            batch_size=self.settings.batch_size,
            shuffle=True,
            generator=g,
            collate_fn=self.data.collate,
        )
        test_loader = DataLoader(
            self.test_set, batch_size=max(self.settings.batch_size, 32), collate_fn=self.data.collate
        )
        torch.manual_seed(self.seed)  # the same initial weights wherever (and whenever) this runs
        model = self.task_data.build(structure)  # the network `denas train` trains (span heads for QA)
        cfg = TrainConfig(out_dir=Path("."), learning_rate=self.settings.learning_rate, optimizer="sgd")
        if self.space.name in ("vit", "bert", "asr"):
            cfg.optimizer, cfg.weight_decay = "adamw", 0.01
        optimizer = _optimizer(model, cfg)
        model, optimizer = accel.optimize(model, optimizer, self.path)
        steps = max(1, epochs * len(loader))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(steps, cfg.warmup_fraction))
        for epoch in range(epochs):
            model.train()
            for inputs, targets in loader:
                with accel.autocast(self.path):
                    loss = self.task.loss(model(inputs), targets)
                if not math.isfinite(float(loss.detach())):
                    raise TrainingDiverged(f"the loss is {float(loss.detach())} in epoch {epoch + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
        metric, _ = evaluate(model, test_loader, self.task, self.path, ProcessInfo(0, 0, 1, 1, None))
        return float(metric)


def validation_split(dataset: Any, max_train: int | None, max_eval: int | None, seed: int) -> tuple[Any, Any]:
    """(train, validation) subsets of ``dataset``, seeded: a fifth (at most ``max_eval``) is held
    out, and at most ``max_train`` of the rest are trained on."""
    import torch
    from torch.utils.data import Subset

    n = len(dataset)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, n // 5)
    if max_eval is not None:
        n_val = min(n_val, max_eval)
    val, train = order[:n_val], order[n_val:]
    if max_train is not None:
        train = train[:max_train]
    return Subset(dataset, sorted(train)), Subset(dataset, sorted(val))


class RunHandler:
    """What every rank runs for one selection item; the trainer is built on first use.

    With a ``store`` (a campaign's, ``<score store>/selection``) a run another cell (or an earlier
    job on the store) finished is taken from it instead of trained again, and a run trained here is
    put there.  Its key is everything the metric depends on: the structure, the epochs, the data
    set and its bounds, the seed, batch size and learning rate, the domain and space settings, the
    compute path (fp32 / bf16 / IPEX) and a digest of the training code; not the CPU, like a
    DE-Score: a cell on another pool reuses it (its own training would differ only by floating-point
    summation order).  Failed runs are not stored: each cell tries them itself."""

    def __init__(self, space: Any, config: Any, store: ScoreStore | None = None):
        self.space, self.config = space, config
        self.trainer: ShortTrainer | None = None
        self.store = store
        self._key_parts: tuple[str, ScoreProvenance] | None = None  # settings, provenance: built once

    def get_trainer(self) -> ShortTrainer:
        if self.trainer is None:
            self.trainer = ShortTrainer(self.space, self.config)
        return self.trainer

    def run_key(self, item: dict) -> str:
        if self._key_parts is None:
            from denas.train import accel

            c, s = self.config, self.config.selection
            path = accel.choose_compute_path(c.ipex, c.bf16, self.space.name).name
            settings = {
                "domain": c.domain,
                "searchSpace": c.search_space,
                "dataset": s.dataset,
                "maxTrainSamples": s.max_train_samples,
                "maxEvalSamples": s.max_eval_samples,
                "batchSize": s.batch_size,
                "learningRate": s.learning_rate,
                "computePath": path,
            }
            provenance = ScoreProvenance(f"{__name__}:ShortTrainer", training_code_version())
            self._key_parts = (json.dumps(settings, sort_keys=True, default=str), provenance)
        settings_key, provenance = self._key_parts
        what = json.dumps([settings_key, item["epochs"]])
        return ScoreStore.key(item["hash"], what, self.config.seed, provenance)

    def __call__(self, item: dict) -> dict:
        started = time.monotonic()
        from denas.search.distributed import world_from_env

        key = self.run_key(item) if self.store is not None else None
        if key is not None:
            stored = self.store.get_or_claim(key)  # type: ignore[union-attr]
            if stored is not None:  # trained by another cell: its metric, not trained again
                run = {"hash": item["hash"], "rung": item["rung"], "epochs": item["epochs"]}
                return {
                    **run,
                    "metric": stored["metric"],
                    "status": "ok",
                    "source": "store",
                    "rank": world_from_env()[0],
                    "train_s": 0.0,
                }
        stored_it = False
        try:
            run = run_one(self.get_trainer(), item, item["rung"], item["epochs"])
            if key is not None and run["status"] == "ok":
                about = {"hash": item["hash"], "epochs": item["epochs"], "seed": self.config.seed}
                self.store.put(key, {"metric": run["metric"]}, about)  # type: ignore[union-attr]
                stored_it = True
        finally:
            if key is not None and not stored_it:
                self.store.release(key)  # type: ignore[union-attr]
        return {**run, "rank": world_from_env()[0], "train_s": round(time.monotonic() - started, 3)}

    def cost(self, item: dict) -> float:
        return float(self.space.count_flops(item["structure"])) * item["epochs"]


def _load_done(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill: that run is simply trained again
            break
    return out


def run_selection(
    *,
    config: Any,
    out_dir: Path,
    archive: dict,
    result: dict,
    pool: Any,
    handler: RunHandler,
    progress: Any,
    metrics: Any,
    resume: bool,
    steered: list[dict] = (),  # type: ignore[assignment]
) -> dict:
    """Rank 0: run the stage and rewrite ``result`` (best order, a ``selection`` section)."""
    from denas.search.runner import public
    from denas.search.strategies import rank_records

    s: SelectionSettings = config.selection
    started = time.monotonic()
    feasible = [r for r in archive.values() if r["feasible"] and r["fitness"] is not None]
    ranked = rank_records(feasible)
    train_free_rank = {r["hash"]: i for i, r in enumerate(ranked)}
    candidates = diverse_top(ranked, s.top_k, s.diversity)
    log_path = out_dir / LOG_FILE
    done = _load_done(log_path) if resume else []
    if not resume:
        log_path.write_text("")
    # the search's steering runs are rung-0 runs already: never trained again, they join rung 0
    steer_runs = [{k: v for k, v in r.items() if k != "structure"} for r in steered]
    known = {(r["hash"], r["rung"]) for r in done}
    for run in steer_runs:
        if (run["hash"], run["rung"]) not in known:
            done.append(run)
    steer_cands = [archive[r["hash"]] for r in steer_runs if r["hash"] in archive]
    trainer = handler.get_trainer()  # rank 0 needs the metric's direction (and fails early on bad data)
    rungs = s.rungs()

    def keep(run: dict) -> None:
        with open(log_path, "a") as f:
            f.write(json.dumps(run) + "\n")

    def map_rung(todo: list[tuple[dict, int, int]]) -> list[dict]:
        items = [{"hash": c["hash"], "structure": c["structure"], "rung": r, "epochs": e} for c, r, e in todo]
        mine: set[tuple[str, int]] = set()

        def on_run(run: dict) -> None:  # rank 0's own runs, kept as they finish
            mine.add((run["hash"], run["rung"]))
            keep(run)
            metrics.observe_selection(run)
            tick(run["rung"])

        runs = pool.map(items, on_record=on_run, kind="select", cost=handler.cost)
        for run in runs:  # the other ranks' runs come back with the gather
            if (run["hash"], run["rung"]) not in mine:
                keep(run)
                metrics.observe_selection(run)
        state["done"] = state["total"]  # the other ranks' runs are done too
        emit()
        return runs

    state = {"rung": 0, "done": 0, "total": 0}

    def on_rung(rung: int, finished: int, total: int) -> None:
        state.update(rung=rung, done=finished, total=total)
        emit()

    def tick(rung: int) -> None:
        state["done"] += 1
        emit()

    def emit() -> None:
        metrics.set_selection(state["rung"], state["done"], state["total"])
        progress.event(
            {
                "event": "selection",
                "selection": {
                    "rung": state["rung"],
                    "rungs": len(rungs),
                    "done": state["done"],
                    "total": state["total"],
                },
            }
        )

    surrogate: dict[str, Any] = {}

    def expand(trained: list[tuple[dict, dict]]) -> list[dict]:
        """Rung 0 grows by the steering runs (already trained) and the selection surrogate's picks."""
        chosen = {c["hash"] for c in candidates}
        joined = [c for c in steer_cands if c["hash"] not in chosen]
        candidates.extend(joined)
        chosen |= {c["hash"] for c in joined}
        seen = {c["hash"] for c, _ in trained}
        trained = trained + [
            (archive[r["hash"]], r)
            for r in steer_runs
            if r["status"] == "ok" and r["hash"] in archive and r["hash"] not in seen
        ]
        pool = [c for c in distinct_top(ranked, s.surrogate_pool) if c["hash"] not in chosen]
        picked, info = pick_extra(
            trainer.space,
            [(c, r["metric"]) for c, r in trained],
            pool,
            s.surrogate_extra,
            higher_is_better=trainer.higher_is_better,
        )
        if s.surrogate_extra > 0:
            surrogate.update(info)
        candidates.extend(picked)  # they are ranked and reported like the top-K
        log.info(
            "selection surrogate: fitted on %d rung-0 runs, adds %d of %d",
            len(trained),
            len(picked),
            len(pool),
        )
        return joined + picked

    out = successive_halving(
        list(candidates),
        trainer,
        s,
        higher_is_better=trainer.higher_is_better,
        done=done,
        map_rung=map_rung,
        on_rung=on_rung,
        expand=expand if s.surrogate_extra > 0 or steer_cands else None,
    )
    # the winner first, then the other candidates by the highest rung they reached and their metric
    # there, then every candidate that was not trained in train-free order
    sign = 1.0 if trainer.higher_is_better else -1.0
    last: dict[str, dict] = {}
    for run in out["runs"]:
        last[run["hash"]] = run
    trained = sorted(
        (r for r in candidates if r["hash"] in last),
        key=lambda r: (
            0 if out["winner"] is not None and r["hash"] == out["winner"]["hash"] else 1,
            last[r["hash"]]["status"] != "ok",
            -last[r["hash"]]["rung"],
            -sign * (last[r["hash"]]["metric"] or 0.0),
        ),
    )
    order = trained + [r for r in ranked if r["hash"] not in last]
    best = []
    for r in order[: config.top_k]:  # spec.search.topK, as without selection; every run is in "selection"
        entry = public(r)
        entry["trainFreeRank"] = train_free_rank[r["hash"]]
        if r["hash"] in last:
            run = last[r["hash"]]
            entry["selection"] = {k: run.get(k) for k in ("rung", "epochs", "metric", "status", "error")}
            entry["selection"]["metricName"] = trainer.metric_name
        best.append(entry)
    result["best"] = best
    # short-training runs this job trained vs took from a campaign's store (another cell trained them)
    reused = sum(1 for r in out["runs"] if r.get("source") == "store")
    result["selectionRunsComputed"] = len(out["runs"]) - reused
    result["selectionRunsReused"] = reused
    result["selection"] = {
        "settings": s.to_json(),
        "metric_name": trainer.metric_name,
        "higher_is_better": trainer.higher_is_better,
        "winner": out["winner"]["hash"] if out["winner"] else None,
        "rungs": out["rungs"],
        "runs": out["runs"],
        "elapsed_s": round(time.monotonic() - started, 3),
        # what a campaign report plots the runs against: each trained candidate's size and latency
        "candidates": {
            h: {k: archive[h].get(k) for k in ("params", "latency_ms")} for h in last if h in archive
        },
        # what the surrogate learned from rung 0 and whom it added (empty when surrogateExtra is 0)
        "surrogate": surrogate,
        "dataset": trainer.data.name,
        "train_samples": len(trainer.train_set),  # type: ignore[arg-type]
        # held out of the training split; the test split is never used for choosing
        "validation_samples": len(trainer.test_set),  # type: ignore[arg-type]
    }
    if out["winner"] is None:
        log.warning("selection: every candidate failed; best keeps the train-free order")
    return result
