"""All four topics at once, seed shapes and real-world envelopes, through the real broker."""

from __future__ import annotations

import json
from collections.abc import Callable

import asyncpg
import pytest

from ingest_worker.service.config import Settings
from tests.sources import FIXTURES
from tests.support import eventually, header, produce, reading, start_worker

pytestmark = pytest.mark.integration


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


#: incident_key → (severity, error_code), as seed 000 §1 defines them for the fixtures.
EXPECTED = {
    "deploy_status:prod:deploy-123:2024-01-01T00:00:00Z": ("RED", "DEPLOY_STATUS_RED"),
    # changedAt 2024-01-01T01:00:00+01:00 is rendered in UTC inside the key
    "deploy_status:stage:deploy-456:2024-01-01T00:00:00Z": ("YELLOW", "DEPLOY_STATUS_YELLOW"),
    "verification:deploy-123:sha256-abc": ("RED", "VERIFICATION_FAILED"),
    # no reportHash: the key falls back to the runId
    "verification:deploy-123:run-789": ("RED", "VERIFICATION_TIMEOUT"),
    "ecs_stopped:prod-cluster:arn:aws:ecs:us-east-1:123456789012:task/prod-cluster/"
    "0123456789abcdef0123456789abcdef:2024-01-01T00:00:00Z": ("RED", "ECS_TASK_FAILED"),
    # AWS EventBridge: cluster name from clusterArn, exit code 1 from the essential container
    "ecs_stopped:FargateCluster:arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/"
    "c13b4cb40f1f4fe4a2971f76ae5a47ad:2020-01-23T18:03:11.817Z": ("RED", "ECS_TASK_FAILED"),
    "runner:run-12345:deploy:failure": ("RED", "RUNNER_STEP_FAILED"),
    # GitHub workflow_job: one incident for the one failed step
    "runner:2202229078:Run yarn run format-check:failure": ("RED", "RUNNER_STEP_FAILED"),
}


RESOLVED_BY_GREEN = "deploy_status:prod:deploy-123:2024-01-01T00:00:00Z"


async def test_a_mixed_stream_on_all_four_topics_creates_exactly_the_seed_incidents_and_events(
    make_settings: Callable[..., Settings], db_pool: asyncpg.Pool
) -> None:
    settings = make_settings()
    stream = {
        settings.topic_deploy_status: [
            "deploy-status-red.json", "deploy-status-yellow.json", "deploy-status-green.json",
        ],
        settings.topic_verification: [
            "verification-failed.json", "verification-timeout.json", "verification-passed.json",
        ],
        settings.topic_ecs: [
            "ecs-stopped-task.json", "aws-ecs-task-state-change-stopped.json",
            "aws-ecs-task-state-change-running.json",
        ],
        settings.topic_runner: [
            "runner-step-failure.json", "github-workflow-job-completed-failure.json",
        ],
    }  # fmt: skip
    worker = await start_worker(settings)
    try:
        async with reading(settings, settings.topic_incident_events) as events:
            for topic, names in stream.items():
                # every record twice: the redelivery must change nothing
                await produce(settings, topic, [fixture(n) for n in names for _ in range(2)])
            # one created per incident, plus the resolve of the RED deploy by the GREEN one
            records = await events.read_until(len(EXPECTED) + 1, timeout=60)

            async def all_counted() -> bool:
                samples = worker.worker.metrics.signals.collect()[0].samples
                return sum(s.value for s in samples if s.name.endswith("_total")) >= 22

            await eventually(all_counted, what="all 22 records processed")
            records = await events.drain()
    finally:
        await worker.stop()

    rows = await db_pool.fetch(
        "SELECT incident_key, severity, classification->>'error_code' AS code, occurrence_count, "
        "status FROM incidents"
    )
    assert {r["incident_key"]: (r["severity"], r["code"]) for r in rows} == EXPECTED
    assert {r["occurrence_count"] for r in rows} == {1}
    # SPEC §7.3: the GREEN deploy status (same env and deployId, newer) resolves the RED one;
    # the passed verification is of another deploy (deploy-124) and resolves nothing.
    assert {r["incident_key"] for r in rows if r["status"] == "RESOLVED"} == {RESOLVED_BY_GREEN}
    assert {r["status"] for r in rows if r["incident_key"] != RESOLVED_BY_GREEN} == {"OPEN"}
    subjects = sorted(header(r, "ce_subject").decode() for r in records)  # type: ignore[union-attr]
    assert subjects == sorted([*EXPECTED, RESOLVED_BY_GREEN])
    types = sorted(json.loads(r.value)["type"] for r in records)
    assert types == sorted(["incident.created"] * len(EXPECTED) + ["incident.resolved"])
    evidence = await db_pool.fetchval("SELECT count(*) FROM incident_evidence")
    assert evidence >= 2 * len(EXPECTED)  # the primary signal plus at least one more each
    ignored = worker.worker.metrics.signals.labels(topic=settings.topic_ecs, outcome="ignored")
    assert ignored._value.get() == 2  # the RUNNING task state change, delivered twice
