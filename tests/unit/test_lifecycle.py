"""The state machine of SPEC §7.1, checked for every (state, verb) pair against an expectation
written out independently from the SPEC's table (not derived from the product's table)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import timedelta

import pytest

from ingest_worker.core import canonical
from ingest_worker.core.incident import Status, decide
from ingest_worker.core.incident import judge as decide_verb
from ingest_worker.core.lifecycle import (
    COMMAND_VERBS,
    DEFAULT_POLICY,
    Outcome,
    PolicyError,
    Rules,
    Verb,
    authorized,
    parse_policy,
)
from ingest_worker.core.lifecycle import RefusalReason as Refusal
from ingest_worker.core.projection import IncidentState, start
from tests.factories import BASE_TIME, incident_input, recovery

KEY = "deploy_status:prod:deploy-1:2024-01-01T00:00:00Z"

P, OP, A, MG, MD, R, C, X, AR = (
    "PENDING", "OPEN", "ACKNOWLEDGED", "MITIGATING", "MITIGATED", "RESOLVED", "CLOSED",
    "CANCELLED", "ARCHIVED",
)  # fmt: skip

#: (verb, from) → to, for commands, straight from the SPEC §7.1 table. None: status unchanged.
COMMAND_MOVES: dict[tuple[str, str], str | None] = {
    ("promote", P): OP,
    ("acknowledge", OP): A,
    ("unacknowledge", A): OP,
    ("start_mitigation", OP): MG,
    ("start_mitigation", A): MG,
    ("mark_mitigated", MG): MD,
    **{("resolve", s): R for s in (OP, A, MG, MD)},
    ("reopen", R): OP,
    ("close", R): C,
    **{("cancel", s): X for s in (P, OP, A)},
    **{("archive", s): AR for s in (C, X)},
    **{("change_severity", s): None for s in (P, OP, A, MG, MD, R, C, X)},
    **{("annotate", s): None for s in (P, OP, A, MG, MD, R, C, X)},
}
#: The state each status verb leads to: asking for it again is a `noop`.
TARGETS = {
    "promote": OP, "acknowledge": A, "unacknowledge": OP, "start_mitigation": MG,
    "mark_mitigated": MD, "resolve": R, "reopen": OP, "close": C, "cancel": X, "archive": AR,
}  # fmt: skip
NEEDS_RATIONALE = {"cancel", "change_severity"}


@pytest.mark.parametrize(
    ("status", "verb"), list(itertools.product(list(Status), COMMAND_VERBS)), ids=str
)
def test_every_command_in_every_state(status: Status, verb: Verb) -> None:
    decision = decide_verb(status, verb, cause="command", rationale="because")
    key = (verb.value, status.value)
    if key in COMMAND_MOVES:
        expected = COMMAND_MOVES[key] or status.value
        assert (decision.outcome, decision.status.value) == ("applied", expected)
        assert decision.event_type is not None and decision.event_type.startswith("incident.")
    elif TARGETS.get(verb.value) == status.value:
        assert (decision.outcome, decision.status) == ("noop", status)
    else:
        assert (decision.outcome, decision.reason) == (
            "rejected",
            Refusal.TRANSITION_NOT_ALLOWED,
        )
        assert decision.status is status


@pytest.mark.parametrize(("verb", "status"), sorted(COMMAND_MOVES), ids=str)
def test_rationale_rules_of_seed_003(verb: str, status: str) -> None:
    decision = decide_verb(Status(status), Verb(verb), cause="command", rationale=None)
    needs = verb in NEEDS_RATIONALE or (verb == "resolve" and status not in (MG, MD))
    if needs:
        assert (decision.outcome, decision.reason) == ("rejected", Refusal.RATIONALE_REQUIRED)
    else:
        assert decision.outcome == "applied"
    blank = decide_verb(Status(status), Verb(verb), cause="command", rationale="   ")
    assert blank.outcome == decision.outcome


def incident_in(status: Status, *, resolved_at: int | None = None) -> IncidentState:
    """An incident of KEY first and last seen at BASE_TIME, in `status` (resolved by a
    recovery `resolved_at` seconds after BASE_TIME)."""
    state = start(incident_input(KEY, at=0), canonical.incident_id(KEY))
    if resolved_at is None:
        return replace(state, status=status)
    moment = BASE_TIME + timedelta(seconds=resolved_at)
    return replace(state, status=status, resolved_at=moment, resolved_by="signal")


@pytest.mark.parametrize("status", list(Status), ids=str)
def test_a_recovery_signal_resolves_active_incidents_and_cancels_pending_ones(
    status: Status,
) -> None:
    decision = decide(incident_in(status), recovery(KEY, at=10), Rules())
    expected = {P: X, OP: R, A: R, MG: R, MD: R}
    assert decision.outcome is Outcome.RECOVERED
    assert decision.next_state is not None
    assert decision.next_state.status.value == expected.get(status.value, status.value)
    assert len(decision.events) == (1 if status.value in expected else 0)


@pytest.mark.parametrize("status", list(Status), ids=str)
def test_a_recovery_no_newer_than_the_newest_trigger_changes_nothing(status: Status) -> None:
    decision = decide(incident_in(status), recovery(KEY, at=0), Rules())
    assert (decision.events, decision.next_state) == ((), incident_in(status))


@pytest.mark.parametrize("status", list(Status), ids=str)
def test_a_trigger_adds_to_an_active_incident_and_never_clears_an_ack(status: Status) -> None:
    rules = Rules(open_after={"deploy_status": 3})  # PENDING stays PENDING at 2 occurrences
    decision = decide(incident_in(status), incident_input(KEY, signal="s2", at=60), rules)
    assert decision.next_state is not None
    if status.value in (P, OP, A, MG, MD):
        assert (decision.outcome, decision.next_state.status) == (Outcome.UPDATED, status)
        assert decision.next_state.occurrence_count == 2
    else:  # a trigger after the end of an incident starts its next episode
        assert (decision.outcome, decision.next_state.episode) == (Outcome.CREATED, 2)
        assert decision.next_state.status is Status.PENDING  # open_after 3, as any new episode


def test_the_trigger_reaching_open_after_promotes_a_pending_incident() -> None:
    rules = Rules(open_after={"deploy_status": 2})
    decision = decide(incident_in(Status.PENDING), incident_input(KEY, signal="s2", at=1), rules)
    assert decision.next_state is not None and decision.next_state.status is Status.OPEN
    assert decision.events[0].event_type == "incident.promoted"


def test_a_trigger_reopens_an_incident_a_recovery_resolved_within_the_reopen_window() -> None:
    resolved = incident_in(Status.RESOLVED, resolved_at=10)
    rules = Rules(reopen_window=timedelta(seconds=300))
    inside = decide(resolved, incident_input(KEY, signal="s2", at=309), rules)
    assert inside.next_state is not None
    assert (inside.outcome, inside.next_state.status) == (Outcome.UPDATED, Status.OPEN)
    assert (inside.events[0].event_type, inside.next_state.reopen_count) == ("incident.reopened", 1)
    outside = decide(resolved, incident_input(KEY, signal="s2", at=310), rules)
    assert outside.next_state is not None
    assert (outside.outcome, outside.next_state.episode) == (Outcome.CREATED, 2)
    # Resolved by a command: never reopened by a trigger, whatever the window.
    by_command = replace(resolved, resolved_by="command")
    again = decide(by_command, incident_input(KEY, signal="s2", at=11), rules)
    assert again.next_state is not None and again.next_state.episode == 2


def test_a_trigger_older_than_the_end_of_an_incident_is_an_occurrence_of_it() -> None:
    resolved = incident_in(Status.RESOLVED, resolved_at=10)
    decision = decide(resolved, incident_input(KEY, signal="s0", at=5), Rules())
    assert decision.next_state is not None
    assert (decision.outcome, decision.next_state.status) == (Outcome.UPDATED, Status.RESOLVED)
    assert decision.next_state.occurrence_count == 2


@pytest.mark.parametrize("status", list(Status), ids=str)
def test_sources_may_acknowledge_and_annotate_but_not_mitigate(status: Status) -> None:
    assert decide_verb(status, Verb.START_MITIGATION, cause="source").outcome in (
        "rejected",
        "noop",
    )
    ack = decide_verb(status, Verb.ACKNOWLEDGE, cause="source")
    assert ack.outcome == ("applied" if status is Status.OPEN else ack.outcome)


def test_commands_cannot_use_signal_verbs() -> None:
    assert Verb.RECOVER not in COMMAND_VERBS and Verb.TRIGGER not in COMMAND_VERBS
    assert decide_verb(Status.OPEN, Verb.RECOVER, cause="command").reason is (
        Refusal.TRANSITION_NOT_ALLOWED
    )


def test_default_policy_of_spec_7_2() -> None:
    for verb in COMMAND_VERBS:
        if verb is Verb.ANNOTATE:
            assert authorized(DEFAULT_POLICY, verb, [])
        elif verb is Verb.CHANGE_SEVERITY:
            assert authorized(DEFAULT_POLICY, verb, ["SRE_LEAD"])
            assert not authorized(DEFAULT_POLICY, verb, ["ONCALL_ENGINEER"])
        else:
            for role in ("ONCALL_ENGINEER", "SRE_LEAD", "ORG_ADMIN"):
                assert authorized(DEFAULT_POLICY, verb, [role])
            assert not authorized(DEFAULT_POLICY, verb, ["VIEWER"])
            assert not authorized(DEFAULT_POLICY, verb, [])


def test_a_policy_document_overrides_the_default_verb_by_verb() -> None:
    policy = parse_policy({"acknowledge": ["BOT"], "close": "*", "cancel": []})
    assert authorized(policy, Verb.ACKNOWLEDGE, ["BOT"])
    assert not authorized(policy, Verb.ACKNOWLEDGE, ["ONCALL_ENGINEER"])
    assert authorized(policy, Verb.CLOSE, [])
    assert not authorized(policy, Verb.CANCEL, ["ORG_ADMIN"])
    assert authorized(policy, Verb.RESOLVE, ["SRE_LEAD"])  # left out: the default


@pytest.mark.parametrize(
    "document",
    [{"acknowlege": ["X"]}, {"recover": ["X"]}, {"close": "ANY"}, {"close": [1]}, {"close": [""]}],
)
def test_a_bad_policy_document_is_refused(document: dict[str, object]) -> None:
    with pytest.raises(PolicyError):
        parse_policy(document)
