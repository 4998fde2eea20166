"""The list (`GET /`), the detail (`GET /console/incidents/{id}`) and the quick actions
(`POST /console/incidents/{id}/actions`), on the read API's queries and command path."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from ingest_worker.service.console.core import (
    console_of,
    posted_form,
    refused,
    render,
    to_sign_in,
    url_tenant,
)
from ingest_worker.service.console.session import Visitor
from ingest_worker.service.console.views import ListQuery, parse_query
from ingest_worker.service.gateway import problems
from ingest_worker.service.gateway.read_backend import ReadBackend
from ingest_worker.service.gateway.read_commands import send_command
from ingest_worker.service.gateway.read_models import CommandRequest
from ingest_worker.store import audit, reads
from ingest_worker.store.cursors import BadReadRequest

log = structlog.get_logger("ingest_worker.console")
router = APIRouter(include_in_schema=False)

#: The quick actions: verb → (button label, the form fields it sends).
ACTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "acknowledge": ("Acknowledge", ()),
    "start_mitigation": ("Start mitigation", ()),
    "mark_mitigated": ("Mark mitigated", ()),
    "resolve": ("Resolve", ("rationale",)),
    "annotate": ("Add note", ("note",)),
    "change_severity": ("Change severity", ("severity", "rationale")),
}
#: What a rejection's stable reason means, for the person who clicked.
REASONS = {
    "transition_not_allowed": "this action does not apply to the incident's current status",
    "rationale_required": "a rationale is required for this action",
    "not_authorized": "your roles do not allow this action",
    "stale": "the incident changed meanwhile; reload and try again",
    "unknown_incident": "the incident is not known",
    "idempotency_key_reused": "this form was already used for another action; reload the page",
}
COMMAND_ID = re.compile(r"^console-[0-9a-f]{32}$")
UNAVAILABLE = (asyncpg.PostgresConnectionError, OSError, TimeoutError, asyncpg.QueryCanceledError)


def _backend(request: Request) -> ReadBackend | None:
    backend = getattr(request.app.state, "read_backend", None)
    return backend if isinstance(backend, ReadBackend) else None


@router.get("/")
async def incident_list(request: Request) -> Response:
    console = console_of(request)
    visitor = console.sessions.visitor(request)
    if visitor.principal is None:
        return to_sign_in(request, visitor)
    tenant = visitor.principal.tenant
    query = parse_query(request.query_params, url_tenant(visitor))
    context: dict[str, Any] = {"query": query, "items": [], "next_url": None, "errors":
                               list(query.errors)}  # fmt: skip
    backend = _backend(request)
    status = 200
    try:
        if backend is None:
            raise OSError("the read backend is not started")
        async with reads.reading(backend.pool, tenant) as conn:
            page = await reads.list_incidents(
                conn, tenant, query.flt, limit=query.limit, cursor=query.cursor
            )
        context["items"] = page.items
        if page.next_cursor is not None:
            context["next_url"] = query.url(cursor=page.next_cursor)
    except BadReadRequest as exc:
        context["errors"].append(exc.message)
        status = 400
    except (*UNAVAILABLE, problems.Problem) as exc:
        log.warning("console_read_unavailable", error=type(exc).__name__)
        context["errors"].append("The incident store did not answer: reload in a moment.")
        status = 503
    return render(request, visitor, "list.html", context, status)


async def _detail(backend: ReadBackend, tenant: str, incident: uuid.UUID) -> dict[str, Any] | None:
    async with reads.reading(backend.pool, tenant) as conn:
        detail = await reads.get_incident(conn, tenant, incident)
        if detail is None:
            return None
        detail["timeline"] = await reads.timeline(conn, tenant, incident, limit=1000) or []
        breaks = await audit.verify_incident(conn, tenant, incident)
    detail["chain"] = {"verified": not breaks, "problems": [str(b) for b in breaks[:5]]}
    return detail


async def _detail_page(
    request: Request,
    visitor: Visitor,
    incident_id: str,
    outcome: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    assert visitor.principal is not None
    backend = _backend(request)
    try:
        incident = uuid.UUID(incident_id)
    except ValueError:
        return refused(request, visitor, 404, f"There is no incident {incident_id}.")
    try:
        if backend is None:
            raise OSError("the read backend is not started")
        detail = await _detail(backend, visitor.principal.tenant, incident)
    except (*UNAVAILABLE, problems.Problem) as exc:
        log.warning("console_read_unavailable", error=type(exc).__name__)
        return refused(request, visitor, 503, "The incident store did not answer: reload.")
    if detail is None:
        return refused(request, visitor, 404, f"There is no incident {incident_id}.")
    context = {
        "incident": detail,
        "outcome": outcome,
        "actions": ACTIONS,
        "command_id": f"console-{uuid.uuid4().hex}",
        "may_command": visitor.principal.may("command"),
    }
    partial = request.headers.get("hx-request") == "true" and outcome is not None
    template = "_incident.html" if partial else "detail.html"
    return render(request, visitor, template, context, status)


@router.get("/console/incidents/{incident_id}")
async def incident_detail(request: Request, incident_id: str) -> Response:
    visitor = console_of(request).sessions.visitor(request)
    if visitor.principal is None:
        return to_sign_in(request, visitor)
    return await _detail_page(request, visitor, incident_id)


def _command(form: dict[str, str]) -> CommandRequest | str:
    """The command a quick-action form asks for, or why it cannot be sent."""
    verb = form.get("type", "")
    if verb not in ACTIONS:
        return "unknown action"
    fields: dict[str, Any] = {"type": verb}
    for name in ACTIONS[verb][1]:
        value = form.get(name, "").strip()
        if value:
            fields[name] = value
    try:
        return CommandRequest.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        return f"{'.'.join(str(p) for p in error.get('loc', ()))}: {error.get('msg', 'invalid')}"


@router.post("/console/incidents/{incident_id}/actions")
async def incident_action(request: Request, incident_id: str) -> Response:
    console = console_of(request)
    visitor = console.sessions.visitor(request)
    form = await posted_form(request, visitor)
    if isinstance(form, Response):
        return form
    principal = visitor.principal
    if principal is None:
        return to_sign_in(request, visitor)
    if not principal.may("command"):
        outcome = {"outcome": "refused", "message": "Your sign-in does not carry the command "
                   "scope: ask for a token with it."}  # fmt: skip
        return await _detail_page(request, visitor, incident_id, outcome, 403)
    command = _command(form)
    command_id = form.get("commandId", "")
    if isinstance(command, str) or not COMMAND_ID.fullmatch(command_id):
        message = command if isinstance(command, str) else "the form is incomplete: reload"
        return await _detail_page(request, visitor, incident_id,
                                  {"outcome": "refused", "message": message}, 400)  # fmt: skip
    backend = _backend(request)
    try:
        incident = uuid.UUID(incident_id)
        if backend is None:
            raise OSError("the read backend is not started")
        decided = await send_command(
            backend, principal, incident, command, command_id, console.config.command_wait_seconds
        )
    except ValueError:
        return refused(request, visitor, 404, f"There is no incident {incident_id}.")
    except problems.Problem as exc:
        if exc.status == 404:
            return refused(request, visitor, 404, f"There is no incident {incident_id}.")
        outcome = {"outcome": "refused", "message": f"Not sent: {exc.detail}"}
        return await _detail_page(request, visitor, incident_id, outcome, exc.status)
    except UNAVAILABLE as exc:
        log.warning("console_command_unavailable", error=type(exc).__name__)
        outcome = {"outcome": "refused", "message": "Not sent: the store did not answer."}
        return await _detail_page(request, visitor, incident_id, outcome, 503)
    return await _detail_page(request, visitor, incident_id, _outcome(command, decided))


def _outcome(command: CommandRequest, decided: dict[str, Any] | None) -> dict[str, Any]:
    label = ACTIONS[command.type][0]
    if decided is None:
        return {"outcome": "pending", "message": f"{label}: sent, not decided yet. Reload soon."}
    kind = decided.get("outcome")
    if kind == "applied":
        message = (
            f"{label}: applied (event {decided.get('eventSeq')}); status {decided.get('status')}."
        )
    elif kind == "noop":
        message = f"{label}: nothing to change; status {decided.get('status')}."
    else:
        reason = str(decided.get("reason"))
        message = f"{label} rejected ({reason}): {REASONS.get(reason, reason)}."
    return {"outcome": kind, "reason": decided.get("reason"), "message": message}


__all__ = ["ACTIONS", "ListQuery", "router"]
