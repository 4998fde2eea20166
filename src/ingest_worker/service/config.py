"""Configuration: one settings class read from `INGEST_` environment variables."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest_worker.core.lifecycle import DEFAULT_POLICY, PolicyError, Verb, parse_policy
from ingest_worker.sources.contract import Source
from ingest_worker.sources.registry import SOURCES


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
        **{
            topic_field(source): (
                str,
                Field(default=source.topic, description=f"Topic of the {source.name} source."),
            )
            for source in SOURCES
        },
    )


class Settings(_SourceTopics):
    """Every knob of the worker. Secrets are `SecretStr` and never printed in clear.

    Topic names: `topic_<setting>` per registered source (`INGEST_TOPIC_DEPLOY_STATUS`,
    `INGEST_TOPIC_ECS`, …), defaults from the source registry.
    """

    model_config = _SETTINGS_CONFIG

    kafka_bootstrap_servers: str = Field(
        default="localhost:9092", description="Kafka bootstrap servers, comma-separated."
    )
    database_url: SecretStr = Field(
        default=SecretStr("postgresql://postgres:postgres@localhost:5432/postgres"),
        description="PostgreSQL (14 or later) connection URL; its password is masked in logs.",
    )
    group_id: str = Field(
        default="ingest-worker", description="Consumer group shared by all worker replicas."
    )
    client_id: str = Field(default="ingest-worker", description="Kafka client id of the worker.")

    topic_dead_letter: str = Field(
        default="signals.dlq", description="Dead-letter topic: rejected records with their reason."
    )
    topic_commands: str = Field(
        default="incident.commands", description="Topic of the lifecycle commands."
    )
    topic_command_results: str = Field(
        default="incident.command-results",
        description="Topic of the command outcomes (applied, noop, rejected).",
    )
    policy_file: str | None = Field(
        default=None,
        description="JSON file mapping command verbs to the roles allowed to use them; verbs "
        "left out keep the default policy.",
    )
    command_max_future_skew_seconds: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        description=(
            "How far a command's `issuedAt` may be ahead of the worker's clock, in seconds; a "
            "command issued later than that is rejected with reason `issued_in_future`."
        ),
    )
    topic_incident_events: str = Field(
        default="incident.events", description="Topic of the incident events (CloudEvents)."
    )

    batch_max_records: int = Field(
        default=500, ge=1, le=10_000, description="Records per batch, one transaction each."
    )
    write_concurrency: int = Field(
        default=2,
        ge=1,
        le=8,
        description="Batches written at once, each in its own transaction, committed in order.",
    )
    batch_timeout_ms: int = Field(
        default=10,
        ge=1,
        le=60_000,
        description="Longest wait for records when none are buffered.",
    )
    fetch_max_wait_ms: int = Field(
        default=20,
        ge=1,
        le=60_000,
        description="Longest time the broker may hold a fetch when no data is ready.",
    )
    max_message_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="Largest record value; larger ones are dead-lettered as too_large.",
    )
    max_poll_interval_ms: int = Field(
        default=300_000,
        ge=10_000,
        description="Longest batch before the group evicts the consumer (and /healthz fails).",
    )
    session_timeout_ms: int = Field(
        default=10_000, ge=1_000, description="Consumer group session timeout."
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a new consumer group starts reading."
    )

    worker_processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Worker processes `ingest-worker run` starts, in one consumer group (one "
        "process uses one CPU core); process i serves /healthz, /readyz and /metrics on "
        "INGEST_HTTP_PORT + i.",
    )
    gc_threshold: int = Field(
        default=50_000,
        ge=0,
        le=10_000_000,
        description="First-generation threshold of CPython's garbage collector in the worker "
        "and gateway processes, whose start-up objects are frozen; 0 keeps CPython's defaults.",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="Event loop of the worker and gateway processes: uvloop (when installed) "
        "or asyncio's.",
    )

    retry_initial_seconds: float = Field(
        default=0.2, gt=0, description="First backoff after a transient fault."
    )
    retry_max_seconds: float = Field(
        default=10.0, gt=0, description="Backoff cap (exponential, full jitter)."
    )

    outbox_batch_size: int = Field(
        default=1000, ge=1, description="Events per outbox publishing round."
    )
    outbox_poll_seconds: float = Field(
        default=1.0, gt=0, description="Outbox polling interval when no notification arrives."
    )
    outbox_lanes: int = Field(
        default=64,
        ge=1,
        le=4096,
        description="Outbox lanes (per-incident ordering across replicas); the same on every "
        "replica.",
    )
    reopen_window_seconds: float = Field(
        default=300.0,
        ge=0,
        description="A trigger this soon after an automatic resolve reopens the incident "
        "(by signal times); later, it opens a new episode.",
    )
    open_after: dict[str, int] = Field(
        default_factory=dict,
        description='Occurrences before an incident opens, by source, e.g. {"alertmanager": 2}; '
        "PENDING until then (default 1: straight to OPEN).",
    )
    tenant_from_topic_prefix: bool = Field(
        default=False,
        description="Take a record's tenant from its topic's `<tenant>.` prefix (e.g. "
        "`acme.signals.alertmanager`), consuming every configured topic by pattern, bare "
        "(the default tenant) or prefixed; otherwise from its `tenant` header.",
    )
    metrics_tenant_label: bool = Field(
        default=False,
        description="Also count signals per tenant (`ingest_tenant_signals_total`).",
    )
    metrics_max_tenants: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description="Tenants with a series of their own in `ingest_tenant_signals_total`; "
        "later ones count as `other`.",
    )

    ce_source: str = Field(
        default="ingest-worker", description="CloudEvents ce_source of published events."
    )
    http_host: str = Field(
        default="0.0.0.0",  # noqa: S104 - a service's probe endpoint must be reachable
        description="Address of the health and metrics endpoint.",
    )
    http_port: int = Field(
        default=8080, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics."
    )
    shutdown_grace_seconds: float = Field(
        default=20.0,
        gt=0,
        description="Longest time from SIGTERM to exit; keep it below the orchestrator's "
        "grace period.",
    )
    db_pool_size: int = Field(
        default=6,
        ge=2,
        description="PostgreSQL connections (at least the write concurrency + 3 are used).",
    )
    log_level: str = Field(default="INFO", description="Log level.")
    log_format: Literal["json", "console"] = Field(
        default="json", description="json lines, or console for humans."
    )
    migrate_on_start: bool = Field(
        default=True, description="Apply the database migrations at start-up."
    )

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

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="Kafka security protocol."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="Kafka SASL mechanism."
    )
    kafka_sasl_username: str | None = Field(default=None, description="Kafka SASL username.")
    kafka_sasl_password: SecretStr | None = Field(default=None, description="Kafka SASL password.")
    kafka_ssl_cafile: str | None = Field(default=None, description="CA bundle for Kafka TLS.")
    kafka_enable_idempotence: bool = Field(
        default=False, description="Idempotent producer (real Kafka only; Tansu lacks it)."
    )

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
        """The role policy: the default, overridden verb by verb by `policy_file`."""
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
