"""kopf wiring of DeNASCampaigns: thin triggers around `campaigns.plan_campaign`.

Triggers (all level-based, all converge on `reconcile_campaign(namespace, name)`):
- every watch event of a DeNASCampaign (create, matrix edit, resume after a restart);
- every event of a DeNASJob labelled denas.io/campaign (a cell progressed, finished or was deleted);
- every event of a campaign's report Pod (label denas.io/role=campaign-report: it ran, finished);
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
        self.core = client.CoreV1Api()

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

    def report_objects(self, namespace: str, name: str) -> dict[str, dict[str, Any] | None]:
        """The Pod and ConfigMap named <campaign>-report, whoever owns them (the planner checks)."""
        wanted = n.campaign_report(name)
        serialize = self.core.api_client.sanitize_for_serialization
        pods = self.core.list_namespaced_pod(namespace, field_selector=f"metadata.name={wanted}")
        pod = next((serialize(p) for p in pods.items if p.metadata.name == wanted), None)
        try:
            configmap = serialize(self.core.read_namespaced_config_map(wanted, namespace))
        except ApiException as exc:
            if exc.status != 404:
                raise
            configmap = None
        return {"pod": pod, "configmap": configmap}

    def apply_report(self, namespace: str, name: str, report: Any) -> None:
        for pod, uid in report.delete_pods:  # the uid: a namesake created meanwhile is never hit
            options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid) if uid else None)
            try:
                self.core.delete_namespaced_pod(pod, namespace, body=options)
            except ApiException as exc:
                if exc.status not in (404, 409):  # gone already, or a namesake (uid precondition)
                    raise
        for patch in report.patch:  # the ConfigMap before the Pod that mounts it
            self.core.patch_namespaced_config_map(n.campaign_report(name), namespace, patch)
        for obj in report.create:
            try:
                if obj["kind"] == "ConfigMap":
                    self.core.create_namespaced_config_map(namespace, obj)
                else:
                    self.core.create_namespaced_pod(namespace, obj)
            except ApiException as exc:
                if exc.status != 409:
                    raise

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
        self.apply_report(namespace, name, plan.report)
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
        try:
            children = await asyncio.to_thread(api.children, namespace, name, body["metadata"]["uid"])
            plan = plan_campaign(body, children)
            if plan.report.observe:  # every cell finished: the report Pod's turn
                report = await asyncio.to_thread(api.report_objects, namespace, name)
                plan = plan_campaign(body, children, report)
        except ApiException as exc:
            CM.ERRORS.inc()
            raise kopf.TemporaryError(
                f"DeNASCampaign {name}: API call failed ({exc.status} {exc.reason}); retrying", delay=5
            ) from exc
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


@kopf.on.event("pods", labels={n.LABEL_ROLE: n.ROLE_CAMPAIGN_REPORT, LABEL_CAMPAIGN: kopf.PRESENT})
async def report_pod_event(namespace: str, labels: dict, **_: Any) -> None:
    await reconcile_campaign(namespace, labels[LABEL_CAMPAIGN])


@kopf.timer(n.GROUP, n.VERSION, n.CAMPAIGN_PLURAL, interval=TIMER_INTERVAL_S, initial_delay=TIMER_INTERVAL_S)
async def campaign_timer(namespace: str, name: str, **_: Any) -> None:
    await reconcile_campaign(namespace, name)
