"""Commands and source-reported transitions, applied inside the batch transaction (SPEC §7.2).

Per command, in batch order: its receipt decides first (the same commandId again republishes
the stored outcome; with other content it is `idempotency_key_reused`); otherwise the target's
newest state is read, `core.commands.evaluate` decides, an applied verb writes its event (same
chain, same outbox) and the receipt and the outcome (to `command_results_outbox`) are written
in the same transaction. Source transitions (a PagerDuty acknowledgement) go the same way with
the source as actor and authority, deduplicated like signals, without a receipt.
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
from ingest_worker.core.values import Command, SourceTransition
from ingest_worker.store.queries import load_queries

#: Namespace of command result ids (the ce_id of incident.command-results).
RESULTS_NAMESPACE = uuid.UUID("5b0c7f56-3a1e-4d1f-9a43-3f5f0c1d2e10")


def result_id(command_id: str, content_sha256: str) -> uuid.UUID:
    """Deterministic ce_id of a command's outcome: the same command, the same ce_id."""
    return uuid.uuid5(RESULTS_NAMESPACE, f"{command_id}\n{content_sha256}")


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """What happened to one command, for metrics and logs."""

    command_id: str
    verb: str
    outcome: str
    reason: str | None
    incident_id: str | None
    republished: bool = False


async def _newest(
    conn: Any, queries: Mapping[str, str], key: str | None, ident: str | None
) -> tuple[IncidentState | None, str | None]:
    row = await conn.fetchrow(queries["select_command_target"], key, ident)
    if row is None:
        return None, None
    return IncidentState.from_row(row), row["head_hash"]


async def target_keys(
    conn: Any, items: Sequence[Command | SourceTransition]
) -> list[tuple[str, str]]:
    """(incident_key, recovery_scope) of every target that exists (read before locking:
    both are immutable for an incident)."""
    queries = load_queries("store.sql")
    keys = [i.incident_key for i in items if i.incident_key is not None]
    ids = [i.incident_id for i in items if isinstance(i, Command) and i.incident_id is not None]
    rows = await conn.fetch(queries["select_command_scopes"], keys, ids)
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
) -> tuple[int, list[CommandOutcome]]:
    """Apply commands and source transitions in order; returns (events written, outcomes)."""
    queries = load_queries("store.sql")
    events = 0
    report: list[CommandOutcome] = []
    ids = [item.command_id for _, item in items if isinstance(item, Command)]
    stored = {r["command_id"]: r for r in await conn.fetch(queries["select_receipts"], ids)}
    for index, item in items:
        if isinstance(item, SourceTransition) and index not in fresh_transitions:
            continue
        with _command_span(item, report):
            if isinstance(item, SourceTransition):
                state, head = await _newest(conn, queries, item.incident_key, None)
                decision = evaluate(state, item.verb, at=item.signal_time, cause="source")
                cause = {"kind": "source", "source": item.source_kind, "signal_sha256": item.signal_sha256,
                         "actor": {"type": "service", "id": item.actor or item.source_kind}}  # fmt: skip
                if decision.after is not None and state is not None and head is not None:
                    events += await _write_event(
                        conn, queries, state, decision.after, head, decision.event_type,
                        at=item.signal_time, sha=item.signal_sha256, cause=cause, rationale=None,
                        note=item.note, lanes=lanes, changes=changes,
                    )  # fmt: skip
                outcomes[index] = Outcome(decision.outcome)
                report.append(CommandOutcome(item.signal_sha256, item.verb, decision.outcome,
                                             decision.reason.value if decision.reason else None,
                                             str(state.id) if state else None))  # fmt: skip
                continue
            receipt = stored.get(item.command_id)
            if receipt is not None:
                if receipt["content_sha256"] == item.content_sha256:
                    await _queue_result(conn, queries, item, json.loads(receipt["result"]))
                    outcomes[index] = Outcome.DUPLICATE
                    report.append(CommandOutcome(item.command_id, item.verb, receipt["outcome"],
                                                 receipt["reason"], None, republished=True))  # fmt: skip
                else:
                    result = _result(item, "rejected", "idempotency_key_reused", None, None)
                    await _queue_result(conn, queries, item, result)
                    outcomes[index] = Outcome.REJECTED
                    report.append(CommandOutcome(item.command_id, item.verb, "rejected",
                                                 "idempotency_key_reused", None))  # fmt: skip
                continue
            state, head = await _newest(conn, queries, item.incident_key, item.incident_id)
            decision = evaluate(
                state, item.verb, at=item.issued_at, cause="command", roles=item.roles,
                policy=policy, rationale=item.rationale,
                severity=item.severity.value if item.severity else None,
                expected_seq=item.expected_seq,
            )  # fmt: skip
            event_id: str | None = None
            after = decision.after
            if after is not None and state is not None and head is not None:
                cause = {
                    "kind": "command",
                    "command_id": item.command_id,
                    "actor": item.actor_json(),
                }
                events += await _write_event(
                    conn, queries, state, after, head, decision.event_type, at=item.issued_at,
                    sha=item.content_sha256, cause=cause, rationale=item.rationale,
                    note=item.note, lanes=lanes, changes=changes,
                )  # fmt: skip
                event_id = str(make_event_id(after.id, after.last_seq))
            reason = decision.reason.value if decision.reason else None
            result = _result(item, decision.outcome, reason, after or state, event_id)
            await conn.execute(
                queries["insert_receipt"], item.command_id, item.content_sha256, item.verb,
                state.id if state else None, decision.outcome, reason,
                uuid.UUID(event_id) if event_id else None, item.issued_at, json.dumps(result),
            )  # fmt: skip
            stored[item.command_id] = {"content_sha256": item.content_sha256, "result": json.dumps(result),
                                       "outcome": decision.outcome, "reason": reason}  # fmt: skip
            await _queue_result(conn, queries, item, result)
            outcomes[index] = Outcome(decision.outcome)
            report.append(CommandOutcome(item.command_id, item.verb, decision.outcome, reason,
                                         str(state.id) if state else None))  # fmt: skip
    if report:
        await conn.execute("SELECT pg_notify('ingest_outbox', '')")
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


async def _queue_result(
    conn: Any, queries: Mapping[str, str], item: Command, result: dict[str, Any]
) -> None:
    await conn.execute(
        queries["insert_command_result"], result_id(item.command_id, item.content_sha256),
        item.command_id, result["outcome"], result.get("incidentKey") or item.command_id,
        json.dumps(result), item.issued_at,
    )  # fmt: skip


async def _write_event(
    conn: Any, queries: Mapping[str, str], state: IncidentState, after: IncidentState,
    head: str, kind: str | None, *, at: Any, sha: str, cause: dict[str, Any],
    rationale: str | None, note: str | None, lanes: int,
    changes: list[StatusChange] | None = None,
) -> int:  # fmt: skip
    event = build_event(
        state.snapshot(), after.snapshot(), occurred_at=at, signal_sha256=sha, prev_hash=head,
        kind=kind, cause=cause, rationale=rationale, note=note,
    )  # fmt: skip
    write = ChunkWrite()
    write.add_event(event, outbox_lane(after.id, lanes))
    write.incidents = 1
    traceparent = tracing.current_traceparent()
    traceparents = [traceparent] if traceparent is not None else None
    write.check(await conn.fetchrow(queries["write_chunk"], *write.arguments, traceparents))
    if changes is not None and (change := status_change(event.payload)) is not None:
        changes.append(change)
    return 1


__all__ = ["CommandOutcome", "apply_commands", "incident_id", "result_id", "target_keys"]
