"""The one path of every ingest POST: `Gateway.accept`.

Authenticate from the headers (401/403 before any body byte) → 415 unless JSON → 413 on a
declared length over the limit → 429 over the rate limit → read the body within the size limit
and the body deadline (413, 408) → check a signature or routing key the body carries → decode it
once with the worker's own decoding (400 with the dead-letter reason) → produce with acks=all,
with the principal's tenant as the record's `tenant` header → 202, or 503 with Retry-After.
A client that hangs up is counted and logged at info level, never as an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from fastapi import Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from ingest_worker.core.values import IncidentInput, Recovery, SignalEffect, SourceTransition
from ingest_worker.service.config import Settings
from ingest_worker.service.gateway.auth import HeaderVerdict, IngestAuthenticator, Pending
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
from ingest_worker.service.gateway.principal import Principal
from ingest_worker.service.gateway.refusals import Refusal, Renderer, render
from ingest_worker.service.gateway.settings import GatewaySettings
from ingest_worker.service.gateway.traces import annotate
from ingest_worker.sources.contract import Source

log = structlog.get_logger("ingest_worker.gateway")

#: Longest record key; a longer join of incident keys is replaced by its sha256.
MAX_KEY_BYTES = 1024
#: The status counted for a client that hung up before its answer (nginx's convention).
CLIENT_CLOSED = 499


class Producer(Protocol):
    broker_ok: bool

    async def produce(
        self, topic: str, key: bytes | None, value: bytes, *, tenant: str
    ) -> Acknowledged: ...


class ClientGone(Exception):
    """The client closed the connection before its request was read."""


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


@dataclass(frozen=True)
class Decoded:
    """A request body decoded once: the record to produce and what it is about."""

    value: bytes
    effects: tuple[SignalEffect, ...]
    keys: list[str]
    #: The principal the body proved (a routing key), when the headers did not.
    principal: Principal | None = None
    extra: dict[str, Any] = field(default_factory=dict)


#: (body, the headers' verdict) → the record; raises Refusal.
Decoder = Callable[[bytes, HeaderVerdict], Decoded]


@dataclass(frozen=True)
class Admitted:
    """A record the broker acknowledged."""

    ack: Acknowledged
    decoded: Decoded
    principal: Principal


@dataclass
class Gateway:
    settings: Settings
    config: GatewaySettings
    producer: Producer
    auth: IngestAuthenticator
    limiter: RateLimiter
    metrics: GatewayMetrics
    sources: dict[str, Source]

    @property
    def max_body_bytes(self) -> int:
        return self.config.max_body_bytes or self.settings.max_message_bytes

    async def accept(
        self, request: Request, source: str, decoder: Decoder, *, routing_key: bool = False
    ) -> Admitted:
        """Every ingest POST: see the module's docstring. Raises Refusal or ClientGone."""
        verdict = self.auth.from_headers(source, request.headers, routing_key=routing_key)
        if source not in self.sources:
            raise Refusal(404, "not_found", f"the {source} source is not installed in this version")
        self._check_headers(request)
        if isinstance(verdict, Principal):
            self.throttle(source)
        body = await self.read_body(request, source)
        principal = verdict if isinstance(verdict, Principal) else None
        if isinstance(verdict, Pending) and verdict.scheme is not None:
            principal = self.auth.verify(verdict, body)
            self.throttle(source)
        decoded = decoder(body, verdict)
        if principal is None:
            principal = decoded.principal
            if principal is None:
                raise Refusal(401, "unauthorized", "credentials required")
            self.throttle(source)
        annotate(source, decoded.keys)
        ack = await self.produce(
            source, record_key(decoded.keys, decoded.value), decoded.value, principal.tenant
        )
        return Admitted(ack, decoded, principal)

    def _check_headers(self, request: Request) -> None:
        """415 unless JSON; 413 on a declared length over the limit."""
        if not is_json_media_type(request.headers.get("content-type")):
            raise Refusal(
                415,
                "unsupported_media_type",
                "the body must be JSON (Content-Type: application/json)",
            )
        try:
            check_content_length(request.headers.get("content-length"), self.max_body_bytes)
        except BodyTooLarge as exc:
            raise Refusal(413, "too_large", str(exc)) from None
        except BadContentLength as exc:
            raise Refusal(400, "bad_request", str(exc)) from None

    async def read_body(self, request: Request, source: str) -> bytes:
        """The body, within the size limit (413) and the body deadline (408)."""
        limit = self.max_body_bytes
        deadline = self.config.body_timeout_seconds
        try:
            async with asyncio.timeout(deadline):
                body = await read_bounded(request.stream(), limit)
        except BodyTooLarge as exc:
            raise Refusal(413, "too_large", str(exc)) from None
        except TimeoutError:
            raise Refusal(
                408,
                "body_timeout",
                f"the body did not arrive within {deadline:g} s",
                {"Connection": "close"},
            ) from None
        except ClientDisconnect:
            raise ClientGone from None
        self.metrics.request_bytes.labels(source).inc(len(body))
        return body

    def throttle(self, source: str) -> None:
        retry_after = self.limiter.retry_after(source)
        if retry_after is not None:
            raise Refusal(
                429,
                "rate_limited",
                f"over the rate limit of source {source}",
                {"Retry-After": str(retry_after)},
            )

    async def produce(self, source: str, key: bytes, value: bytes, tenant: str) -> Acknowledged:
        try:
            return await self.producer.produce(
                self.settings.topic_of(source), key, value, tenant=tenant
            )
        except BrokerUnavailable as exc:
            raise Refusal(
                503,
                "broker_unavailable",
                f"{exc}: nothing was accepted, retry later",
                {"Retry-After": str(self.config.retry_after_seconds)},
            ) from None

    async def answer(
        self,
        source: str,
        work: Callable[[], Awaitable[Response]],
        renderer: Renderer = render,
    ) -> Response:
        """Run `work`, render its refusal, count and log the answer (never a secret)."""
        started = time.perf_counter()
        reason: str | None = None
        try:
            response = await work()
        except Refusal as refusal:
            response, reason = renderer(refusal), refusal.reason
        except ClientGone:
            # Nobody is left to answer; an empty response keeps the server's bookkeeping.
            response, reason = Response(status_code=CLIENT_CLOSED), "client_closed"
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
