"""Hostile input: the corpus of `corpus.py` (more than 30 kinds, each on every signal topic of the
fault streams, the byte-level ones on every registered source's topic, and more than 20 kinds of
hostile commands on the commands topic) goes through ONE `ingest-worker run` process, every hostile record between two good ones on the same
partition. Each must end on the dead-letter topic with its reason and its original bytes, or be
stored exactly as sent; the good records around them must be processed; the worker must keep
going; and no planted secret may be stored, published or logged.

The corpus runs once per module (the `corpus_run` fixture); each test checks one promise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from ingest_worker.service.config import Settings, topic_field
from ingest_worker.service.kafka_clients import ensure_topics
from ingest_worker.sources.registry import SOURCES
from ingest_worker.store.migrations import migrate
from tests.conftest import ServiceEndpoints
from tests.e2e.corpus import (
    BYTE_KINDS,
    COMMAND_KINDS,
    COMMAND_SECRET_KINDS,
    KINDS,
    MAX_MESSAGE_BYTES,
    Case,
    Corpus,
    build_command_corpus,
    build_corpus,
    dumps,
    good_command,
    padded,
)
from tests.e2e.expected import (
    FAMILIES,
    SHAPE_FAMILY,
    SHAPES,
    Expected,
    Observed,
    Verdict,
    compare,
    good_signal,
    observe,
    parsed_form,
    touches,
)
from tests.e2e.soak import (
    PRODUCER_MAX_REQUEST,
    SCENARIO_SETTINGS,
    Database,
    Fleet,
    http_status,
)
from tests.e2e.tally import TALLY
from tests.support import eventually, reading

pytestmark = pytest.mark.e2e

SEED = 6
#: `x-dlq-*` headers the worker appends after the original ones (SPEC §4).
DLQ_HEADERS = (
    "x-dlq-reason",
    "x-dlq-error",
    "x-dlq-source-topic",
    "x-dlq-source-partition",
    "x-dlq-source-offset",
    "x-dlq-failed-at",
)
#: Added instead of the value when a record is too large to republish (README, `too_large`).
OMITTED_VALUE_HEADERS = ("x-dlq-value-omitted", "x-dlq-original-size")
#: Kinds that only exist on some topics: deploy-status and verification signals carry every
#: field their incident key needs, so they cannot be valid yet unmappable.
TOPIC_SPECIFIC_KINDS = {"missing_field_the_key_needs"}
#: Phases of the corpus run and how long each may take: cases that have broken the worker before
#: come after the ordinary ones, so that such a failure hides nothing else.
PHASES = {"ordinary": 120.0, "binary_headers": 30.0, "oversize": 60.0}
#: How long the command corpus (after the signal phases) may take.
COMMAND_PHASE_SECONDS = 60.0
#: A value every deploy-status incident stores and publishes (its reason code): the secret scans
#: must find it, which proves they look where the data is.
CANARY = "HEALTH_FAIL"


def test_corpus_has_at_least_30_kinds_each_on_every_signal_topic() -> None:
    corpus = build_corpus(SEED)
    families: dict[str, set[str]] = defaultdict(set)
    for case in corpus:
        families[case.kind].add(case.family)
    assert len(families) >= 30 and len(KINDS) == len(families)
    for name, seen in families.items():
        if name not in TOPIC_SPECIFIC_KINDS:
            assert seen >= set(FAMILIES), f"{name} is not tried on {set(FAMILIES) - seen}"
    settings = {source.setting for source in SOURCES}
    for name in BYTE_KINDS:
        assert families[name] >= settings, f"{name} is not tried on {settings - families[name]}"
    reasons = Counter(case.reason or "processed" for case in corpus)
    assert set(reasons) == {
        "invalid_encoding",
        "invalid_json",
        "schema_violation",
        "too_large",
        "unmappable",
        "empty_value",
        "processed",
    }
    assert {c.shape for c in corpus} >= set(SHAPES)
    assert len(corpus.secrets) >= 100


def test_command_corpus_has_at_least_20_kinds_dead_lettered_or_rejected_with_a_reason() -> None:
    cases = build_command_corpus(SEED, ["ecs_stopped:c:t:2024-05-01T00:00:00Z"])
    assert len({c.kind for c in cases}) == len(COMMAND_KINDS) >= 20
    dead = Counter(c.reason for c in cases if c.reason is not None)
    outcomes = Counter(c.command for c in cases if c.command is not None)
    assert set(dead) == {"schema_violation", "invalid_json", "invalid_encoding", "too_large",
                         "empty_value"}  # fmt: skip
    assert {reason for _, reason in outcomes} == {
        None, "unknown_incident", "not_authorized", "rationale_required", "stale",
        "transition_not_allowed", "idempotency_key_reused", "issued_before_incident",
        "issued_in_future",
    }  # fmt: skip
    assert all((c.reason is None) == (c.command is not None) for c in cases)


# --- running the corpus -------------------------------------------------------------------------


@dataclass
class Placed:
    """A produced record and where the broker put it."""

    case: Case | None  # None: a good neighbour
    family: str
    topic: str
    partition: int
    offset: int
    value: bytes | None
    payload: dict[str, Any] | None


@dataclass
class CorpusRun:
    corpus: Corpus
    settings: Settings
    placed: list[Placed]
    expected: Expected
    observed: Observed
    verdict: Verdict
    primary_evidence: dict[str, list[dict[str, Any]]]  # incident key -> primary evidence rows
    leaked: dict[str, list[str]]  # where -> planted secrets found there
    command_leaked: dict[str, list[str]]  # the same for secrets planted in valid commands
    commands: list[Case]
    receipts: dict[str, dict[str, Any]]  # commandId -> its receipt
    command_events: dict[str, list[dict[str, Any]]]  # commandId -> events it caused
    redacted_command_texts: int  # rationale/note of command events that hold [REDACTED]
    log: str
    settled: dict[str, bool]  # phase -> everything processed in time
    alive_after: bool
    ready_after: bool
    exit_code: int


def neighbour(number: int) -> tuple[str, dict[str, Any]]:
    """A good signal (family, payload) with keys of its own, shapes in turn."""
    shape = SHAPES[number % len(SHAPES)]
    return SHAPE_FAMILY[shape], good_signal(shape, 20_000_000 + number * 10)


def topics_of(settings: Settings) -> dict[str, str]:
    """Topic setting of every registered source (`topic_<setting>`) → its topic, and
    "commands" → the commands topic."""
    topics = {source.setting: settings.topic_of(source) for source in SOURCES}
    topics["commands"] = settings.topic_commands
    return topics


async def produce_placed(settings: Settings, cases: list[Case], first: int) -> list[Placed]:
    """Each case between two good records, on partition (index % 3), in this order."""
    topics = topics_of(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        max_request_size=PRODUCER_MAX_REQUEST,
        acks="all",
        linger_ms=5,
        request_timeout_ms=120_000,
    )
    await producer.start()
    try:
        sent: list[tuple[Placed, Any]] = []
        for index, case in enumerate(cases, start=first):
            partition = index % 3
            before, after = neighbour(2 * index), neighbour(2 * index + 1)
            for item, (family, payload) in (
                (None, before),
                (case, (case.family, case.payload)),
                (None, after),
            ):
                value = case.value if item is not None else json.dumps(payload).encode()
                future = await producer.send(
                    topics[family],
                    value=value,
                    partition=partition,
                    key=case.key if item is not None else None,
                    headers=list(case.headers) if item is not None else [],
                )
                placed = Placed(item, family, topics[family], partition, -1, value, payload)
                sent.append((placed, future))
        for placed, future in sent:
            placed.offset = (await future).offset
        return [p for p, _ in sent]
    finally:
        await producer.stop()


async def produce_commands(settings: Settings, cases: list[Case], first: int) -> list[Placed]:
    """Each command case between two good commands (annotations of its target, applied), all on
    partition 0 of the commands topic, in this order. Placed.payload: the command (or None)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        max_request_size=PRODUCER_MAX_REQUEST,
        acks="all",
        request_timeout_ms=120_000,
    )
    await producer.start()
    try:
        sent: list[tuple[Placed, Any]] = []
        for index, case in enumerate(cases, start=first):
            target = (case.key or b"").decode()
            around = [good_command(2 * index + n, target, commandId=f"corpus-good-{2 * index + n}")
                      for n in (0, 1)]  # fmt: skip
            for item, value, key, headers, command in (
                (None, dumps(around[0]), case.key, [], around[0]),
                (case, case.value, case.key, list(case.headers), case.payload),
                (None, dumps(around[1]), case.key, [], around[1]),
            ):
                future = await producer.send(
                    settings.topic_commands, value=value, key=key, headers=headers, partition=0
                )
                placed = Placed(item, "commands", settings.topic_commands, 0, -1, value, command)
                sent.append((placed, future))
        for placed, future in sent:
            placed.offset = (await future).offset
        return [p for p, _ in sent]
    finally:
        await producer.stop()


#: ECS signals whose incidents the command corpus targets: their times (2024-05-01) precede the
#: commands' issuedAt (May 2024); the corpus' own signals are dated decades ahead.
TARGET_IDENTS = range(101, 106)


async def produce_targets(settings: Settings) -> list[Placed]:
    """The command targets (`TARGET_IDENTS`), on partition 0 of the ECS topic."""
    topic = topics_of(settings)["ecs"]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        placed = []
        for ident in TARGET_IDENTS:
            payload = good_signal("ecs_stopped_task", ident)
            value = json.dumps(payload).encode()
            sent = await producer.send_and_wait(topic, value=value, partition=0)
            placed.append(Placed(None, "ecs", topic, 0, sent.offset, value, payload))
        return placed
    finally:
        await producer.stop()


def http_text(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return str(response.read().decode("utf-8", "replace"))


async def until_commands_processed(
    database: Database, settings: Settings, receipts: int, dead_letters: int, timeout: float
) -> bool:
    try:
        async with reading(settings, settings.topic_dead_letter) as dlq:

            async def done() -> bool:
                found = await database.progress_with_commands()
                if found is None or found[3] < receipts or found[2] != 0:
                    return False
                await dlq.drain(quiet_for=0.1)
                return len(dlq.records) >= dead_letters

            await eventually(done, timeout=timeout, interval=0.2, what="the commands processed")
    except AssertionError:
        return False
    return True


def expectation(placed: list[Placed]) -> Expected:
    expected = Expected()
    for item in placed:
        if item.family == "commands":
            continue
        if item.payload is not None:
            expected.add_signal(item.family, item.payload)
    return expected


async def until_processed(
    database: Database, settings: Settings, expected: Expected, dead_letters: int, timeout: float
) -> bool:
    """Wait until the database holds `expected` and the DLQ `dead_letters` records (no raise)."""
    target = (len(expected.incidents), expected.occurrences, 0)
    try:
        async with reading(settings, settings.topic_dead_letter) as dlq:

            async def done() -> bool:
                if await database.progress() != target:
                    return False
                await dlq.drain(quiet_for=0.1)
                return len(dlq.records) >= dead_letters

            await eventually(done, timeout=timeout, interval=0.2, what="the corpus processed")
    except AssertionError:
        return False
    return True


async def primary_evidence(conn: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    rows = await conn.fetch(
        "SELECT i.incident_key, i.env, i.title, i.correlation_keys, e.payload "
        "FROM incidents i JOIN incident_evidence e ON e.incident_id = i.id AND e.kind = i.source_kind"
    )
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        item = dict(row)
        item["payload"] = json.loads(row["payload"])
        found[row["incident_key"]].append(item)
    return found


async def scan_database(conn: asyncpg.Connection, secrets: set[str]) -> dict[str, list[str]]:
    """Every text, jsonb and text[] column of the three public tables, searched for secrets."""
    columns = await conn.fetch(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() "
        "AND table_name IN ('incidents', 'incident_evidence', 'incident_events', "
        "'command_receipts', 'command_results_outbox') "
        "AND data_type IN ('text', 'jsonb', 'ARRAY', 'character varying')"
    )
    assert len(columns) >= 12, "the scan does not see the store's columns"
    leaked: dict[str, list[str]] = {}
    for table, column in ((r["table_name"], r["column_name"]) for r in columns):
        found = await conn.fetch(
            f"SELECT s FROM unnest($1::text[]) AS s WHERE EXISTS "  # noqa: S608 - catalog names
            f'(SELECT 1 FROM "{table}" WHERE strpos("{column}"::text, s) > 0)',
            sorted(secrets),
        )
        if found:
            leaked[f"postgres {table}.{column}"] = [r["s"] for r in found]
    return leaked


def scan_records(records: list[Any], secrets: set[str], where: str) -> dict[str, list[str]]:
    leaked: dict[str, set[str]] = defaultdict(set)
    for record in records:
        parts = {"value": record.value or b"", "key": record.key or b""}
        parts.update({f"header {k}": bytes(v) for k, v in record.headers or ()})
        for part, data in parts.items():
            text = data.decode("utf-8", "replace")
            leaked[f"{where} {part}"].update(s for s in secrets if s in text)
    return {k: sorted(v) for k, v in leaked.items() if v}


@contextlib.asynccontextmanager
async def fresh_database(services: ServiceEndpoints) -> AsyncIterator[str]:
    """A migrated database of its own (the `database_url` fixture is per test)."""
    name = f"t_corpus_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(services.admin_database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = services.admin_database_url.rpartition("/")[0] + f"/{name}"
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    try:
        yield url
    finally:
        with contextlib.suppress(Exception):
            admin = await asyncpg.connect(services.admin_database_url)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()


def corpus_settings(services: ServiceEndpoints, database_url: str) -> Settings:
    suffix = uuid.uuid4().hex[:10]
    topics = {topic_field(source): f"{source.topic}.{suffix}" for source in SOURCES}
    return Settings(
        kafka_bootstrap_servers=services.bootstrap_servers,
        database_url=database_url,
        group_id=f"corpus-{suffix}",
        **topics,
        topic_dead_letter=f"signals.dlq.{suffix}",
        topic_incident_events=f"incident.events.{suffix}",
        topic_commands=f"incident.commands.{suffix}",
        topic_command_results=f"incident.command-results.{suffix}",
        max_message_bytes=MAX_MESSAGE_BYTES,
        http_port=0,
        **SCENARIO_SETTINGS,
    )


@pytest.fixture(scope="module")
async def corpus_run(
    services: ServiceEndpoints, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[CorpusRun]:
    async with fresh_database(services) as url:
        settings = corpus_settings(services, url)
        await ensure_topics(settings)
        fleet = Fleet(settings, tmp_path_factory.mktemp("corpus"))
        try:
            yield await run_corpus(build_corpus(SEED), settings, fleet)
        finally:
            fleet.close()


async def run_corpus(corpus: Corpus, settings: Settings, fleet: Fleet) -> CorpusRun:
    """Feed the corpus phase by phase to one worker, stop it, and gather what it left behind."""
    worker = await fleet.start()
    database = Database(settings.database_url.get_secret_value())
    placed: list[Placed] = []
    settled: dict[str, bool] = {}
    for phase, timeout in PHASES.items():
        placed += await produce_placed(
            settings, [c for c in corpus if c.phase == phase], len(placed)
        )
        rejected = sum(1 for p in placed if p.case is not None and p.case.reason is not None)
        settled[phase] = await until_processed(
            database, settings, expectation(placed), rejected, timeout=timeout
        )
    # Commands, against incidents of their own (ECS ones: nothing resolves them) whose first
    # signal precedes the commands' issuedAt, which the worker's clock has passed.
    placed += await produce_targets(settings)
    rejected = sum(1 for p in placed if p.case is not None and p.case.reason is not None)
    settled["command targets"] = await until_processed(
        database, settings, expectation(placed), rejected, timeout=60
    )
    targets = sorted(
        t.key for p in placed[-len(TARGET_IDENTS) :] if p.payload is not None
        for t in touches(p.family, p.payload)
    )[:5]  # fmt: skip
    assert targets, "no command target was created"
    commands = build_command_corpus(SEED, targets)
    placed += await produce_commands(settings, commands, len(placed))
    valid = {p.payload["commandId"] for p in placed if p.family == "commands"
             and p.payload is not None and (p.case is None or p.case.reason is None)}  # fmt: skip
    rejected = sum(1 for p in placed if p.case is not None and p.case.reason is not None)
    settled["commands"] = await until_commands_processed(
        database, settings, len(valid), rejected, timeout=COMMAND_PHASE_SECONDS
    )
    await database.close()
    alive = worker.proc is not None and worker.proc.poll() is None
    ready = await asyncio.to_thread(http_status, worker.http_port, "/readyz") == 200
    metrics = await asyncio.to_thread(http_text, worker.http_port, "/metrics")
    worker.signal(signal.SIGTERM)
    exit_code = await worker.wait_exit(settings.shutdown_grace_seconds + 15)

    expected = expectation(placed)
    observed = await observe(settings)
    # Commands are checked by their own test (their outcomes are the corpus' own).
    verdict = compare(expected, observed, check_dead_letters=False, check_commands=False)
    log = "\n".join(path.read_text(errors="replace") for path in fleet.logs())
    # Secrets of the signal corpus and of the commands the worker must refuse (dead letters);
    # those planted in valid commands are searched apart (COMMAND_SECRET_KINDS).
    in_commands = {s for c in commands if c.kind in COMMAND_SECRET_KINDS for s in c.secrets}
    planted = {*corpus.secrets, *(s for c in commands for s in c.secrets)} - in_commands
    searched = {*planted, CANARY}
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        evidence = await primary_evidence(conn)
        leaked = await scan_database(conn, searched)
        command_leaked = await scan_database(conn, in_commands)
        receipts = {r["command_id"]: dict(r) for r in await conn.fetch(
            "SELECT command_id, outcome, reason, event_id FROM command_receipts")}  # fmt: skip
        command_events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in await conn.fetch(
            "SELECT id, type, payload->'cause'->>'command_id' AS command_id FROM incident_events "
            "WHERE payload->'cause'->>'kind' = 'command'"
        ):
            command_events[row["command_id"]].append(dict(row))
        redacted_texts = await conn.fetchval(
            "SELECT count(*) FROM incident_events, LATERAL (VALUES (payload->>'rationale'), "
            "(payload->>'note')) AS t(text) WHERE payload->'cause'->>'kind' = 'command' "
            "AND t.text LIKE 'deploy failed: %' AND t.text LIKE '%[REDACTED]%'"
        )
    finally:
        await conn.close()
    # The DLQ keeps the original bytes by contract: only what the worker adds there is scanned.
    added = [_only_headers(r, "x-dlq-error", "x-dlq-reason") for r in observed.dead_letters]
    for found, secrets in ((leaked, searched), (command_leaked, in_commands)):
        found.update(scan_records(observed.published, secrets, "incident.events"))
        found.update(scan_records(observed.results, secrets, "incident.command-results"))
        found.update(scan_records(added, secrets, "dead-letter"))
        if in_log := sorted(s for s in secrets - {CANARY} if s in log):
            found["worker log"] = in_log
        if in_metrics := sorted(s for s in secrets - {CANARY} if s in metrics):
            found["worker metrics"] = in_metrics
    _tally(corpus, placed, verdict, observed)
    for case in commands:
        TALLY.hostile_command(case.kind)
    return CorpusRun(
        corpus=corpus,
        settings=settings,
        placed=placed,
        expected=expected,
        observed=observed,
        verdict=verdict,
        primary_evidence=evidence,
        leaked=leaked,
        command_leaked=command_leaked,
        commands=commands,
        receipts=receipts,
        command_events=dict(command_events),
        redacted_command_texts=int(redacted_texts),
        log=log,
        settled=settled,
        alive_after=alive,
        ready_after=ready,
        exit_code=exit_code,
    )


@dataclass
class _HeadersOnly:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def _only_headers(record: Any, *names: str) -> _HeadersOnly:
    return _HeadersOnly(None, None, [(k, v) for k, v in record.headers or () if k in names])


def _tally(corpus: Corpus, placed: list[Placed], verdict: Verdict, observed: Observed) -> None:
    TALLY.sent(len(placed))
    for case in corpus:
        TALLY.hostile(case.kind)
    rejected = [p for p in placed if p.case is not None and p.case.reason is not None]
    coordinates = {_source(r) for r in observed.dead_letters}
    verdict.dead_letters_expected = len(rejected)
    verdict.dead_letters_found = sum(
        1 for p in rejected if (p.topic, p.partition, p.offset) in coordinates
    )
    verdict.lost += verdict.dead_letters_expected - verdict.dead_letters_found
    TALLY.record(verdict)


def _source(record: Any) -> tuple[str, int, int]:
    headers = {k: bytes(v) for k, v in record.headers or ()}
    return (
        headers.get("x-dlq-source-topic", b"").decode(),
        int(headers.get("x-dlq-source-partition", b"-1")),
        int(headers.get("x-dlq-source-offset", b"-1")),
    )


# --- the promises -------------------------------------------------------------------------------


def test_every_rejected_record_is_dead_lettered_with_its_reason_and_original_bytes(
    corpus_run: CorpusRun,
) -> None:
    letters: dict[tuple[str, int, int], list[Any]] = defaultdict(list)
    for record in corpus_run.observed.dead_letters:
        letters[_source(record)].append(record)
    problems = []
    expected_coordinates = set()
    for item in corpus_run.placed:
        case = item.case
        if case is None or case.reason is None:
            continue
        where = (item.topic, item.partition, item.offset)
        expected_coordinates.add(where)
        label = f"{case.kind} on {case.shape}"
        if not letters.get(where):
            problems.append(f"{label}: not on the dead-letter topic")
            continue
        for record in letters[where]:
            headers = [(k, bytes(v)) for k, v in record.headers or ()]
            names = [k for k, _ in headers]
            extra = dict(headers[len(case.headers) :])
            value, added = case.value, list(DLQ_HEADERS)
            if extra.get("x-dlq-value-omitted") == b"true" and case.value_may_be_omitted:
                assert case.value is not None
                value, added = b"", [*DLQ_HEADERS, *OMITTED_VALUE_HEADERS]
                if extra.get("x-dlq-original-size") != str(len(case.value)).encode():
                    problems.append(f"{label}: x-dlq-original-size is wrong")
            checks = {
                "x-dlq-reason": (extra.get("x-dlq-reason"), case.reason.encode()),
                "value": (record.value, value),
                "key": (record.key, case.key),
                "original headers": (headers[: len(case.headers)], list(case.headers)),
                "added headers": (names[len(case.headers) :], added),
            }
            for what, (got, want) in checks.items():
                if got != want:
                    shown = (got[:80], want[:80]) if isinstance(got, bytes) else (got, want)
                    problems.append(f"{label}: {what} is {shown[0]!r}, expected {shown[1]!r}")
            error = extra.get("x-dlq-error", b"").decode("utf-8", "replace")
            if not 0 < len(error) <= 1000:
                problems.append(f"{label}: x-dlq-error has {len(error)} characters")
            if not _is_timestamp(extra.get("x-dlq-failed-at", b"")):
                problems.append(f"{label}: x-dlq-failed-at {extra.get('x-dlq-failed-at')!r}")
    for where, records in letters.items():
        if where not in expected_coordinates:
            problems.append(
                f"{where}: a valid record was dead-lettered ({(records[0].value or b'')[:80]!r})"
            )
    assert not problems, f"{len(problems)} problem(s):\n  " + "\n  ".join(problems[:40])


def _is_timestamp(value: bytes) -> bool:
    try:
        return datetime.fromisoformat(value.decode()).tzinfo is not None
    except ValueError:
        return False


def test_valid_hostile_records_are_stored_exactly_as_sent(corpus_run: CorpusRun) -> None:
    problems = []
    for item in corpus_run.placed:
        case = item.case
        if case is None or case.reason is not None or case.shape == "command":
            continue
        assert case.payload is not None
        label = f"{case.kind} on {case.shape}"
        for touch in touches(case.family, case.payload):
            rows = corpus_run.primary_evidence.get(touch.key, [])
            if len(rows) != 1:
                problems.append(f"{label}: {len(rows)} primary evidence rows for {touch.key!r}")
                continue
            row = rows[0]
            if "env" in case.payload and row["env"] != case.payload["env"]:
                problems.append(f"{label}: env {row['env']!r}, sent {case.payload['env']!r}")
            deploy = case.payload.get("deployId")
            if deploy and f"deploy:{deploy}" not in row["correlation_keys"]:
                problems.append(
                    f"{label}: correlation keys {row['correlation_keys']} lack deploy:{deploy}"
                )
            if case.round_trip:
                sent = parsed_form(case.family, case.payload)
                if case.shape == "alertmanager":  # the evidence is the alert (one per group)
                    sent = {**case.payload["alerts"][0], "endsAt": None}
                difference = _difference(sent, row["payload"], "")
                if difference:
                    problems.append(f"{label}: stored evidence differs at {difference}")
    assert not problems, f"{len(problems)} problem(s):\n  " + "\n  ".join(problems[:40])


def test_round_trip_comparison_finds_changed_missing_added_and_retyped_fields() -> None:
    sent = {"a": "x", "b": [1, {"c": "y"}], "d": None}
    assert _difference(sent, {**sent, "e": None}, "") is None
    assert _difference(sent, {**sent, "a": "x "}, "") == ".a: stored 'x ', sent 'x'"
    assert _difference(sent, {"a": "x", "d": None}, "") == ".b: missing"
    assert _difference(sent, {**sent, "e": 1}, "") == ": added {'e': 1}"
    assert _difference(sent, {**sent, "b": [1.0, {"c": "y"}]}, "") == ".b[0]: stored 1.0, sent 1"


def _difference(sent: Any, stored: Any, where: str) -> str | None:
    """Where `stored` differs from `sent`, field for field; fields the worker adds must be null
    (optional fields it knows of), anything else must be equal and of the same JSON type."""
    if isinstance(sent, dict):
        if not isinstance(stored, dict):
            return f"{where or '(value)'}: {stored!r}"
        for key, value in sent.items():
            if key not in stored:
                return f"{where}.{key}: missing"
            if (found := _difference(value, stored[key], f"{where}.{key}")) is not None:
                return found
        added = {k: v for k, v in stored.items() if k not in sent and v is not None}
        return f"{where}: added {added}" if added else None
    if isinstance(sent, list):
        if not isinstance(stored, list) or len(stored) != len(sent):
            return f"{where}: {stored!r}"
        for index, (a, b) in enumerate(zip(sent, stored, strict=True)):
            if (found := _difference(a, b, f"{where}[{index}]")) is not None:
                return found
        return None
    if sent != stored or type(sent) is not type(stored):
        return f"{where}: stored {stored!r}, sent {sent!r}"
    return None


def test_good_records_around_hostile_ones_are_processed_and_nothing_is_lost_or_duplicated(
    corpus_run: CorpusRun,
) -> None:
    verdict = corpus_run.verdict
    assert not verdict.problems, verdict.report()
    late = [phase for phase, done in corpus_run.settled.items() if not done]
    assert not late, f"phases not processed in time: {late} (limits {PHASES})"


def test_worker_keeps_running_through_the_corpus_and_stops_cleanly(corpus_run: CorpusRun) -> None:
    assert corpus_run.alive_after, "the worker died during the corpus"
    assert corpus_run.ready_after, "the worker was not ready after the corpus"
    assert corpus_run.exit_code == 0, corpus_run.log[-3000:]
    assert "batch_failed" not in corpus_run.log, "a batch failed: a bug, not bad input"


def test_no_planted_secret_is_stored_published_or_logged(corpus_run: CorpusRun) -> None:
    """PostgreSQL (every text/jsonb column), incident.events (values, keys, headers), the worker
    log and the `x-dlq-error` headers hold none of the planted secrets. The dead-letter topic
    keeps the original bytes of a rejected record, secrets included: that is its contract."""
    leaks = {where: found for where, found in corpus_run.leaked.items() if found != [CANARY]}
    assert leaks == {}
    canary = {where for where, found in corpus_run.leaked.items() if CANARY in found}
    assert {"postgres incident_evidence.payload", "incident.events value"} <= canary, (
        f"the scans did not even find {CANARY!r}, which is stored and published: {canary}"
    )
    assert "batch_processed" in corpus_run.log, "the worker log that was scanned is empty"
    redacted = [
        row
        for rows in corpus_run.primary_evidence.values()
        for row in rows
        if "[REDACTED]" in json.dumps(row["payload"])
    ]
    assert len(redacted) >= 6, "the secrets cases were not stored at all: nothing was scanned"


def test_every_valid_hostile_command_gets_its_outcome_and_the_good_ones_around_are_applied(
    corpus_run: CorpusRun,
) -> None:
    """Each valid command of the corpus: the outcome and reason SPEC §7.2 gives it, published on
    incident.command-results (the rejections too: they are never dead letters); an effect only
    when applied; the good annotations around every hostile command applied, once each."""
    results: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in corpus_run.observed.results:
        results[(record.key or b"").decode("utf-8", "replace")].append(json.loads(record.value))
    problems = []
    for item in corpus_run.placed:
        if item.family != "commands" or item.payload is None:
            continue
        case = item.case
        if case is not None and case.command is None:
            continue  # a dead letter: checked by the dead-letter test
        want = ("applied", None) if case is None else case.command
        command_id = item.payload["commandId"]
        label = f"{case.kind if case else 'good neighbour'} ({command_id[:60]!r})"
        published = {(r["outcome"], r["reason"]) for r in results.get(command_id, [])}
        if want not in published:
            problems.append(f"{label}: outcome {want} not published (found {published})")
        receipt = corpus_run.receipts.get(command_id)
        if receipt is None:
            problems.append(f"{label}: no receipt")
            continue
        if want[1] != "idempotency_key_reused":  # the receipt is the first command's
            if (receipt["outcome"], receipt["reason"]) != want:
                problems.append(f"{label}: receipt {receipt['outcome']} {receipt['reason']}")
            effects = corpus_run.command_events.get(command_id, [])
            if len(effects) != (want[0] == "applied"):
                problems.append(f"{label}: {len(effects)} effect events")
    assert not problems, f"{len(problems)} problem(s):\n  " + "\n  ".join(problems[:40])
    late = [phase for phase, done in corpus_run.settled.items() if not done]
    assert not late, f"phases not processed in time: {late}"


def test_no_secret_planted_in_a_command_is_stored_published_or_logged(
    corpus_run: CorpusRun,
) -> None:
    """Credentials pasted into a command's rationale and note (a GitHub token, an AWS key, a
    bearer token, a JWT, a URL password) are redacted like every free text (SPEC §5): they
    appear in no table (command_receipts.result included), on no topic (events, command
    results), in no log line."""
    planted = {s for c in corpus_run.commands if c.kind in COMMAND_SECRET_KINDS for s in c.secrets}
    assert len(planted) >= 5
    applied = [
        c for c in corpus_run.commands
        if c.kind in COMMAND_SECRET_KINDS
        and corpus_run.receipts.get(c.payload["commandId"] if c.payload else "", {}).get("outcome")
        == "applied"
    ]  # fmt: skip
    assert applied, "the command with the secrets was not applied: nothing was scanned"
    assert corpus_run.command_leaked == {}
    assert corpus_run.redacted_command_texts >= 2, (
        "the redacted rationale and note were not stored: the scan proves nothing"
    )


# --- minimal reproductions of the corpus' findings ----------------------------------------------


async def _one_partition_run(
    settings: Settings, fleet: Fleet, records: list[tuple[bytes, list[tuple[str, bytes]]]]
) -> tuple[set[str], list[Any], bool]:
    """Produce `records` (value, headers) in order on partition 0 of the deploy-status topic
    to a fresh worker; (incident keys after 30 s at most, dead letters, worker ready)."""
    worker = await fleet.start()
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, max_request_size=PRODUCER_MAX_REQUEST
    )
    await producer.start()
    try:
        futures = [
            await producer.send(settings.topic_deploy_status, value=v, headers=h, partition=0)
            for v, h in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    expected = expectation(
        [
            Placed(None, "deploy_status", "", 0, 0, v, json.loads(v))
            for v, _ in records
            if len(v) <= MAX_MESSAGE_BYTES
        ]
    )
    database = Database(settings.database_url.get_secret_value())
    await until_processed(database, settings, expected, 0, timeout=30)
    await database.close()
    ready = await asyncio.to_thread(http_status, worker.http_port, "/readyz") == 200
    await fleet.stop_all()
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        keys = {r["incident_key"] for r in await conn.fetch("SELECT incident_key FROM incidents")}
    finally:
        await conn.close()
    async with reading(settings, settings.topic_dead_letter) as dlq:
        letters = list(await dlq.drain())
    return keys, letters, ready


async def test_a_record_over_the_size_limit_is_dead_lettered_and_blocks_nothing(
    scenario_settings: Any, fleet_factory: Any
) -> None:
    settings = scenario_settings()
    await ensure_topics(settings)
    before, after = (good_signal("deploy_status", 40_000_001 + n) for n in (0, 1))
    too_large = padded(good_signal("deploy_status", 40_000_003), MAX_MESSAGE_BYTES + 1)
    keys, letters, ready = await _one_partition_run(
        settings,
        fleet_factory(settings),
        [(dumps(before), []), (too_large, []), (dumps(after), [])],
    )
    assert [(_reason(r), r.value == too_large) for r in letters] == [("too_large", True)]
    assert keys == {t.key for p in (before, after) for t in touches("deploy_status", p)}
    assert ready, "the worker stayed not ready: it is stuck retrying the dead letter"


async def test_records_with_non_utf8_header_values_are_processed_not_silently_dropped(
    scenario_settings: Any, fleet_factory: Any
) -> None:
    settings = scenario_settings()
    await ensure_topics(settings)
    signals = [good_signal("deploy_status", 40_000_011 + n) for n in range(3)]
    headers: list[list[tuple[str, bytes]]] = [[], [("trace", b"\xff\x00")], []]
    keys, letters, _ = await _one_partition_run(
        settings,
        fleet_factory(settings),
        [(dumps(s), h) for s, h in zip(signals, headers, strict=True)],
    )
    assert letters == []
    assert keys == {t.key for s in signals for t in touches("deploy_status", s)}


def command_counts(port: int) -> dict[tuple[str, str, str], float]:
    """(series, type, outcome) → value of both command counters on a worker's `/metrics`."""
    counts: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(http_text(port, "/metrics")):
        for sample in family.samples:
            if sample.name in COMMAND_SERIES:
                key = (sample.name, sample.labels["type"], sample.labels["outcome"])
                counts[key] = sample.value
    return counts


COMMAND_SERIES = ("ingest_commands_total", "ingest_command_outcomes_republished_total")


async def test_one_command_sent_many_times_and_across_a_sigkill_is_counted_once(
    scenario_settings: Any, fleet_factory: Any
) -> None:
    """`ingest_commands_total` counts decisions: one acknowledge, sent 200 times (100 copies, a
    SIGKILL of the worker, 100 more to its replacement), is one applied decision; every other
    copy republishes the stored outcome and is counted apart, by neither worker as a decision."""
    settings = scenario_settings()
    await ensure_topics(settings)
    fleet = fleet_factory(settings)
    first = await fleet.start()
    target = good_signal("ecs_stopped_task", 201)
    (touch,) = touches("ecs", target)
    ack = good_command(1, touch.key, type="acknowledge", commandId="ack-many-times")
    copies = 100
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    database = Database(settings.database_url.get_secret_value())
    try:
        await producer.send_and_wait(settings.topic_ecs, dumps(target), partition=0)

        async def created() -> bool:
            return await database.fetchrow("SELECT 1 FROM incidents") is not None

        await eventually(created, timeout=60, what="the target incident")
        for _ in range(copies):
            await producer.send(settings.topic_commands, dumps(ack), key=touch.key.encode())
        await producer.flush()
        applied = ("ingest_commands_total", "acknowledge", "applied")
        republished = ("ingest_command_outcomes_republished_total", "acknowledge", "applied")

        async def decided() -> bool:
            return (await asyncio.to_thread(command_counts, first.http_port)).get(applied) == 1

        await eventually(decided, timeout=60, what="the acknowledge decided")
        before_kill = await asyncio.to_thread(command_counts, first.http_port)
        fleet.kill(first)
        for _ in range(copies):
            await producer.send(settings.topic_commands, dumps(ack), key=touch.key.encode())
        await producer.flush()
        second = await fleet.start()

        async def republished_all() -> bool:
            counts = await asyncio.to_thread(command_counts, second.http_port)
            return counts.get(republished, 0) >= copies

        await eventually(republished_all, timeout=60, what="the copies after the kill processed")
        after_kill = await asyncio.to_thread(command_counts, second.http_port)
        receipts = await database.fetchrow(
            "SELECT (SELECT count(*) FROM command_receipts) AS receipts, (SELECT count(*) FROM "
            "incident_events WHERE type = 'incident.acknowledged') AS acks"
        )
    finally:
        await producer.stop()
        await database.close()
        await fleet.stop_all()
    assert receipts is not None and (receipts["receipts"], receipts["acks"]) == (1, 1)
    assert {k: v for k, v in before_kill.items() if k[0] == "ingest_commands_total"} == {applied: 1}
    assert before_kill.get(republished, 0) <= copies - 1
    decisions_after = {k: v for k, v in after_kill.items() if k[0] == "ingest_commands_total"}
    assert sum(decisions_after.values()) == 0, decisions_after
    assert after_kill[republished] >= copies


def _reason(record: Any) -> str:
    return dict(record.headers or ()).get("x-dlq-reason", b"").decode()
