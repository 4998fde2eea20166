"""`POST /v2/enqueue`: PagerDuty Events API v2, so that any tool with a PagerDuty integration can
point at the gateway.

The credential is the event's `routing_key` (or a bearer token): the body is read only when the
route has credentials (or in dev mode), within the size limit and the body deadline, and parsed
once; nothing but the routing key is looked at before it is checked, so an unauthenticated
sender learns nothing of validation. The routing key is bound to a tenant in the credentials
file, and removed from the record before it is produced (a credential never reaches a topic).
"""

from __future__ import annotations

import json
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from ingest_worker.core.errors import InvalidSignal
from ingest_worker.service.gateway import pagerduty
from ingest_worker.service.gateway.auth import HeaderVerdict, IngestAuthenticator, Pending
from ingest_worker.service.gateway.intake import Decoded, Decoder, Gateway, incident_keys
from ingest_worker.service.gateway.refusals import (
    Refusal,
    error_responses,
    render_pagerduty,
    unauthorized,
)
from ingest_worker.sources.decode import decode_object, parse_object

PAGERDUTY = "pagerduty"


class PagerDutyAccepted(BaseModel):
    status: Literal["success"]
    message: str
    dedup_key: str


class PagerDutyRefused(BaseModel):
    status: str
    message: str
    errors: list[str]


def event_decoder(gateway: Gateway, auth: IngestAuthenticator) -> Decoder:
    def decode(body: bytes, verdict: HeaderVerdict) -> Decoded:
        by_key = isinstance(verdict, Pending) and verdict.routing_key
        try:
            data = parse_object(body, max_bytes=gateway.max_body_bytes)
        except InvalidSignal as exc:
            if by_key:  # no routing key can be read: nothing else is said
                raise unauthorized("credentials required (routing_key or bearer token)") from None
            raise Refusal(400, exc.reason.value, exc.message) from None
        principal = auth.routing_key(PAGERDUTY, data.get("routing_key")) if by_key else None
        try:
            event = pagerduty.validate_event(data)
        except pagerduty.InvalidEvent as exc:
            raise Refusal(400, "schema_violation", exc.message, errors=exc.errors) from None
        record = pagerduty.completed(data, event)
        try:
            # With its routing key, so that the source's own rules about it still apply.
            effects = decode_object(PAGERDUTY, record)
        except InvalidSignal as exc:
            raise Refusal(400, exc.reason.value, exc.message) from None
        record.pop("routing_key", None)
        value = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
        dedup_key = str(record["dedup_key"])
        keys = incident_keys(effects) or [dedup_key]
        return Decoded(value, effects, keys, principal, {"dedup_key": dedup_key})

    return decode


def router(gateway: Gateway) -> APIRouter:
    routes = APIRouter()
    decoder = event_decoder(gateway, gateway.auth)
    schema = {"$ref": "#/components/schemas/PagerDutyEvent"}

    @routes.post(
        "/v2/enqueue",
        status_code=202,
        response_model=PagerDutyAccepted,
        responses=error_responses(PagerDutyRefused),
        tags=["pagerduty"],
        summary="PagerDuty Events API v2: trigger, acknowledge, resolve",
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}
        },
    )
    async def enqueue(request: Request) -> Response:
        async def work() -> Response:
            admitted = await gateway.accept(request, PAGERDUTY, decoder, routing_key=True)
            return JSONResponse(
                {
                    "status": "success",
                    "message": "Event processed",
                    "dedup_key": admitted.decoded.extra["dedup_key"],
                },
                status_code=202,
            )

        return await gateway.answer(PAGERDUTY, work, render_pagerduty)

    return routes
