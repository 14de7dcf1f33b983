"""`bo` (TPE) and `nsga2` (NSGA-II): optuna's samplers driven through its ask/tell interface.

Structures meet optuna as one categorical parameter per choice.  A space may provide
``choices() -> {name: [values]}`` and ``from_choices({name: value}) -> structure``; without them
``FlatChoices`` derives both generically from sampled structures (one categorical per leaf of the
structure's JSON tree), which is exact for fixed-shape spaces such as nb201.  Structures that come
out invalid or over budget are told to the study as infeasible (a trial constraint), so the
sampler learns to avoid them and they never reach scoring.

The study (in-memory storage, sampler and its RNG) is pickled with the strategy at each checkpoint.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import optuna

from denas.search.strategies.base import Context, Record, Strategy, Structure, register

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: asks per wanted structure before a generation settles for fewer (TPE revisits known cells)
OPTUNA_TRIES = 10
PENALTY = 1e12
SAMPLES_FOR_CHOICES = 256


class FlatChoices:
    """Generic structure <-> categorical parameters mapping, learned from sampled structures."""

    def __init__(self, space: Any, samples: int = SAMPLES_FOR_CHOICES):
        rng = random.Random(0)  # fixed: the parameter names and value lists must never change
        values: dict[str, list[Any]] = {}
        self.template: Structure = {}
        most = -1
        for _ in range(samples):
            s = space.sample(rng)
            leaves = dict(_flatten(s))
            for name, v in leaves.items():
                bucket = values.setdefault(name, [])
                if v not in bucket:
                    bucket.append(v)
            if len(leaves) > most:
                most, self.template = len(leaves), s
        self.values = {k: sorted(v, key=lambda x: (type(x).__name__, repr(x))) for k, v in values.items()}

    def choices(self) -> dict[str, list[Any]]:
        return self.values

    def from_choices(self, params: dict[str, Any]) -> Structure:
        s = copy.deepcopy(self.template)
        for name, value in params.items():
            _assign(s, name, value)
        return s


def _flatten(node: Any, prefix: str = ""):
    if isinstance(node, dict):
        for k in sorted(node):
            yield from _flatten(node[k], f"{prefix}{k}.")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _flatten(v, f"{prefix}{i}.")
    else:
        yield prefix[:-1], node


def _assign(root: Any, name: str, value: Any) -> None:
    keys: list[Any] = [int(k) if k.isdigit() else k for k in name.split(".")]
    node = root
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value


class OptunaStrategy(Strategy):
    directions: list[str] = ["maximize"]

    def __init__(self, config):
        super().__init__(config)
        self.study = optuna.create_study(directions=self.directions, sampler=self.make_sampler())
        self._adapter: Any = None
        self._pending: list[tuple[Any, str]] = []

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_adapter"] = None  # rebuilt from the space after a resume
        return state

    def adapter(self, ctx: Context) -> Any:
        if self._adapter is None:
            space = ctx.space
            has_own = callable(getattr(space, "choices", None)) and callable(
                getattr(space, "from_choices", None)
            )
            self._adapter = space if has_own else FlatChoices(space)
        return self._adapter

    def values(self, record: Record | None) -> list[float]:
        if record is None or not record.get("feasible") or record.get("fitness") is None:
            return [-PENALTY]
        return [float(record["fitness"])]

    def _tell(self, trial: Any, record: Record | None) -> None:
        # optuna >= 5: samplers read constraints set on the trial (> 0 means infeasible)
        trial.set_constraint("budget", 0.0 if record is not None and record.get("feasible") else 1.0)
        if record is not None:
            trial.set_user_attr("hash", record["hash"])
        self.study.tell(trial, self.values(record))

    def ask(self, ctx: Context) -> list[Structure]:
        adapter = self.adapter(ctx)
        choices = adapter.choices()
        out: list[Structure] = []
        self._pending = []
        in_batch: dict[str, int] = {}
        for _ in range(self.config.population * OPTUNA_TRIES):
            if len(out) >= self.config.population:
                break
            trial = self.study.ask()
            params = {name: trial.suggest_categorical(name, values) for name, values in choices.items()}
            try:
                structure = adapter.from_choices(params)
                ctx.space.validate(structure)
            except ValueError:
                self._tell(trial, None)
                continue
            if ctx.admit(structure) is not None:
                self._tell(trial, None)
                continue
            h = ctx.hash(structure)
            if h in ctx.archive:  # known: tell its score right away, it costs nothing
                self._tell(trial, ctx.archive[h])
                continue
            if h in in_batch:  # the same structure twice in one batch: told with the first one
                self._pending.append((trial, h))
                continue
            in_batch[h] = len(out)
            out.append(structure)
            self._pending.append((trial, h))
        return out

    def tell(self, ctx: Context, records: list[Record]) -> None:
        by_hash = {r["hash"]: r for r in records}
        for trial, h in self._pending:
            self._tell(trial, by_hash.get(h) or ctx.archive.get(h))
        self._pending = []
        super().tell(ctx, records)


@register("bo")
class TPESearch(OptunaStrategy):
    """Bayesian optimisation with optuna's TPE sampler (batches of ``population`` trials)."""

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        startup = min(self.config.population, 10)
        return optuna.samplers.TPESampler(seed=self.config.seed, n_startup_trials=startup)


@register("nsga2")
class NSGA2Search(OptunaStrategy):
    """NSGA-II over (DE-Score fitness up, latency down, parameters down)."""

    directions = ["maximize", "minimize", "minimize"]

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.NSGAIISampler(seed=self.config.seed, population_size=self.config.population)

    def values(self, record: Record | None) -> list[float]:
        if record is None or not record.get("feasible") or record.get("fitness") is None:
            return [-PENALTY, PENALTY, PENALTY]
        latency = record.get("latency_ms")
        cost = float(latency) if latency is not None else float(record["flops"])
        return [float(record["fitness"]), cost, float(record["params"])]

    def objectives(self) -> tuple[str, ...]:
        return ("fitness", "latency_ms", "params")
