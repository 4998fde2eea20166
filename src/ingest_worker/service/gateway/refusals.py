"""Refusals of the ingest routes, in the shape each sender understands.

Webhook senders get `{"reason", "message"}` (the reason stable: the dead-letter reasons for
validation errors, else unauthorized, forbidden, stale_signature, invalid_tenant, too_large,
unsupported_media_type, bad_request, body_timeout, rate_limited, broker_unavailable,
not_found, method_not_allowed); PagerDuty Events API senders get PagerDuty's own
`{"status", "message", "errors"}`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="ingest-gateway"'}


class Refusal(Exception):
    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = dict(headers or {})
        self.errors = list(errors) or [message]


def unauthorized(message: str, reason: str = "unauthorized") -> Refusal:
    return Refusal(401, reason, message, CHALLENGE)


Renderer = Callable[[Refusal], JSONResponse]


def render(refusal: Refusal) -> JSONResponse:
    return JSONResponse(
        {"reason": refusal.reason, "message": refusal.message},
        status_code=refusal.status,
        headers=refusal.headers,
    )


_PD_STATUS = {400: "invalid event", 429: "throttle event", 503: "unavailable"}


def render_pagerduty(refusal: Refusal) -> JSONResponse:
    status = _PD_STATUS.get(refusal.status, refusal.reason.replace("_", " "))
    return JSONResponse(
        {"status": status, "message": refusal.message, "errors": refusal.errors},
        status_code=refusal.status,
        headers=refusal.headers,
    )


_MEANINGS = {
    400: "Invalid: the reason is the dead-letter reason the worker would give.",
    401: "No or invalid credentials, none configured for this source (fail closed), or a "
    "signature outside the freshness window.",
    403: "Credentials of another source.",
    404: "The source is not installed.",
    408: "The body did not arrive within the body deadline.",
    413: "The body is over the size limit.",
    415: "The body is not declared as JSON.",
    429: "Over the source's rate limit: retry after Retry-After seconds.",
    503: "The broker did not acknowledge in time: nothing was accepted; retry after "
    "Retry-After seconds.",
}


def error_responses(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": model, "description": text} for code, text in _MEANINGS.items()}
