"""`POST /v1/signals/{source}` for every installed source, and `POST /v1/incidents/ingest` (the
generic request → the external source's topic). Both go through `Gateway.accept`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from ingest_worker.core.errors import InvalidSignal
from ingest_worker.core.values import RejectedPart, SignalEffect
from ingest_worker.service.gateway.auth import HeaderVerdict
from ingest_worker.service.gateway.intake import Decoded, Decoder, Gateway, incident_keys
from ingest_worker.service.gateway.refusals import Refusal, error_responses
from ingest_worker.sources.contract import Source
from ingest_worker.sources.decode import decode_record

EXTERNAL = "external"


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
    unauthorized, forbidden, stale_signature, invalid_tenant, too_large, unsupported_media_type,
    bad_request, body_timeout, rate_limited, broker_unavailable, not_found, method_not_allowed."""

    reason: str
    message: str


class IngestAccepted(BaseModel):
    incidentKey: str | None
    incidentKeys: list[str]
    status: Literal["accepted"]
    message: str
    topic: str
    partition: int
    offset: int


def _rejected_parts(effects: Sequence[SignalEffect]) -> list[dict[str, Any]]:
    return [
        {"index": e.index, "message": e.message} for e in effects if isinstance(e, RejectedPart)
    ]


def record_decoder(gateway: Gateway, source: str) -> Decoder:
    """The body is the record: decoded as the worker will decode it."""

    def decode(body: bytes, _: HeaderVerdict) -> Decoded:
        try:
            effects = decode_record(source, body, max_bytes=gateway.max_body_bytes)
        except InvalidSignal as exc:
            raise Refusal(400, exc.reason.value, exc.message) from None
        return Decoded(body, effects, incident_keys(effects))

    return decode


def _body_of(name: str) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/body__{name}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _signal_handler(gateway: Gateway, name: str) -> Callable[[Request], Awaitable[Response]]:
    decoder = record_decoder(gateway, name)

    async def handle(request: Request) -> Response:
        async def work() -> Response:
            admitted = await gateway.accept(request, name, decoder)
            ack = admitted.ack
            return JSONResponse(
                {
                    "topic": ack.topic,
                    "partition": ack.partition,
                    "offset": ack.offset,
                    "incidentKeys": admitted.decoded.keys,
                    "rejectedParts": _rejected_parts(admitted.decoded.effects),
                },
                status_code=202,
            )

        return await gateway.answer(name, work)

    return handle


def router(gateway: Gateway, sources: Sequence[Source]) -> APIRouter:
    routes = APIRouter()
    for source in sources:
        routes.add_api_route(
            f"/v1/signals/{source.name}",
            _signal_handler(gateway, source.name),
            methods=["POST"],
            status_code=202,
            response_model=Accepted,
            responses=error_responses(Refused),
            summary=f"Post a {source.name} signal: {source.summary}"[:200],
            operation_id=f"post_signal_{source.name}",
            tags=["signals"],
            openapi_extra=_body_of(source.name),
        )
    external = record_decoder(gateway, EXTERNAL)

    @routes.post(
        "/v1/incidents/ingest",
        status_code=202,
        response_model=IngestAccepted,
        responses=error_responses(Refused),
        tags=["signals"],
        summary="Generic ingestion → the external source's topic",
        openapi_extra=_body_of(EXTERNAL),
    )
    async def ingest(request: Request) -> Response:
        async def work() -> Response:
            admitted = await gateway.accept(request, EXTERNAL, external)
            keys, ack = admitted.decoded.keys, admitted.ack
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

    return routes
