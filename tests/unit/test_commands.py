"""Commands, pure parts: a credential in an identity field is refused without being echoed, and
the time rules (`issued_in_future`, `issued_before_incident`) of `core.incident.decide`."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from ingest_worker.core import canonical
from ingest_worker.core.errors import InvalidSignal, RejectReason
from ingest_worker.core.incident import decide as decide_input
from ingest_worker.core.lifecycle import DEFAULT_POLICY, Rules
from ingest_worker.core.lifecycle import RefusalReason as Refusal
from ingest_worker.core.projection import start
from ingest_worker.core.values import Command, SourceTransition
from ingest_worker.sources.commands import COMMANDS
from ingest_worker.sources.decode import decode_record
from tests.factories import BASE_TIME, incident_input

KEY = "deploy_status:prod:deploy-1:2024-01-01T00:00:00Z"
GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SPACED_JWT = "eyAiYWxnIjogIkhTMjU2IiB9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"


def command(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "commandId": "c-1",
        "type": "acknowledge",
        "incidentKey": KEY,
        "actor": {"type": "human", "id": "alice", "roles": ["ONCALL_ENGINEER"]},
        "issuedAt": "2024-01-01T00:05:00Z",
    }
    body.update(changes)
    return body


def decode(body: dict[str, Any]) -> Command:
    (item,) = decode_record(COMMANDS, json.dumps(body).encode(), max_bytes=1 << 20)
    assert isinstance(item, Command)
    return item


@pytest.mark.parametrize(
    ("field", "changes", "secret"),
    [
        ("commandId", {"commandId": JWT[:128]}, JWT[:128]),
        ("commandId", {"commandId": f"c-{GITHUB_TOKEN}"}, GITHUB_TOKEN),
        ("actor.id", {"actor": {"type": "human", "id": GITHUB_TOKEN, "roles": []}}, GITHUB_TOKEN),
        ("actor.id", {"actor": {"type": "service", "id": SPACED_JWT, "roles": []}}, SPACED_JWT),
        (
            "actor.roles",
            {"actor": {"type": "human", "id": "alice", "roles": ["ONCALL_ENGINEER", AWS_KEY_ID]}},
            AWS_KEY_ID,
        ),
        ("incidentKey", {"incidentKey": f"deploy_status:prod:{GITHUB_TOKEN}"}, GITHUB_TOKEN),
        ("incidentKey", {"incidentKey": "x password=hunter2-secret"}, "hunter2-secret"),
    ],
)
def test_a_credential_in_an_identity_field_is_refused_without_echoing_it(
    field: str, changes: dict[str, Any], secret: str
) -> None:
    with pytest.raises(InvalidSignal) as caught:
        decode(command(**changes))
    assert caught.value.reason is RejectReason.SCHEMA_VIOLATION
    assert caught.value.message.startswith(f"{field}: looks like a credential")
    assert secret not in caught.value.message


def test_every_identity_field_with_a_credential_is_named() -> None:
    body = command(
        commandId=JWT[:128], incidentKey=GITHUB_TOKEN,
        actor={"type": "human", "id": GITHUB_TOKEN, "roles": [AWS_KEY_ID]},
    )  # fmt: skip
    with pytest.raises(InvalidSignal) as caught:
        decode(body)
    assert caught.value.message.startswith(
        "commandId, actor.id, actor.roles, incidentKey: looks like a credential"
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"commandId": "c-2024-0001", "actor": {"type": "human", "id": "token-team", "roles": []}},
        {"actor": {"type": "service", "id": "secret-rotation-bot", "roles": ["SRE_LEAD"]}},
        {"incidentKey": "runner:run-1:Refresh token:failure"},
        {"rationale": f"pasted {GITHUB_TOKEN}", "note": f"and {JWT}"},
    ],
)
def test_ordinary_identities_are_kept_and_free_text_is_redacted(changes: dict[str, Any]) -> None:
    item = decode(command(**changes))
    assert item.command_id == changes.get("commandId", "c-1")
    assert GITHUB_TOKEN not in (item.rationale or "") and JWT not in (item.note or "")


STATE = start(incident_input(KEY, at=0), canonical.incident_id(KEY))


def command_at(
    at: timedelta, *, not_after: timedelta | None = None, verb: str = "acknowledge"
) -> Command:
    return Command(
        "c-1", verb, None, KEY, "human", "alice", ("ONCALL_ENGINEER",), BASE_TIME + at, "sha",
        not_after=None if not_after is None else BASE_TIME + not_after,
    )  # fmt: skip


def decide(at: timedelta, *, not_after: timedelta | None = None, verb: str = "acknowledge") -> Any:
    return decide_input(
        STATE, command_at(at, not_after=not_after, verb=verb), Rules(policy=DEFAULT_POLICY)
    )


def test_a_command_issued_before_the_incident_first_signal_is_rejected() -> None:
    assert STATE.first_seen_at == BASE_TIME
    early = decide(-timedelta(microseconds=1))
    assert (early.outcome, early.reason) == ("rejected", Refusal.ISSUED_BEFORE_INCIDENT)
    assert decide(-timedelta(days=20_000), verb="annotate").reason is Refusal.ISSUED_BEFORE_INCIDENT
    assert decide(timedelta(0)).outcome == "applied"  # at the first signal: fine


def test_a_command_issued_beyond_the_allowed_skew_is_rejected() -> None:
    late = decide(timedelta(seconds=301), not_after=timedelta(seconds=300))
    assert (late.outcome, late.reason) == ("rejected", Refusal.ISSUED_IN_FUTURE)
    assert decide(timedelta(seconds=300), not_after=timedelta(seconds=300)).outcome == "applied"
    # Without a bound (a replay of stored decisions, or the check switched off): applied.
    assert decide(timedelta(days=365 * 900)).outcome == "applied"


def test_a_future_command_is_rejected_even_when_its_incident_is_unknown() -> None:
    decision = decide_input(
        None, command_at(timedelta(days=1), not_after=timedelta(0)), Rules(policy=DEFAULT_POLICY)
    )
    assert decision.reason is Refusal.ISSUED_IN_FUTURE


def test_sources_report_transitions_with_their_own_times() -> None:
    transition = SourceTransition(
        KEY, "pagerduty", "acknowledge", BASE_TIME - timedelta(days=1), "s"
    )
    decision = decide_input(STATE, transition, Rules())
    assert decision.outcome == "applied"


def test_the_reasons_are_stable() -> None:
    assert Refusal.ISSUED_BEFORE_INCIDENT.value == "issued_before_incident"
    assert Refusal.ISSUED_IN_FUTURE.value == "issued_in_future"
