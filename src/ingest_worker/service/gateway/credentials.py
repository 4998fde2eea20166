"""The credentials the gateway accepts: from its settings and the credentials file, re-read when
the file changes.

The file (`INGEST_GATEWAY_SECRETS_FILE`) is a JSON object:

- `principals`: a list of `{"token", "tenant", "actor", "roles", "scopes", "sources"}`, each
  bearer token bound to one tenant, one actor id, roles and scopes (`ingest`, `read`, `command`);
  `sources` limits its `ingest` scope to those sources. A principal with `ingest` is also a
  PagerDuty routing key (`/v2/enqueue`).
- `tokens`, `basic_auth`, `hmac_secrets`: per-source credentials as before (source → list,
  `*` for every source). They are bound to the tenant `default` with the scope `ingest`.

Every lookup compares with `hmac.compare_digest` against every candidate (no early exit).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr, TypeAdapter, ValidationError

from ingest_worker.service.gateway.principal import DEFAULT_TENANT, Principal
from ingest_worker.service.gateway.settings import ANY_SOURCE, GatewaySettings, PrincipalEntry

_KINDS = ("tokens", "basic_auth", "hmac_secrets")
_ENTRIES = TypeAdapter(list[PrincipalEntry])


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


@dataclass(frozen=True, slots=True)
class Binding:
    """A bearer token and the principal it stands for; `sources` limits its ingest scope."""

    token: bytes
    principal: Principal
    sources: frozenset[str] | None = None

    def ingests(self, source: str) -> bool:
        return self.principal.may("ingest") and (self.sources is None or source in self.sources)


def source_principal(source: str) -> Principal:
    """The principal of a per-source credential (`tokens`, `basic_auth`, `hmac_secrets`)."""
    actor = "gateway" if source == ANY_SOURCE else f"source:{source}"
    return Principal(DEFAULT_TENANT, actor, frozenset(), frozenset({"ingest"}))


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


def _entries(data: dict[str, Any]) -> list[PrincipalEntry]:
    try:
        return _ENTRIES.validate_python(data.get("principals") or [])
    except ValidationError as exc:
        # The messages name fields, never values: a token must not reach a log line.
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        raise ValueError(f"secrets file: invalid principals ({', '.join(fields)})") from None


def _bindings(
    entries: Iterable[PrincipalEntry], tokens: dict[str, list[bytes]]
) -> tuple[Binding, ...]:
    bindings = [
        Binding(
            entry.token.get_secret_value().encode(),
            Principal(entry.tenant, entry.actor, frozenset(entry.roles), frozenset(entry.scopes)),
            None if entry.sources is None else frozenset(entry.sources),
        )
        for entry in entries
    ]
    seen: set[bytes] = set()
    for binding in bindings:
        if binding.token in seen:
            raise ValueError("secrets file: a principal token is bound twice")
        seen.add(binding.token)
    for source, values in tokens.items():
        scope = None if source == ANY_SOURCE else frozenset({source})
        bindings.extend(Binding(v, source_principal(source), scope) for v in values)
    return tuple(bindings)


class CredentialStore:
    """Per-source credentials and principals from the settings and the secrets file."""

    def __init__(self, settings: GatewaySettings, *, recheck_seconds: float = 1.0) -> None:
        self._settings = settings
        self._recheck_seconds = recheck_seconds
        self._base = {
            kind: _secret_values({kind: getattr(settings, kind)}, kind) for kind in _KINDS
        }
        self._file_mtime: float | None = None
        self._checked_at = 0.0
        self._table: dict[str, SourceCredentials] = {}
        self._bindings: tuple[Binding, ...] = ()
        self.reload_error: str | None = None
        self._rebuild({}, [])
        self._maybe_reload(force=True)

    def _rebuild(
        self, from_file: dict[str, dict[str, list[bytes]]], entries: list[PrincipalEntry]
    ) -> None:
        names = {n for kind in _KINDS for n in (*self._base[kind], *from_file.get(kind, {}))}
        merged = {
            kind: {
                name: self._base[kind].get(name, []) + from_file.get(kind, {}).get(name, [])
                for name in names
            }
            for kind in _KINDS
        }
        bindings = _bindings([*self._settings.principals, *entries], merged["tokens"])
        self._table = {
            name: SourceCredentials(*(tuple(merged[kind][name]) for kind in _KINDS))
            for name in names
        }
        self._bindings = bindings

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
        self._rebuild({kind: _secret_values(data, kind) for kind in _KINDS}, _entries(data))
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
        """The per-source credentials a request for `source` may present (its own and `*`)."""
        self._refresh()
        empty = SourceCredentials()
        return self._table.get(source, empty) + self._table.get(ANY_SOURCE, empty)

    def bindings_of(self, token: bytes) -> list[Binding]:
        """Every binding of a bearer token (compared with every candidate)."""
        self._refresh()
        found = []
        for binding in self._bindings:
            if hmac.compare_digest(binding.token, token):
                found.append(binding)
        return found

    def principals_of(self, token: bytes) -> list[Principal]:
        return [binding.principal for binding in self.bindings_of(token)]

    def principals_of_digest(self, digest: bytes) -> list[Principal]:
        """The principals of the token whose SHA-256 is `digest` (a console session keeps the
        digest, never the token, and is ended by the token's removal)."""
        self._refresh()
        return [
            b.principal
            for b in self._bindings
            if hmac.compare_digest(hashlib.sha256(b.token).digest(), digest)
        ]

    def ingests(self, source: str) -> bool:
        """Whether any credential may ingest for `source` (else: fail closed, or dev)."""
        self._refresh()
        return not self.of(source).empty or any(b.ingests(source) for b in self._bindings)

    def takes_tokens(self, source: str) -> bool:
        """Whether some token may ingest for `source` (a routing key is worth reading for)."""
        self._refresh()
        return any(b.ingests(source) for b in self._bindings)

    def others_accept_basic(self, source: str, pair: bytes) -> bool:
        """Whether `pair` is the basic-auth credential of another source (403, not 401)."""
        self._refresh()
        found = False
        for name, creds in self._table.items():
            if name in (source, ANY_SOURCE):
                continue
            for candidate in creds.basic:
                found |= hmac.compare_digest(candidate, pair)
        return found

    def unprotected(self, sources: list[str]) -> list[str]:
        """The sources among `sources` without any credential (refused unless in dev mode)."""
        return [s for s in sources if not self.ingests(s)]
