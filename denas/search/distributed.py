"""Scoring spread over torch.distributed ranks (gloo), one process per search pod.

Rank 0 runs the strategy and, each generation, broadcasts the list of structures to score; rank r
scores the candidates whose index i has ``i % world_size == r`` (a fixed assignment), and the
records are gathered back to rank 0 in index order.  Scores do not depend on the rank (see
`denas.search.evaluator`), so 1 and N ranks give the same result for the same seed.

Every collective carries the process group's timeout (``--dist-timeout``); a rank that dies closes
its gloo connections and the others fail the generation at once with `RankFailure` instead of
hanging.  The environment is PyTorchJob's: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from denas.search.config import SearchError

Record = dict[str, Any]


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

    def __init__(self, evaluate: Callable[[dict], Record]):
        self.evaluate = evaluate

    def map(self, structures: list[dict], on_record: Callable[[Record], None] | None = None) -> list[Record]:
        out = []
        for s in structures:
            record = self.evaluate(s)
            if on_record is not None:
                on_record(record)
            out.append(record)
        return out

    def close(self) -> None:
        pass


class DistributedPool:
    """Rank 0 calls ``map``; every other rank calls ``serve`` until rank 0 ``close``s."""

    def __init__(self, evaluate: Callable[[dict], Record], rank: int, world_size: int, timeout_s: float):
        import torch.distributed as dist

        self.evaluate = evaluate
        self.rank, self.world_size = rank, world_size
        self.timeout_s = timeout_s
        self.dist = dist
        self.closed = False
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

    def _collective(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - gloo raises RuntimeError/DistBackendError subclasses
            raise RankFailure(
                f"rank {self.rank}/{self.world_size}: {what} failed: a peer rank died or did not answer "
                f"within {self.timeout_s:.0f} s (--dist-timeout); the generation in flight is lost and "
                f"--resume continues from the last checkpoint. Cause: {e}"
            ) from e

    def _score_share(self, structures: list[dict], on_record: Callable[[Record], None] | None) -> list:
        mine = []
        for i in range(self.rank, len(structures), self.world_size):
            record = self.evaluate(structures[i])
            if on_record is not None:
                on_record(record)
            mine.append((i, record))
        return mine

    def _round(self, message: Any, on_record: Callable[[Record], None] | None = None) -> list[Record] | None:
        box = [message]
        self._collective("broadcast of the generation", lambda: self.dist.broadcast_object_list(box, src=0))
        structures = box[0]
        if structures is None:
            return None
        if isinstance(structures, str):  # rank 0 gave up: stop with its reason
            self.closed = True
            raise SearchError(f"rank {self.rank}: rank 0 aborted the search: {structures}")
        mine = self._score_share(structures, on_record)
        gathered: list[Any] = [None] * self.world_size if self.rank == 0 else None  # type: ignore[assignment]
        self._collective(
            "gathering scores",
            lambda: self.dist.gather_object(mine, gathered if self.rank == 0 else None, dst=0),
        )
        if self.rank != 0:
            return []
        records: list[Record | None] = [None] * len(structures)
        for share in gathered:
            for i, record in share:
                records[i] = record
        missing = [i for i, r in enumerate(records) if r is None]
        if missing:
            raise RankFailure(f"gathering scores: candidates {missing} came back from no rank")
        return records  # type: ignore[return-value]

    def map(self, structures: list[dict], on_record: Callable[[Record], None] | None = None) -> list[Record]:
        assert self.rank == 0, "only rank 0 hands out work"
        result = self._round(list(structures), on_record)
        assert result is not None
        return result

    def abort(self, reason: str) -> None:
        """Rank 0 failed: tell the workers why, so they exit with that reason instead of timing out."""
        if self.rank == 0 and not self.closed:
            self.closed = True
            try:
                self._collective("abort", lambda: self.dist.broadcast_object_list([reason], src=0))
            except RankFailure:
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
