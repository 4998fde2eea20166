"""The gateway's ASGI application (FastAPI): SPEC §9.

Every POST goes the same way: 415 unless JSON → 413 over the size limit (declared length first,
then while reading, never buffering more than the limit) → 401/403 → 429 → 400 with the
worker's own validation (`decode_record`) → produce with acks=all → 202 with where the record
is, or 503 with Retry-After when the broker does not acknowledge in time.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import structlog
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ingest_worker.core.errors import InvalidSignal
from ingest_worker.core.values import (
    IncidentInput,
    Recovery,
    RejectedPart,
    SignalEffect,
    SourceTransition,
)
from ingest_worker.service.config import Settings
from ingest_worker.service.gateway import pagerduty
from ingest_worker.service.gateway.auth import Authenticator, SignatureScheme, Verdict
from ingest_worker.service.gateway.forwarder import Acknowledged, BrokerUnavailable
from ingest_worker.service.gateway.limits import (
    BadContentLength,
    BodyTooLarge,
    RateLimiter,
    check_content_length,
    is_json_media_type,
    read_bounded,
)
from ingest_worker.service.gateway.metrics import GatewayMetrics
from ingest_worker.service.gateway.settings import CredentialStore, GatewaySettings
from ingest_worker.service.gateway.traces import TELEMETRY, annotate
from ingest_worker.sources.contract import Source
from ingest_worker.sources.decode import decode_record, parse_json

log = structlog.get_logger("ingest_worker.gateway")

PAGERDUTY = "pagerduty"
EXTERNAL = "external"
#: Longest record key; a longer join of incident keys is replaced by its sha256.
MAX_KEY_BYTES = 1024


class Producer(Protocol):
    broker_ok: bool

    async def produce(self, topic: str, key: bytes | None, value: bytes) -> Acknowledged: ...


# ------------------------------------------------------------------ response models (OpenAPI)
class RejectedPartOut(BaseModel):
    index: int
    message: str


class Accepted(BaseModel):
    """The record is on `topic` at `partition`/`offset`, acknowledged by the broker."""

    topic: str
    partition: int
    offset: int
    incidentKeys: list[str]
    rejectedParts: list[RejectedPartOut] = Field(
        default_factory=list,
        description="Invalid alerts of a group notification: the worker applies the others "
        "and dead-letters the record as partially_invalid.",
    )


class Refused(BaseModel):
    """Not accepted. `reason` is stable: the dead-letter reasons for validation errors, else
    unauthorized, forbidden, too_large, unsupported_media_type, bad_request, rate_limited,
    broker_unavailable, not_found, method_not_allowed."""

    reason: str
    message: str


class PagerDutyAccepted(BaseModel):
    status: Literal["success"]
    message: str
    dedup_key: str


class PagerDutyRefused(BaseModel):
    status: str
    message: str
    errors: list[str]


class IngestAccepted(BaseModel):
    incidentKey: str | None
    incidentKeys: list[str]
    status: Literal["accepted"]
    message: str
    topic: str
    partition: int
    offset: int


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    broker: bool


# ------------------------------------------------------------------ refusals
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


def _refused(refusal: Refusal) -> JSONResponse:
    return JSONResponse(
        {"reason": refusal.reason, "message": refusal.message},
        status_code=refusal.status,
        headers=refusal.headers,
    )


_PD_STATUS = {400: "invalid event", 429: "throttle event", 503: "unavailable"}


def _pagerduty_refused(refusal: Refusal) -> JSONResponse:
    status = _PD_STATUS.get(refusal.status, refusal.reason.replace("_", " "))
    return JSONResponse(
        {"status": status, "message": refusal.message, "errors": refusal.errors},
        status_code=refusal.status,
        headers=refusal.headers,
    )


def _error_responses(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    meanings = {
        400: "Invalid: the reason is the dead-letter reason the worker would give.",
        401: "No or invalid credentials, or none configured for this source (fail closed).",
        403: "Credentials of another source.",
        404: "The source is not installed.",
        413: "The body is over the size limit.",
        415: "The body is not declared as JSON.",
        429: "Over the source's rate limit: retry after Retry-After seconds.",
        503: "The broker did not acknowledge in time: nothing was accepted; retry after "
        "Retry-After seconds.",
    }
    return {code: {"model": model, "description": text} for code, text in meanings.items()}


# ------------------------------------------------------------------ keys
def incident_keys(effects: Sequence[SignalEffect]) -> list[str]:
    """The identities the record's effects are about, in order, without repeats."""
    keys: list[str] = []
    for effect in effects:
        if isinstance(effect, IncidentInput | SourceTransition):
            key = effect.incident_key
        elif isinstance(effect, Recovery):
            key = effect.scope
        else:
            continue
        if key not in keys:
            keys.append(key)
    return keys


def record_key(keys: Sequence[str], body: bytes) -> bytes:
    """The alert's identity, so that a sender's retries land on one partition; a signal that
    names no incident is keyed by its content."""
    if not keys:
        return b"sha256:" + hashlib.sha256(body).hexdigest().encode()
    joined = "\n".join(sorted(keys)).encode()
    if len(joined) > MAX_KEY_BYTES:
        return b"sha256:" + hashlib.sha256(joined).hexdigest().encode()
    return joined


def _rejected_parts(effects: Sequence[SignalEffect]) -> list[dict[str, Any]]:
    return [
        {"index": e.index, "message": e.message} for e in effects if isinstance(e, RejectedPart)
    ]


# ------------------------------------------------------------------ the application
@dataclass
class Gateway:
    settings: Settings
    config: GatewaySettings
    producer: Producer
    authenticator: Authenticator
    limiter: RateLimiter
    metrics: GatewayMetrics
    sources: dict[str, Source]

    @property
    def max_body_bytes(self) -> int:
        return self.config.max_body_bytes or self.settings.max_message_bytes

    async def read_body(self, request: Request, source: str) -> bytes:
        if not is_json_media_type(request.headers.get("content-type")):
            raise Refusal(
                415,
                "unsupported_media_type",
                "the body must be JSON (Content-Type: application/json)",
            )
        limit = self.max_body_bytes
        try:
            check_content_length(request.headers.get("content-length"), limit)
            body = await read_bounded(request.stream(), limit)
        except BodyTooLarge as exc:
            raise Refusal(413, "too_large", str(exc)) from None
        except BadContentLength as exc:
            raise Refusal(400, "bad_request", str(exc)) from None
        self.metrics.request_bytes.labels(source).inc(len(body))
        return body

    def authorize(
        self, request: Request, source: str, body: bytes, tokens: Sequence[str] = ()
    ) -> None:
        verdict = self.authenticator.check(source, request.headers, body, tokens=tokens)
        if verdict is Verdict.ACCEPTED:
            return
        if verdict is Verdict.UNAUTHENTICATED_DEV:
            log.warning(
                "gateway_unauthenticated_request_accepted",
                source=source,
                why="dev mode: no credentials configured for this source",
            )
            return
        challenge = {"WWW-Authenticate": 'Bearer realm="ingest-gateway"'}
        if verdict is Verdict.FORBIDDEN:
            raise Refusal(403, "forbidden", f"these credentials are not valid for source {source}")
        message = {
            Verdict.NOT_CONFIGURED: f"no credentials are configured for source {source}: "
            "refused (fail closed)",
            Verdict.MISSING: "credentials required (bearer token, basic auth or signature)",
            Verdict.INVALID: "invalid credentials",
        }[verdict]
        raise Refusal(401, "unauthorized", message, challenge)

    def throttle(self, source: str) -> None:
        retry_after = self.limiter.retry_after(source)
        if retry_after is not None:
            raise Refusal(
                429,
                "rate_limited",
                f"over the rate limit of source {source}",
                {"Retry-After": str(retry_after)},
            )

    def decode(self, source: str, body: bytes) -> tuple[SignalEffect, ...]:
        try:
            return decode_record(source, body, max_bytes=self.max_body_bytes)
        except InvalidSignal as exc:
            raise Refusal(400, exc.reason.value, exc.message) from None

    async def produce(self, source: str, key: bytes, value: bytes) -> Acknowledged:
        try:
            return await self.producer.produce(self.settings.topic_of(source), key, value)
        except BrokerUnavailable as exc:
            raise Refusal(
                503,
                "broker_unavailable",
                f"{exc}: nothing was accepted, retry later",
                {"Retry-After": str(self.config.retry_after_seconds)},
            ) from None

    def not_installed(self, source: str) -> Refusal:
        return Refusal(404, "not_found", f"the {source} source is not installed in this version")

    async def answer(
        self,
        source: str,
        work: Callable[[], Awaitable[JSONResponse]],
        render: Callable[[Refusal], JSONResponse] = _refused,
    ) -> JSONResponse:
        """Run `work`, render its refusal, count and log the answer (never a secret)."""
        started = time.perf_counter()
        try:
            response = await work()
            reason = None
        except Refusal as refusal:
            response, reason = render(refusal), refusal.reason
        status = response.status_code
        annotate(source, reason=reason)
        self.metrics.requests.labels(source, str(status)).inc()
        fields = {
            "source": source,
            "status": status,
            "ms": round(1000 * (time.perf_counter() - started), 2),
        }
        if reason is None:
            log.debug("gateway_accepted", **fields)
        else:
            log.info("gateway_refused", reason=reason, **fields)
        return response


def _hoisted_schema(source: Source, components: dict[str, Any]) -> dict[str, Any]:
    """The request body schema of a source (its shapes' JSON Schemas), with their `$defs` moved
    into the OpenAPI components."""
    prefix = f"{source.name}__"

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: rewrite(v) for k, v in node.items() if k not in ("$defs", "$schema")}
            ref = out.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                out["$ref"] = f"#/components/schemas/{prefix}{ref.removeprefix('#/$defs/')}"
            return out
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    options = []
    for shape in source.shapes:
        schema = shape.wire.model_json_schema(mode="validation")
        for name, definition in schema.get("$defs", {}).items():
            components[f"{prefix}{name}"] = rewrite(definition)
        name = f"{prefix}{shape.name}"
        components[name] = rewrite(schema)
        options.append({"$ref": f"#/components/schemas/{name}"})
    return options[0] if len(options) == 1 else {"anyOf": options}


def create_app(
    settings: Settings,
    config: GatewaySettings,
    producer: Producer,
    *,
    sources: Sequence[Source],
    dev: bool = False,
    metrics: GatewayMetrics | None = None,
    schemes: Mapping[str, SignatureScheme] | None = None,
) -> FastAPI:
    """The gateway application for `sources` (the registry's, normally)."""
    from ingest_worker.service.gateway.auth import default_schemes

    gateway = Gateway(
        settings=settings,
        config=config,
        producer=producer,
        authenticator=Authenticator(
            CredentialStore(config),
            dev=dev,
            schemes=schemes
            if schemes is not None
            else default_schemes(config.grafana_timestamp_header),
        ),
        limiter=RateLimiter(config),
        metrics=metrics or GatewayMetrics(),
        sources={s.name: s for s in sources},
    )
    app = FastAPI(
        title="ingest-worker webhook gateway",
        version="1",
        description="HTTP → Kafka for alerting tools (SPEC §9). A 202 means the broker "
        "acknowledged the record (acks=all); a 503 means nothing was accepted.",
        docs_url="/docs",
        redoc_url=None,
        telemetry=TELEMETRY,
    )
    app.state.gateway = gateway
    body_schemas: dict[str, Any] = {}

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        reason = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return JSONResponse(
            {"reason": reason, "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.get("/healthz", response_model=Liveness, tags=["operations"])
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})

    @app.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "The broker does not answer."}},
        tags=["operations"],
    )
    async def readyz() -> JSONResponse:
        ok = bool(producer.broker_ok)
        return JSONResponse(
            {"ready": ok, "broker": ok},
            status_code=200 if ok else 503,
            headers={"Cache-Control": "no-store"},
        )

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def signal_route(source: Source) -> Callable[[Request], Awaitable[JSONResponse]]:
        name = source.name

        async def handle(request: Request) -> JSONResponse:
            async def work() -> JSONResponse:
                body = await gateway.read_body(request, name)
                gateway.authorize(request, name, body)
                gateway.throttle(name)
                effects = gateway.decode(name, body)
                keys = incident_keys(effects)
                annotate(name, keys)
                ack = await gateway.produce(name, record_key(keys, body), body)
                return JSONResponse(
                    {
                        "topic": ack.topic,
                        "partition": ack.partition,
                        "offset": ack.offset,
                        "incidentKeys": keys,
                        "rejectedParts": _rejected_parts(effects),
                    },
                    status_code=202,
                )

            return await gateway.answer(name, work)

        return handle

    for source in sources:
        body_schemas[source.name] = source
        app.add_api_route(
            f"/v1/signals/{source.name}",
            signal_route(source),
            methods=["POST"],
            status_code=202,
            response_model=Accepted,
            responses=_error_responses(Refused),
            summary=f"Post a {source.name} signal: {source.summary}"[:200],
            operation_id=f"post_signal_{source.name}",
            tags=["signals"],
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/body__{source.name}"}
                        }
                    },
                }
            },
        )

    @app.post(
        "/v2/enqueue",
        status_code=202,
        response_model=PagerDutyAccepted,
        responses=_error_responses(PagerDutyRefused),
        tags=["pagerduty"],
        summary="PagerDuty Events API v2: trigger, acknowledge, resolve",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/PagerDutyEvent"}}
                },
            }
        },
    )
    async def enqueue(request: Request) -> JSONResponse:
        async def work() -> JSONResponse:
            body = await gateway.read_body(request, PAGERDUTY)
            try:
                data = parse_json(body.decode("utf-8"))
            except UnicodeDecodeError:
                raise Refusal(400, "invalid_encoding", "the body is not UTF-8") from None
            except InvalidSignal as exc:
                raise Refusal(400, exc.reason.value, exc.message) from None
            routing_key = data.get("routing_key") if isinstance(data, dict) else None
            gateway.authorize(
                request,
                PAGERDUTY,
                body,
                tokens=[routing_key] if isinstance(routing_key, str) else [],
            )
            gateway.throttle(PAGERDUTY)
            try:
                event = pagerduty.validate_event(data)
            except pagerduty.InvalidEvent as exc:
                raise Refusal(400, "schema_violation", exc.message, errors=exc.errors) from None
            if PAGERDUTY not in gateway.sources:
                raise gateway.not_installed(PAGERDUTY)
            record = pagerduty.completed(data, event)
            value = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
            effects = gateway.decode(PAGERDUTY, value)
            dedup_key = str(record["dedup_key"])
            keys = incident_keys(effects)
            annotate(PAGERDUTY, keys or [dedup_key])
            await gateway.produce(PAGERDUTY, record_key(keys or [dedup_key], value), value)
            return JSONResponse(
                {"status": "success", "message": "Event processed", "dedup_key": dedup_key},
                status_code=202,
            )

        return await gateway.answer(PAGERDUTY, work, _pagerduty_refused)

    @app.post(
        "/v1/incidents/ingest",
        status_code=202,
        response_model=IngestAccepted,
        responses=_error_responses(Refused),
        tags=["signals"],
        summary="Generic ingestion (seed 002's request) → the external source's topic",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/body__{EXTERNAL}"}
                    }
                },
            }
        },
    )
    async def ingest(request: Request) -> JSONResponse:
        async def work() -> JSONResponse:
            body = await gateway.read_body(request, EXTERNAL)
            gateway.authorize(request, EXTERNAL, body)
            gateway.throttle(EXTERNAL)
            if EXTERNAL not in gateway.sources:
                raise gateway.not_installed(EXTERNAL)
            effects = gateway.decode(EXTERNAL, body)
            keys = incident_keys(effects)
            annotate(EXTERNAL, keys)
            ack = await gateway.produce(EXTERNAL, record_key(keys, body), body)
            return JSONResponse(
                {
                    "incidentKey": keys[0] if keys else None,
                    "incidentKeys": keys,
                    "status": "accepted",
                    "message": "Incident accepted for ingestion",
                    "topic": ack.topic,
                    "partition": ack.partition,
                    "offset": ack.offset,
                },
                status_code=202,
            )

        return await gateway.answer(EXTERNAL, work)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = document.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for name, source in body_schemas.items():
            schemas[f"body__{name}"] = _hoisted_schema(source, schemas)
        if EXTERNAL not in body_schemas:
            schemas[f"body__{EXTERNAL}"] = {"type": "object"}
        event = pagerduty.Event.model_json_schema(
            ref_template="#/components/schemas/PagerDuty{model}"
        )
        for name, definition in event.pop("$defs", {}).items():
            schemas[f"PagerDuty{name}"] = definition
        schemas["PagerDutyEvent"] = event
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "basic": {"type": "http", "scheme": "basic"},
        }
        for path, item in document.get("paths", {}).items():
            if "post" in item and path != "/v2/enqueue":
                item["post"]["security"] = [{"bearer": []}, {"basic": []}]
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
    return app
