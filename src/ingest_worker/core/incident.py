"""The incident aggregate: statuses, the one transition table, and `decide`.

Every input an incident key receives — a trigger, a recovery, a transition its source reports
(a PagerDuty acknowledgement), a command — is decided by `decide(state, input, rules)`, which
reads the table `TRANSITIONS` and returns a `Decision`: the state changes to record as events,
the next state, and the input's outcome. The first row whose verb, cause and source status
match, and whose rule (`When`) holds, applies; the reopen window and the start of a new episode
are such rules, so the table says everything the code does.

Pure and clock-free: a decision depends on the incident's state, the input and its own times,
and the rules (`reopen_window`, `open_after`); never on the time of day, so replaying the same
inputs decides the same way. Nothing here reads or writes the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Literal

from ingest_worker.core import projection
from ingest_worker.core.canonical import incident_id
from ingest_worker.core.lifecycle import (
    COMMAND_VERBS,
    Cause,
    Change,
    Decision,
    Outcome,
    RecoveryMark,
    RefusalReason,
    Rules,
    Ruling,
    Verb,
    authorized,
)
from ingest_worker.core.tenants import DEFAULT_TENANT, tenant_name
from ingest_worker.core.values import BatchInput, Command, IncidentInput, Recovery, SourceTransition

if TYPE_CHECKING:
    import uuid

    from ingest_worker.core.projection import IncidentState


class Status(StrEnum):
    """An incident's status; the value is what the store and the events carry."""

    PENDING = "PENDING"
    OPEN = "OPEN"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    MITIGATING = "MITIGATING"
    MITIGATED = "MITIGATED"
    RESOLVED = "RESOLVED"
    CLOSED = "CLOSED"
    CANCELLED = "CANCELLED"
    ARCHIVED = "ARCHIVED"


ACTIVE: Final = frozenset(
    {Status.PENDING, Status.OPEN, Status.ACKNOWLEDGED, Status.MITIGATING, Status.MITIGATED}
)
#: Statuses a trigger no longer adds to (unless older than the end): a new one starts an episode.
ENDED: Final = frozenset(Status) - ACTIVE
_ALL_BUT_ARCHIVED: Final = frozenset(Status) - {Status.ARCHIVED}
#: The "status" of a key that has no incident yet.
NONE: Final = None


class When(StrEnum):
    """The rule of a row, besides its verb, cause and source status: its value says it."""

    ALWAYS = "always"
    BEFORE_SCOPE_RECOVERY = "the trigger is older than the newest recovery of its scope"
    OPEN_AFTER_ABOVE_ONE = "the source's open_after is above 1"
    REACHES_OPEN_AFTER = "the occurrence count reaches the source's open_after"
    OLDER_THAN_END = "the trigger is older than the incident's end"
    WITHIN_REOPEN_WINDOW = "resolved by a recovery less than the reopen window before the trigger"
    NEWER_THAN_LAST_TRIGGER = "the recovery is newer than the incident's newest trigger"


class Step(StrEnum):
    """What a row does besides setting the status: its value says it."""

    VERB = "sets the verb's own columns (acknowledged_at, resolved_at, …)"
    NEW_EPISODE = "starts a new episode of the key (a new incident id)"
    OCCURRENCE = "adds an occurrence (evidence, counts, times; severity never lowered)"
    REOPEN = "adds an occurrence and reopens: reopen_count + 1, resolution cleared"
    RECOVERY = "resolves at the recovery's time (resolved_by: signal)"


@dataclass(frozen=True, slots=True)
class Transition:
    """One row of the table: `verb` moves an incident in one of `sources` (None: the key has
    no incident yet) to `to` (None: the status is unchanged) when `when` holds, recording
    `event_type` (None: `incident.created` / `incident.updated`). `rationale` says when a
    command needs one; `causes` who may use the row."""

    verb: Verb
    sources: frozenset[Status | None]
    to: Status | None
    event_type: str | None
    rationale: Literal["never", "always", "unless_mitigation"] = "never"
    causes: frozenset[str] = frozenset({"command"})
    when: When = When.ALWAYS
    step: Step = Step.VERB


def _row(
    verb: Verb,
    sources: Iterable[Status | None],
    to: Status | None,
    event: str | None,
    *,
    rationale: Literal["never", "always", "unless_mitigation"] = "never",
    causes: Iterable[str] = ("command",),
    when: When = When.ALWAYS,
    step: Step = Step.VERB,
) -> Transition:
    return Transition(verb, frozenset(sources), to, event, rationale, frozenset(causes), when, step)


S = Status
_LIVE = (S.OPEN, S.ACKNOWLEDGED, S.MITIGATING, S.MITIGATED)
_SIGNAL = ("signal",)
_NEW_OR_ENDED = (NONE, *sorted(ENDED))
#: Row by row; the first row whose verb, cause, source status and rule match applies.
TRANSITIONS: Final[tuple[Transition, ...]] = (
    # -- trigger signals -----------------------------------------------------------------------
    _row(Verb.TRIGGER, [S.PENDING], S.OPEN, "incident.promoted", causes=_SIGNAL,
         when=When.REACHES_OPEN_AFTER, step=Step.OCCURRENCE),
    _row(Verb.TRIGGER, ACTIVE, None, None, causes=_SIGNAL, step=Step.OCCURRENCE),
    _row(Verb.TRIGGER, ENDED, None, None, causes=_SIGNAL, when=When.OLDER_THAN_END,
         step=Step.OCCURRENCE),
    _row(Verb.TRIGGER, [S.RESOLVED], S.OPEN, "incident.reopened", causes=_SIGNAL,
         when=When.WITHIN_REOPEN_WINDOW, step=Step.REOPEN),
    _row(Verb.TRIGGER, _NEW_OR_ENDED, S.RESOLVED, "incident.resolved", causes=_SIGNAL,
         when=When.BEFORE_SCOPE_RECOVERY, step=Step.NEW_EPISODE),
    _row(Verb.TRIGGER, _NEW_OR_ENDED, S.PENDING, None, causes=_SIGNAL,
         when=When.OPEN_AFTER_ABOVE_ONE, step=Step.NEW_EPISODE),
    _row(Verb.TRIGGER, _NEW_OR_ENDED, S.OPEN, None, causes=_SIGNAL, step=Step.NEW_EPISODE),
    # -- recovery signals ----------------------------------------------------------------------
    _row(Verb.RECOVER, [S.PENDING], S.CANCELLED, "incident.cancelled", causes=_SIGNAL,
         when=When.NEWER_THAN_LAST_TRIGGER, step=Step.RECOVERY),
    _row(Verb.RECOVER, _LIVE, S.RESOLVED, "incident.resolved", causes=_SIGNAL,
         when=When.NEWER_THAN_LAST_TRIGGER, step=Step.RECOVERY),
    # -- commands and the sources' own transitions ---------------------------------------------
    _row(Verb.PROMOTE, [S.PENDING], S.OPEN, "incident.promoted"),
    _row(Verb.ACKNOWLEDGE, [S.OPEN], S.ACKNOWLEDGED, "incident.acknowledged",
         causes=("command", "source")),
    _row(Verb.UNACKNOWLEDGE, [S.ACKNOWLEDGED], S.OPEN, "incident.unacknowledged",
         causes=("command", "source")),
    _row(Verb.START_MITIGATION, [S.OPEN, S.ACKNOWLEDGED], S.MITIGATING, "incident.mitigating"),
    _row(Verb.MARK_MITIGATED, [S.MITIGATING], S.MITIGATED, "incident.mitigated"),
    _row(Verb.RESOLVE, _LIVE, S.RESOLVED, "incident.resolved", rationale="unless_mitigation"),
    _row(Verb.REOPEN, [S.RESOLVED], S.OPEN, "incident.reopened", causes=("command", "source")),
    _row(Verb.CLOSE, [S.RESOLVED], S.CLOSED, "incident.closed"),
    _row(Verb.CANCEL, [S.PENDING, S.OPEN, S.ACKNOWLEDGED], S.CANCELLED, "incident.cancelled",
         rationale="always"),
    _row(Verb.ARCHIVE, [S.CLOSED, S.CANCELLED], S.ARCHIVED, "incident.archived"),
    _row(Verb.CHANGE_SEVERITY, _ALL_BUT_ARCHIVED, None, "incident.severity_changed",
         rationale="always"),
    _row(Verb.ANNOTATE, _ALL_BUT_ARCHIVED, None, "incident.annotated",
         causes=("command", "source")),
)  # fmt: skip
del S

#: The status a command verb leads to (asking for it again is a `noop`).
TARGET: Final[dict[Verb, Status]] = {
    t.verb: t.to for t in TRANSITIONS if t.to is not None and t.verb in COMMAND_VERBS
}
#: (verb, status, cause) → the rows that may apply, in table order: one lookup per decision.
_CANDIDATES: Final[dict[tuple[Verb, Status | None, str], tuple[Transition, ...]]] = {
    (verb, status, cause): rows
    for verb in Verb
    for status in (NONE, *Status)
    for cause in ("command", "signal", "source")
    if (rows := tuple(t for t in TRANSITIONS
                      if t.verb is verb and status in t.sources and cause in t.causes))
}  # fmt: skip
# Members read on every input, bound once (an enum member read through its class is slower).
_ALWAYS, _NEW_EPISODE, _REOPEN = When.ALWAYS, Step.NEW_EPISODE, Step.REOPEN
_OPEN, _PENDING, _RESOLVED = Status.OPEN, Status.PENDING, Status.RESOLVED
_TRIGGER, _RECOVER = Verb.TRIGGER, Verb.RECOVER


def episode_id(incident_key: str, episode: int, tenant: str = DEFAULT_TENANT) -> uuid.UUID:
    """Episode 1 keeps uuid5 of the key, episode n is uuid5 of `<key>#<n>`; outside the
    default tenant the key is `<tenant>/<key>`."""
    name = tenant_name(tenant, incident_key)
    return incident_id(name if episode == 1 else f"{name}#{episode}")


def decide(
    state: IncidentState | None,
    given: BatchInput,
    rules: Rules,
    *,
    scope_recovery: RecoveryMark | None = None,
) -> Decision:
    """What `given` does to the newest episode `state` of its key (None: the key has none).

    `scope_recovery`: the newest recovery of a trigger's scope seen before it (a trigger older
    than it starts its episode resolved, or is an occurrence of the ended incident); only the
    rows of a key without an incident or with an ended one read it."""
    if isinstance(given, IncidentInput):
        return _trigger(state, given, rules, scope_recovery)
    if isinstance(given, Recovery):
        return _recover(state, given)
    if isinstance(given, SourceTransition):
        return _lifecycle(state, given.verb, given.signal_time, given.signal_sha256, "source")
    return _command(state, given, rules)


def _first(
    verb: Verb, status: Status | None, cause: Cause, holds: Callable[[When], bool] | None = None
) -> Transition | None:
    for row in _CANDIDATES.get((verb, status, cause), ()):
        if row.when is _ALWAYS or (holds is not None and holds(row.when)):
            return row
    return None


def _open_after(rules: Rules, source_kind: str) -> int:
    return 1 if rules.open_after is None else rules.open_after.get(source_kind, 1)


def _holds(
    when: When,
    state: IncidentState | None,
    signal: IncidentInput,
    rules: Rules,
    newest: RecoveryMark | None,
) -> bool:
    """Whether the rule of a trigger row holds for `signal` on `state`."""
    at = signal.signal_time
    if when is When.BEFORE_SCOPE_RECOVERY:
        return newest is not None and newest.signal_time > at
    if when is When.OPEN_AFTER_ABOVE_ONE:
        return _open_after(rules, signal.source_kind) > 1
    assert state is not None  # the other rules are of rows on an existing incident
    if when is When.REACHES_OPEN_AFTER:
        return state.occurrence_count + 1 >= _open_after(rules, state.source_kind)
    if when is When.OLDER_THAN_END:
        ends = [m for m in (state.resolved_at, state.closed_at) if m is not None]
        if newest is not None:
            ends.append(newest.signal_time)
        # A tie with the end counts as newer: resolving needs a strictly newer recovery.
        return bool(ends) and at < max(ends)
    if when is When.WITHIN_REOPEN_WINDOW:
        return (
            state.resolved_by == "signal"
            and state.resolved_at is not None
            and at - state.resolved_at < rules.reopen_window
        )
    raise AssertionError(f"{when} is not a rule of a trigger row")


def _trigger_row(
    state: IncidentState | None, signal: IncidentInput, rules: Rules, newest: RecoveryMark | None
) -> Transition:
    status = None if state is None else state.status
    for row in _CANDIDATES[(_TRIGGER, status, "signal")]:
        if row.when is _ALWAYS or _holds(row.when, state, signal, rules, newest):
            return row
    raise AssertionError("the last trigger row of every status has no rule")


def _trigger(
    state: IncidentState | None, signal: IncidentInput, rules: Rules, newest: RecoveryMark | None
) -> Decision:
    row = _trigger_row(state, signal, rules, newest)
    at, sha = signal.signal_time, signal.signal_sha256
    if row.step is _NEW_EPISODE:
        episode = 1 if state is None else state.episode + 1
        after = projection.start(
            signal, episode_id(signal.incident_key, episode, rules.tenant), episode=episode,
            previous=None if state is None else state.id,
        )  # fmt: skip
        if _open_after(rules, signal.source_kind) > 1:
            after = replace(after, status=_PENDING)
        created = Change(after, None, at, sha, evidence=True, new_episode=True)
        if row.to is not _RESOLVED or newest is None:
            return Decision((created,), after, Outcome.CREATED)
        # Born resolved: the recovery of its scope is newer than the trigger.
        resolved = replace(
            after, status=_RESOLVED, resolved_at=newest.signal_time, resolved_by="signal",
            last_seq=after.last_seq + 1,
        )  # fmt: skip
        late = Change(resolved, row.event_type, newest.signal_time, sha, newest.signal_sha256)
        return Decision((created, late), resolved, Outcome.CREATED)
    assert state is not None
    after = projection.advance(state, signal)
    if row.step is _REOPEN:
        after = replace(
            after, status=_OPEN, resolved_at=None, resolved_by=None,
            reopen_count=state.reopen_count + 1,
        )  # fmt: skip
    elif row.to is not None:
        after = replace(after, status=row.to)
    return Decision(
        (Change(after, row.event_type, at, sha, evidence=True),), after, Outcome.UPDATED
    )


def _recover(state: IncidentState | None, recovery: Recovery) -> Decision:
    at = recovery.signal_time
    if state is None:
        return Decision((), None, Outcome.RECOVERED)
    row = _first(
        _RECOVER, state.status, "signal", lambda _: state.last_seen_at < at
    )  # the one rule of the recovery rows: newer than the newest trigger
    if row is None or row.to is None:
        return Decision((), state, Outcome.RECOVERED)
    after = replace(
        state, status=row.to, resolved_at=at, resolved_by="signal", last_seq=state.last_seq + 1
    )
    change = Change(after, row.event_type, at, recovery.signal_sha256, evidence=True)
    return Decision((change,), after, Outcome.RECOVERED)


def judge(
    status: Status, verb: Verb, *, cause: Cause = "command", rationale: str | None = None
) -> Ruling:
    """The table's ruling on a command or source `verb` for an incident in `status` (the
    signal verbs' rows have rules on times: `decide` reads those). Authority is checked
    before, by `authorized`."""
    row = _first(verb, status, cause)
    if row is None:
        if TARGET.get(verb) is status:
            return Ruling("noop", status)
        return Ruling("rejected", status, reason=RefusalReason.TRANSITION_NOT_ALLOWED)
    if cause == "command" and not (rationale and rationale.strip()):
        needs = row.rationale == "always" or (
            row.rationale == "unless_mitigation"
            and status not in (Status.MITIGATING, Status.MITIGATED)
        )
        if needs:
            return Ruling("rejected", status, reason=RefusalReason.RATIONALE_REQUIRED)
    return Ruling("applied", row.to or status, event_type=row.event_type)


def _rejected(state: IncidentState | None, reason: RefusalReason) -> Decision:
    return Decision((), state, Outcome.REJECTED, reason)


def _command(state: IncidentState | None, command: Command, rules: Rules) -> Decision:
    """Checks in order: not issued in the future (`not_after`, the worker's clock plus the
    allowed skew), the incident exists, not issued before its first signal, the actor's roles
    allow the verb, `expectedSeq`; then the table."""
    at = command.issued_at
    if command.not_after is not None and at > command.not_after:
        return _rejected(state, RefusalReason.ISSUED_IN_FUTURE)
    if state is None:
        return _rejected(None, RefusalReason.UNKNOWN_INCIDENT)
    if at < state.first_seen_at:
        # Its lifecycle times would precede the incident (a negative time to acknowledge).
        return _rejected(state, RefusalReason.ISSUED_BEFORE_INCIDENT)
    try:
        verb = Verb(command.verb)
    except ValueError:
        return _rejected(state, RefusalReason.TRANSITION_NOT_ALLOWED)
    if rules.policy is not None and not authorized(rules.policy, verb, command.roles):
        return _rejected(state, RefusalReason.NOT_AUTHORIZED)
    if command.expected_seq is not None and command.expected_seq != state.last_seq:
        return _rejected(state, RefusalReason.STALE)
    severity = command.severity.value if command.severity else None
    return _lifecycle(
        state, verb, at, command.content_sha256, "command", command.rationale, severity
    )


def _lifecycle(
    state: IncidentState | None,
    verb: str,
    at: datetime,
    sha: str,
    cause: Cause,
    rationale: str | None = None,
    severity: str | None = None,
) -> Decision:
    """A command's or a source's verb on `state`, by the table."""
    if state is None:
        return _rejected(None, RefusalReason.UNKNOWN_INCIDENT)
    try:
        action = Verb(verb)
    except ValueError:
        return _rejected(state, RefusalReason.TRANSITION_NOT_ALLOWED)
    ruling = judge(state.status, action, cause=cause, rationale=rationale)
    if ruling.outcome == "rejected":
        return _rejected(state, ruling.reason or RefusalReason.TRANSITION_NOT_ALLOWED)
    if ruling.outcome == "noop" or (
        action is Verb.CHANGE_SEVERITY and (severity is None or severity == state.severity)
    ):
        return Decision((), state, Outcome.NOOP)
    after = projection.after_verb(state, action, ruling.status, at, severity)
    return Decision((Change(after, ruling.event_type, at, sha),), after, Outcome.APPLIED)
