"""Every source with a trigger and a recovery among its golden cases, through the running worker
and the real broker (SPEC §8): firing → OPEN; the same payload again → no change; resolved →
RESOLVED; and the sources that report acknowledgements (PagerDuty, Opsgenie, New Relic) →
ACKNOWLEDGED. The pairs are found from the cases themselves, so a new source with a firing and
a resolved case is covered without a line here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from ingest_worker.core.errors import InvalidSignal
from ingest_worker.core.values import IncidentInput, Recovery, SourceTransition
from ingest_worker.service.config import Settings
from ingest_worker.sources.contract import Source
from ingest_worker.sources.decode import decode_record
from ingest_worker.sources.registry import SOURCES, source_named
from tests.sources import CASES_ROOT
from tests.support import eventually, produce, start_worker

pytestmark = pytest.mark.integration

#: The external alert sources (SPEC §8), from the registry.
EXTERNAL = tuple(s.name for s in SOURCES if s.external)


def _cases(source: Source) -> list[tuple[Path, tuple[object, ...]]]:
    found = []
    for path in sorted((CASES_ROOT / source.name).glob("*.json")):
        if path.name.endswith(".expected.json"):
            continue
        try:
            found.append((path, decode_record(source, path.read_bytes(), max_bytes=1 << 20)))
        except InvalidSignal:  # rejection cases
            continue
    return found


def pairs() -> dict[str, tuple[Path, Path, str, Path | None]]:
    """source → (a firing case, a resolving case of one of its keys, that key, an ack case)."""
    result: dict[str, tuple[Path, Path, str, Path | None]] = {}
    for source in SOURCES:
        cases = _cases(source)
        for firing, effects in cases:
            keys = {e.recovery_scope: e for e in effects if isinstance(e, IncidentInput)}
            if not keys or any(isinstance(e, Recovery | SourceTransition) for e in effects):
                continue  # a firing case only triggers (an acknowledgement may trigger too)
            for resolving, others in cases:
                scopes = [
                    e.scope
                    for e in others
                    if isinstance(e, Recovery)
                    and e.scope in keys
                    and e.signal_time > keys[e.scope].signal_time  # newer: it resolves
                ]
                if resolving != firing and scopes:
                    key = keys[scopes[0]].incident_key
                    ack = next(
                        (p for p, es in cases for e in es if isinstance(e, SourceTransition)
                         and e.verb == "acknowledge" and e.incident_key == key),
                        None,
                    )  # fmt: skip
                    result.setdefault(source.name, (firing, resolving, key, ack))
    return result


def acknowledging() -> set[str]:
    """The external sources among whose cases a source-reported acknowledgement appears."""
    return {
        name
        for name in EXTERNAL
        for _, effects in _cases(source_named_or_fail(name))
        if any(isinstance(e, SourceTransition) and e.verb == "acknowledge" for e in effects)
    }


def source_named_or_fail(name: str) -> Source:
    found = source_named(name)
    assert found is not None, name
    return found


def test_every_external_source_has_a_trigger_and_a_recovery_case() -> None:
    assert len(EXTERNAL) >= 8, EXTERNAL  # the SPEC §8 table, at least
    assert set(EXTERNAL) <= set(pairs()), set(EXTERNAL) - set(pairs())


async def newest_status(pool: asyncpg.Pool, key: str) -> str | None:
    """The status of the newest episode of `key`, None before it exists."""
    value: str | None = await pool.fetchval(
        "SELECT status FROM incidents WHERE incident_key = $1 ORDER BY episode DESC LIMIT 1", key
    )
    return value


async def test_external_sources_open_dedupe_acknowledge_and_resolve(
    make_settings: Callable[..., Settings], db_pool: asyncpg.Pool
) -> None:
    settings = make_settings()
    found = pairs()
    worker = await start_worker(settings)

    async def status(key: str) -> str | None:
        return await newest_status(db_pool, key)

    async def all_in(wanted: dict[str, str]) -> bool:
        return all([await status(k) == v for k, v in wanted.items()])

    try:
        for name, (firing, _, _, _) in found.items():
            value = firing.read_bytes()
            await produce(settings, settings.topic_of(name), [value, value])  # redelivered
        opened = {key: "OPEN" for _, _, key, _ in found.values()}
        await eventually(lambda: all_in(opened), what="every source's incident open")
        counts = {
            key: await db_pool.fetchval(
                "SELECT sum(occurrence_count) FROM incidents WHERE incident_key = $1", key
            )
            for key in opened
        }
        assert set(counts.values()) == {1}, counts  # the same payload again: no change
        acked = {key: "ACKNOWLEDGED" for _, _, key, ack in found.values() if ack is not None}
        assert acknowledging() and acknowledging() <= {n for n, p in found.items() if p[3]}
        for name, (_, _, _, ack) in found.items():
            if ack is not None:
                await produce(settings, settings.topic_of(name), [ack.read_bytes()])
        await eventually(lambda: all_in(acked), what="acknowledged by their sources")
        for name, (_, resolving, _, _) in found.items():
            await produce(settings, settings.topic_of(name), [resolving.read_bytes()])
        resolved = {key: "RESOLVED" for _, _, key, _ in found.values()}
        await eventually(lambda: all_in(resolved), what="every source's incident resolved")
    finally:
        await worker.stop()


async def test_an_unknown_issue_acknowledged_first_opens_and_a_test_alert_keeps_its_record_time(
    make_settings: Callable[..., Settings], db_pool: asyncpg.Pool
) -> None:
    """A New Relic issue known only from its acknowledgement (never CREATED on the topic) is
    opened, acknowledged, and resolved by its CLOSED; Grafana's test alert (`startsAt` the zero
    time) is first seen at its record's time, not in year 1."""
    settings = make_settings()
    newrelic = CASES_ROOT / "newrelic"
    grafana_test = CASES_ROOT / "grafana" / "firing_startsAt_zero_notifier_alerting.json"
    issue, alert = (
        "newrelic:13bbcdca-f0b6-470d-b0be-b34583c58869",
        "grafana:1:fac0861a85de433a",
    )
    worker = await start_worker(settings)

    async def status(key: str) -> str | None:
        return await newest_status(db_pool, key)

    try:
        before = await db_pool.fetchval("SELECT now()")
        await produce(
            settings,
            settings.topic_of("newrelic"),
            [(newrelic / "acknowledged-default-payload.json").read_bytes()],
        )
        await produce(settings, settings.topic_of("grafana"), [grafana_test.read_bytes()])
        await eventually(
            lambda: _is(status(issue), "ACKNOWLEDGED"), what="the issue opened and acknowledged"
        )
        await eventually(lambda: _is(status(alert), "OPEN"), what="the test alert open")
        first_seen = await db_pool.fetchval(
            "SELECT first_seen_at FROM incidents WHERE incident_key = $1", alert
        )
        after = await db_pool.fetchval("SELECT now()")
        assert before - timedelta(seconds=5) <= first_seen <= after, (before, first_seen, after)
        await produce(
            settings,
            settings.topic_of("newrelic"),
            [(newrelic / "edge-closed-for-acknowledged.json").read_bytes()],
        )
        await eventually(lambda: _is(status(issue), "RESOLVED"), what="the issue resolved")
    finally:
        await worker.stop()


async def _is(value: Awaitable[str | None], wanted: str) -> bool:
    return await value == wanted
