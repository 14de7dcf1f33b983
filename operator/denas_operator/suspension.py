"""Suspension and the training deadline (pure): suspended time is not training time.

`spec.training.activeDeadlineSeconds` measures the wall time since `status.training.startTime`
(the first training pods) minus `status.training.suspendedSeconds`. While suspended during
training, `status.training.suspendedAt` holds when; on resume the interval is added to
`suspendedSeconds` and `suspendedAt` cleared (reconcile.decide).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def parse_ts(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp of the status (None when unset or unreadable)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def training_seconds(training: dict[str, Any], started: datetime, now: datetime) -> float:
    """What training.activeDeadlineSeconds measures: wall time since status.training.startTime
    minus status.training.suspendedSeconds (the time the job spent suspended since then)."""
    return (now - started).total_seconds() - float(training.get("suspendedSeconds") or 0)


def account_suspension(training: dict[str, Any] | None, now: datetime) -> None:
    """On resume: add the suspended interval to status.training.suspendedSeconds."""
    suspended_at = parse_ts((training or {}).get("suspendedAt"))
    if training is None or suspended_at is None:
        return
    training.pop("suspendedAt")
    seconds = max(0.0, (now - suspended_at).total_seconds())
    training["suspendedSeconds"] = int(float(training.get("suspendedSeconds") or 0) + seconds)
