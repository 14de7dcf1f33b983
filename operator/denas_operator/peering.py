"""Whether kopf's peering pauses this replica (`--peering`): the rule, and a poll that follows it.

kopf pauses a replica while a live peer has a higher priority (or the same one) but tells the
code it runs nothing about it. The operator needs to know: a paused replica must not keep
exporting the gauges of jobs it no longer reconciles (they freeze at stale values beside the
active replica's), and its readiness means "standby" rather than "caught up". So the operator
reads the same peering object kopf keeps (every POLL_S) and applies kopf's own rule to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)

POLL_S = 5.0


def _parse(ts: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00")) if ts else None
    except ValueError:
        return None


def is_paused(peers: dict[str, Any], identity: str, priority: int, now: datetime) -> bool:
    """kopf's rule (kopf._core.engines.peering.process_peering_event): paused while another live
    peer (lastseen + lifetime in the future) has a higher or the same priority."""
    for peer_id, info in (peers or {}).items():
        if peer_id == identity or not isinstance(info, dict):
            continue
        seen = _parse(info.get("lastseen"))
        if seen is None:
            continue
        if seen.tzinfo is None:
            seen = seen.replace(tzinfo=UTC)
        if seen + timedelta(seconds=int(info.get("lifetime", 60))) <= now:
            continue  # dead
        if int(info.get("priority", 0)) >= priority:
            return True
    return False


class PeeringWatch:
    """Polls the peering object(s) and calls `on_change(paused)` whenever the answer flips."""

    def __init__(
        self,
        name: str,
        namespaces: Iterable[str] | None,
        identity: str,
        priority: int,
        on_change: Callable[[bool], None],
    ) -> None:
        self.name = name
        # Namespaced peering lives in each watched namespace; glob patterns cannot be read.
        self.namespaces = (
            None if namespaces is None else [ns for ns in namespaces if not set(ns) & set("*?[")]
        )
        self.identity = identity
        self.priority = priority
        self.on_change = on_change
        self.paused = False

    def _read(self) -> list[dict[str, Any]]:
        api = client.CustomObjectsApi()
        bodies = []
        try:
            if self.namespaces is None:
                bodies.append(
                    api.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", self.name)
                )
            else:
                for ns in self.namespaces:
                    bodies.append(
                        api.get_namespaced_custom_object("kopf.dev", "v1", ns, "kopfpeerings", self.name)
                    )
        except ApiException as exc:
            if exc.status != 404:
                log.warning("reading peering %s: %s %s", self.name, exc.status, exc.reason)
        return bodies

    async def check(self) -> bool:
        bodies = await asyncio.to_thread(self._read)
        now = datetime.now(UTC)
        paused = any(is_paused(b.get("status") or {}, self.identity, self.priority, now) for b in bodies)
        if paused != self.paused:
            self.paused = paused
            log.info("peering %s: %s", self.name, "paused (a peer has priority)" if paused else "active")
            self.on_change(paused)
        return paused

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # a poll must never take the operator down
                log.exception("peering poll failed")
            await asyncio.sleep(POLL_S)
