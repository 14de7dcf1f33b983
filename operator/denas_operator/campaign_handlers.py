"""kopf wiring of DeNASCampaigns: thin triggers around `campaigns.plan_campaign`.

Triggers (all level-based, all converge on `reconcile_campaign(namespace, name)`):
- every watch event of a DeNASCampaign (create, matrix edit, resume after a restart);
- every event of a DeNASJob labelled denas.io/campaign (a cell progressed, finished or was deleted);
- a timer per campaign, so nothing waits on a missed event.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.rest import ApiException

from denas.campaign.spec import LABEL_CAMPAIGN

from . import campaign_metrics as CM
from . import names as n
from .campaigns import plan_campaign

log = logging.getLogger(__name__)

TIMER_INTERVAL_S = 10.0
_LOCKS: dict[tuple[str, str], asyncio.Lock] = {}


class CampaignApi:
    """The calls a campaign reconcile makes; 409 on create and 404 on delete are success."""

    def __init__(self) -> None:
        self.custom = client.CustomObjectsApi()

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(
                n.GROUP, n.VERSION, namespace, n.CAMPAIGN_PLURAL, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def children(self, namespace: str, name: str, uid: str) -> dict[str, dict[str, Any]]:
        listed = self.custom.list_namespaced_custom_object(
            n.GROUP, n.VERSION, namespace, n.PLURAL, label_selector=f"{LABEL_CAMPAIGN}={name}"
        )
        owned = {}
        for job in listed.get("items", []):
            refs = (job.get("metadata") or {}).get("ownerReferences") or []
            if any(r.get("uid") == uid for r in refs):  # a same-named job of someone else stays theirs
                owned[job["metadata"]["name"]] = job
        return owned

    def apply(self, namespace: str, name: str, plan: Any, current: dict[str, Any]) -> None:
        for obj in plan.create:
            try:
                self.custom.create_namespaced_custom_object(n.GROUP, n.VERSION, namespace, n.PLURAL, obj)
            except ApiException as exc:
                if exc.status != 409:
                    raise
        for job, patch in plan.patch:
            self.custom.patch_namespaced_custom_object(n.GROUP, n.VERSION, namespace, n.PLURAL, job, patch)
        for job in plan.delete:
            try:
                self.custom.delete_namespaced_custom_object(n.GROUP, n.VERSION, namespace, n.PLURAL, job)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        if any(current.get(k) != v for k, v in plan.status.items()):  # no echo of an unchanged status
            self.custom.patch_namespaced_custom_object_status(
                n.GROUP, n.VERSION, namespace, n.CAMPAIGN_PLURAL, name, {"status": plan.status}
            )


async def reconcile_campaign(namespace: str, name: str) -> None:
    lock = _LOCKS.setdefault((namespace, name), asyncio.Lock())
    async with lock:  # a campaign's and its cells' events must not plan twice at once
        api = CampaignApi()
        body = await asyncio.to_thread(api.get, namespace, name)
        if body is None:
            CM.forget(namespace, name)
            return
        children = await asyncio.to_thread(api.children, namespace, name, body["metadata"]["uid"])
        plan = plan_campaign(body, children)
        try:
            await asyncio.to_thread(api.apply, namespace, name, plan, body.get("status") or {})
        except ApiException as exc:
            CM.ERRORS.inc()
            raise kopf.TemporaryError(
                f"DeNASCampaign {name}: API call failed ({exc.status} {exc.reason}); retrying", delay=5
            ) from exc
        for type_, reason, message in plan.events:
            kopf.event(body, type=type_, reason=reason, message=message)
        CM.observe(namespace, name, plan.status)


@kopf.on.event(n.GROUP, n.VERSION, n.CAMPAIGN_PLURAL)
async def campaign_event(event: dict, namespace: str, name: str, **_: Any) -> None:
    if event.get("type") == "DELETED":  # owner references delete the cells' jobs
        CM.forget(namespace, name)
        _LOCKS.pop((namespace, name), None)
        return
    await reconcile_campaign(namespace, name)


@kopf.on.event(n.GROUP, n.VERSION, n.PLURAL, labels={LABEL_CAMPAIGN: kopf.PRESENT})
async def cell_event(namespace: str, labels: dict, **_: Any) -> None:
    await reconcile_campaign(namespace, labels[LABEL_CAMPAIGN])


@kopf.timer(n.GROUP, n.VERSION, n.CAMPAIGN_PLURAL, interval=TIMER_INTERVAL_S, initial_delay=TIMER_INTERVAL_S)
async def campaign_timer(namespace: str, name: str, **_: Any) -> None:
    await reconcile_campaign(namespace, name)
