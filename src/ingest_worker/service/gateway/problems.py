"""Problem details (RFC 9457) for the gateway's routes: `application/problem+json` bodies with
`type`, `title`, `status`, `detail` and the stable `reason` a client can branch on.

A route (or a dependency such as `principal.require`) raises `Problem`; `install(app)` renders
it. `detail` is for people and never echoes a credential or the request body.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

PROBLEM_JSON = "application/problem+json"
#: `type` is this prefix + the reason: a stable identifier (RFC 9457 §3.1.1), not a web page.
TYPE_PREFIX = "urn:ingest-worker:problem:"


def problem_body(
    status: int, reason: str, detail: str, *, title: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The members of a problem: `type`, `title`, `status`, `detail`, `reason`, then `extra`."""
    return {
        "type": TYPE_PREFIX + reason,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "reason": reason,
        **extra,
    }


def problem_response(
    status: int,
    reason: str,
    detail: str,
    *,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    return JSONResponse(
        problem_body(status, reason, detail, title=title, **extra),
        status_code=status,
        headers=dict(headers or {}),
        media_type=PROBLEM_JSON,
    )


class Problem(Exception):
    """An answer that is not a success: raise it from a route or a dependency."""

    def __init__(
        self,
        status: int,
        reason: str,
        detail: str,
        *,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.title = title
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self) -> JSONResponse:
        return problem_response(
            self.status,
            self.reason,
            self.detail,
            title=self.title,
            headers=self.headers,
            **self.extra,
        )


async def _render(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.response()


def install(app: FastAPI) -> None:
    """Render every `Problem` raised by `app`'s routes and dependencies."""
    app.add_exception_handler(Problem, _render)


#: The OpenAPI description of a problem answer, for `responses=` of a route.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "reason"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "reason": {"type": "string"},
    },
}


def problem_responses(meanings: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status answered with a problem, with its meaning."""
    return {
        status: {"description": text, "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}}
        for status, text in meanings.items()
    }
