"""The incident aggregate without PostgreSQL: generated interleavings of the inputs of one key.

What commutes, precisely:

- Triggers and recoveries (with `open_after` 1): whatever their arrival order, the newest
  episode of the key ends RESOLVED exactly when the newest recovery is strictly newer than the
  newest trigger, and OPEN otherwise. Episodes, counts and `first_seen_at` do depend on the
  order (a trigger after a resolution outside the reopen window starts an episode; the same
  trigger before the recovery is an occurrence of the first), and so does PENDING (occurrences
  are counted per episode), so the property is about the status only.
- Commands and source transitions do not commute with the trigger that creates the incident
  (before it they are `unknown_incident`) nor with each other. What holds: the same
  lifecycle inputs, in the same order, after the signals, leave the same status whatever the
  signals' order, when they carry no `expectedSeq` and are issued after every signal (those
  two checks read the episode's sequence and first signal, which the order changes).

And for every interleaving: replaying the decided events (each event's `changes` applied to the
snapshot before it) rebuilds each episode's decided state.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest_worker.core.events import EVENT_CREATED, apply_changes, same_json
from ingest_worker.core.incident import (
    ACTIVE,
    ENDED,
    TRANSITIONS,
    Status,
    Step,
    Transition,
    When,
    decide,
)
from ingest_worker.core.lifecycle import DEFAULT_POLICY, RecoveryMark, Rules, Verb
from ingest_worker.core.plan import BatchPlan
from ingest_worker.core.projection import SNAPSHOT_FIELDS, IncidentState
from ingest_worker.core.values import (
    BatchInput,
    Command,
    IncidentInput,
    Recovery,
    Severity,
    SourceTransition,
)
from tests.factories import BASE_TIME, incident_input, recovery

KEY = "svc:checkout:high-latency"
RULES = Rules(reopen_window=timedelta(seconds=300), policy=DEFAULT_POLICY)
LATE = 10_000  # seconds after BASE_TIME: later than every generated signal

#: Times (seconds after BASE_TIME) spread over a few reopen windows.
times = st.integers(min_value=0, max_value=1_500)
triggers = st.builds(
    lambda n, at: incident_input(KEY, signal=f"t{n}", at=at, scope=KEY), st.integers(0, 99), times
)
recoveries = st.builds(
    lambda n, at: recovery(KEY, signal=f"r{n}", at=at), st.integers(0, 99), times
)
signals = st.lists(
    st.one_of(triggers, recoveries), min_size=1, max_size=10, unique_by=lambda i: i.signal_sha256
)
verbs = st.sampled_from([v.value for v in Verb if v not in (Verb.TRIGGER, Verb.RECOVER)])


def _lifecycle(kind: str, verb: str, n: int) -> Command | SourceTransition:
    at = BASE_TIME + timedelta(seconds=LATE + n)
    if kind == "source":
        return SourceTransition(KEY, "pagerduty", verb, at, f"src-{n}")
    return Command(
        f"c-{n}", verb, None, KEY, "human", "alice", ("SRE_LEAD",), at, f"c-{n}",
        rationale="because",
    )  # fmt: skip


lifecycle = st.lists(st.tuples(st.sampled_from(["command", "source"]), verbs), max_size=5).map(
    lambda items: [_lifecycle(kind, verb, n) for n, (kind, verb) in enumerate(items)]
)


def fold(inputs: list[BatchInput], rules: Rules = RULES) -> IncidentState | None:
    """The inputs of one key decided in this order, as the batch plan feeds them to `decide`
    (a trigger sees the newest recovery before it)."""
    state: IncidentState | None = None
    newest: RecoveryMark | None = None
    for item in inputs:
        decision = decide(state, item, rules, scope_recovery=newest)
        state = decision.next_state
        if isinstance(item, Recovery):
            mark = RecoveryMark(item.signal_time, item.signal_sha256)
            if newest is None or (mark.signal_time, mark.signal_sha256) > (
                newest.signal_time,
                newest.signal_sha256,
            ):
                newest = mark
    return state


def planned(inputs: list[IncidentInput | Recovery]) -> list[Any]:
    """The events the batch plan writes for `inputs`, as one batch."""
    plan = BatchPlan(inputs, range(len(inputs)), 1, reopen_window=RULES.reopen_window)
    return [event for chunk in plan.chunks(1_000) for event in plan.compute(chunk).events]


def expected_status(inputs: list[IncidentInput | Recovery]) -> Status | None:
    trigger_times = [i.signal_time for i in inputs if isinstance(i, IncidentInput)]
    if not trigger_times:
        return None
    recovery_times = [i.signal_time for i in inputs if isinstance(i, Recovery)]
    resolved = bool(recovery_times) and max(recovery_times) > max(trigger_times)
    return Status.RESOLVED if resolved else Status.OPEN


@settings(max_examples=150, deadline=None)
@given(signals, st.randoms(use_true_random=False))
def test_the_newest_episode_status_does_not_depend_on_the_signals_order(
    inputs: list[IncidentInput | Recovery], random: Any
) -> None:
    shuffled = list(inputs)
    random.shuffle(shuffled)
    first, second = fold(list(inputs)), fold(shuffled)
    statuses = {None if s is None else s.status for s in (first, second)}
    assert statuses == {expected_status(inputs)}
    # The plan, which writes them, decides the same.
    events = planned(list(inputs))
    assert (events[-1].payload["snapshot"]["status"] if events else None) == (
        None if first is None else first.status.value
    )


@settings(max_examples=150, deadline=None)
@given(signals, lifecycle, st.randoms(use_true_random=False))
def test_the_same_commands_after_the_signals_end_the_same_whatever_the_signals_order(
    inputs: list[IncidentInput | Recovery],
    commands: list[Command | SourceTransition],
    random: Any,
) -> None:
    shuffled = list(inputs)
    random.shuffle(shuffled)
    first = fold([*inputs, *commands])
    second = fold([*shuffled, *commands])
    assert (first is None) == (second is None)
    if first is not None and second is not None:
        assert first.status is second.status


@settings(max_examples=150, deadline=None)
@given(signals)
def test_replaying_the_decided_events_rebuilds_each_episode(
    inputs: list[IncidentInput | Recovery],
) -> None:
    rebuilt: dict[str, dict[str, Any]] = {}
    for event in planned(inputs):
        payload = event.payload
        incident = payload["incident_id"]
        if payload["type"] == EVENT_CREATED:
            assert incident not in rebuilt
            rebuilt[incident] = dict(payload["snapshot"])
        else:
            rebuilt[incident] = apply_changes(rebuilt[incident], payload["changes"])
        for field in SNAPSHOT_FIELDS:
            assert same_json(rebuilt[incident][field], payload["snapshot"][field]), field
    final = fold(list(inputs))
    if final is not None:
        assert rebuilt[str(final.id)] == final.snapshot()


# --- every (state, input) pair of the table ----------------------------------------------------


def _reach(status: Status | None) -> list[BatchInput]:
    """Inputs that leave KEY's newest episode in `status` (first signal at 100 s; PENDING
    with `_rules_for(PENDING)`)."""
    if status is None:
        return []
    start: list[BatchInput] = [incident_input(KEY, signal="t0", at=100, scope=KEY)]
    if status is Status.RESOLVED:  # by a recovery, so that a trigger may reopen it
        return [*start, recovery(KEY, signal="r0", at=200)]
    paths: dict[Status, list[tuple[str, str | None]]] = {
        Status.PENDING: [],
        Status.OPEN: [],
        Status.ACKNOWLEDGED: [("acknowledge", None)],
        Status.MITIGATING: [("start_mitigation", None)],
        Status.MITIGATED: [("start_mitigation", None), ("mark_mitigated", None)],
        Status.CLOSED: [("resolve", "why"), ("close", None)],
        Status.CANCELLED: [("cancel", "why")],
        Status.ARCHIVED: [("cancel", "why"), ("archive", None)],
    }
    return [*start, *(
        Command(
            f"reach-{n}", verb, None, KEY, "human", "alice", ("SRE_LEAD",),
            BASE_TIME + timedelta(seconds=200 + n), f"reach-{n}", rationale=why,
        )
        for n, (verb, why) in enumerate(paths[status])
    )]  # fmt: skip


def _rules_for(status: Status | None) -> Rules:
    return Rules(open_after={"deploy_status": 2}) if status is Status.PENDING else RULES


#: A trigger's (time, rules, scope recovery's time) that make a row's rule hold, for a state
#: reached by `_reach` (its end, if any, at 200 s).
_TRIGGERS: dict[When, tuple[int, Rules, int | None]] = {
    When.REACHES_OPEN_AFTER: (150, Rules(open_after={"deploy_status": 2}), None),
    When.OLDER_THAN_END: (150, RULES, None),
    When.WITHIN_REOPEN_WINDOW: (300, RULES, None),
    When.BEFORE_SCOPE_RECOVERY: (50, RULES, 60),
    When.OPEN_AFTER_ABOVE_ONE: (1_000, Rules(open_after={"deploy_status": 3}), None),
    When.ALWAYS: (1_000, RULES, None),
}


def _signal_case(row: Transition, status: Status | None) -> Any:
    state = fold(_reach(status), _rules_for(status))
    if row.verb is Verb.RECOVER:
        return decide(state, recovery(KEY, signal="r9", at=5_000), RULES)
    at, rules, scope_at = _TRIGGERS[row.when]
    if row.when is When.ALWAYS and status is Status.PENDING:
        rules = Rules(open_after={"deploy_status": 3})  # not reaching it: an occurrence
    scope = None if scope_at is None else RecoveryMark(BASE_TIME + timedelta(seconds=scope_at), "r")
    trigger = incident_input(KEY, signal="t9", at=at, scope=KEY)
    return decide(state, trigger, rules, scope_recovery=scope)


def _command_case(row: Transition, status: Status) -> Any:
    state = fold(_reach(status), _rules_for(status))
    cause = sorted(row.causes)[0]
    command = _lifecycle(cause, row.verb.value, 900)
    if row.verb is Verb.CHANGE_SEVERITY and isinstance(command, Command):
        command = replace(command, severity=Severity.YELLOW)  # the incident is RED
    return decide(state, command, RULES)


def test_every_row_of_the_table_is_exercised_from_every_source_status() -> None:
    """For each row and each status it names, a state in that status and an input for which
    the row is the first that applies: the decision is the row's."""
    reached: set[int] = set()
    for number, row in enumerate(TRANSITIONS):
        for status in row.sources:
            if row.when is When.BEFORE_SCOPE_RECOVERY and status is not None:
                continue  # older than a recovery of its scope: OLDER_THAN_END applies first
            before = fold(_reach(status), _rules_for(status))
            assert (None if before is None else before.status) is status
            if row.verb in (Verb.TRIGGER, Verb.RECOVER):
                decision = _signal_case(row, status)
            else:
                assert status is not None
                decision = _command_case(row, status)
            after = decision.next_state
            assert after.status is (row.to or status), (number, status)
            assert decision.events[-1].event_type == row.event_type, (number, status)
            assert decision.events[0].new_episode is (row.step is Step.NEW_EPISODE)
            reached.add(number)
    assert reached == set(range(len(TRANSITIONS)))


def test_statuses_are_one_enum_whose_values_are_the_stored_ones() -> None:
    assert [s.value for s in Status] == [s.name for s in Status]
    assert frozenset(Status) == ENDED | ACTIVE
