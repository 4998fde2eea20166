"""Gateway settings: `INGEST_GATEWAY_*` variables, and the credentials file they may point at.

The broker, topics and size limit come from the worker's `Settings` (`INGEST_*`), so that the
gateway produces exactly where, and at most as large as, the worker consumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest_worker.service.gateway.principal import TENANT_PATTERN

#: Credentials under this name apply to every source.
ANY_SOURCE = "*"
#: The route groups a deployment may expose (`INGEST_GATEWAY_ROUTES`).
ROUTE_GROUPS = ("ingest", "read", "console")


class RateLimit(BaseModel):
    """A token bucket: `rate` requests per second on average, bursts of up to `burst`."""

    rate: float = Field(gt=0)
    burst: int = Field(ge=1)


class PrincipalEntry(BaseModel):
    """One bearer token of the credentials file, bound to a tenant, an actor, roles and scopes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr
    tenant: str = Field(default="default", pattern=f"^{TENANT_PATTERN}$")
    actor: str = Field(min_length=1, max_length=200)
    roles: list[str] = Field(default_factory=list)
    scopes: list[Literal["ingest", "read", "command"]] = Field(min_length=1)
    #: Scope `ingest` only for these sources (None: every source).
    sources: list[str] | None = None

    @field_validator("token")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("a token must not be empty")
        return value


class GatewaySettings(BaseSettings):
    """Every knob of the gateway. Credentials are `SecretStr`: never printed in clear."""

    model_config = SettingsConfigDict(env_prefix="INGEST_GATEWAY_", extra="ignore", frozen=True)

    host: str = Field(
        default="0.0.0.0",  # noqa: S104 - senders and probes must reach it
        description="Address the gateway listens on.",
    )
    port: int = Field(default=8081, ge=0, le=65535, description="Port the gateway listens on.")
    max_body_bytes: int | None = Field(
        default=None,
        ge=1024,
        description="Largest accepted body; unset: INGEST_MAX_MESSAGE_BYTES, what the worker "
        "accepts.",
    )
    tokens: dict[str, list[SecretStr]] = Field(
        default_factory=dict,
        description='Bearer tokens by source, e.g. {"alertmanager": ["new", "old"]} (two during '
        'a rotation); "*" for every source.',
    )
    basic_auth: dict[str, list[SecretStr]] = Field(
        default_factory=dict,
        description='"user:password" pairs accepted as HTTP basic auth, by source.',
    )
    hmac_secrets: dict[str, list[SecretStr]] = Field(
        default_factory=dict,
        description="HMAC-SHA256 secrets of signing senders (PagerDuty, Grafana), by source.",
    )
    secrets_file: Path | None = Field(
        default=None,
        description='A JSON file {"tokens": …, "basic_auth": …, "hmac_secrets": …}, merged with '
        "the variables above and re-read when it changes (a mounted Kubernetes Secret).",
    )
    rate_limit_per_second: float = Field(
        default=50.0, gt=0, description="Token bucket rate per source, per replica."
    )
    rate_limit_burst: int = Field(
        default=200, ge=1, description="Token bucket burst per source, per replica."
    )
    rate_limits: dict[str, RateLimit] = Field(
        default_factory=dict,
        description='Per-source override of the two above, e.g. {"datadog": {"rate": 5, '
        '"burst": 20}}.',
    )
    produce_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How long a request waits for the broker's acknowledgement before the 503.",
    )
    retry_after_seconds: int = Field(default=5, ge=1, description="Retry-After of a 503.")
    grafana_timestamp_header: str = Field(
        default="X-Grafana-Alerting-Timestamp",
        description="Grafana's optional timestamp header (its HMAC then signs <timestamp>:<body>).",
    )
    ensure_topics: bool = Field(
        default=True,
        description="Create the signal topics at start-up when missing (errors are logged, "
        "not fatal).",
    )
    principals: list[PrincipalEntry] = Field(
        default_factory=list,
        description="Bearer tokens bound to a tenant, an actor id, roles and scopes (ingest, "
        "read, command), as a JSON list; the credentials file's `principals` are added to them.",
    )
    routes: str = Field(
        default="ingest,read,console",
        description="The route groups this gateway exposes, comma-separated, among ingest "
        "(webhooks), read (the incident API) and console.",
    )
    body_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Longest time a request body may take to arrive, from its first byte "
        "awaited to its last; a slower body is answered 408 and counted.",
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Longest time a connection may take, from its opening or its previous "
        "answer, to send a request's line and headers; then it is answered 408 and closed.",
    )
    signature_max_age_seconds: int = Field(
        default=300,
        ge=1,
        description="Freshness window of signed requests whose scheme carries a timestamp "
        "(Grafana): a signature over a time further from now, either way, is refused with 401.",
    )
    limit_concurrency: int = Field(
        default=1000,
        ge=1,
        description="Most connections and requests served at once; beyond it the gateway "
        "answers 503 at once instead of queueing.",
    )
    timeout_keep_alive_seconds: int = Field(
        default=5,
        ge=1,
        description="An idle keep-alive connection is closed after this many seconds.",
    )
    max_header_bytes: int = Field(
        default=16384,
        ge=1024,
        description="Largest request line plus headers accepted (the HTTP parser's limit).",
    )

    @field_validator("routes")
    @classmethod
    def _known_routes(cls, value: str) -> str:
        groups = [g.strip() for g in value.split(",") if g.strip()]
        unknown = sorted(set(groups) - set(ROUTE_GROUPS))
        if unknown:
            raise ValueError(f"unknown route groups {unknown}: choose among {list(ROUTE_GROUPS)}")
        return ",".join(groups)

    @property
    def route_groups(self) -> frozenset[str]:
        return frozenset(g for g in self.routes.split(",") if g)

    def rate_limit_of(self, source: str) -> RateLimit:
        return self.rate_limits.get(
            source, RateLimit(rate=self.rate_limit_per_second, burst=self.rate_limit_burst)
        )
