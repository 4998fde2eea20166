"""What both PagerDuty shapes share: the source's name, its error code, its rejections."""

from __future__ import annotations

from typing import Final

from ingest_worker.core.errors import InvalidSignal, RejectReason

NAME: Final = "pagerduty"
PAGERDUTY_ALERT: Final = "PAGERDUTY_ALERT"
ERROR_CODES: Final = (PAGERDUTY_ALERT,)
WEBHOOK_PREFIX: Final = "pagerduty"
EVENTS_PREFIX: Final = "pagerduty-events"
#: PagerDuty limits dedup_key to 255 characters.
MAX_DEDUP_KEY: Final = 255


def schema_violation(message: str) -> InvalidSignal:
    return InvalidSignal(RejectReason.SCHEMA_VIOLATION, message)


def missing_identity(message: str) -> InvalidSignal:
    return InvalidSignal(RejectReason.UNMAPPABLE, f"missing identity: {message}")
