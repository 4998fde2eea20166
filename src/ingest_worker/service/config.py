"""Configuration: one settings class read from `INGEST_` environment variables."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest_worker.core.lifecycle import DEFAULT_POLICY, PolicyError, Verb, parse_policy
from ingest_worker.sources.contract import Source
from ingest_worker.sources.registry import SOURCES

DEV_KAFKA_BOOTSTRAP_SERVERS = "127.0.0.1:9092"
DEV_DATABASE_URL = "postgresql://postgres:postgres@127.0.0.1:54329/postgres"


def topic_field(source: Source) -> str:
    """The settings field (and `INGEST_TOPIC_<SETTING>` variable) naming a source's topic."""
    return f"topic_{source.setting}"


_SETTINGS_CONFIG = SettingsConfigDict(env_prefix="INGEST_", extra="ignore", frozen=True)

# One `topic_<setting>` field per registered source, its default the source's topic: derived
# from the registry, so that a new source needs no line here. Invisible to mypy, which reads
# topics through `Settings.topic_of` / `Settings.source_topics`.
if TYPE_CHECKING:
    _SourceTopics = BaseSettings
else:
    _SourceTopics = create_model(
        "_SourceTopics",
        __base__=BaseSettings,
        **{topic_field(source): (str, source.topic) for source in SOURCES},
    )


class Settings(_SourceTopics):
    """Every knob of the worker. Secrets are `SecretStr` and never printed in clear.

    Topic names: `topic_<setting>` per registered source (`INGEST_TOPIC_DEPLOY_STATUS`,
    `INGEST_TOPIC_ECS`, …), defaults from the source registry.
    """

    model_config = _SETTINGS_CONFIG

    kafka_bootstrap_servers: str = "localhost:9092"
    database_url: SecretStr = SecretStr("postgresql://postgres:postgres@localhost:5432/postgres")
    group_id: str = "ingest-worker"
    client_id: str = "ingest-worker"

    topic_dead_letter: str = "signals.dlq"
    topic_commands: str = "incident.commands"
    topic_command_results: str = "incident.command-results"
    #: JSON file mapping command verbs to the roles allowed to use them (README, "Authority").
    policy_file: str | None = None
    topic_incident_events: str = "incident.events"

    batch_max_records: int = Field(default=500, ge=1, le=10_000)
    write_concurrency: int = Field(default=2, ge=1, le=8)
    batch_timeout_ms: int = Field(default=10, ge=1, le=60_000)
    fetch_max_wait_ms: int = Field(default=20, ge=1, le=60_000)
    max_message_bytes: int = Field(default=1_048_576, ge=1024)
    max_poll_interval_ms: int = Field(default=300_000, ge=10_000)
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"

    #: First-generation threshold of CPython's cyclic garbage collector once the worker is up
    #: (start-up objects are frozen); 0 keeps CPython's default (700). See service/runtime.py.
    gc_threshold: int = Field(default=50_000, ge=0, le=10_000_000)
    #: Event loop of the `run` / `dev` worker process: uvloop (when importable) or asyncio's.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    retry_initial_seconds: float = Field(default=0.2, gt=0)
    retry_max_seconds: float = Field(default=10.0, gt=0)

    outbox_batch_size: int = Field(default=1000, ge=1)
    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    outbox_lanes: int = Field(default=64, ge=1, le=4096)
    #: SPEC §7.4: a trigger this soon after an automatic resolve reopens it (flap damper).
    reopen_window_seconds: float = Field(default=300.0, ge=0)
    #: SPEC §7.1: occurrences before an incident of a source opens (PENDING until then), by
    #: source name, e.g. INGEST_OPEN_AFTER='{"alertmanager": 2}'; default 1 (straight to OPEN).
    open_after: dict[str, int] = Field(default_factory=dict)

    ce_source: str = "ingest-worker"
    http_host: str = "0.0.0.0"  # noqa: S104 - a service's probe endpoint must be reachable
    http_port: int = Field(default=8080, ge=0, le=65535)
    shutdown_grace_seconds: float = Field(default=20.0, gt=0)
    db_pool_size: int = Field(default=6, ge=2)
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    migrate_on_start: bool = True

    subscriptions_file: str | None = Field(
        default=None,
        description="Subscriptions of `ingest-worker notify` (JSON, or YAML by extension): where "
        "incident events are delivered over HTTP. Unset: `dev` starts no notifier.",
    )
    console_url: str | None = Field(
        default=None,
        description="Base URL of the web console; Slack notifications link to "
        "`<console_url>/incidents/<id>` when set.",
    )
    topic_notifications_dlq: str = Field(
        default="incident.notifications.dlq",
        description="Where notifications that could not be delivered are parked (for "
        "`ingest-worker notify replay`).",
    )
    notify_group_id: str = Field(
        default="ingest-notify",
        description="Consumer group of `ingest-worker notify` on the incident events topic.",
    )
    notify_allowed_networks: list[str] = Field(
        default_factory=list,
        description="CIDR ranges of private, loopback or link-local addresses that notifications "
        'may be sent to (JSON list, e.g. ["10.0.0.0/8"]); all others in those ranges are refused.',
    )
    notify_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Connect timeout of one notification request."
    )
    notify_read_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout of one notification request once connected."
    )
    notify_retry_initial_seconds: float = Field(
        default=1.0,
        gt=0,
        description="First retry delay of a failed notification (doubled "
        "per attempt, with jitter).",
    )
    notify_retry_max_seconds: float = Field(
        default=300.0, gt=0, description="Cap of the retry delay of a failed notification."
    )
    notify_queue_size: int = Field(
        default=10_000,
        ge=1,
        description="Events a subscription may have waiting in memory; "
        "past it the subscription is paused and its events parked.",
    )
    notify_lanes: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Concurrent deliveries per subscription (events of "
        "one incident always share a lane, in order).",
    )
    notify_pause_seconds: float = Field(
        default=600.0,
        gt=0,
        description="How long a paused subscription parks its events before "
        "it tries to deliver again.",
    )
    notify_http_port: int = Field(
        default=8082,
        ge=0,
        le=65535,
        description="Port of `/healthz`, `/readyz` and `/metrics` of `ingest-worker notify`.",
    )

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_enable_idempotence: bool = False

    def topic_of(self, source: Source | str) -> str:
        """The topic a source (or source name) is consumed on."""
        found = source if isinstance(source, Source) else _BY_NAME[source]
        topic: str = getattr(self, topic_field(found))
        return topic

    def source_topics(self) -> dict[str, Source]:
        """Signal topic name → the source consumed on it."""
        topics: dict[str, Source] = {}
        for source in SOURCES:
            topic = self.topic_of(source)
            if topic in topics:
                raise ValueError(
                    f"sources {topics[topic].name} and {source.name} are configured on the "
                    f"same topic {topic}"
                )
            topics[topic] = source
        return topics

    def policy(self) -> dict[Verb, frozenset[str]]:
        """The role policy: SPEC §7.2's default, overridden verb by verb by `policy_file`."""
        if self.policy_file is None:
            return dict(DEFAULT_POLICY)
        with open(self.policy_file, encoding="utf-8") as handle:
            document = json.load(handle)
        if not isinstance(document, dict):
            raise PolicyError("the policy file must hold a JSON object")
        return parse_policy(document)

    def masked(self) -> dict[str, Any]:
        """The settings as printable data, with secrets and URL passwords masked."""
        data = self.model_dump()
        data["database_url"] = mask_url(self.database_url.get_secret_value())
        if self.kafka_sasl_password is not None:
            data["kafka_sasl_password"] = "**********"  # noqa: S105 - the mask, not a password
        return data


def mask_url(url: str) -> str:
    """`postgresql://user:secret@host/db` → `postgresql://user:***@host/db`."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


_BY_NAME = {source.name: source for source in SOURCES}
