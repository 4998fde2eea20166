"""What a command (or a source-reported transition) does to an incident: pure, clock-free.

`evaluate` checks, in order: the command's time is not in the future (`not_after`, the worker's
clock plus the allowed skew, passed in), the incident exists, the command is not older than the
incident's first signal, the actor's roles allow the verb (commands only; a source acts with its
own authority), `expectedSeq`, then the state machine (`lifecycle.decide`). An applied verb yields the incident's next state; the lifecycle columns
take the command's `issuedAt` (or the source's event time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from ingest_worker.core.lifecycle import (
    Cause,
    Refusal,
    Status,
    Verb,
    authorized,
    decide,
)
from ingest_worker.core.projection import IncidentState


@dataclass(frozen=True, slots=True)
class Evaluation:
    outcome: Literal["applied", "noop", "rejected"]
    reason: Refusal | None = None
    after: IncidentState | None = None
    event_type: str | None = None


def evaluate(
    state: IncidentState | None,
    verb: str,
    *,
    at: datetime,
    cause: Cause,
    roles: tuple[str, ...] = (),
    policy: Mapping[Verb, frozenset[str]] | None = None,
    rationale: str | None = None,
    severity: str | None = None,
    expected_seq: int | None = None,
    not_after: datetime | None = None,
) -> Evaluation:
    if cause == "command" and not_after is not None and at > not_after:
        return Evaluation("rejected", Refusal.ISSUED_IN_FUTURE)
    if state is None:
        return Evaluation("rejected", Refusal.UNKNOWN_INCIDENT)
    if cause == "command" and at < state.first_seen_at:
        # Its lifecycle times would precede the incident (a negative time to acknowledge).
        return Evaluation("rejected", Refusal.ISSUED_BEFORE_INCIDENT)
    try:
        action = Verb(verb)
    except ValueError:
        return Evaluation("rejected", Refusal.TRANSITION_NOT_ALLOWED)
    if cause == "command" and policy is not None and not authorized(policy, action, roles):
        return Evaluation("rejected", Refusal.NOT_AUTHORIZED)
    if expected_seq is not None and expected_seq != state.last_seq:
        return Evaluation("rejected", Refusal.STALE)
    decision = decide(Status(state.status), action, cause=cause, rationale=rationale)
    if decision.outcome != "applied":
        return Evaluation(decision.outcome, decision.reason)
    if action is Verb.CHANGE_SEVERITY and (severity is None or severity == state.severity):
        return Evaluation("noop")
    after = _next_state(state, action, decision.status, at, cause, severity)
    return Evaluation("applied", after=after, event_type=decision.event_type)


def _next_state(
    state: IncidentState,
    verb: Verb,
    status: Status,
    at: datetime,
    cause: Cause,
    severity: str | None,
) -> IncidentState:
    after = replace(state, status=status.value, last_seq=state.last_seq + 1)
    if verb is Verb.ACKNOWLEDGE and state.acknowledged_at is None:
        after = replace(after, acknowledged_at=at)
    elif verb is Verb.MARK_MITIGATED:
        after = replace(after, mitigated_at=at)
    elif verb is Verb.RESOLVE:
        after = replace(after, resolved_at=at, resolved_by="command")
    elif verb is Verb.REOPEN:
        after = replace(
            after, resolved_at=None, resolved_by=None, closed_at=None,
            reopen_count=state.reopen_count + 1,
        )  # fmt: skip
    elif verb in (Verb.CLOSE, Verb.CANCEL):
        after = replace(after, closed_at=at)
    elif verb is Verb.CHANGE_SEVERITY and severity is not None:
        after = replace(after, severity=severity)
    return after
