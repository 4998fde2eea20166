"""A lifecycle command's round trip and its answer in one sentence.

`ask` publishes a command and waits for its outcome on `incident.command-results`; for an applied
one it also watches `incident.events` for the event the command wrote, whose `changes` say the
status before (the receipt gives only the status after). `describe_outcome` turns both into
`applied: OPEN → ACKNOWLEDGED (event #2)`, `noop: …` or `rejected: <reason> — <what to do>`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ingest_worker.core.incident import TRANSITIONS
from ingest_worker.core.lifecycle import ANY_ACTOR, RefusalReason, Verb
from ingest_worker.service.cli_errors import started
from ingest_worker.service.config import Settings

#: How long an applied command's event is awaited after its outcome, at most.
EVENT_SECONDS = 5.0
#: Events of other incidents kept while the outcome is awaited (bounded memory on a busy topic).
MAX_SEEN_EVENTS = 10_000


@dataclass(frozen=True, slots=True)
class Answer:
    """The outcome of a command (None: none in time) and, when seen, its event's `changes`."""

    outcome: dict[str, Any] | None
    changes: dict[str, Any] | None = None


def _header(record: Any, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value).decode(errors="replace")
    return None


def _changes(record: Any) -> dict[str, Any] | None:
    try:
        body = json.loads(record.value)
    except (TypeError, ValueError):
        return None
    changes = body.get("changes") if isinstance(body, dict) else None
    return changes if isinstance(changes, dict) else None


async def ask(
    settings: Settings,
    message: dict[str, Any],
    wait_seconds: float,
    *,
    event_seconds: float = EVENT_SECONDS,
) -> Answer:
    """Publish one command; wait up to `wait_seconds` for its outcome and, when applied, up to
    `event_seconds` more for its event (`event_seconds=0`: the outcome only)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from ingest_worker.service.kafka_clients import client_options, make_producer

    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    async with started(consumer, settings), started(make_producer(settings), settings) as producer:
        topics = [settings.topic_command_results]
        if event_seconds > 0:
            topics.append(settings.topic_incident_events)
        assigned = []
        for topic in topics:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic) or set()
            assigned += [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_end(*assigned)
        for tp in assigned:  # resolve the end offsets before the command is published
            await consumer.position(tp)
        key = str(message.get("incidentId") or message.get("incidentKey")).encode()
        await producer.send_and_wait(settings.topic_commands, json.dumps(message).encode(), key=key)
        return await _await_answer(consumer, settings, message["commandId"], wait_seconds,
                                   event_seconds)  # fmt: skip


async def _await_answer(
    consumer: Any, settings: Settings, command_id: str, wait_seconds: float, event_seconds: float
) -> Answer:
    outcome: dict[str, Any] | None = None
    seen: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + wait_seconds
    while (left := deadline - time.monotonic()) > 0:
        batch = await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
        for tp, records in batch.items():
            for record in records:
                if tp.topic == settings.topic_command_results:
                    if outcome is None and record.key == command_id.encode():
                        outcome = json.loads(record.value)
                elif len(seen) < MAX_SEEN_EVENTS and (ce_id := _header(record, "ce_id")):
                    seen[ce_id] = _changes(record) or {}
        if outcome is None:
            continue
        event_id = outcome.get("eventId")
        if event_seconds <= 0 or outcome.get("outcome") != "applied" or not event_id:
            return Answer(outcome)
        if event_id in seen:
            return Answer(outcome, seen[event_id])
        deadline = min(deadline, time.monotonic() + event_seconds)
    return Answer(outcome)


def _name(verb: str) -> str:
    return verb.replace("_", "-")


def _only_source(verb: str) -> str | None:
    """The one status a verb can apply from, when there is one (acknowledge: OPEN)."""
    sources = {
        s for t in TRANSITIONS if t.verb == verb and "command" in t.causes for s in t.sources
    }
    return next(iter(sources)) if len(sources) == 1 else None


def _applied(verb: str, answer: Answer) -> str:
    outcome = answer.outcome or {}
    changes = answer.changes or {}
    event = f"(event #{outcome.get('seq')})"
    if "severity" in changes:
        change = changes["severity"]
        return f"applied: severity {change.get('from')} → {change.get('to')} {event}"
    if verb == Verb.ANNOTATE:
        return f"applied: note added {event}"
    status = changes.get("status")
    before = status.get("from") if isinstance(status, dict) else _only_source(verb)
    after = outcome.get("status")
    if before is None:  # the event did not arrive in time and the verb has several sources
        return f"applied: now {after} {event}"
    return f"applied: {before} → {after} {event}"


def _hint(verb: str, outcome: Mapping[str, Any], policy: Mapping[Verb, frozenset[str]],
          target: str) -> str:  # fmt: skip
    reason = outcome.get("reason")
    name = _name(verb)
    if reason == RefusalReason.RATIONALE_REQUIRED:
        rule = next((t.rationale for t in TRANSITIONS if t.verb == verb), "always")
        unless = " unless the incident is mitigating" if rule == "unless_mitigation" else ""
        return f"{name} needs --rationale{unless}"
    if reason == RefusalReason.UNKNOWN_INCIDENT:
        return f"no incident {target!r}: give a key or id as `ingest-worker incidents` lists them"
    if reason == RefusalReason.TRANSITION_NOT_ALLOWED:
        return (
            f"{name} does not apply to an incident that is {outcome.get('status')} "
            f"(see `ingest-worker timeline {target}`)"
        )
    if reason == RefusalReason.NOT_AUTHORIZED:
        allowed = policy.get(Verb(verb), frozenset())
        roles = ", ".join((outcome.get("actor") or {}).get("roles") or []) or "none"
        if ANY_ACTOR in allowed:
            return f"the worker's policy refused the roles given ({roles})"
        needed = ", ".join(sorted(allowed)) or "a role the policy grants"
        return (
            f"{name} needs one of the roles {needed} (given: {roles}); use --role or INGEST_ROLES"
        )
    if reason == RefusalReason.STALE:
        return (
            f"the incident moved on (now at event #{outcome.get('seq')}): check "
            f"`ingest-worker timeline {target}` and retry with the new --expected-seq"
        )
    if reason == RefusalReason.IDEMPOTENCY_KEY_REUSED:
        return "this --command-id was used for another command: leave it out or pick a new one"
    if reason == RefusalReason.ISSUED_BEFORE_INCIDENT:
        return (
            "the command's time (this machine's clock) is before the incident's first signal: "
            "check this machine's clock"
        )
    if reason == RefusalReason.ISSUED_IN_FUTURE:
        return (
            "this machine's clock is ahead of the worker's by more than "
            "INGEST_COMMAND_MAX_FUTURE_SKEW_SECONDS: check this machine's clock"
        )
    return "see the worker's log"


def describe_outcome(
    verb: str,
    answer: Answer,
    policy: Mapping[Verb, frozenset[str]],
    *,
    target: str,
) -> str:
    """The one line a lifecycle verb prints for its outcome."""
    outcome = answer.outcome or {}
    kind = outcome.get("outcome")
    if kind == "applied":
        return _applied(verb, answer)
    if kind == "noop" and verb == Verb.CHANGE_SEVERITY:
        return "noop: the incident already has that severity"
    if kind == "noop":
        return f"noop: the incident is already {outcome.get('status')}"
    return f"rejected: {outcome.get('reason')} — {_hint(verb, outcome, policy, target)}"
