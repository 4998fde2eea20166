"""Commands and source-reported transitions, applied inside the batch transaction.

Per command, in batch order: its receipt decides first (the same commandId again republishes
the stored outcome; with other content it is `idempotency_key_reused`); otherwise the target's
newest state decides (`core.incident.decide`), an applied verb writes its event (same chain,
same outbox), and the receipt and the outcome (to `command_results_outbox`) are written in the
same transaction. Source transitions (a PagerDuty acknowledgement) go the same way with the
source as actor and authority, deduplicated like signals, without a receipt.

A batch's commands cost four statements however many there are: receipts and targets are read
once (after the batch's signals were applied, under its locks), each command is decided on the
state the commands before it left, then the events, receipts and results are written at once.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ingest_worker import tracing
from ingest_worker.core.canonical import event_id as make_event_id
from ingest_worker.core.canonical import incident_id
from ingest_worker.core.events import Event, StatusChange, build_event, status_change
from ingest_worker.core.incident import decide
from ingest_worker.core.lifecycle import Decision, Outcome, Rules
from ingest_worker.core.plan import ChunkWrite, outbox_lane
from ingest_worker.core.projection import IncidentState, timestamp_text
from ingest_worker.core.tenants import DEFAULT_TENANT, tenant_name
from ingest_worker.core.values import Command, SourceTransition
from ingest_worker.store.mapper import (
    Receipt,
    check_written,
    chunk_parameters,
    incident_with_head,
    receipt_columns,
    stored_receipt,
)
from ingest_worker.store.queries import load_queries

#: Namespace of command result ids (the ce_id of incident.command-results).
RESULTS_NAMESPACE = uuid.UUID("5b0c7f56-3a1e-4d1f-9a43-3f5f0c1d2e10")


def result_id(command_id: str, content_sha256: str, tenant: str = DEFAULT_TENANT) -> uuid.UUID:
    """Deterministic ce_id of a command's outcome: the same command, the same ce_id (a
    commandId is unique per tenant: outside the default tenant, `<tenant>/<commandId>`)."""
    return uuid.uuid5(RESULTS_NAMESPACE, f"{tenant_name(tenant, command_id)}\n{content_sha256}")


class _Targets:
    """The batch's command targets as stored after its signals, updated as commands apply:
    a later command of the batch sees what an earlier one did."""

    def __init__(self, rows: Sequence[Any]) -> None:
        self.by_id: dict[uuid.UUID, tuple[IncidentState, str]] = {}
        self.newest: dict[str, uuid.UUID] = {}
        for row in rows:
            state, head = incident_with_head(row)
            self.by_id[state.id] = (state, head)
            current = self.newest.get(state.incident_key)
            if current is None or self.by_id[current][0].episode < state.episode:
                self.newest[state.incident_key] = state.id

    def find(self, key: str | None, ident: str | None) -> tuple[IncidentState | None, str | None]:
        """The newest episode of `key`, or the incident `ident` when its episode is newer
        (what `incident_key = key OR id = ident ORDER BY episode DESC LIMIT 1` selects)."""
        found: tuple[IncidentState, str] | None = None
        if key is not None and (newest := self.newest.get(key)) is not None:
            found = self.by_id[newest]
        if ident is not None:
            with contextlib.suppress(ValueError):
                other = self.by_id.get(uuid.UUID(ident))
                if other is not None and (found is None or other[0].episode > found[0].episode):
                    found = other
        return (None, None) if found is None else found

    def update(self, after: IncidentState, head: str) -> None:
        self.by_id[after.id] = (after, head)


class _Writes:
    """What a batch's commands write, sent as one statement per table at the end."""

    def __init__(self, lanes: int, tenant: str) -> None:
        self.lanes = lanes
        self.tenant = tenant
        self.events = ChunkWrite()
        self.traceparents: list[str | None] = []
        self.receipts: list[Receipt] = []
        self.results: list[tuple[Any, ...]] = []
        self.changes: list[StatusChange] = []

    def event(self, event: Event, after: IncidentState) -> None:
        self.events.add_event(event, outbox_lane(after.id, self.lanes))
        self.traceparents.append(tracing.current_traceparent())
        if (change := status_change(event.payload)) is not None:
            self.changes.append(change)

    def result(self, item: Command, text: str) -> None:
        """Queue the published outcome `text` (a result body's JSON) of `item`."""
        body = json.loads(text)
        self.results.append((
            result_id(item.command_id, item.content_sha256, self.tenant), item.command_id,
            body["outcome"], body.get("incidentKey") or item.command_id, text, item.issued_at,
        ))  # fmt: skip

    async def send(self, conn: Any, queries: Mapping[str, str]) -> None:
        if self.events.events:
            self.events.incidents = len({e.incident_id for e in self.events.events})
            traceparents = self.traceparents if any(self.traceparents) else None
            row = await conn.fetchrow(
                queries["write_chunk"], *chunk_parameters(self.events, traceparents, self.tenant)
            )
            check_written(self.events, row)
        if self.receipts:
            await conn.execute(
                queries["insert_receipts"], *receipt_columns(self.receipts, self.tenant)
            )
        if self.results:
            columns = [list(column) for column in zip(*self.results, strict=True)]
            await conn.fetchrow(queries["insert_command_results"], *columns, self.tenant)


async def target_keys(
    conn: Any, items: Sequence[Command | SourceTransition], tenant: str = DEFAULT_TENANT
) -> list[tuple[str, str]]:
    """(incident_key, recovery_scope) of every target that exists (read before locking:
    both are immutable for an incident)."""
    queries = load_queries("store.sql")
    keys = [i.incident_key for i in items if i.incident_key is not None]
    ids = [i.incident_id for i in items if isinstance(i, Command) and i.incident_id is not None]
    rows = await conn.fetch(queries["select_command_scopes"], keys, ids, tenant)
    return [(r["incident_key"], r["recovery_scope"]) for r in rows]


@dataclass(frozen=True, slots=True)
class CommandsApplied:
    """What a batch's commands and source transitions did: each one's outcome (by batch
    index), the events written, their receipts, and the status changes they made."""

    outcomes: dict[int, Outcome]
    events: int
    receipts: list[Receipt]
    changes: list[StatusChange]


async def apply_commands(
    conn: Any,
    items: Sequence[tuple[int, Command | SourceTransition]],
    *,
    rules: Rules,
    lanes: int,
    fresh_transitions: set[int],
) -> CommandsApplied:
    """Apply commands and source transitions in batch order, each decided on the state the
    ones before it left.

    Four statements whatever the number of commands: the receipts and the targets are read
    first, then the events, receipts and results are written."""
    queries = load_queries("store.sql")
    tenant = rules.tenant
    ids = [item.command_id for _, item in items if isinstance(item, Command)]
    stored = {
        r.command_id: r
        for r in map(stored_receipt, await conn.fetch(queries["select_receipts"], ids, tenant))
    }
    keys = sorted({i.incident_key for _, i in items if i.incident_key is not None})
    targets = _Targets(
        await conn.fetch(queries["select_command_targets"], keys, _target_ids(items), tenant)
    )
    writes = _Writes(lanes, tenant)
    outcomes: dict[int, Outcome] = {}
    receipts: list[Receipt] = []
    for index, item in items:
        if isinstance(item, SourceTransition) and index not in fresh_transitions:
            continue
        with _command_span(item) as report:
            if isinstance(item, SourceTransition):
                receipt = _apply_transition(item, writes, targets, rules)
            elif (known := stored.get(item.command_id)) is not None:
                receipt = _repeated(item, known, writes)
            else:
                receipt = stored[item.command_id] = _apply_command(item, writes, targets, rules)
            outcomes[index] = Outcome.DUPLICATE if receipt.republished else Outcome(receipt.outcome)
            receipts.append(receipt)
            report(receipt)
    await writes.send(conn, queries)
    return CommandsApplied(outcomes, len(writes.events.events), receipts, writes.changes)


def _target_ids(items: Sequence[tuple[int, Command | SourceTransition]]) -> list[uuid.UUID]:
    wanted: list[uuid.UUID] = []
    for _, item in items:
        if isinstance(item, Command) and item.incident_id is not None:
            with contextlib.suppress(ValueError):
                wanted.append(uuid.UUID(item.incident_id))
    return wanted


def _apply_transition(
    item: SourceTransition, writes: _Writes, targets: _Targets, rules: Rules
) -> Receipt:
    """A source's own transition: decided with the source as actor and authority."""
    state, head = targets.find(item.incident_key, None)
    decision = decide(state, item, rules)
    cause = {"kind": "source", "source": item.source_kind, "signal_sha256": item.signal_sha256,
             "actor": {"type": "service", "id": item.actor or item.source_kind}}  # fmt: skip
    _record(decision, state, head, writes, targets, cause, None, item.note)
    return Receipt(
        item.signal_sha256, item.verb, decision.outcome.value, _reason(decision),
        None if state is None else str(state.id),
    )  # fmt: skip


def _repeated(item: Command, known: Receipt, writes: _Writes) -> Receipt:
    """A commandId already decided: the same content republishes its outcome; other
    content is `idempotency_key_reused`."""
    if known.content_sha256 == item.content_sha256 and known.result is not None:
        writes.result(item, known.result)
        return Receipt(
            item.command_id, item.verb, known.outcome, known.reason, None, republished=True
        )
    body = _result(item, "rejected", "idempotency_key_reused", None, None)
    writes.result(item, json.dumps(body))
    return Receipt(item.command_id, item.verb, "rejected", "idempotency_key_reused", None)


def _apply_command(item: Command, writes: _Writes, targets: _Targets, rules: Rules) -> Receipt:
    state, head = targets.find(item.incident_key, item.incident_id)
    decision = decide(state, item, rules)
    cause = {"kind": "command", "command_id": item.command_id, "actor": item.actor_json()}
    event = _record(decision, state, head, writes, targets, cause, item.rationale, item.note)
    after = decision.next_state
    reason = _reason(decision)
    text = json.dumps(_result(item, decision.outcome.value, reason, after, event))
    writes.result(item, text)
    receipt = Receipt(
        item.command_id, item.verb, decision.outcome.value, reason,
        None if state is None else str(state.id), content_sha256=item.content_sha256,
        result=text, event_id=event, issued_at=item.issued_at,
    )  # fmt: skip
    writes.receipts.append(receipt)
    return receipt


def _reason(decision: Decision) -> str | None:
    return None if decision.reason is None else decision.reason.value


def _record(
    decision: Decision, state: IncidentState | None, head: str | None, writes: _Writes,
    targets: _Targets, cause: dict[str, Any], rationale: str | None, note: str | None,
) -> str | None:  # fmt: skip
    """Write the decided change (at most one for a verb) as an event; returns its id."""
    if not decision.events or state is None or head is None:
        return None
    change = decision.events[0]
    after = change.after
    event = build_event(
        state.snapshot(), after.snapshot(), occurred_at=change.occurred_at,
        signal_sha256=change.signal_sha256, prev_hash=head, kind=change.event_type, cause=cause,
        rationale=rationale, note=note,
    )  # fmt: skip
    writes.event(event, after)
    targets.update(after, event.hash)
    return str(make_event_id(after.id, after.last_seq))


def _command_attributes(item: Command | SourceTransition) -> dict[str, Any]:
    if isinstance(item, SourceTransition):
        attributes = {"ingest.command.kind": "source", "ingest.command.id": item.signal_sha256,
                      "ingest.command.source": item.source_kind}  # fmt: skip
    else:
        attributes = {"ingest.command.kind": "command", "ingest.command.id": item.command_id}
    attributes["ingest.command.verb"] = item.verb
    if item.incident_key is not None:
        attributes["ingest.incident.key"] = item.incident_key
    return attributes


def _untraced(done: Receipt) -> None:
    """Tracing is off: nothing to record."""


@contextlib.contextmanager
def _command_span(item: Command | SourceTransition) -> Iterator[Callable[[Receipt], None]]:
    """`ingest.command`, current while `item` is applied; yields how to record its outcome."""
    if not tracing.active():
        yield _untraced
        return
    with tracing.span("ingest.command", attributes=_command_attributes(item)) as span:
        yield lambda done: _trace_outcome(span, done)


def _trace_outcome(span: tracing.Span, done: Receipt) -> None:
    span.set_attribute("ingest.command.outcome", done.outcome)
    span.set_attribute("ingest.command.republished", done.republished)
    if done.reason is not None:
        span.set_attribute("ingest.command.reason", done.reason)
    if done.incident_id is not None:
        span.set_attribute("ingest.incident.id", done.incident_id)


def _result(
    item: Command, outcome: str, reason: str | None, state: IncidentState | None, event: str | None
) -> dict[str, Any]:
    return {
        "commandId": item.command_id,
        "type": item.verb,
        "outcome": outcome,
        "reason": reason,
        "incidentId": str(state.id) if state else item.incident_id,
        "incidentKey": state.incident_key if state else item.incident_key,
        "status": state.status.value if state else None,
        "seq": state.last_seq if state else None,
        "eventId": event,
        "issuedAt": timestamp_text(item.issued_at),
        "actor": item.actor_json(),
    }


__all__ = [
    "CommandsApplied",
    "Receipt",
    "apply_commands",
    "incident_id",
    "result_id",
    "target_keys",
]
