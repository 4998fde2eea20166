"""Lifecycle commands over HTTP: `POST /v1/incidents/{id}/commands` and the receipts.

The command is published to `incident.commands` (key: the incident id, header `tenant`) for
the worker, the only writer of the store, to decide; the answer waits for its receipt in
`command_receipts` up to `wait` seconds. The actor is the credential's, never the body's; the
`Idempotency-Key` header is the commandId, and a key already decided answers its stored
outcome without publishing again.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from ingest_worker.service.gateway.limits import (
    BadContentLength,
    BodyTooLarge,
    check_content_length,
    is_json_media_type,
    read_bounded,
)
from ingest_worker.service.gateway.principal import Principal, require
from ingest_worker.service.gateway.read_backend import (
    ProblemRoute,
    ReadBackend,
    backend_of,
    dumps,
    problem_responses,
    refusal,
)
from ingest_worker.service.gateway.read_models import (
    CommandOutcome,
    CommandPending,
    CommandRequest,
    Receipt,
)
from ingest_worker.sources.commands import CommandMessage
from ingest_worker.store import reads

router = APIRouter(route_class=ProblemRoute, tags=["commands"])

MAX_COMMAND_BODY = 16 * 1024
MAX_WAIT_SECONDS = 30.0
PUBLISH_TIMEOUT_SECONDS = 5.0
#: `Idempotency-Key`: a commandId (≤ 128 visible ASCII characters).
KEY_PATTERN = r"^[\x21-\x7e]{1,128}$"


def _outcome(receipt: dict[str, Any]) -> dict[str, Any]:
    return {k: receipt[k] for k in ("commandId", "outcome", "reason", "eventId", "eventSeq",
                                    "status")}  # fmt: skip


async def _body(request: Request) -> CommandRequest:
    if not is_json_media_type(request.headers.get("content-type")):
        raise refusal(415, "unsupported_media_type", "the body must be application/json")
    try:
        check_content_length(request.headers.get("content-length"), MAX_COMMAND_BODY)
        raw = await read_bounded(request.stream(), MAX_COMMAND_BODY)
    except BodyTooLarge as exc:
        raise refusal(413, "too_large", str(exc)) from None
    except BadContentLength as exc:
        raise refusal(400, "bad_request", str(exc)) from None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise refusal(400, "invalid_json", "the body is not JSON") from None
    try:
        return CommandRequest.model_validate(data)
    except ValidationError as exc:
        raise refusal(400, "schema_violation", _first_error(exc)) from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error.get("loc", ())) or "body"
    return f"{where}: {error.get('msg', 'invalid')}"


def command_record(
    principal: Principal, incident: uuid.UUID, command_id: str, request: CommandRequest
) -> dict[str, Any]:
    """The record for `incident.commands`, validated as the worker will validate it."""
    message: dict[str, Any] = {
        "commandId": command_id,
        "type": request.type,
        "incidentId": str(incident),
        "actor": {"type": "human", "id": principal.actor, "roles": sorted(principal.roles)},
        "issuedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    for name in ("rationale", "note", "severity", "expectedSeq"):
        value = getattr(request, name)
        if value is not None:
            message[name] = value
    try:
        CommandMessage.model_validate(message)
    except ValidationError as exc:
        raise refusal(400, "schema_violation", _first_error(exc)) from None
    return message


async def _publish(backend: ReadBackend, tenant: str, incident: uuid.UUID, value: bytes) -> None:
    producer = await backend.producer()
    try:
        async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
            await producer.send_and_wait(
                backend.settings.topic_commands,
                value,
                key=str(incident).encode(),
                headers=[("tenant", tenant.encode())],
            )
    except Exception as exc:
        raise refusal(
            503, "broker_unavailable", "the broker did not acknowledge the command: retry "
            "with the same Idempotency-Key", {"Retry-After": "2"},
        ) from exc  # fmt: skip


async def _await_receipt(
    backend: ReadBackend, tenant: str, command_id: str, wait: float
) -> dict[str, Any] | None:
    """The receipt once the worker stored it, or None after `wait` seconds."""
    deadline = time.monotonic() + wait
    pause = 0.02
    while True:
        async with reads.reading(backend.pool, tenant) as conn:
            receipt = await reads.get_receipt(conn, tenant, command_id)
        left = deadline - time.monotonic()
        if receipt is not None or left <= 0:
            return receipt
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 1.5, 0.25)


async def send_command(
    backend: ReadBackend,
    principal: Principal,
    incident_id: uuid.UUID,
    body: CommandRequest,
    command_id: str,
    wait: float,
) -> dict[str, Any] | None:
    """The command path (the HTTP route's and the console's): publish `body` as `principal`
    unless `command_id` is already decided, then wait up to `wait` seconds for its receipt.
    Another tenant's or an unknown incident: refusal 404; not decided in time: None."""
    tenant = principal.tenant
    async with reads.reading(backend.pool, tenant) as conn:
        exists = await reads.incident_exists(conn, tenant, incident_id)
        decided = await reads.get_receipt(conn, tenant, command_id)
    if not exists:
        raise refusal(404, "not_found", f"no incident {incident_id}")
    if decided is None:
        record = command_record(principal, incident_id, command_id, body)
        await _publish(backend, tenant, incident_id, dumps(record))
        decided = await _await_receipt(backend, tenant, command_id, wait)
    return decided


@router.post(
    "/v1/incidents/{incident_id}/commands",
    response_model=CommandOutcome,
    responses={
        202: {
            "model": CommandPending,
            "description": "Not decided within `wait`: poll the Location.",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        **problem_responses(400, 401, 403, 404, 413, 415, 503),
    },
    summary="Send a lifecycle command and wait for its outcome",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/CommandRequest"}}
            },
        }
    },
)
async def post_command(
    request: Request,
    principal: Annotated[Principal, Depends(require("command"))],
    backend: Annotated[ReadBackend, Depends(backend_of)],
    incident_id: Annotated[uuid.UUID, Path(description="The incident's id (a UUID).")],
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS, allow_inf_nan=False)] = 5.0,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", pattern=KEY_PATTERN, description="The commandId."),
    ] = None,
) -> Response:
    body = await _body(request)
    command_id = idempotency_key or f"http-{uuid.uuid4()}"
    decided = await send_command(backend, principal, incident_id, body, command_id, wait)
    if decided is None:
        location = f"/v1/commands/{command_id}"
        return JSONResponse(
            {"commandId": command_id, "outcome": None, "location": location},
            status_code=202,
            headers={"Location": location},
        )
    return JSONResponse(_outcome(decided))


@router.get(
    "/v1/commands/{command_id}",
    response_model=Receipt,
    responses=problem_responses(400, 401, 403, 404, 503),
    summary="The stored outcome of a command",
)
async def get_command(
    principal: Annotated[Principal, Depends(require("read"))],
    backend: Annotated[ReadBackend, Depends(backend_of)],
    command_id: Annotated[str, Path(pattern=KEY_PATTERN)],
) -> Response:
    async with reads.reading(backend.pool, principal.tenant) as conn:
        receipt = await reads.get_receipt(conn, principal.tenant, command_id)
    if receipt is None:
        raise refusal(404, "not_found", f"no receipt for command {command_id} (yet)")
    return JSONResponse(receipt)
