"""The registry of signal sources: one line per source module. Everything else derives from it."""

from __future__ import annotations

from typing import Final

from ingest_worker.sources import (
    alertmanager,
    cloudwatch,
    datadog,
    deploy_status,
    ecs_stopped,
    external,
    grafana,
    newrelic,
    opsgenie,
    pagerduty,
    runner,
    verification,
)
from ingest_worker.sources.contract import Source

SOURCES: Final[tuple[Source, ...]] = (
    deploy_status.SOURCE,
    verification.SOURCE,
    ecs_stopped.SOURCE,
    runner.SOURCE,
    alertmanager.SOURCE,
    grafana.SOURCE,
    pagerduty.SOURCE,
    datadog.SOURCE,
    newrelic.SOURCE,
    opsgenie.SOURCE,
    cloudwatch.SOURCE,
    external.SOURCE,
)

BY_NAME: Final[dict[str, Source]] = {source.name: source for source in SOURCES}


def source_named(name: str) -> Source | None:
    return BY_NAME.get(name)


def _check(sources: tuple[Source, ...]) -> None:
    names = [s.name for s in sources]
    settings = [s.setting for s in sources]
    assert len(set(names)) == len(names), "source names must be unique"
    assert len(set(settings)) == len(settings), "source settings must be unique"
    for source in sources:
        fallbacks = [shape for shape in source.shapes if shape.claims is None]
        assert len(fallbacks) == 1, f"source {source.name} needs exactly one fallback shape"


_check(SOURCES)
