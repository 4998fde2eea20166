"""Gateway settings: `INGEST_GATEWAY_*` variables, and the credentials file they may point at.

The broker, topics and size limit come from the worker's `Settings` (`INGEST_*`), so that the
gateway produces exactly where, and at most as large as, the worker consumes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Credentials under this name apply to every source.
ANY_SOURCE = "*"


class RateLimit(BaseModel):
    """A token bucket: `rate` requests per second on average, bursts of up to `burst`."""

    rate: float = Field(gt=0)
    burst: int = Field(ge=1)


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

    def rate_limit_of(self, source: str) -> RateLimit:
        return self.rate_limits.get(
            source, RateLimit(rate=self.rate_limit_per_second, burst=self.rate_limit_burst)
        )


@dataclass(frozen=True, slots=True)
class SourceCredentials:
    """What authenticates a request for one source, as bytes for `hmac.compare_digest`."""

    tokens: tuple[bytes, ...] = ()
    basic: tuple[bytes, ...] = ()
    hmac: tuple[bytes, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.tokens or self.basic or self.hmac)

    def __add__(self, other: SourceCredentials) -> SourceCredentials:
        return SourceCredentials(
            self.tokens + other.tokens, self.basic + other.basic, self.hmac + other.hmac
        )


_KINDS = ("tokens", "basic_auth", "hmac_secrets")


def _secret_values(table: dict[str, Any], kind: str) -> dict[str, list[bytes]]:
    section = table.get(kind) or {}
    if not isinstance(section, dict):
        raise ValueError(f"secrets file: {kind} must be an object of source → list")
    result: dict[str, list[bytes]] = {}
    for source, values in section.items():
        items = values if isinstance(values, list) else [values]
        secrets = []
        for value in items:
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            if not isinstance(text, str) or not text:
                raise ValueError(f"secrets file: {kind}.{source} must hold non-empty strings")
            secrets.append(text.encode())
        result[str(source)] = secrets
    return result


class CredentialStore:
    """Per-source credentials from the settings and the secrets file (re-read when it changes)."""

    def __init__(self, settings: GatewaySettings, *, recheck_seconds: float = 1.0) -> None:
        self._settings = settings
        self._recheck_seconds = recheck_seconds
        self._base = {
            kind: _secret_values({kind: getattr(settings, kind)}, kind) for kind in _KINDS
        }
        self._file_mtime: float | None = None
        self._checked_at = 0.0
        self._table: dict[str, SourceCredentials] = {}
        self.reload_error: str | None = None
        self._rebuild({})
        self._maybe_reload(force=True)

    def _rebuild(self, from_file: dict[str, dict[str, list[bytes]]]) -> None:
        names = {n for kind in _KINDS for n in (*self._base[kind], *from_file.get(kind, {}))}
        table = {}
        for name in names:
            parts = [
                tuple(self._base[kind].get(name, [])) + tuple(from_file.get(kind, {}).get(name, []))
                for kind in _KINDS
            ]
            table[name] = SourceCredentials(*parts)
        self._table = table

    def _maybe_reload(self, *, force: bool = False) -> None:
        path = self._settings.secrets_file
        if path is None:
            return
        now = time.monotonic()
        if not force and now - self._checked_at < self._recheck_seconds:
            return
        self._checked_at = now
        mtime = path.stat().st_mtime
        if not force and mtime == self._file_mtime:
            return
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("secrets file: the top level must be a JSON object")
        self._rebuild({kind: _secret_values(data, kind) for kind in _KINDS})
        self._file_mtime = mtime

    def reload(self) -> None:
        """Re-read the secrets file now (on SIGHUP, or in tests)."""
        self._maybe_reload(force=True)

    def _refresh(self) -> None:
        try:
            self._maybe_reload()
        except (OSError, ValueError) as exc:  # keep serving with the credentials last read
            self.reload_error = f"{type(exc).__name__}: {exc}"
        else:
            self.reload_error = None

    def of(self, source: str) -> SourceCredentials:
        """The credentials a request for `source` may present (its own and those of `*`)."""
        self._refresh()
        empty = SourceCredentials()
        return self._table.get(source, empty) + self._table.get(ANY_SOURCE, empty)

    def others(self, source: str) -> list[SourceCredentials]:
        """The credentials of every other source (to tell 403 from 401)."""
        self._refresh()
        return [c for name, c in self._table.items() if name not in (source, ANY_SOURCE)]

    def unprotected(self, sources: list[str]) -> list[str]:
        """The sources among `sources` without any credential (refused unless in dev mode)."""
        return [s for s in sources if self.of(s).empty]
