"""The state machine of SPEC §7.1, checked for every (state, verb) pair against an expectation
written out independently from the SPEC's table (not derived from the product's table)."""

from __future__ import annotations

import itertools

import pytest

from ingest_worker.core.lifecycle import (
    COMMAND_VERBS,
    DEFAULT_POLICY,
    PolicyError,
    Refusal,
    Status,
    Verb,
    authorized,
    decide,
    parse_policy,
)

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
    decision = decide(status, verb, cause="command", rationale="because")
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
    decision = decide(Status(status), Verb(verb), cause="command", rationale=None)
    needs = verb in NEEDS_RATIONALE or (verb == "resolve" and status not in (MG, MD))
    if needs:
        assert (decision.outcome, decision.reason) == ("rejected", Refusal.RATIONALE_REQUIRED)
    else:
        assert decision.outcome == "applied"
    blank = decide(Status(status), Verb(verb), cause="command", rationale="   ")
    assert blank.outcome == decision.outcome


@pytest.mark.parametrize("status", list(Status), ids=str)
def test_a_recovery_signal_resolves_active_incidents_and_cancels_pending_ones(
    status: Status,
) -> None:
    decision = decide(status, Verb.RECOVER, cause="signal")
    expected = {P: ("applied", X), OP: ("applied", R), A: ("applied", R), MG: ("applied", R)}
    expected[MD] = ("applied", R)
    assert (decision.outcome, decision.status.value) == expected.get(
        status.value, ("noop", status.value)
    )


@pytest.mark.parametrize("status", list(Status), ids=str)
def test_a_trigger_reopens_a_resolved_incident_and_never_clears_an_ack(status: Status) -> None:
    decision = decide(status, Verb.TRIGGER, cause="signal")
    if status is Status.RESOLVED:
        assert (decision.status, decision.event_type) == (Status.OPEN, "incident.reopened")
    elif status.value in (P, OP, A, MG, MD):
        assert (decision.outcome, decision.status) == ("applied", status)
    else:
        assert (decision.outcome, decision.status) == ("noop", status)


@pytest.mark.parametrize("status", list(Status), ids=str)
def test_sources_may_acknowledge_and_annotate_but_not_mitigate(status: Status) -> None:
    assert decide(status, Verb.START_MITIGATION, cause="source").outcome in ("rejected", "noop")
    ack = decide(status, Verb.ACKNOWLEDGE, cause="source")
    assert ack.outcome == ("applied" if status is Status.OPEN else ack.outcome)


def test_commands_cannot_use_signal_verbs() -> None:
    assert Verb.RECOVER not in COMMAND_VERBS and Verb.TRIGGER not in COMMAND_VERBS
    assert decide(Status.OPEN, Verb.RECOVER, cause="command").reason is (
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
