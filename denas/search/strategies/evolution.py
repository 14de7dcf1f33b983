"""Sample-and-rank and DE-NAS's hardware-aware evolution (truncation or aging).

Evolution, per generation after the first:
  truncation (default): the best ``selectNum`` of the population are the parents; ``mutationNum``
    mutants (each edge/choice re-drawn with ``mutationProb``) and ``crossoverNum`` crossovers of
    parents drawn from them; the next population is the best ``population`` of parents + children.
  aging (``aging: true``, Real et al. 2019): parents are tournament winners (tournament size
    ``selectNum``) and every child replaces the oldest member.
Parents always come from the current population, which grows out of the children (DE-NAS drew
every parent from a list that never grew beyond its seed).

Zero-cost helpers (Abdelfattah et al., ICLR 2021):
  ``warmup: N``  the first generation scores max(N, population) random structures and keeps the best;
    with ``warmupProxy: params`` (or ``flops``) the N random structures are instead ranked by the
    space's analytic size, largest first (params ranks NB201 cells at Spearman ~0.72-0.75), and
    only the top ``population`` are scored: a warm-up that costs no scoring at all;
  ``moveProposals: K``  each mutation scores K neighbours of its parent and keeps the best one.
"""

from __future__ import annotations

from collections import deque

from denas.search.strategies.base import (
    Context,
    Record,
    Strategy,
    Structure,
    fitness_key,
    rank_records,
    register,
)

#: draws for a second parent different from the first (selectNum 1 or a dominant tournament
#: winner may offer no other: then the "crossover" degenerates into a copy that the mutation
#: fallback replaces)
PARENT_TRIES = 10


@register("random")
class RandomSearch(Strategy):
    """``population`` fresh random structures per generation; the result ranks all of them."""

    def ask(self, ctx: Context) -> list[Structure]:
        return _sample(self, ctx, self.config.population)


@register("ea")
class Evolution(Strategy):
    def __init__(self, config):
        super().__init__(config)
        self.population: list[Record] = []  # truncation: ranked best first; aging: oldest first
        self.groups: list[int] = []  # per asked structure: which child slot it competes for
        #: (generation, parent hashes) of every child made; tests and the history read it
        self.parent_log: list[tuple[int, list[str]]] = []

    # ----- ask -----
    def ask(self, ctx: Context) -> list[Structure]:
        if not self.population:
            n = max(self.config.population, self.config.warmup)
            proposals = _sample(self, ctx, n)
            if self.config.warmup_proxy != "score":
                size = (
                    ctx.space.count_params if self.config.warmup_proxy == "params" else ctx.space.count_flops
                )
                ranked = sorted(enumerate(proposals), key=lambda t: (-size(t[1]), t[0]))
                proposals = [s for _, s in ranked[: self.config.population]]
            self.groups = list(range(len(proposals)))
            return proposals
        taken = {r["hash"] for r in self.population}
        proposals: list[Structure] = []
        self.groups = []
        k = max(1, self.config.move_proposals)
        prob = self.config.mutation_prob
        for slot in range(self.config.mutations):
            rng = self.slot_rng(slot)
            parent = self._pick_parent(rng, slot, 0)
            neighbours = ctx.propose(
                lambda p=parent, rng=rng: ctx.space.mutate(p["structure"], rng, prob), k, taken
            )
            self._extend(proposals, neighbours, slot, [parent["hash"]])
        for slot in range(self.config.mutations, self.config.mutations + self.config.crossovers):
            rng = self.slot_rng(slot)
            a, b = self._pick_parent(rng, slot, 0), self._pick_parent(rng, slot, 1)
            for draw in range(2, PARENT_TRIES + 2):  # a crossover of a structure with itself is a no-op
                if b["hash"] != a["hash"]:
                    break
                b = self._pick_parent(rng, slot, draw)
            child = ctx.propose(
                lambda a=a, b=b, rng=rng: ctx.space.crossover(a["structure"], b["structure"], rng), 1, taken
            )
            if not child:  # the parents only combine into known or illegal structures: mutate instead
                child = ctx.propose(
                    lambda a=a, rng=rng: ctx.space.mutate(a["structure"], rng, prob), 1, taken
                )
            self._extend(proposals, child, slot, [a["hash"], b["hash"]])
        return proposals

    def _extend(
        self, proposals: list[Structure], new: list[Structure], slot: int, parents: list[str]
    ) -> None:
        proposals.extend(new)
        self.groups.extend([slot] * len(new))
        self.parent_log.append((self.generation, parents))

    def _pick_parent(self, rng, slot: int, draw: int) -> Record:
        if self.config.aging:
            size = min(self.config.parents, len(self.population))
            pool = (
                self.rendezvous(self.population, slot, draw, size)
                if self.per_slot
                else rng.sample(self.population, size)
            )
            return max(pool, key=fitness_key)
        if self.per_slot:
            return self.rendezvous(self.population[: self.config.parents], slot, draw)[0]
        return rng.choice(self.population[: self.config.parents])

    # ----- tell -----
    def tell(self, ctx: Context, records: list[Record]) -> None:
        winners: dict[int, Record] = {}
        for group, record in zip(self.groups, records):
            if group not in winners or fitness_key(record) > fitness_key(winners[group]):
                winners[group] = record
        children = [winners[g] for g in sorted(winners)]
        if not self.population:  # first generation: the warm-up pool seeds the population
            self.population = rank_records(_unique(children))[: self.config.population]
            if self.config.aging:
                self.population.reverse()  # the best survive longest
        elif self.config.aging:
            queue = deque(self.population)
            for child in children:
                queue.append(child)
                if len(queue) > self.config.population:
                    queue.popleft()
            self.population = list(queue)
        else:
            self.population = rank_records(_unique(self.population + children))[: self.config.population]
        super().tell(ctx, records)


def _sample(strategy: Strategy, ctx: Context, n: int) -> list[Structure]:
    """``n`` distinct random structures: from the one stream, or one per slot (``perSlot``)."""
    if not strategy.per_slot:
        return ctx.propose(lambda: ctx.space.sample(strategy.rng), n)
    taken: set[str] = set()
    out: list[Structure] = []
    for slot in range(n):
        rng = strategy.slot_rng(slot)
        out.extend(ctx.propose(lambda rng=rng: ctx.space.sample(rng), 1, taken))
    return out


def _unique(records: list[Record]) -> list[Record]:
    seen: dict[str, Record] = {}
    for r in records:
        seen.setdefault(r["hash"], r)
    return list(seen.values())
