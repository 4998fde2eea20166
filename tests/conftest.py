"""Shared fixtures: real PostgreSQL and a real Kafka-protocol broker for integration and e2e tests.

Where the services come from, in order:
1. `TEST_DATABASE_URL` / `TEST_KAFKA_BOOTSTRAP_SERVERS` when set (each independently);
2. testcontainers, when a Docker engine answers a ping;
3. the embedded services of `ingest_worker.embedded` (PostgreSQL wheel + Tansu broker).

Every test gets its own fresh, migrated database and its own topic names and consumer group,
so tests never see each other's data.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from ingest_worker.service.config import Settings, topic_field
from ingest_worker.service.embedded import EmbeddedKafka, EmbeddedPostgres
from ingest_worker.sources.registry import SOURCES
from ingest_worker.store.migrations import migrate

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")


@dataclass
class ServiceEndpoints:
    """Where the test PostgreSQL and broker are, and handles to fault-inject the embedded ones."""

    admin_database_url: str
    bootstrap_servers: str
    postgres: EmbeddedPostgres | None = None
    kafka: EmbeddedKafka | None = None


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def services() -> Iterator[ServiceEndpoints]:
    with contextlib.ExitStack() as stack:
        db_url = os.environ.get("TEST_DATABASE_URL")
        bootstrap = os.environ.get("TEST_KAFKA_BOOTSTRAP_SERVERS")
        postgres: EmbeddedPostgres | None = None
        kafka: EmbeddedKafka | None = None
        docker_ok = (db_url is None or bootstrap is None) and _docker_answers()
        if db_url is None:
            if docker_ok:
                from testcontainers.postgres import PostgresContainer

                container = stack.enter_context(
                    PostgresContainer("postgres:16-alpine", driver=None)
                )
                db_url = container.get_connection_url()
            else:
                postgres = EmbeddedPostgres(fsync=False).start()
                stack.callback(postgres.stop)
                db_url = postgres.url
        if bootstrap is None:
            if docker_ok:
                from testcontainers.kafka import KafkaContainer

                kc = stack.enter_context(KafkaContainer().with_kraft())
                bootstrap = kc.get_bootstrap_server()
            else:
                kafka = EmbeddedKafka().start()
                stack.callback(kafka.stop)
                bootstrap = kafka.bootstrap_servers
        yield ServiceEndpoints(db_url, bootstrap, postgres, kafka)


def _with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture
async def database_url(services: ServiceEndpoints) -> AsyncIterator[str]:
    """A fresh, migrated database for this test only."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(services.admin_database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = _with_database(services.admin_database_url, name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    yield url
    with contextlib.suppress(Exception):
        admin = await asyncpg.connect(services.admin_database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def db_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert pool is not None
    yield pool
    await pool.close()


DEFAULT_TEST_TOPICS = ("topic_deploy_status", "topic_verification", "topic_ecs", "topic_runner")


@pytest.fixture
def make_settings(services: ServiceEndpoints, database_url: str) -> Callable[..., Settings]:
    """Settings pointing at this test's database, with topic names and a group unique to the test."""
    suffix = uuid.uuid4().hex[:10]

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": services.bootstrap_servers,
            "database_url": database_url,
            "group_id": f"ingest-{suffix}",
            "topic_deploy_status": f"signals.deploy-status.{suffix}",
            "topic_verification": f"signals.verification.{suffix}",
            "topic_ecs": f"signals.ecs.{suffix}",
            "topic_runner": f"signals.runner.{suffix}",
            "topic_dead_letter": f"signals.dlq.{suffix}",
            "topic_incident_events": f"incident.events.{suffix}",
            "topic_commands": f"incident.commands.{suffix}",
            "topic_command_results": f"incident.command-results.{suffix}",
            # every other registered source on a topic of this test's own
            **{
                topic_field(source): f"{source.topic}.{suffix}"
                for source in SOURCES
                if topic_field(source) not in DEFAULT_TEST_TOPICS
            },
            "http_port": 0,
            "outbox_poll_seconds": 0.2,
            "retry_initial_seconds": 0.05,
            "retry_max_seconds": 0.5,
            "log_format": "console",
            "shutdown_grace_seconds": 10.0,
            # Tansu completes a group join after half the session timeout: keep tests snappy.
            "session_timeout_ms": 3000,
        }
        values.update(overrides)
        return Settings(**values)

    return factory
