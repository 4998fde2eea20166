"""The incident state machine: states, verbs, the transition table, authority.

Pure and clock-free: a decision depends on the incident's status, the verb, who asks (a command's
roles, or a signal / the source itself) and whether a rationale was given; never on the time
of day. The table is data; `decide` is the one function that reads it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal


class Status(StrEnum):
    PENDING = "PENDING"
    OPEN = "OPEN"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    MITIGATING = "MITIGATING"
    MITIGATED = "MITIGATED"
    RESOLVED = "RESOLVED"
    CLOSED = "CLOSED"
    CANCELLED = "CANCELLED"
    ARCHIVED = "ARCHIVED"


class Verb(StrEnum):
    """Commands and the two signal verbs: `recover` (a recovery signal) and
    `trigger` (a trigger signal on an existing incident)."""

    PROMOTE = "promote"
    ACKNOWLEDGE = "acknowledge"
    UNACKNOWLEDGE = "unacknowledge"
    START_MITIGATION = "start_mitigation"
    MARK_MITIGATED = "mark_mitigated"
    RESOLVE = "resolve"
    REOPEN = "reopen"
    CLOSE = "close"
    CANCEL = "cancel"
    ARCHIVE = "archive"
    CHANGE_SEVERITY = "change_severity"
    ANNOTATE = "annotate"
    RECOVER = "recover"
    TRIGGER = "trigger"


#: Verbs a command may carry (`recover` and `trigger` come from signals only).
COMMAND_VERBS: Final = tuple(v for v in Verb if v not in (Verb.RECOVER, Verb.TRIGGER))


class Refusal(StrEnum):
    """Stable reasons of a `rejected` outcome."""

    UNKNOWN_INCIDENT = "unknown_incident"
    TRANSITION_NOT_ALLOWED = "transition_not_allowed"
    RATIONALE_REQUIRED = "rationale_required"
    NOT_AUTHORIZED = "not_authorized"
    STALE = "stale"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    #: `issuedAt` before the incident's first signal (`first_seen_at`).
    ISSUED_BEFORE_INCIDENT = "issued_before_incident"
    #: `issuedAt` later than the worker's clock, when it read the command, plus the allowed skew.
    ISSUED_IN_FUTURE = "issued_in_future"


Cause = Literal["command", "signal", "source"]

ACTIVE: Final = frozenset(
    {Status.PENDING, Status.OPEN, Status.ACKNOWLEDGED, Status.MITIGATING, Status.MITIGATED}
)
_ALL_BUT_ARCHIVED: Final = frozenset(Status) - {Status.ARCHIVED}


@dataclass(frozen=True, slots=True)
class Transition:
    """One row of the table: `verb` moves an incident in one of `sources` to `to` (None: the
    status is unchanged, e.g. annotate). `rationale` says when a command needs one."""

    verb: Verb
    sources: frozenset[Status]
    to: Status | None
    event_type: str
    rationale: Literal["never", "always", "unless_mitigation"] = "never"
    causes: frozenset[str] = frozenset({"command"})


def _row(
    verb: Verb,
    sources: Iterable[Status],
    to: Status | None,
    event: str,
    *,
    rationale: Literal["never", "always", "unless_mitigation"] = "never",
    causes: Iterable[str] = ("command",),
) -> Transition:
    return Transition(verb, frozenset(sources), to, event, rationale, frozenset(causes))


S = Status
#: SPEC §7.1, row by row. The first row whose verb and source state match applies.
TRANSITIONS: Final[tuple[Transition, ...]] = (
    _row(Verb.PROMOTE, [S.PENDING], S.OPEN, "incident.promoted", causes=("command", "signal")),
    _row(Verb.RECOVER, [S.PENDING], S.CANCELLED, "incident.cancelled", causes=("signal",)),
    _row(
        Verb.ACKNOWLEDGE,
        [S.OPEN],
        S.ACKNOWLEDGED,
        "incident.acknowledged",
        causes=("command", "source"),
    ),
    _row(
        Verb.UNACKNOWLEDGE,
        [S.ACKNOWLEDGED],
        S.OPEN,
        "incident.unacknowledged",
        causes=("command", "source"),
    ),
    _row(Verb.START_MITIGATION, [S.OPEN, S.ACKNOWLEDGED], S.MITIGATING, "incident.mitigating"),
    _row(Verb.MARK_MITIGATED, [S.MITIGATING], S.MITIGATED, "incident.mitigated"),
    _row(
        Verb.RESOLVE,
        [S.OPEN, S.ACKNOWLEDGED, S.MITIGATING, S.MITIGATED],
        S.RESOLVED,
        "incident.resolved",
        rationale="unless_mitigation",
    ),
    _row(
        Verb.RECOVER,
        [S.OPEN, S.ACKNOWLEDGED, S.MITIGATING, S.MITIGATED],
        S.RESOLVED,
        "incident.resolved",
        causes=("signal",),
    ),
    _row(
        Verb.REOPEN,
        [S.RESOLVED],
        S.OPEN,
        "incident.reopened",
        causes=("command", "source"),
    ),
    _row(Verb.TRIGGER, [S.RESOLVED], S.OPEN, "incident.reopened", causes=("signal",)),
    _row(Verb.CLOSE, [S.RESOLVED], S.CLOSED, "incident.closed"),
    _row(
        Verb.CANCEL,
        [S.PENDING, S.OPEN, S.ACKNOWLEDGED],
        S.CANCELLED,
        "incident.cancelled",
        rationale="always",
    ),
    _row(Verb.ARCHIVE, [S.CLOSED, S.CANCELLED], S.ARCHIVED, "incident.archived"),
    _row(
        Verb.CHANGE_SEVERITY,
        _ALL_BUT_ARCHIVED,
        None,
        "incident.severity_changed",
        rationale="always",
    ),
    _row(
        Verb.ANNOTATE,
        _ALL_BUT_ARCHIVED,
        None,
        "incident.annotated",
        causes=("command", "source"),
    ),
    _row(Verb.TRIGGER, ACTIVE, None, "incident.updated", causes=("signal",)),
)
del S

#: The status a status verb leads to (for `noop`: already there).
TARGET: Final[dict[Verb, Status]] = {
    t.verb: t.to
    for t in TRANSITIONS
    if t.to is not None and t.verb not in (Verb.RECOVER, Verb.TRIGGER)
}


@dataclass(frozen=True, slots=True)
class Decision:
    """What a verb does to an incident: `applied` (with the new status and the event type),
    `noop` (already in the target state) or `rejected` (with the reason)."""

    outcome: Literal["applied", "noop", "rejected"]
    status: Status
    event_type: str | None = None
    reason: Refusal | None = None


def transition_for(status: Status, verb: Verb, cause: Cause) -> Transition | None:
    for row in TRANSITIONS:
        if row.verb is verb and status in row.sources and cause in row.causes:
            return row
    return None


def decide(
    status: Status,
    verb: Verb,
    *,
    cause: Cause = "command",
    rationale: str | None = None,
) -> Decision:
    """The effect of `verb` on an incident in `status` (authority is checked before, by
    `authorized`). Signals need no rationale; commands as the table says."""
    row = transition_for(status, verb, cause)
    if row is None:
        target = TARGET.get(verb)
        if target is not None and status is target and cause != "signal":
            return Decision("noop", status)
        if cause == "signal" and verb in (Verb.RECOVER, Verb.TRIGGER):
            return Decision("noop", status)  # a recovery of a resolved incident changes nothing
        return Decision("rejected", status, reason=Refusal.TRANSITION_NOT_ALLOWED)
    if cause == "command" and not (rationale and rationale.strip()):
        needs = row.rationale == "always" or (
            row.rationale == "unless_mitigation"
            and status not in (Status.MITIGATING, Status.MITIGATED)
        )
        if needs:
            return Decision("rejected", status, reason=Refusal.RATIONALE_REQUIRED)
    return Decision("applied", row.to or status, event_type=row.event_type)


# --- authority (seed 001 RBAC, seed 004 authority context) -------------------------------------

#: Roles any actor has for a verb open to all.
ANY_ACTOR: Final = "*"
_STATUS_ROLES: Final = frozenset({"ONCALL_ENGINEER", "SRE_LEAD", "ORG_ADMIN"})

#: status verbs need ONCALL_ENGINEER, SRE_LEAD or ORG_ADMIN; change_severity
#: SRE_LEAD or ORG_ADMIN; annotate any actor.
DEFAULT_POLICY: Final[Mapping[Verb, frozenset[str]]] = {
    **{verb: _STATUS_ROLES for verb in COMMAND_VERBS},
    Verb.CHANGE_SEVERITY: frozenset({"SRE_LEAD", "ORG_ADMIN"}),
    Verb.ANNOTATE: frozenset({ANY_ACTOR}),
}


class PolicyError(ValueError):
    """A policy document that cannot be used (unknown verb, roles not a list of strings)."""


def parse_policy(document: Mapping[str, Any]) -> dict[Verb, frozenset[str]]:
    """A policy from its JSON document: `{"<verb>": ["ROLE", …] | "*", …}`. Verbs it leaves
    out keep the default; `"*"` (or a list holding it) lets any actor use the verb; `[]`
    forbids it to every command."""
    policy = dict(DEFAULT_POLICY)
    for name, roles in document.items():
        try:
            verb = Verb(name)
        except ValueError:
            raise PolicyError(f"unknown verb {name!r} in the policy") from None
        if verb not in COMMAND_VERBS:
            raise PolicyError(f"{name!r} is not a command verb")
        if roles == ANY_ACTOR:
            policy[verb] = frozenset({ANY_ACTOR})
        elif isinstance(roles, list) and all(isinstance(r, str) and r for r in roles):
            policy[verb] = frozenset(roles)
        else:
            raise PolicyError(f'roles of {name!r} must be "*" or a list of role names')
    return policy


def authorized(policy: Mapping[Verb, frozenset[str]], verb: Verb, roles: Iterable[str]) -> bool:
    """True when an actor asserting `roles` may use `verb` under `policy`."""
    allowed = policy.get(verb, frozenset())
    return ANY_ACTOR in allowed or not allowed.isdisjoint(roles)
