"""Commands and source-reported transitions, applied inside the batch transaction.

Per command, in batch order: its receipt decides first (the same commandId again republishes
the stored outcome; with other content it is `idempotency_key_reused`); otherwise the target's
newest state decides (`core.commands.evaluate`), an applied verb writes its event (same chain,
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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ingest_worker import tracing
from ingest_worker.core.canonical import event_id as make_event_id
from ingest_worker.core.canonical import incident_id
from ingest_worker.core.commands import evaluate
from ingest_worker.core.events import StatusChange, build_event, status_change
from ingest_worker.core.lifecycle import Verb
from ingest_worker.core.plan import ChunkWrite, Outcome, outbox_lane
from ingest_worker.core.projection import IncidentState, timestamp_text
from ingest_worker.core.tenants import DEFAULT_TENANT, tenant_name
from ingest_worker.core.values import Command, SourceTransition
from ingest_worker.store.queries import load_queries

#: Namespace of command result ids (the ce_id of incident.command-results).
RESULTS_NAMESPACE = uuid.UUID("5b0c7f56-3a1e-4d1f-9a43-3f5f0c1d2e10")


def result_id(command_id: str, content_sha256: str, tenant: str = DEFAULT_TENANT) -> uuid.UUID:
    """Deterministic ce_id of a command's outcome: the same command, the same ce_id (a
    commandId is unique per tenant: outside the default tenant, `<tenant>/<commandId>`)."""
    return uuid.uuid5(RESULTS_NAMESPACE, f"{tenant_name(tenant, command_id)}\n{content_sha256}")


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """What happened to one command, for metrics and logs."""

    command_id: str
    verb: str
    outcome: str
    reason: str | None
    incident_id: str | None
    republished: bool = False


class _Targets:
    """The batch's command targets as stored after its signals, updated as commands apply:
    a later command of the batch sees what an earlier one did."""

    def __init__(self, rows: Sequence[Any]) -> None:
        self.by_id: dict[uuid.UUID, tuple[IncidentState, str | None]] = {}
        self.newest: dict[str, uuid.UUID] = {}
        for row in rows:
            state = IncidentState.from_row(row)
            self.by_id[state.id] = (state, row["head_hash"])
            current = self.newest.get(state.incident_key)
            if current is None or self.by_id[current][0].episode < state.episode:
                self.newest[state.incident_key] = state.id

    def find(self, key: str | None, ident: str | None) -> tuple[IncidentState | None, str | None]:
        """The newest episode of `key`, or the incident `ident` when its episode is newer
        (what `incident_key = key OR id = ident ORDER BY episode DESC LIMIT 1` selects)."""
        found: tuple[IncidentState, str | None] | None = None
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


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows as the column arrays of an `unnest` statement."""
    return [list(column) for column in zip(*rows, strict=True)]


class _Writes:
    """What a batch's commands write, sent as one statement per table at the end."""

    def __init__(self, lanes: int, tenant: str) -> None:
        self.lanes = lanes
        self.tenant = tenant
        self.events = ChunkWrite()
        self.traceparents: list[str | None] = []
        self.receipts: list[tuple[Any, ...]] = []
        self.results: list[tuple[Any, ...]] = []

    def event(self, event: Any, after: IncidentState) -> None:
        self.events.add_event(event, outbox_lane(after.id, self.lanes))
        self.traceparents.append(tracing.current_traceparent())

    def result(self, item: Command, result: dict[str, Any], text: str | None = None) -> None:
        """Queue `result` (`text`: its JSON, when the caller has it already)."""
        self.results.append((
            result_id(item.command_id, item.content_sha256, self.tenant), item.command_id, result["outcome"],
            result.get("incidentKey") or item.command_id, text or json.dumps(result),
            item.issued_at,
        ))  # fmt: skip

    async def send(self, conn: Any, queries: Mapping[str, str]) -> None:
        if self.events.events:
            self.events.incidents = len({e.incident_id for e in self.events.events})
            traceparents = self.traceparents if any(self.traceparents) else None
            self.events.check(
                await conn.fetchrow(
                    queries["write_chunk"], *self.events.arguments, traceparents, self.tenant
                )
            )
        if self.receipts:
            await conn.execute(queries["insert_receipts"], *_columns(self.receipts), self.tenant)
        if self.results:
            await conn.fetchrow(
                queries["insert_command_results"], *_columns(self.results), self.tenant
            )


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


async def apply_commands(
    conn: Any,
    items: Sequence[tuple[int, Command | SourceTransition]],
    outcomes: list[Outcome],
    *,
    policy: Mapping[Verb, frozenset[str]],
    lanes: int,
    fresh_transitions: set[int],
    changes: list[StatusChange] | None = None,
    tenant: str = DEFAULT_TENANT,
) -> tuple[int, list[CommandOutcome]]:
    """Apply commands and source transitions in order; returns (events written, outcomes).

    Four statements whatever the number of commands: the receipts and the targets are read
    first, each command is decided in order on the state the ones before it left, then their
    events, receipts and results are written."""
    queries = load_queries("store.sql")
    events = 0
    report: list[CommandOutcome] = []
    ids = [item.command_id for _, item in items if isinstance(item, Command)]
    stored = {r["command_id"]: r for r in await conn.fetch(queries["select_receipts"], ids, tenant)}
    keys = sorted({i.incident_key for _, i in items if i.incident_key is not None})
    wanted_ids: list[uuid.UUID] = []
    for _, item in items:
        if isinstance(item, Command) and item.incident_id is not None:
            with contextlib.suppress(ValueError):
                wanted_ids.append(uuid.UUID(item.incident_id))
    targets = _Targets(
        await conn.fetch(queries["select_command_targets"], keys, wanted_ids, tenant)
    )
    writes = _Writes(lanes, tenant)
    for index, item in items:
        if isinstance(item, SourceTransition) and index not in fresh_transitions:
            continue
        with _command_span(item, report):
            if isinstance(item, SourceTransition):
                state, head = targets.find(item.incident_key, None)
                decision = evaluate(state, item.verb, at=item.signal_time, cause="source")
                cause = {"kind": "source", "source": item.source_kind, "signal_sha256": item.signal_sha256,
                         "actor": {"type": "service", "id": item.actor or item.source_kind}}  # fmt: skip
                if decision.after is not None and state is not None and head is not None:
                    events += _write_event(
                        writes, targets, state, decision.after, head, decision.event_type,
                        at=item.signal_time, sha=item.signal_sha256, cause=cause, rationale=None,
                        note=item.note, changes=changes,
                    )  # fmt: skip
                outcomes[index] = Outcome(decision.outcome)
                report.append(CommandOutcome(item.signal_sha256, item.verb, decision.outcome,
                                             decision.reason.value if decision.reason else None,
                                             str(state.id) if state else None))  # fmt: skip
                continue
            receipt = stored.get(item.command_id)
            if receipt is not None:
                if receipt["content_sha256"] == item.content_sha256:
                    writes.result(item, json.loads(receipt["result"]), receipt["result"])
                    outcomes[index] = Outcome.DUPLICATE
                    report.append(CommandOutcome(item.command_id, item.verb, receipt["outcome"],
                                                 receipt["reason"], None, republished=True))  # fmt: skip
                else:
                    result = _result(item, "rejected", "idempotency_key_reused", None, None)
                    writes.result(item, result)
                    outcomes[index] = Outcome.REJECTED
                    report.append(CommandOutcome(item.command_id, item.verb, "rejected",
                                                 "idempotency_key_reused", None))  # fmt: skip
                continue
            state, head = targets.find(item.incident_key, item.incident_id)
            decision = evaluate(
                state, item.verb, at=item.issued_at, cause="command", roles=item.roles,
                policy=policy, rationale=item.rationale,
                severity=item.severity.value if item.severity else None,
                expected_seq=item.expected_seq, not_after=item.not_after,
            )  # fmt: skip
            event_id: str | None = None
            after = decision.after
            if after is not None and state is not None and head is not None:
                cause = {
                    "kind": "command",
                    "command_id": item.command_id,
                    "actor": item.actor_json(),
                }
                events += _write_event(
                    writes, targets, state, after, head, decision.event_type, at=item.issued_at,
                    sha=item.content_sha256, cause=cause, rationale=item.rationale,
                    note=item.note, changes=changes,
                )  # fmt: skip
                event_id = str(make_event_id(after.id, after.last_seq))
            reason = decision.reason.value if decision.reason else None
            result = _result(item, decision.outcome, reason, after or state, event_id)
            result_text = json.dumps(result)
            writes.receipts.append((
                item.command_id, item.content_sha256, item.verb, state.id if state else None,
                decision.outcome, reason, uuid.UUID(event_id) if event_id else None,
                item.issued_at, result_text,
            ))  # fmt: skip
            stored[item.command_id] = {"content_sha256": item.content_sha256, "result": result_text,
                                       "outcome": decision.outcome, "reason": reason}  # fmt: skip
            writes.result(item, result, result_text)
            outcomes[index] = Outcome(decision.outcome)
            report.append(CommandOutcome(item.command_id, item.verb, decision.outcome, reason,
                                         str(state.id) if state else None))  # fmt: skip
    await writes.send(conn, queries)
    return events, report


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


@contextlib.contextmanager
def _command_span(item: Command | SourceTransition, report: list[CommandOutcome]) -> Iterator[None]:
    """`ingest.command`, current while `item` is applied; its outcome is the one it reported."""
    if not tracing.active():
        yield
        return
    reported = len(report)
    with tracing.span("ingest.command", attributes=_command_attributes(item)) as span:
        try:
            yield
        finally:
            if len(report) > reported:
                _trace_outcome(span, report[-1])


def _trace_outcome(span: tracing.Span, done: CommandOutcome) -> None:
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
        "status": state.status if state else None,
        "seq": state.last_seq if state else None,
        "eventId": event,
        "issuedAt": timestamp_text(item.issued_at),
        "actor": item.actor_json(),
    }


def _write_event(
    writes: _Writes, targets: _Targets, state: IncidentState, after: IncidentState,
    head: str, kind: str | None, *, at: Any, sha: str, cause: dict[str, Any],
    rationale: str | None, note: str | None, changes: list[StatusChange] | None = None,
) -> int:  # fmt: skip
    event = build_event(
        state.snapshot(), after.snapshot(), occurred_at=at, signal_sha256=sha, prev_hash=head,
        kind=kind, cause=cause, rationale=rationale, note=note,
    )  # fmt: skip
    writes.event(event, after)
    targets.update(after, event.hash)
    if changes is not None and (change := status_change(event.payload)) is not None:
        changes.append(change)
    return 1


__all__ = ["CommandOutcome", "apply_commands", "incident_id", "result_id", "target_keys"]
