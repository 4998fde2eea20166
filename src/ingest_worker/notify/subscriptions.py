"""The subscriptions file: where incident events go over HTTP, in which format, for which events.

JSON (or YAML, by the file's extension):

    {"subscriptions": [{"id": "ops-slack", "tenant": "default", "url": "https://…",
      "format": "slack", "secrets": ["whsec_…"],
      "filter": {"types": [...], "minSeverity": "RED", "sources": [...], "env": [...]},
      "maxAgeSeconds": 86400}]}

Every field but `id`, `url` and `format` is optional. A file that does not read or does not
validate raises `SubscriptionsError` with the file's name and the first problem, on one line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from ingest_worker.notify.signing import SigningError, secret_key

SEVERITY_RANK = {"YELLOW": 1, "RED": 2}
DEFAULT_TENANT = "default"
DEFAULT_MAX_AGE_SECONDS = 86_400.0
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_TENANT = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class SubscriptionsError(Exception):
    """The subscriptions file cannot be used; the message names the file and the problem."""


class Filter(BaseModel):
    """Which events a subscription receives; an empty or absent list matches everything."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    types: tuple[str, ...] = ()
    min_severity: Literal["YELLOW", "RED"] | None = Field(default=None, alias="minSeverity")
    sources: tuple[str, ...] = ()
    env: tuple[str, ...] = ()


class Subscription(BaseModel):
    """One destination of incident events."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str
    url: str
    format: Literal["cloudevents", "slack", "generic"]
    tenant: str = DEFAULT_TENANT
    secrets: tuple[SecretStr, ...] = ()
    filter: Filter = Filter()
    max_age_seconds: float = Field(default=DEFAULT_MAX_AGE_SECONDS, gt=0, alias="maxAgeSeconds")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise ValueError("an id is 1-63 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str) -> str:
        if not _TENANT.fullmatch(value):
            raise ValueError("a tenant matches [a-z0-9][a-z0-9-]{0,62}")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("credentials in the URL are not accepted: use secrets")
        return value

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for secret in value:
            try:
                secret_key(secret.get_secret_value())
            except SigningError as exc:
                raise ValueError(str(exc)) from None
        return value

    def keys(self) -> list[bytes]:
        """The HMAC keys of the secrets, in the file's order."""
        return [secret_key(s.get_secret_value()) for s in self.secrets]

    def safe_url(self) -> str:
        """The URL without its query (which may carry a token, as Slack's webhook paths do)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{'/…' if parts.path not in ('', '/') else ''}"


class SubscriptionsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    subscriptions: tuple[Subscription, ...]


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What the filters look at: the event's type and tenant, the incident after the event."""

    type: str
    tenant: str
    severity: str | None
    source: str | None
    env: str | None


def matches(subscription: Subscription, facts: EventFacts) -> bool:
    """Whether `subscription` receives an event (pure)."""
    if facts.tenant != subscription.tenant:
        return False
    rule = subscription.filter
    if rule.types and facts.type not in rule.types:
        return False
    if rule.min_severity is not None and SEVERITY_RANK.get(
        facts.severity or "", 0
    ) < SEVERITY_RANK.get(rule.min_severity, 0):
        return False
    if rule.sources and facts.source not in rule.sources:
        return False
    return not (rule.env and facts.env not in rule.env)


def parse_subscriptions(document: Any) -> tuple[Subscription, ...]:
    """The subscriptions of a decoded file; ValueError naming the first problem."""
    try:
        parsed = SubscriptionsFile.model_validate(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "the file"
        raise ValueError(f"{where}: {error['msg']}") from None
    seen: set[str] = set()
    for sub in parsed.subscriptions:
        if sub.id in seen:
            raise ValueError(f"subscription id {sub.id!r} appears twice")
        seen.add(sub.id)
    return parsed.subscriptions


def load_subscriptions(path: str | Path) -> tuple[Subscription, ...]:
    """Read and validate a subscriptions file; SubscriptionsError on any problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SubscriptionsError(f"{file}: cannot read: {exc}") from None
    try:
        if file.suffix.lower() in (".yaml", ".yml"):
            import yaml  # type: ignore[import-untyped]

            document = yaml.safe_load(text)
        else:
            document = json.loads(text)
    except Exception as exc:
        reason = " ".join(str(exc).split())
        raise SubscriptionsError(f"{file}: not valid {_kind(file)}: {reason}") from None
    try:
        return parse_subscriptions(document)
    except ValueError as exc:
        raise SubscriptionsError(f"{file}: {exc}") from None


def _kind(file: Path) -> str:
    return "YAML" if file.suffix.lower() in (".yaml", ".yml") else "JSON"


def by_id(subscriptions: Sequence[Subscription]) -> Mapping[str, Subscription]:
    return {s.id: s for s in subscriptions}
