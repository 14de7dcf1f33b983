"""The search's view of a DeNASJob spec: budgets, constraints and scoring, checked up front.

The CRD schema already rejects most bad values when a manifest goes through `denas.job.load_job`;
`SearchConfig.from_spec` checks them again because the engine is also called directly (tests,
benchmarks, notebooks), and adds the checks a schema cannot express (selectNum <= population, ...).
Every error names the field as a Kubernetes user would write it (``spec.search.population``).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from denas.search.selection import SelectionSettings


class SearchError(ValueError):
    """A search that cannot run or cannot go on. The message names the field or the failing part."""


@dataclass(frozen=True)
class Constraints:
    max_params: int | None = None
    max_flops: int | None = None
    max_latency_ms: float | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.max_params, self.max_flops, self.max_latency_ms))


@dataclass
class SearchConfig:
    domain: str
    search_space: dict[str, Any] = field(default_factory=dict)
    strategy: str = "ea"
    population: int = 20
    generations: int = 10
    seed: int = 0
    top_k: int = 5
    select_num: int | None = None
    mutation_num: int | None = None
    crossover_num: int | None = None
    mutation_prob: float = 0.3
    aging: bool = False
    warmup: int = 0
    #: how the warm-up pool is ranked: "score" (scored, counts as evaluations) or a free analytic
    #: size ("params" / "flops": largest first, within the budgets; no scoring spent)
    warmup_proxy: str = "score"
    move_proposals: int = 0
    surrogate: bool = False
    #: "single": one random stream for the whole search; "perSlot": every proposal slot of every
    #: generation draws from its own stream (seed, generation, slot) and parents are chosen by
    #: rendezvous hashing, so searches that differ only in their budgets propose the same
    #: structures wherever their populations agree (campaign cells share their scores)
    random_streams: str = "single"
    constraints: Constraints = field(default_factory=Constraints)
    #: ``spec.score`` as written (proxies, weights, batchSize, latency {...})
    score: dict[str, Any] = field(default_factory=dict)
    #: ``spec.hardware`` ipex / bf16 switches ("auto" | "on" | "off")
    ipex: str = "auto"
    bf16: str = "auto"
    #: ``spec.training.dataset`` when the job trains: candidates are scored on a batch of it with
    #: the training loss (`denas.search.score_inputs`); None scores on synthetic batches
    dataset: dict[str, Any] | None = None
    #: ``spec.search.selection`` (short training of the top-K after the search), see select_stage
    selection: SelectionSettings = field(default_factory=SelectionSettings)

    # ----- derived ea sizes (DE-NAS defaults: keep half, refill with mutants and crossovers) -----
    @property
    def parents(self) -> int:
        return self.select_num if self.select_num is not None else max(1, self.population // 2)

    @property
    def crossovers(self) -> int:
        return self.crossover_num if self.crossover_num is not None else self.population // 4

    @property
    def mutations(self) -> int:
        if self.mutation_num is not None:
            return self.mutation_num
        return max(1, self.population - self.parents - self.crossovers)

    @property
    def latency_weight(self) -> float:
        """``spec.score.weights.latency``: fitness = de_score - weight * ln(latency_ms)."""
        return float((self.score.get("weights") or {}).get("latency", 0.0))

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> SearchConfig:
        """Build from a DeNASJob ``spec`` (camelCase, CRD defaults applied or not)."""
        search = dict(spec.get("search") or {})
        cons = dict(spec.get("constraints") or {})
        hardware = dict(spec.get("hardware") or {})
        training = dict(spec.get("training") or {})
        if "domain" not in spec:
            raise SearchError("spec.domain: Required value: choose one of cnn, vit, bert, asr, nb201")
        config = cls(
            domain=spec["domain"],
            search_space=copy.deepcopy(dict(spec.get("searchSpace") or {})),
            strategy=search.get("strategy", "ea"),
            population=search.get("population", 20),
            generations=search.get("generations", 10),
            seed=search.get("seed", 0),
            top_k=search.get("topK", 5),
            select_num=search.get("selectNum"),
            mutation_num=search.get("mutationNum"),
            crossover_num=search.get("crossoverNum"),
            mutation_prob=search.get("mutationProb", 0.3),
            aging=bool(search.get("aging", False)),
            warmup=search.get("warmup", 0),
            warmup_proxy=search.get("warmupProxy", "score"),
            move_proposals=search.get("moveProposals", 0),
            surrogate=bool(search.get("surrogate", False)),
            random_streams=search.get("randomStreams", "single"),
            constraints=Constraints(cons.get("maxParams"), cons.get("maxFlops"), cons.get("maxLatencyMs")),
            score=copy.deepcopy(dict(spec.get("score") or {})),
            ipex=hardware.get("ipex", "auto"),
            bf16=hardware.get("bf16", "auto"),
            # the data the winner is trained on (the schema defaults it, and checks it fits the
            # domain, only when training is on): the search scores on it too
            dataset=copy.deepcopy(training["dataset"])
            if training.get("enabled", True) and training.get("dataset")
            else None,
        )
        from denas.search.select_stage import settings_from_spec

        config.selection = settings_from_spec(spec)
        if config.dataset is None and config.selection.enabled:
            # a search that trains its top candidates on a data set (selection without the final
            # training) scores them on that data set too, with the training loss
            config.dataset = copy.deepcopy(config.selection.dataset)
        config.check()
        return config

    def check(self) -> None:
        """Raise SearchError naming the first field that cannot work."""
        from denas.search.strategies import STRATEGIES  # the registry decides what is known

        if self.strategy not in STRATEGIES:
            raise SearchError(
                f"spec.search.strategy: Unsupported value: {self.strategy!r}: "
                f"supported values: {', '.join(sorted(STRATEGIES))}"
            )
        _int_at_least("spec.search.population", self.population, 2)
        _int_at_least("spec.search.generations", self.generations, 1)
        _int_at_least("spec.search.seed", self.seed, 0)
        _int_at_least("spec.search.topK", self.top_k, 1)
        _int_at_least("spec.search.warmup", self.warmup, 0)
        if self.warmup_proxy not in ("score", "params", "flops"):
            raise SearchError(
                f"spec.search.warmupProxy: Unsupported value: {self.warmup_proxy!r}: supported values: "
                "score, params, flops"
            )
        _int_at_least("spec.search.moveProposals", self.move_proposals, 0)
        if self.random_streams not in ("single", "perSlot"):
            raise SearchError(
                f"spec.search.randomStreams: Unsupported value: {self.random_streams!r}: supported values: "
                "single, perSlot"
            )
        for name, value in (("selectNum", self.select_num), ("mutationNum", self.mutation_num)):
            if value is not None:
                _int_at_least(f"spec.search.{name}", value, 1 if name == "selectNum" else 0)
        if self.crossover_num is not None:
            _int_at_least("spec.search.crossoverNum", self.crossover_num, 0)
        if self.parents > self.population:
            raise SearchError(
                f"spec.search.selectNum: Invalid value: {self.parents}: must be <= spec.search.population "
                f"({self.population})"
            )
        if self.mutations + self.crossovers < 1:
            raise SearchError(
                "spec.search.mutationNum: Invalid value: 0: mutationNum + crossoverNum must be >= 1, "
                "or evolution makes no children"
            )
        if not isinstance(self.mutation_prob, (int, float)) or not 0 <= self.mutation_prob <= 1:
            raise SearchError(
                f"spec.search.mutationProb: Invalid value: {self.mutation_prob!r}: must be in [0, 1]"
            )
        if self.strategy == "nsga2" and self.population < 4:
            raise SearchError(
                f"spec.search.population: Invalid value: {self.population}: must be at least 4 for strategy nsga2"
            )
        if self.surrogate and self.strategy not in ("ea", "random"):
            raise SearchError(
                f"spec.search.surrogate: Invalid value: true: the surrogate pre-filters proposals of ea and "
                f"random only; strategy {self.strategy} proposes through optuna, which models the scores "
                "itself: remove surrogate or use strategy ea"
            )
        if self.selection.interleave > 0 and self.strategy not in ("ea", "random"):
            raise SearchError(
                f"spec.search.selection.interleave: Invalid value: {self.selection.interleave}: steering "
                f"reorders the proposals of ea and random only; strategy {self.strategy} proposes through "
                "optuna: set interleave to 0 or use strategy ea"
            )
        from denas.search.select_stage import check_settings

        check_settings(self.selection, self.population * self.generations)
        c = self.constraints
        for name, value in (("maxParams", c.max_params), ("maxFlops", c.max_flops)):
            if value is not None:
                _int_at_least(f"spec.constraints.{name}", value, 1)
        if c.max_latency_ms is not None and (
            not isinstance(c.max_latency_ms, (int, float))
            or isinstance(c.max_latency_ms, bool)
            or c.max_latency_ms <= 0
        ):
            raise SearchError(
                f"spec.constraints.maxLatencyMs: Invalid value: {c.max_latency_ms!r}: must be a number > 0"
            )
        weights = self.score.get("weights") or {}
        for key, value in weights.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise SearchError(f"spec.score.weights.{key}: Invalid value: {value!r}: must be a number")
        if self.latency_weight < 0:
            raise SearchError(
                f"spec.score.weights.latency: Invalid value: {self.latency_weight}: must be >= 0 "
                "(a positive weight penalises slow structures)"
            )

    def score_key(self) -> str:
        """What makes two scores of the same structure comparable: the space and the score settings."""
        text = json.dumps(
            {
                "domain": self.domain,
                "space": self.search_space,
                "score": self.score,
                "ipex": self.ipex,
                "bf16": self.bf16,
                **({"dataset": self.dataset} if self.dataset else {}),  # scores depend on the inputs
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def fingerprint(self) -> str:
        """Everything that changes the search's trajectory; a checkpoint only resumes the same one."""
        text = json.dumps(self.to_json(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        c = self.constraints
        return {
            "domain": self.domain,
            "searchSpace": self.search_space,
            "search": {
                "strategy": self.strategy,
                "population": self.population,
                "generations": self.generations,
                "seed": self.seed,
                "topK": self.top_k,
                "selectNum": self.parents,
                "mutationNum": self.mutations,
                "crossoverNum": self.crossovers,
                "mutationProb": self.mutation_prob,
                "aging": self.aging,
                "warmup": self.warmup,
                "warmupProxy": self.warmup_proxy,
                "moveProposals": self.move_proposals,
                "surrogate": self.surrogate,
                "selection": self.selection.to_json(),
                # only when set: the fingerprint of a search that does not use it stays the same
                **({"randomStreams": self.random_streams} if self.random_streams != "single" else {}),
            },
            "constraints": {
                k: v
                for k, v in (
                    ("maxParams", c.max_params),
                    ("maxFlops", c.max_flops),
                    ("maxLatencyMs", c.max_latency_ms),
                )
                if v is not None
            },
            "score": self.score,
            "hardware": {"ipex": self.ipex, "bf16": self.bf16},
            **({"training": {"dataset": self.dataset}} if self.dataset else {}),
        }


def _int_at_least(path: str, value: Any, lo: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise SearchError(f"{path}: Invalid value: {value!r}: must be an integer >= {lo}")
