"""Faults under load: the worker runs as `ingest-worker run` processes against the real broker and
PostgreSQL, a stream of signals of all four kinds (with redeliveries) flows in, a fault strikes
mid-stream, and the end state must be exactly what the independent model in `expected.py` says:
incidents, occurrence counts, severities, evidence and events in PostgreSQL, every committed
event on `incident.events` in seq order, bad records on the dead-letter topic and nothing else
there, `verify` and `replay --check` clean.

Commands run in every stream too (`command_stream`): acknowledgements, annotations and
rejections on the incidents the signals create, redelivered, produced as their incidents appear
(`CommandFeeder`), so that they are in flight when the faults strike; each must end with exactly
one receipt, at most one effect and its outcome on `incident.command-results`. External traffic
(Alertmanager groups with firing and resolved alerts, PagerDuty incident events) is part of
every stream as well.

"Mid-stream" is made sure of: a tail of every stream is held back until the fault is over, so the
worker always has work in flight and work to come when it is hit.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from ingest_worker.service.config import Settings
from ingest_worker.service.embedded import EmbeddedKafka, EmbeddedPostgres
from ingest_worker.service.kafka_clients import ensure_topics
from tests.e2e.expected import (
    SHAPES,
    Expected,
    ExpectedCommand,
    Observed,
    Record,
    Verdict,
    command_stream,
    compare,
    expect,
    identified_recoveries,
    key_time,
    observe,
    shape_of,
    signal_stream,
    touches,
)
from tests.e2e.process import worker_environment
from tests.e2e.soak import (
    CommandFeeder,
    Database,
    Feeder,
    Fleet,
    broker_pause,
    postgres_outage,
    rebalance_then_sigkill,
    settle,
    sigkill_and_restart,
    sigkill_inside_a_transaction,
    sigkill_while_publishing,
    wait_for_occurrences,
)
from tests.e2e.tally import TALLY
from tests.sources import FIXTURES

SOURCE_CASES = Path(__file__).parents[1] / "sources"

pytestmark = pytest.mark.e2e

#: Every stream and every fault instant derives from this seed (set FAULT_SEED to vary it).
SEED = int(os.environ.get("FAULT_SEED", "20240501"))


# --- the oracle itself --------------------------------------------------------------------------


def test_expected_model_renders_key_times_canonically() -> None:
    assert key_time("2024-01-01T01:00:00+01:00") == "2024-01-01T00:00:00Z"
    assert key_time("2024-01-01T00:00:00Z") == "2024-01-01T00:00:00Z"
    assert key_time("2024-01-01T00:00:00.000z") == "2024-01-01T00:00:00Z"
    assert key_time("2024-01-01T00:10:00.250Z") == "2024-01-01T00:10:00.25Z"
    assert key_time("2023-12-31T23:30:00.5-00:45") == "2024-01-01T00:15:00.5Z"
    assert key_time("2020-01-23T18:03:11.817Z") == "2020-01-23T18:03:11.817Z"
    with pytest.raises(ValueError):
        key_time("2024-01-01T00:00:00")  # no offset: not a valid signal time


@pytest.mark.parametrize(
    ("fixture", "family", "keys"),
    [
        (
            "deploy-status-red.json",
            "deploy_status",
            {"deploy_status:prod:deploy-123:2024-01-01T00:00:00Z": "RED"},
        ),
        (
            "deploy-status-yellow.json",
            "deploy_status",
            {"deploy_status:stage:deploy-456:2024-01-01T00:00:00Z": "YELLOW"},
        ),
        ("deploy-status-green.json", "deploy_status", {}),
        ("verification-failed.json", "verification", {"verification:deploy-123:sha256-abc": "RED"}),
        ("verification-timeout.json", "verification", {"verification:deploy-123:run-789": "RED"}),
        ("verification-passed.json", "verification", {}),
        (
            "ecs-stopped-task.json",
            "ecs",
            {
                "ecs_stopped:prod-cluster:arn:aws:ecs:us-east-1:123456789012:task/prod-cluster/"
                "0123456789abcdef0123456789abcdef:2024-01-01T00:00:00Z": "RED"
            },
        ),
        (
            "aws-ecs-task-state-change-stopped.json",
            "ecs",
            {
                "ecs_stopped:FargateCluster:arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/"
                "c13b4cb40f1f4fe4a2971f76ae5a47ad:2020-01-23T18:03:11.817Z": "RED"
            },
        ),
        ("aws-ecs-task-state-change-running.json", "ecs", {}),
        ("runner-step-failure.json", "runner", {"runner:run-12345:deploy:failure": "RED"}),
        (
            "github-workflow-job-completed-failure.json",
            "runner",
            {"runner:2202229078:Run yarn run format-check:failure": "RED"},
        ),
    ],
)
def test_expected_model_maps_the_seed_examples(
    fixture: str, family: str, keys: dict[str, str]
) -> None:
    payload = json.loads((FIXTURES / fixture).read_text())
    assert {t.key: t.severity for t in touches(family, payload)} == keys


#: Golden cases of SPEC §8 sources whose mapping the oracle restates (tests/sources/<name>/).
GOLDEN_EXTERNAL = {
    "alertmanager": [
        "firing_two_alerts", "DERIVED_mixed_firing_resolved",
        "resolved", "firing_endsAt_zero_am0.21", "DERIVED_renotified_other_group",
    ],
    "pagerduty": ["webhook_incident_triggered", "webhook_incident_resolved"],
}  # fmt: skip


@pytest.mark.parametrize(
    ("family", "case"), [(f, c) for f, cases in GOLDEN_EXTERNAL.items() for c in cases]
)
def test_expected_model_maps_external_sources_as_their_golden_cases_say(
    family: str, case: str
) -> None:
    """The oracle's few lines for Alertmanager and PagerDuty agree with the reviewed golden
    outputs (keys, severities, signal times, evidence kinds, recovery scopes and times)."""
    payload = json.loads((SOURCE_CASES / family / f"{case}.json").read_text())
    golden = json.loads((SOURCE_CASES / family / f"{case}.expected.json").read_text())
    want_touches, want_recoveries = set(), set()
    for item in golden["incidents"]:
        if "recovery" in item:
            recovery = item["recovery"]
            want_recoveries.add((recovery["scope"], key_time(recovery["signal_time"])))
        elif "incident_key" in item:
            kinds = tuple(sorted(e["kind"] for e in item["evidence"]))
            want_touches.add(
                (item["incident_key"], item["severity"], key_time(item["signal_time"]), kinds)
            )
    found_touches = {
        (t.key, t.severity, key_time(t.at.isoformat()), tuple(sorted(t.evidence)))
        for t in touches(family, payload)
    }
    found_recoveries = {
        (scope, key_time(at.isoformat())) for scope, at, _ in identified_recoveries(family, payload)
    }
    assert (found_touches, found_recoveries) == (want_touches, want_recoveries)


def test_fault_streams_hold_every_shape_updates_escalations_redeliveries_and_bad_records() -> None:
    records = signal_stream(SEED, 3000)
    expected = expect(records)
    values = Counter(r.value for r in records)
    shapes = {shape_of(r.family, r.payload) for r in records if r.payload is not None}
    assert shapes == set(SHAPES)
    assert 2700 <= len(records) <= 3300
    assert sum(1 for n in values.values() if n > 1) > 300, "too few redeliveries"
    assert sum(1 for i in expected.incidents.values() if i.count > 1) > 200, "too few updates"
    recovery_signals = sum(len(found) for found in expected.recoveries.values())
    assert expected.ignored + recovery_signals > 50 and len(expected.dead_letters) > 10
    resolved = [i for i in expected.incidents.values() if expected.status_of(i) == "RESOLVED"]
    assert len(resolved) > 10, "too few incidents resolved by recovery signals"
    escalated = [
        i
        for i in expected.incidents.values()
        if i.severity == "RED"
        and i.key.startswith(("deploy_status", "ecs_stopped"))
        and i.count > 1
    ]
    assert escalated, "no incident whose severity could have been lowered by a later signal"
    assert signal_stream(SEED, 3000) == records, "streams must be reproducible from their seed"
    external = [i for i in expected.incidents.values() if i.key.startswith(("alertmanager:",
                "pagerduty:"))]  # fmt: skip
    assert len(external) > 100, "too little external traffic"
    assert any(expected.status_of(i) == "RESOLVED" for i in external)
    assert any(expected.status_of(i) == "OPEN" for i in external)
    groups = [r.payload for r in records if r.family == "alertmanager" and r.payload is not None]
    assert any({a["status"] for a in g["alerts"]} == {"firing", "resolved"} for g in groups), (
        "no Alertmanager group mixes firing and resolved alerts"
    )


def test_fault_streams_carry_commands_of_every_outcome_redelivered() -> None:
    records = signal_stream(SEED, 3000)
    commands = command_stream(SEED, records)
    expected = expect([*records, *commands])
    wanted: Counter[tuple[str, str | None]] = Counter(
        (c.outcome, c.reason) for c in expected.commands.values()
    )
    assert {reason for _, reason in wanted} == {
        None, "not_authorized", "rationale_required", "unknown_incident"
    }  # fmt: skip
    assert wanted[("applied", None)] >= 40 and wanted[("applied|noop", None)] >= 5
    assert {c.verb for c in expected.commands.values()} >= {
        "acknowledge", "annotate", "resolve", "change_severity"
    }  # fmt: skip
    assert len(commands) > len(expected.commands) * 1.2, "too few redelivered commands"
    acknowledged = [
        i for i in expected.incidents.values() if expected.status_of(i) == "ACKNOWLEDGED"
    ]
    assert len(acknowledged) >= 30
    assert command_stream(SEED, records) == commands, "commands must be reproducible"
    for command in expected.commands.values():
        if command.requires is not None:
            assert command.requires in expected.incidents
        if command.outcome != "rejected" or command.reason != "unknown_incident":
            assert isinstance(command, ExpectedCommand) and command.key in expected.incidents


def test_oracle_counts_what_was_lost_and_what_was_duplicated() -> None:
    expected = expect(signal_stream(SEED, 300))
    nothing = Observed([], [], [], {}, [], [], [], [])
    verdict = compare(expected, nothing)
    assert verdict.lost == expected.occurrences + len(expected.dead_letters)
    assert len(verdict.problems) == len(expected.incidents) + len(expected.dead_letters)

    key, incident = next(i for i in expected.incidents.items() if i[1].count == 1)
    once = Expected(incidents={key: incident})
    twice = {
        "incident_key": key, "episode": 1, "id": "i-1", "severity": incident.severity,
        "status": "OPEN", "occurrence_count": 2, "last_seq": 2,
        "first_seen_at": incident.times[0], "last_seen_at": incident.times[0],
    }  # fmt: skip
    verdict = compare(once, Observed([twice], [], [], {}, [], [], [], []))
    assert verdict.duplicated == 1 and verdict.lost == 1  # an extra count, its event missing
    assert any("occurrence_count 2, expected 1" in p for p in verdict.problems)

    # Commands: every one without its receipt is a problem and a loss.
    records = signal_stream(SEED, 300)
    commands = expect([*records, *command_stream(SEED, records)])
    verdict = compare(commands, nothing, check_dead_letters=False)
    missing = [p for p in verdict.problems if "receipts, expected exactly one" in p]
    assert len(missing) == len(commands.commands) and verdict.lost >= len(commands.commands)


# --- scenarios ----------------------------------------------------------------------------------


async def finish(
    fleet: Fleet, database: Database, records: list[Record], expected: Expected
) -> Verdict:
    """Wait for the end state, stop the workers gracefully, compare, and tally. `records`:
    the signals and the commands produced."""
    settled = await settle(database, expected)
    await database.close()
    codes = await fleet.stop_all()
    verdict = compare(expected, await observe(fleet.settings))
    TALLY.sent(sum(r.command is None for r in records))
    TALLY.record(verdict)
    assert not verdict.problems, f"seed {SEED}: {verdict.report()}"
    assert settled, "the end state was reached only after the workers stopped"
    assert codes == [0] * len(codes), f"graceful stops exited with {codes}"
    return verdict


def held_back_occurrences(records: list[Record], hold_back: int) -> int:
    """Occurrences committed once every record before the held-back tail is processed."""
    return expect(records[:-hold_back]).occurrences


async def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    scenario_settings: Callable[..., Settings], fleet_factory: Callable[[Settings], Fleet]
) -> None:
    rng = random.Random(SEED + 1)
    settings = scenario_settings()
    await ensure_topics(settings)
    records = signal_stream(SEED + 1, 3000)
    commands = command_stream(SEED + 1, records)
    expected, hold_back = expect([*records, *commands]), 400
    head = held_back_occurrences(records, hold_back)
    database = Database(settings.database_url.get_secret_value())
    fleet = fleet_factory(settings)
    worker = await fleet.start()
    async with (
        Feeder(settings, records, rate=300, hold_back=hold_back) as feeder,
        CommandFeeder(settings, commands) as orders,
    ):
        for _ in range(3):
            progress = max(0, await database.occurrences())
            # A random point a little further than where the current worker is now.
            threshold = min(progress + rng.randint(30, 400), head - 20)
            await wait_for_occurrences(database, threshold)
            worker = await sigkill_and_restart(fleet, worker, rng, max_delay=0.3)
            TALLY.fault("sigkill")
            assert await database.occurrences() < expected.occurrences, (
                "the kill was not mid-stream"
            )
        # And once at the worst instant: a batch read, its transaction open, nothing committed.
        worker = await sigkill_inside_a_transaction(
            fleet, worker, settings.database_url.get_secret_value(), then=feeder.release
        )
        TALLY.fault("sigkill_in_transaction")
        await feeder.finished()
        await orders.finished()
    await finish(fleet, database, [*records, *commands], expected)
    # The audit commands, as an operator runs them, agree with the direct checks.
    environment = worker_environment(settings, 0)
    for command in (["verify"], ["replay", "--check"]):
        exe = Path(sys.executable).with_name("ingest-worker")
        result = subprocess.run(
            [str(exe), *command],
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert ": 0 " in result.stdout, result.stdout


async def test_postgres_outage_mid_stream_loses_nothing_and_dead_letters_no_good_input(
    scenario_settings: Callable[..., Settings],
    fleet_factory: Callable[[Settings], Fleet],
    embedded_postgres: EmbeddedPostgres,
) -> None:
    settings = scenario_settings()
    await ensure_topics(settings)
    records = signal_stream(SEED + 2, 2000)
    commands = command_stream(SEED + 2, records)
    database = Database(settings.database_url.get_secret_value())
    fleet = fleet_factory(settings)
    worker = await fleet.start()
    async with (
        Feeder(settings, records, rate=300, hold_back=300) as feeder,
        CommandFeeder(settings, commands) as orders,
    ):
        await wait_for_occurrences(database, 1)
        await postgres_outage(embedded_postgres, worker, feeder, records=150)
        TALLY.fault("postgres_outage")
        await feeder.finished()
        await orders.finished()
    await finish(fleet, database, [*records, *commands], expect([*records, *commands]))


async def test_broker_pause_mid_stream_loses_and_duplicates_nothing(
    scenario_settings: Callable[..., Settings],
    fleet_factory: Callable[[Settings], Fleet],
    embedded_kafka: EmbeddedKafka,
) -> None:
    # Publishing rounds of two events: the held batch's events need several rounds.
    settings = scenario_settings(outbox_batch_size=2)
    await ensure_topics(settings)
    records = signal_stream(SEED + 3, 2000)
    commands = command_stream(SEED + 3, records)
    database = Database(settings.database_url.get_secret_value())
    fleet = fleet_factory(settings)
    worker = await fleet.start()
    async with (
        Feeder(settings, records, rate=300, hold_back=300) as feeder,
        CommandFeeder(settings, commands) as orders,
    ):
        await wait_for_occurrences(database, 1)
        await broker_pause(embedded_kafka, worker)
        TALLY.fault("broker_pause")
        # Again, and this time the worker dies while its publishes wait for acknowledgements.
        worker = await sigkill_while_publishing(
            fleet,
            worker,
            embedded_kafka,
            settings.database_url.get_secret_value(),
            then=feeder.release,
        )
        TALLY.fault("sigkill_while_publishing")
        await feeder.finished()
        await orders.finished()
    await finish(fleet, database, [*records, *commands], expect([*records, *commands]))


async def test_second_worker_joining_then_first_sigkilled_loses_and_duplicates_nothing(
    scenario_settings: Callable[..., Settings], fleet_factory: Callable[[Settings], Fleet]
) -> None:
    rng = random.Random(SEED + 4)
    settings = scenario_settings()
    await ensure_topics(settings)
    records = signal_stream(SEED + 4, 3000)
    commands = command_stream(SEED + 4, records)
    database = Database(settings.database_url.get_secret_value())
    fleet = fleet_factory(settings)
    first = await fleet.start()
    async with (
        Feeder(settings, records, rate=300, hold_back=400) as feeder,
        CommandFeeder(settings, commands) as orders,
    ):
        await wait_for_occurrences(database, rng.randint(1, 300))
        second = await rebalance_then_sigkill(fleet, first, rng)
        TALLY.fault("rebalance_then_sigkill")
        await feeder.finished()
        await orders.finished()
    assert fleet.running == [second]
    await finish(fleet, database, [*records, *commands], expect([*records, *commands]))


async def test_sigterm_during_a_large_batch_exits_zero_in_grace_and_a_restart_completes_the_work(
    scenario_settings: Callable[..., Settings], fleet_factory: Callable[[Settings], Fleet]
) -> None:
    rng = random.Random(SEED + 5)
    settings = scenario_settings(batch_max_records=2000)
    await ensure_topics(settings)
    records = signal_stream(SEED + 5, 8000)
    commands = command_stream(SEED + 5, records)
    async with Feeder(settings, records, rate=50_000) as feeder:
        await feeder.finished()  # a backlog: the worker starts on full 2000-record batches
    database = Database(settings.database_url.get_secret_value())
    fleet = fleet_factory(settings)
    orders = await CommandFeeder(settings, commands).__aenter__()
    worker = await fleet.start()
    await wait_for_occurrences(database, 1)  # the first batch committed, the next one under way
    await asyncio.sleep(rng.uniform(0, 0.5))  # the seeded random SIGTERM instant
    code, seconds = await fleet.terminate(worker)
    TALLY.fault("sigterm")
    assert code == 0, worker.tail()
    assert seconds <= settings.shutdown_grace_seconds, f"exit took {seconds:.1f}s"
    # Stop fetching: the batches being written (up to INGEST_WRITE_CONCURRENCY) may finish, no
    # batch may start after SIGTERM.
    events = [json.loads(line)["event"] for line in worker.log_path.read_text().splitlines()]
    after_sigterm = events[events.index("stopping") :]
    assert after_sigterm.count("batch_processed") <= settings.write_concurrency, (
        f"batches written after SIGTERM: {events}"
    )
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0, (
            "committed events were left unpublished at shutdown"
        )
        committed = await conn.fetchval("SELECT coalesce(sum(occurrence_count), 0) FROM incidents")
    finally:
        await conn.close()
    assert committed < expect(records).occurrences, "SIGTERM came after the work was done"
    await fleet.start()
    try:
        await orders.finished()
    finally:
        await orders.__aexit__(None, None, None)
    await finish(fleet, database, [*records, *commands], expect([*records, *commands]))
