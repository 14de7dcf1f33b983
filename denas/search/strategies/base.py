"""What every strategy sees: an ask/tell interface over an abstract space.

A strategy never imports a concrete space and never scores anything itself.  Each generation the
runner calls ``ask`` (structures to score, already checked against the parameter / FLOPs /
predicted-latency budgets), scores the new ones (possibly on many ranks), and hands the records
back through ``tell`` in the same order.  A strategy's whole state is picklable plain data (its
``random.Random`` included) so the runner can checkpoint it between generations.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from denas.search.config import SearchConfig

Record = dict[str, Any]  # one scored candidate, see denas.search.evaluator.make_record
Structure = dict[str, Any]

#: proposals tried per wanted candidate before a generation settles for fewer
PROPOSAL_TRIES = 50


def fitness_key(record: Record) -> tuple[int, float, str]:
    """Sort key, best first when sorted in reverse: feasible before infeasible, then fitness.

    The hash breaks ties so that equal fitness never leaves the order to chance.
    """
    fit = record.get("fitness")
    ok = bool(record.get("feasible")) and fit is not None and math.isfinite(fit)
    return (1 if ok else 0, fit if ok else -math.inf, record["hash"])


def rank_records(records: Sequence[Record]) -> list[Record]:
    return sorted(records, key=fitness_key, reverse=True)


@dataclass
class Context:
    """The runner's services, handed to ``ask``/``tell``; never pickled with the strategy."""

    space: Any  # denas.spaces.base.SearchSpace; typed loosely so strategies stay space-agnostic
    config: SearchConfig
    #: None when a structure meets the analytic budgets, else the violated field and the numbers
    admit: Callable[[Structure], str | None]
    archive: dict[str, Record]
    #: optional: orders proposals best-first by a surrogate trained on the archive
    surrogate_rank: Callable[[list[Structure]], list[Structure]] | None = None
    rejected: dict[str, int] = field(default_factory=dict)

    def hash(self, structure: Structure) -> str:
        return self.space.hash(structure)

    def propose(
        self, make: Callable[[], Structure], n: int, taken: set[str] | None = None, fresh: bool = True
    ) -> list[Structure]:
        """Up to ``n`` distinct admissible structures from ``make``.

        ``fresh`` asks for structures not scored before (re-scoring is free but wastes a slot);
        once the tries run out (a tiny or tightly constrained space) already-scored ones are
        accepted.  With a surrogate, 4x as many are drawn and the surrogate keeps the top ``n``.
        """
        taken = set() if taken is None else taken
        want = n * 4 if self.surrogate_rank is not None else n
        out: list[Structure] = []
        stale: list[Structure] = []
        for _ in range(max(want, 1) * PROPOSAL_TRIES):
            if len(out) >= want:
                break
            s = make()
            h = self.hash(s)
            if h in taken:
                continue
            reason = self.admit(s)
            if reason is not None:
                field_name = reason.split(":", 1)[0]
                self.rejected[field_name] = self.rejected.get(field_name, 0) + 1
                continue
            taken.add(h)
            if fresh and h in self.archive:
                stale.append(s)
            else:
                out.append(s)
        if self.surrogate_rank is not None and len(out) > n:
            out = self.surrogate_rank(out)
            for s in out[n:]:
                taken.discard(self.hash(s))
            out = out[:n]
        if len(out) < n:  # settle for already-scored structures rather than an empty generation
            out.extend(stale[: n - len(out)])
        return out


class Strategy:
    """Base class: subclasses implement ``ask`` and may override ``tell``."""

    name = ""

    def __init__(self, config: SearchConfig):
        self.config = config
        self.rng = random.Random(config.seed)
        self.generation = 0

    @property
    def per_slot(self) -> bool:
        """``spec.search.randomStreams: perSlot``: a random stream per proposal slot (`slot_rng`)."""
        return self.config.random_streams == "perSlot"

    def slot_rng(self, slot: int) -> random.Random:
        """The random stream of one proposal slot of this generation.

        ``randomStreams: single`` (default): the search's one stream, so a draw anywhere shifts
        every later one.  ``perSlot``: a stream of its own, seeded by (seed, generation, slot), so
        a structure that one search rejects (a tighter budget) and another accepts changes only
        that slot's draws, never the other slots' (common random numbers across the cells of a
        campaign).
        """
        if not self.per_slot:
            return self.rng
        return random.Random(f"denas-slot:{self.config.seed}:{self.generation}:{slot}")

    def rendezvous(self, members: Sequence[Record], slot: int, draw: int, k: int = 1) -> list[Record]:
        """``k`` members drawn uniformly without replacement, by rendezvous hashing: the ones whose
        hash of (seed, generation, slot, draw, member) is smallest.  Two populations that differ in
        a few members pick the same parents except where a differing member wins the draw, where a
        positional ``rng.choice`` would shift after the first difference."""
        key = f"{self.config.seed}:{self.generation}:{slot}:{draw}:"
        return sorted(members, key=lambda r: hashlib.sha256((key + r["hash"]).encode()).digest())[:k]

    def ask(self, ctx: Context) -> list[Structure]:
        raise NotImplementedError

    def tell(self, ctx: Context, records: list[Record]) -> None:
        """Called with the records of the structures ``ask`` returned, in the same order."""
        self.generation += 1

    def objectives(self) -> tuple[str, ...]:
        """The objectives of the Pareto front reported in result.json."""
        return ("fitness", "latency_ms")


STRATEGIES: dict[str, type[Strategy]] = {}


def register(name: str) -> Callable[[type[Strategy]], type[Strategy]]:
    def decorator(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        STRATEGIES[name] = cls
        return cls

    return decorator


def create(config: SearchConfig) -> Strategy:
    return STRATEGIES[config.strategy](config)
