"""Readiness (`--readiness`, default :8082/readyz): "watching and caught up", apart from liveness.

Liveness stays kopf's `/healthz` (`--liveness`): it answers from the operator's event loop, so a
stuck loop fails it and the kubelet restarts the pod. Readiness answers 200 when:
- kopf has started (its indexes are complete: handlers run only then), and
- every DeNASJob that existed at start-up has been reconciled once since (or is gone), or
- this replica is a paused HA standby (peering): caught up means nothing to it, and a rollout
  must be able to replace it.
Otherwise 503 with the reason, e.g. "catching up: 12 of 40 jobs not reconciled yet".
"""

from __future__ import annotations

import asyncio
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

log = logging.getLogger(__name__)


class Readiness:
    def __init__(self) -> None:
        self.started = threading.Event()  # kopf's ready_flag: set once its start-up is done
        self.paused = False
        self.pending: set[tuple[str, str]] | None = None  # jobs to reconcile before ready
        self._lock = threading.Lock()

    def expect(self, jobs: set[tuple[str, str]]) -> None:
        with self._lock:
            self.pending = set(jobs)

    def reconciled(self, key: tuple[str, str]) -> None:
        with self._lock:
            if self.pending:
                self.pending.discard(key)

    def state(self) -> tuple[bool, str]:
        with self._lock:
            if not self.started.is_set():
                return False, "starting: kopf has not finished its start-up yet"
            if self.paused:
                return True, "standby: paused by the peering, ready to take over"
            if self.pending is None:
                return False, "starting: the jobs are not listed yet"
            if self.pending:
                return False, f"catching up: {len(self.pending)} job(s) not reconciled since start-up"
            return True, "watching and caught up"


def serve(url: str, readiness: Readiness) -> ThreadingHTTPServer | None:
    """Serve GET <path> (from `url`, e.g. http://0.0.0.0:8082/readyz): 200 ready, 503 not."""
    parsed = urlparse(url)
    path = parsed.path or "/readyz"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if urlparse(self.path).path != path:
                self.send_error(404)
                return
            ok, why = readiness.state()
            body = (why + "\n").encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:  # probes every few seconds: no access log
            pass

    try:
        server = ThreadingHTTPServer((parsed.hostname or "0.0.0.0", parsed.port or 8082), Handler)
    except OSError as exc:  # a taken port must not take the operator down: the probe reports it
        log.error("readiness endpoint %s: %s", url, exc)
        return None
    threading.Thread(target=server.serve_forever, name="denas-readiness", daemon=True).start()
    return server


async def list_jobs(namespaces: list[str] | None) -> set[tuple[str, str]] | None:
    """The DeNASJobs in scope at start-up (None: cannot tell, e.g. glob namespaces or no RBAC)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from . import names as n

    api = client.CustomObjectsApi()

    def run() -> set[tuple[str, str]] | None:
        items = []
        try:
            if namespaces is None:
                items = api.list_cluster_custom_object(n.GROUP, n.VERSION, n.PLURAL)["items"]
            else:
                if any(set(ns) & set("*?[") for ns in namespaces):
                    return None
                for ns in namespaces:
                    items += api.list_namespaced_custom_object(n.GROUP, n.VERSION, ns, n.PLURAL)["items"]
        except ApiException as exc:
            log.warning("listing DeNASJobs for readiness: %s %s", exc.status, exc.reason)
            return None
        return {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items}

    return await asyncio.to_thread(run)
