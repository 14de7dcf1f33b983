"""Scoring spread over torch.distributed ranks (gloo), one process per search pod.

Rank 0 runs the strategy and, each generation, broadcasts the list of structures to score in
longest-first order (by a cheap cost estimate, FLOPs for the search).  Every rank then pulls the
next unscored position from a shared counter (``add`` on the process group's TCPStore, one key per
round) until the list is exhausted, so a rank that drew expensive candidates simply takes fewer:
no rank idles while another works through a fixed share, and the last candidates of a generation
are the cheapest (LPT), which keeps the tail short.  The records, a variable number per rank, are
gathered back to rank 0 and put in candidate order.  Scores do not depend on the rank nor on the
order (see `denas.search.evaluator`), so 1 and N ranks give the same result for the same seed.

Every collective and store operation carries the process group's timeout (``--dist-timeout``); a
rank that dies closes its connections and the others fail the generation with `RankFailure`
instead of hanging.  The environment is PyTorchJob's: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from denas.search.config import SearchError

Record = dict[str, Any]

#: store keys of round n: its message (posted by rank 0) and its counter of handed-out positions
ROUND = "denas/search/round/{}"
NEXT = "denas/search/next/{}"
#: how many workers have read rank 0's abort message
ABORT_SEEN = "denas/search/abort-seen"
#: a worker's finished record of round n, position i: rank 0 rescues it if the worker dies before
#: the gather, so a lost pod loses only the candidate it was working on
DONE = "denas/search/done/{}/{}"


class RankFailure(SearchError):
    """A peer rank died, or did not answer within the timeout."""


def world_from_env() -> tuple[int, int]:
    """(rank, world_size); a single process when WORLD_SIZE is unset or 1."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    if world < 1 or not 0 <= rank < world:
        raise SearchError(f"RANK={rank} / WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    return rank, world


def default_threads() -> int:
    """OMP_NUM_THREADS when set, else the CPUs this process may use divided by the ranks sharing
    the node (LOCAL_WORLD_SIZE, as torchrun sets it)."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, cpus // max(1, local))


class LocalPool:
    """One process scores everything, in order."""

    rank = 0
    world_size = 1

    def __init__(
        self, evaluate: Callable[[dict], Record], handlers: dict[str, Callable[[dict], Record]] | None = None
    ):
        self.evaluate = evaluate
        self.handlers = {"score": evaluate, **(handlers or {})}

    def map(
        self,
        structures: list[dict],
        on_record: Callable[[Record], None] | None = None,
        kind: str = "score",
        cost: Callable[[dict], float] | None = None,
    ) -> list[Record]:
        out = []
        evaluate = self.handlers[kind]
        for s in structures:
            record = evaluate(s)
            if on_record is not None:
                on_record(record)
            out.append(record)
        return out

    def close(self) -> None:
        pass


class DistributedPool:
    """Rank 0 calls ``map``; every other rank calls ``serve`` until rank 0 ``close``s."""

    def __init__(
        self,
        evaluate: Callable[[dict], Record],
        rank: int,
        world_size: int,
        timeout_s: float,
        cost: Callable[[dict], float] | None = None,
        handlers: dict[str, Callable[[dict], Record]] | None = None,
    ):
        """``cost`` estimates a structure's scoring time (any monotone proxy); rank 0 hands the
        most expensive candidates out first.  Without it, candidates go out in list order."""
        import torch.distributed as dist

        self.evaluate = evaluate
        #: other kinds of work rounds can carry (e.g. "select": short training), by name
        self.handlers = {"score": evaluate, **(handlers or {})}
        self.rank, self.world_size = rank, world_size
        self.timeout_s = timeout_s
        self.cost = cost
        self.dist = dist
        self.closed = False
        self.rounds = 0
        self.taken = 0
        if not dist.is_initialized():
            try:
                dist.init_process_group(
                    "gloo", rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s)
                )
            except Exception as e:  # noqa: BLE001 - any failure here means the ranks never met
                addr = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
                raise RankFailure(
                    f"rank {rank}/{world_size}: could not join the search group at {addr} within "
                    f"{timeout_s:.0f} s: {e}"
                ) from e
        # the rendezvous store (a TCPStore served by rank 0) holds the per-round work counters;
        # torch has no public getter for the default group's store
        from torch.distributed.distributed_c10d import _get_default_store

        self.store = _get_default_store()
        self.store.set_timeout(timedelta(seconds=timeout_s))

    def _collective(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - gloo raises RuntimeError/DistBackendError subclasses
            raise RankFailure(
                f"rank {self.rank}/{self.world_size}: {what} failed: a peer rank died or did not answer "
                f"within {self.timeout_s:.0f} s (--dist-timeout); the generation in flight is lost and "
                f"--resume continues from the last checkpoint. Cause: {e}"
            ) from e

    def _score_share(
        self,
        round_no: int,
        structures: list[dict],
        order: list[int],
        on_record: Callable[[Record], None] | None,
        kind: str = "score",
    ) -> list[tuple[int, Record]]:
        """Score candidates ``order[k]`` for each k this rank draws from the round's counter."""
        mine = []
        evaluate = self.handlers[kind]
        while True:
            k = self._collective(
                "taking the next candidate", lambda: self.store.add(NEXT.format(round_no), 1)
            )
            if k > len(order):
                return mine
            self.taken = k  # candidates taken by all ranks so far (rank 0's progress reads it)
            i = order[k - 1]
            record = evaluate(structures[i])
            if on_record is not None:
                on_record(record)
            if self.rank != 0:
                key, data = DONE.format(round_no, i), pickle.dumps(record)
                self._collective("posting a finished record", lambda: self.store.set(key, data))  # noqa: B023 - called at once
            mine.append((i, record))

    def _work_order(self, structures: list[dict], cost: Callable[[dict], float] | None = None) -> list[int]:
        """Longest first (LPT): the last candidates of a round are the cheap ones, so the ranks
        finish together; ties keep list order so the order is a function of the list alone."""
        cost = cost or self.cost
        if cost is None:
            return list(range(len(structures)))
        costs = [float(cost(s)) for s in structures]
        return sorted(range(len(structures)), key=lambda i: (-costs[i], i))

    def _publish(self, message: Any) -> None:
        """Rank 0: post the next round's message (a generation, a stop or an abort reason) in the
        store.  Unlike a broadcast this does not wait for the workers: rank 0 starts scoring at
        once and a worker that is late (still warming up, say) joins the round when it can."""
        self.rounds += 1
        key = ROUND.format(self.rounds)
        self._collective("posting the generation", lambda: self.store.set(key, pickle.dumps(message)))

    def _receive(self) -> Any:
        """Workers: the next round's message; waits at most --dist-timeout, and fails at once if
        rank 0 (which serves the store) dies."""
        self.rounds += 1
        key = ROUND.format(self.rounds)
        return pickle.loads(self._collective("waiting for the next generation", lambda: self.store.get(key)))

    def _round(self, message: Any, on_record: Callable[[Record], None] | None = None) -> list[Record] | None:
        if self.rank == 0:
            self._publish(message)
        else:
            message = self._receive()
        if message is None:  # stop: meet rank 0 so it keeps the store up until everyone has read it
            self._collective("stopping", lambda: self.dist.barrier())
            return None
        if isinstance(message, str):  # rank 0 gave up: stop with its reason
            self.closed = True
            try:  # rank 0 waits (briefly) for this before it exits
                self.store.add(ABORT_SEEN, 1)
            except Exception:  # noqa: BLE001 - rank 0 already gone: nothing to acknowledge
                pass
            raise SearchError(f"rank {self.rank}: rank 0 aborted the search: {message}")
        round_no, structures = self.rounds, message["structures"]
        mine = self._score_share(
            round_no, structures, message["order"], on_record, message.get("kind", "score")
        )
        gathered: list[Any] = [None] * self.world_size if self.rank == 0 else None  # type: ignore[assignment]
        try:
            self._collective(
                "gathering scores",
                lambda: self.dist.gather_object(mine, gathered if self.rank == 0 else None, dst=0),
            )
        except RankFailure:
            if self.rank == 0:
                self._rescue(round_no, len(structures), {i for i, _ in mine}, on_record)
            raise
        if self.rank != 0:
            return []
        theirs = sorted({i for share in gathered[1:] for i, _ in share})
        keys = [DONE.format(round_no, i) for i in theirs]
        for key in (ROUND.format(round_no), NEXT.format(round_no), *keys):  # every rank is done with them
            self.store.delete_key(key)
        records: list[Record | None] = [None] * len(structures)
        for share in gathered:
            for i, record in share:
                records[i] = record
        missing = [i for i, r in enumerate(records) if r is None]
        if missing:
            raise RankFailure(f"gathering scores: candidates {missing} came back from no rank")
        return records  # type: ignore[return-value]

    def _rescue(
        self, round_no: int, n: int, mine: set[int], on_record: Callable[[Record], None] | None
    ) -> None:
        """Rank 0, a peer died: hand the records the others finished (posted in the store, which
        rank 0 serves) to ``on_record``, so they are kept (score cache, selection log)."""
        if on_record is None:
            return
        for i in range(n):
            key = DONE.format(round_no, i)
            try:
                if i in mine or not self.store.check([key]):
                    continue
                on_record(pickle.loads(self.store.get(key)))
            except Exception:  # noqa: BLE001 - best effort while failing anyway
                return

    def map(
        self,
        structures: list[dict],
        on_record: Callable[[Record], None] | None = None,
        kind: str = "score",
        cost: Callable[[dict], float] | None = None,
    ) -> list[Record]:
        """Spread one round of work (``kind``: a handler every rank has) and gather it in order."""
        assert self.rank == 0, "only rank 0 hands out work"
        structures = list(structures)
        message = {"kind": kind, "structures": structures, "order": self._work_order(structures, cost)}
        result = self._round(message, on_record)
        assert result is not None
        return result

    def abort(self, reason: str, wait_s: float = 3.0) -> None:
        """Rank 0 failed: tell the workers why, so they exit with that reason instead of timing out.

        Rank 0 serves the store, so it waits up to ``wait_s`` for the workers to read the reason
        before it exits.  A worker in the middle of a round stops drawing (the counter is pushed
        past the end) and fails on the gather once rank 0 is gone."""
        if self.rank != 0 or self.closed:
            return
        self.closed = True
        try:
            self._collective("abort", lambda: self.store.add(NEXT.format(self.rounds), 1 << 40))
            self._publish(reason)
            deadline = time.monotonic() + wait_s
            while self.store.add(ABORT_SEEN, 0) < self.world_size - 1 and time.monotonic() < deadline:
                time.sleep(0.01)
        except Exception:  # noqa: BLE001 - best effort: the workers fail on their own anyway
            pass

    def serve(self) -> None:
        """Worker ranks: score shares until rank 0 says stop."""
        while self._round(None) is not None:
            pass

    def close(self) -> None:
        if self.rank == 0 and not self.closed:
            self.closed = True
            try:
                self._round(None)
            except RankFailure:
                pass  # workers already gone: nothing left to tell them
        if self.dist.is_initialized():
            self.dist.destroy_process_group()
