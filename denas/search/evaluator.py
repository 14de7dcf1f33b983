"""Scoring one candidate: analytic size, DE-Score and measured latency, as one JSON record.

A candidate's score depends only on its structure and the search's settings, never on which rank
scored it or what was scored before: the weights are initialised from a seed derived from the
structure's hash, and every candidate sees the same batch (seeded by the search seed): one of the
job's training data with the training loss when it has a dataset, else a synthetic one
(`denas.search.score_inputs`).

A *scorer* is any callable ``scorer(space, structure, seed, config) -> (scores, latency_ms)``
where ``scores`` holds ``"de_score"`` and every component (``latency_ms`` may be a
`MeasuredLatency`, whose ``flag`` lands in the record as ``latency_flag``); `DeNASScorer` (the default) uses
`denas.scores`.  Tests and benchmarks plug in cheap ones (``denas search --scorer module:attr``).
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from denas.search.config import SearchConfig, SearchError
from denas.search.score_inputs import label as score_inputs_label
from denas.search.score_inputs import score_inputs
from denas.search.score_store import ScoreProvenance, ScoreStore

log = logging.getLogger(__name__)

Scorer = Callable[[Any, dict, int, SearchConfig], tuple[dict[str, float], float | None]]


def candidate_seed(structure_hash: str, search_seed: int) -> int:
    """The seed of one candidate's weight initialisation: a function of its hash and the search seed."""
    return (int(structure_hash, 16) ^ (search_seed * 0x9E3779B1)) % (2**31 - 1)


class MeasuredLatency(float):
    """Milliseconds (a float, so every scorer's ``latency_ms`` reads the same) that may carry a
    ``flag``: why the measurement is doubtful (`denas.scores.LatencyResult.flag`), or None."""

    flag: str | None

    def __new__(cls, ms: float, flag: str | None = None) -> MeasuredLatency:
        value = super().__new__(cls, ms)
        value.flag = flag
        return value

    def __reduce__(self) -> tuple:  # pickled across ranks with its flag
        return (MeasuredLatency, (float(self), self.flag))


class DeNASScorer:
    """The real scorer: `denas.scores.score_model` on the search's scoring batch + `measure_latency`."""

    def __init__(self, measure: bool = True):
        self.measure = measure

    def __call__(
        self, space: Any, structure: dict, seed: int, config: SearchConfig
    ) -> tuple[dict, float | None]:
        import torch

        from denas.scores import score_model
        from denas.scores._model import map_tensors
        from denas.scores.descore import domain_key

        same_kernels_as_latency(config)
        score_cfg = config.score
        weights = {k: v for k, v in (score_cfg.get("weights") or {}).items() if k != "latency"}
        batch = score_inputs(space, config)  # the job's data and training loss, else synthetic
        torch.manual_seed(seed)
        scored, model = batch.build(structure)
        scores = score_model(
            scored,
            map_tensors(batch.inputs, torch.Tensor.clone),  # a proxy may not alter the shared batch
            batch.targets,
            loss_fn=batch.loss_fn,
            proxies=score_cfg.get("proxies") or None,
            # the user's weights update the domain's defaults key by key; a preset has its own
            # calibration (its networks can sit many spreads away from the full space's)
            weights=weights or None,
            domain=domain_key(config.domain, config.search_space),
            seed=seed,
        )
        latency = None
        if self.measure:
            measured = self.measure_latency(space, structure, config, model=model)
            latency = MeasuredLatency(measured.median_ms, measured.flag)
        return {k: float(v) for k, v in scores.items()}, latency

    def prepare(self, space: Any, config: SearchConfig) -> None:
        """Load the scoring batch before the search starts: data that cannot be loaded is a
        SearchError naming ``spec.training.dataset`` now, not a failure in generation 0."""
        score_inputs(space, config)

    def inputs_label(self, config: SearchConfig) -> str:
        """What result.json's ``scoreInputs`` says: ``dataset:<name>`` or ``synthetic``."""
        return score_inputs_label(config)

    def warm_up(self, space: Any, config: SearchConfig) -> None:
        """Score one small structure and drop the result: imports `denas.scores` (most of the
        cost) and lets torch set up its kernels.  Scores stay a function of the structure (each
        call re-seeds)."""
        import random

        rng = random.Random(config.seed)
        smallest = min((space.sample(rng) for _ in range(8)), key=space.count_flops)
        self(space, smallest, config.seed, config)

    def latency(self, space: Any, structure: dict, config: SearchConfig, model: Any = None) -> float:
        """Median ms of one measurement (the budget check and the pool calibration use it)."""
        return float(self.measure_latency(space, structure, config, model=model).median_ms)

    def measure_latency(self, space: Any, structure: dict, config: SearchConfig, model: Any = None) -> Any:
        """The full `denas.scores.LatencyResult` (median, p90, rounds, outlier runs, unstable)."""
        import torch

        from denas.scores import measure_latency

        lat_cfg = config.score.get("latency") or {}
        if model is None:
            torch.manual_seed(0)
            model = space.build(structure)
        inputs, _ = space.example_inputs(lat_cfg.get("batchSize", 1), seed=config.seed)
        result = measure_latency(
            model,
            inputs,
            threads=lat_cfg.get("threads", 1),
            warmup=lat_cfg.get("warmup", 3),
            repeats=lat_cfg.get("repeats", 10),
            ipex=config.ipex,
            bf16=config.bf16,
        )
        return result


def same_kernels_as_latency(config: SearchConfig) -> None:
    """Import IPEX before the first score when latency measurement may import it.

    Importing intel_extension_for_pytorch replaces torch's CPU kernels (conv, linear) for the
    rest of the process, which moves float32 gradients in the last digits: without this, the
    first candidates of a search (scored before the first latency measurement imported IPEX)
    and `denas score --no-latency` got other DE-Scores than the same structures scored later
    (1.70366019226 vs 1.70366019319). With it, a score depends on the structure alone."""
    if config.ipex != "off":
        from denas.scores.latency import import_ipex

        import_ipex()


def load_scorer(path: str | None) -> Scorer:
    """``None`` -> the real scorer; ``"package.module:attr"`` -> that callable (or class, instantiated)."""
    if not path:
        return DeNASScorer()
    module_name, _, attr = path.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr or "scorer")
    except (ImportError, AttributeError) as e:
        raise SearchError(
            f"--scorer: cannot load {path!r} ({e}); expected 'package.module:callable'"
        ) from None
    return obj() if isinstance(obj, type) else obj


#: the score store's subdirectory of latencies shared between jobs on identical hardware
LATENCY_DIR = "latency"


class Evaluator:
    """Turns structures into scored records. Holds no per-candidate state.

    With a `ScoreStore` (a campaign's), the hardware-free scores of a structure come from the
    store when another job computed them, and only latency is measured here (the scorer's
    ``latency(space, structure, config)``); a scorer without one never uses the store.

    Latency is shared too, but only between jobs on the *same hardware* (``hardware``: the
    fingerprint `denas.search.hardware` checks: CPU model, flags, usable cores, torch/IPEX) with
    the same latency settings: re-measuring a structure on an identical machine costs time and
    adds noise, and noise near a latency budget flips feasibility, so two cells on one CPU model
    would search apart for no reason.  Different hardware never shares (another sub-store key).
    """

    def __init__(
        self,
        space: Any,
        config: SearchConfig,
        scorer: Scorer | None = None,
        store: ScoreStore | None = None,
        hardware: dict[str, Any] | None = None,
    ):
        self.space = space
        self.config = config
        self.scorer = scorer or DeNASScorer()
        self.provenance = ScoreProvenance.of(self.scorer)
        self.store = store
        if store is not None and not callable(getattr(self.scorer, "latency", None)):
            log.warning(
                "scorer %s cannot measure latency alone; the score store is not used", self.provenance.scorer
            )
            self.store = None
        self.latency_store: ScoreStore | None = None
        self.latency_key = ""
        if self.store is not None and hardware is not None:
            import torch

            self.latency_store = self.store.sub(LATENCY_DIR)
            same = {k: v for k, v in hardware.items() if k != "id"}  # "id": this host, not its kind
            settings = [config.score.get("latency") or {}, config.ipex, config.bf16, torch.get_num_threads()]
            self.latency_key = json.dumps(["latency", same, settings], sort_keys=True, default=str)

    def prepare(self) -> None:
        """Run the scorer's ``prepare(space, config)`` if it has one: loads what scoring needs
        (the job's data) and raises SearchError before any work when it cannot."""
        hook = getattr(self.scorer, "prepare", None)
        if callable(hook):
            hook(self.space, self.config)

    def inputs_label(self) -> str:
        """result.json's ``scoreInputs``: what the scorer scores on (a plugged-in scorer: its name)."""
        hook = getattr(self.scorer, "inputs_label", None)
        if callable(hook):
            return str(hook(self.config))
        return f"scorer:{getattr(self.scorer, '__name__', type(self.scorer).__name__)}"

    def warm_up(self) -> None:
        """Run the scorer's ``warm_up(space, config)`` if it has one.  A failure here is left for
        the real scoring to report (with the candidate it concerns)."""
        hook = getattr(self.scorer, "warm_up", None)
        if not callable(hook):
            return
        try:
            hook(self.space, self.config)
        except Exception as e:  # noqa: BLE001 - only an optimisation
            log.warning("scorer warm-up failed (%s); scoring continues without it", e)

    def evaluate(self, structure: dict) -> dict[str, Any]:
        space, config = self.space, self.config
        h = space.hash(structure)
        start, cpu = time.perf_counter(), time.process_time()
        scores, latency, source = self._scores_and_latency(structure, h, candidate_seed(h, config.seed))
        record = make_record(
            structure,
            h,
            params=space.count_params(structure),
            flops=space.count_flops(structure),
            latency_ms=latency,
            scores=scores,
            config=config,
        )
        flag = getattr(latency, "flag", None)
        if flag:  # a doubtful latency measurement is shown, never silently used
            record["latency_flag"] = str(flag)
        record["score_s"] = round(time.perf_counter() - start, 4)
        record["score_cpu_s"] = round(time.process_time() - cpu, 4)
        record["score_source"] = source
        return record

    def _scores_and_latency(self, structure: dict, h: str, seed: int) -> tuple[dict, float | None, str]:
        """(scores, latency_ms, "computed" | "store")."""
        space, config, store = self.space, self.config, self.store
        if store is None:
            return (*self.scorer(space, structure, seed, config), "computed")
        key = store.key(h, config.score_key(), seed, self.provenance)
        stored = store.get_or_claim(key)
        if stored is not None:
            measure = getattr(self.scorer, "measure", True)
            latency = self.latency_of(structure) if measure else None
            return dict(stored), latency, "store"
        # lock order: the score's claim, then the latency's (a job holding only a latency claim
        # never waits for a score), so two jobs cannot wait on each other
        lat_key = self._latency_store_key(h)
        shared = self.latency_store.get_or_claim(lat_key) if lat_key else None
        try:
            scores, latency = self.scorer(space, structure, seed, config)
        except BaseException:
            store.release(key)  # let another job (or a retry) compute it
            if lat_key and shared is None:
                self.latency_store.release(lat_key)  # type: ignore[union-attr]
            raise
        if shared is not None:  # measured on identical hardware by another job: the same value
            latency = MeasuredLatency(shared["latency_ms"], shared.get("flag"))
        elif lat_key:
            self._put_latency(lat_key, h, latency)
        about = {"hash": h, "scoreKey": config.score_key(), "seed": seed}
        store.put(key, {k: float(v) for k, v in scores.items()}, {**about, **self.provenance.__dict__})
        return scores, latency, "computed"

    def latency_of(self, structure: dict) -> float | None:
        """The structure's latency on this hardware: shared by jobs on identical hardware when
        there is a store, else measured here (the scorer's ``latency``)."""
        space, config = self.space, self.config
        h = space.hash(structure)
        lat_key = self._latency_store_key(h)
        if not lat_key:
            return self.scorer.latency(space, structure, config)
        shared = self.latency_store.get_or_claim(lat_key)  # type: ignore[union-attr]
        if shared is not None:
            return MeasuredLatency(shared["latency_ms"], shared.get("flag"))
        try:
            latency = self.scorer.latency(space, structure, config)
        except BaseException:
            self.latency_store.release(lat_key)  # type: ignore[union-attr]
            raise
        self._put_latency(lat_key, h, latency)
        return latency

    def _latency_store_key(self, h: str) -> str:
        if self.latency_store is None:
            return ""
        return self.latency_store.key(h, self.latency_key, 0, self.provenance)

    def _put_latency(self, lat_key: str, h: str, latency: Any) -> None:
        if latency is None:  # nothing measured (no latency wanted): let a job that measures store it
            self.latency_store.release(lat_key)  # type: ignore[union-attr]
            return
        shared = {"latency_ms": float(latency), "flag": getattr(latency, "flag", None)}
        self.latency_store.put(lat_key, shared, {"hash": h, "latencyKey": self.latency_key})  # type: ignore[union-attr]


def make_record(
    structure: dict,
    structure_hash: str,
    params: int,
    flops: int,
    latency_ms: float | None,
    scores: dict[str, float],
    config: SearchConfig,
) -> dict[str, Any]:
    """One scored candidate. ``fitness`` is what the strategies maximise:
    de_score - weights.latency * ln(latency_ms) (a doubling of latency always costs the same)."""
    de = scores.get("de_score")
    if de is None:
        raise SearchError(f"the scorer returned no 'de_score' (got keys {sorted(scores)})")
    feasible, violation = True, None
    fitness: float | None = float(de)
    if not math.isfinite(de):
        feasible, violation, fitness = False, "score: de_score is not finite", None
    elif config.latency_weight and latency_ms is not None:
        fitness = float(de) - config.latency_weight * math.log(max(latency_ms, 1e-6))
    limit = config.constraints.max_latency_ms
    if limit is not None and latency_ms is not None and latency_ms > limit:
        feasible = False
        violation = f"spec.constraints.maxLatencyMs: measured {latency_ms:.3f} ms > {limit} ms"
    return {
        "hash": structure_hash,
        "structure": structure,
        "params": int(params),
        "flops": int(flops),
        "latency_ms": None if latency_ms is None else round(float(latency_ms), 6),
        "scores": {k: (float(v) if math.isfinite(v) else None) for k, v in scores.items()},
        "fitness": fitness,
        "feasible": feasible,
        "violation": violation,
    }
