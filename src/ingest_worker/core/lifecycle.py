"""The lifecycle's vocabulary: verbs, outcomes, refusal reasons, what a decision returns, and
who may use a verb (authority). The statuses and the transition table are in `core.incident`.

Pure and clock-free.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Literal

from ingest_worker.core.tenants import DEFAULT_TENANT

if TYPE_CHECKING:
    from ingest_worker.core.incident import Status
    from ingest_worker.core.projection import IncidentState


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


class RefusalReason(StrEnum):
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


class Outcome(StrEnum):
    """What became of one input."""

    CREATED = "created"
    UPDATED = "updated"
    DUPLICATE = "duplicate"
    #: A new recovery signal (whether or not an incident of its scope was active).
    RECOVERED = "recovered"
    #: Command and source-transition outcomes.
    APPLIED = "applied"
    NOOP = "noop"
    REJECTED = "rejected"


Cause = Literal["command", "signal", "source"]


@dataclass(frozen=True, slots=True)
class Rules:
    """What decisions depend on besides the state and the input."""

    #: A trigger this soon after a recovery resolved the incident reopens it.
    reopen_window: timedelta = timedelta(seconds=300)
    #: source kind → occurrences before an incident opens (PENDING until then; default 1)
    open_after: Mapping[str, int] | None = None
    tenant: str = DEFAULT_TENANT
    #: verb → roles that may command it (None: every command is authorized)
    policy: Mapping[Verb, frozenset[str]] | None = None


@dataclass(frozen=True, slots=True)
class RecoveryMark:
    """The newest recovery of a scope the key has seen (stored, or earlier in the batch)."""

    signal_time: datetime
    signal_sha256: str


@dataclass(slots=True)  # not frozen: built for every input, frozen init costs more
class Change:
    """One state change, recorded as one event: `after` is the incident after it."""

    after: IncidentState
    event_type: str | None
    occurred_at: datetime
    signal_sha256: str
    #: The signal that caused it, when not `signal_sha256` (a recovery resolving a late trigger).
    cause_sha256: str | None = None
    #: The input's evidence is recorded with this change.
    evidence: bool = False
    #: `after` is a new episode: its chain starts over.
    new_episode: bool = False


@dataclass(slots=True)  # not frozen: built for every input, frozen init costs more
class Decision:
    """What one input does: the changes to record (in order), the state after them, and the
    input's outcome (with the reason of a rejection)."""

    events: tuple[Change, ...]
    next_state: IncidentState | None
    outcome: Outcome
    reason: RefusalReason | None = None


@dataclass(frozen=True, slots=True)
class Ruling:
    """The table's answer for a verb on a status: `applied` (with the new status and the
    event type), `noop` (already in the target state) or `rejected` (with the reason)."""

    outcome: Literal["applied", "noop", "rejected"]
    status: Status
    event_type: str | None = None
    reason: RefusalReason | None = None


# --- authority: roles and the authority context of a command ------------------------------------

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
