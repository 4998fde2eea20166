"""What the read routes stand on: their settings, the PostgreSQL pool they read through, the
command producer, the live event fan-out, and problem+json answers.

One `ReadBackend` per gateway process, on `app.state.read_backend`; the server starts it before
serving and stops it after the last request.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest_worker.service.config import Settings
from ingest_worker.service.gateway import problems
from ingest_worker.service.gateway.settings import GatewaySettings
from ingest_worker.service.kafka_clients import make_producer
from ingest_worker.store.reads import BadReadRequest

log = structlog.get_logger("ingest_worker.gateway")


class ReadSettings(BaseSettings):
    """The read API and stream (`INGEST_READ_*`)."""

    model_config = SettingsConfigDict(env_prefix="INGEST_READ_", extra="ignore", frozen=True)

    pool_size: int = Field(
        default=4, ge=1, le=64, description="PostgreSQL connections of the read API per gateway."
    )
    stream_retention_hours: float = Field(
        default=24.0,
        gt=0,
        description="How far back a stream resumes from Last-Event-ID; older positions get "
        "one `event: resync`.",
    )
    stream_keepalive_seconds: float = Field(
        default=15.0, gt=0, description="Interval of the stream's keep-alive comments."
    )
    stream_queue_events: int = Field(
        default=1000,
        ge=1,
        description="Events buffered per stream client; a client further behind is cut off "
        "(it resumes with Last-Event-ID).",
    )
    stream_replay_max_events: int = Field(
        default=10_000,
        ge=1,
        description="Most events a resume replays from PostgreSQL; a client further behind "
        "gets `event: resync`.",
    )
    stream_max_clients: int = Field(
        default=1000, ge=1, description="Stream connections per gateway process (then 503)."
    )


# ------------------------------------------------------------------ problems (RFC 9457)
class Problem(BaseModel):
    """An error (`application/problem+json`). `reason` is stable: invalid_parameter,
    unknown_parameter, invalid_cursor, cursor_mismatch, invalid_last_event_id, not_found,
    unauthenticated, forbidden_scope, invalid_tenant, unsupported_media_type, too_large,
    invalid_json, schema_violation, broker_unavailable, database_unavailable,
    too_many_streams."""

    type: str
    title: str
    status: int
    detail: str
    reason: str
    message: str | None = Field(default=None, description="The same as detail, when present.")


def refusal(
    status: int, reason: str, message: str, headers: dict[str, str] | None = None
) -> problems.Problem:
    """A problem for the gateway's handler; `message` repeats `detail` as the ingest routes'
    refusals name it."""
    return problems.Problem(status, reason, message, headers=headers, message=message)


def problem(
    status: int, reason: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return refusal(status, reason, message, headers).response()


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries of the errors a read route answers."""
    meanings = {
        400: "A bad parameter (reason says which kind).",
        401: "No or invalid credentials.",
        403: "The credentials lack the scope this route needs.",
        404: "No such resource for this tenant (another tenant's is not found either).",
        413: "The body is over the size limit.",
        415: "The body is not declared as JSON.",
        503: "PostgreSQL or the broker did not answer in time: retry.",
    }
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        code: {
            "model": Problem,
            "description": meanings[code],
            "content": {problems.PROBLEM_JSON: {"schema": schema}},
        }
        for code in codes
    }


def _parameter_problem(exc: RequestValidationError) -> JSONResponse:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "path"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return problem(400, "invalid_parameter", "; ".join(parts) or "invalid parameter")


class ProblemRoute(APIRoute):
    """A route whose refusals are problem+json: bad parameters 400 (never 422), the backend's
    errors as their status, PostgreSQL unavailable 503."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _parameter_problem(exc)
            except BadReadRequest as exc:
                return problem(400, exc.reason, exc.message)
            except (asyncpg.PostgresConnectionError, OSError, TimeoutError) as exc:
                log.warning("read_database_unavailable", error=type(exc).__name__)
                return problem(
                    503, "database_unavailable", "the database did not answer: retry later",
                    {"Retry-After": "2"},
                )  # fmt: skip
            except asyncpg.DataError as exc:  # a value PostgreSQL cannot take (class 22)
                return problem(400, "invalid_parameter", f"invalid value: {type(exc).__name__}")
            except asyncpg.QueryCanceledError:
                return problem(503, "database_unavailable", "the read took too long: narrow it")

        return answer


# ------------------------------------------------------------------ the backend
class ReadBackend:
    """The pool, the command producer and the event fan-out of one gateway process."""

    def __init__(self, settings: Settings, config: ReadSettings | None = None) -> None:
        from ingest_worker.service.gateway.read_fanout import EventFanout

        self.settings = settings
        self.config = config or ReadSettings()
        self._pool: asyncpg.Pool | None = None
        self._producer: AIOKafkaProducer | None = None
        self.fanout = EventFanout(self)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise refusal(503, "database_unavailable", "the read API is starting: retry")
        return self._pool

    async def start(self) -> None:
        """Never fails: connections are opened on first use (min_size=0), the stream's consumer
        connects in the background; until then reads answer 503."""
        self._pool = await asyncpg.create_pool(
            self.settings.database_url.get_secret_value(),
            min_size=0,
            max_size=self.config.pool_size,
            command_timeout=30,
            timeout=10,
        )
        await self.fanout.start()

    async def producer(self) -> AIOKafkaProducer:
        """The command producer, connected on first use (acks=all)."""
        if self._producer is None:
            producer = make_producer(self.settings)
            try:
                await producer.start()
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise refusal(
                    503, "broker_unavailable", "the broker does not answer: retry later",
                    {"Retry-After": "2"},
                ) from exc  # fmt: skip
            self._producer = producer
        return self._producer

    def closing(self) -> None:
        """End every open stream (clients come back with Last-Event-ID elsewhere)."""
        self.fanout.close_all()

    async def stop(self) -> None:
        await self.fanout.stop()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await self._pool.close()


def attach_backend(app: FastAPI, settings: Settings, config: GatewaySettings) -> ReadBackend | None:
    """The read routes' backend on `app.state`, when the deployment exposes them (or the
    console, which reads through the same backend)."""
    if not {"read", "console"} & set(config.route_groups):
        return None
    backend = ReadBackend(settings)
    app.state.read_backend = backend
    return backend


def backend_of(request: Request) -> ReadBackend:
    backend = getattr(request.app.state, "read_backend", None)
    if backend is None:
        raise refusal(503, "database_unavailable", "the read API is not started")
    assert isinstance(backend, ReadBackend)
    return backend


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
