"""Fixtures of the fault and hostile-input suites, and the tally printed at the end of the session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest_worker.service.config import Settings
from ingest_worker.service.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.conftest import ServiceEndpoints
from tests.e2e.soak import SCENARIO_SETTINGS, Fleet
from tests.e2e.tally import TALLY


@pytest.fixture
def scenario_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """`make_settings` (this test's database, topics and group) with the scenario defaults."""

    def factory(**overrides: Any) -> Settings:
        return make_settings(**{**SCENARIO_SETTINGS, **overrides})

    return factory


@pytest.fixture
def fleet_factory(tmp_path: Path) -> Iterator[Callable[[Settings], Fleet]]:
    """Fleets of worker processes, every one of them SIGKILLed at teardown if still running."""
    fleets: list[Fleet] = []

    def factory(settings: Settings) -> Fleet:
        fleets.append(Fleet(settings, tmp_path))
        return fleets[-1]

    yield factory
    for fleet in fleets:
        fleet.close()


@pytest.fixture
def embedded_postgres(services: ServiceEndpoints) -> EmbeddedPostgres:
    if services.postgres is None:
        pytest.skip(
            "stopping PostgreSQL needs the embedded server: TEST_DATABASE_URL points elsewhere"
        )
    return services.postgres


@pytest.fixture
def embedded_kafka(services: ServiceEndpoints) -> EmbeddedKafka:
    if services.kafka is None:
        pytest.skip(
            "pausing the broker needs the embedded one: TEST_KAFKA_BOOTSTRAP_SERVERS points elsewhere"
        )
    return services.kafka


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if TALLY.empty:
        return
    terminalreporter.section("faults and hostile input: tally")
    for line in TALLY.lines():
        terminalreporter.write_line(line)
    path = TALLY.write_json()
    if path is not None:
        terminalreporter.write_line(f"(written to {path})")
