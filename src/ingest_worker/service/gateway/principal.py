"""Who is calling: the `Principal` a credential is bound to, and `require(scope)` for routes.

A bearer token in the credentials file is bound to one tenant, an actor id, roles and scopes
(`ingest`, `read`, `command`). Under `ingest-worker dev` the gateway is open: the tenant comes
from `X-Tenant` (absent: `default`), the actor from `X-Actor`, the roles from `X-Roles`
(comma-separated), with every scope. The tenant never comes from a payload.

Answers (problem+json, `reason` stable): 401 `unauthenticated` (no or unknown credential), 403
`forbidden_scope` (a known credential without the scope), 400 `invalid_tenant` (a malformed
`X-Tenant` under dev).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request

from ingest_worker.service.gateway.problems import Problem

if TYPE_CHECKING:
    from ingest_worker.service.gateway.credentials import CredentialStore

DEFAULT_TENANT = "default"
TENANT_PATTERN = r"[a-z0-9][a-z0-9-]{0,62}"
_TENANT = re.compile(TENANT_PATTERN)
SCOPES = frozenset({"ingest", "read", "command"})
#: The actor of a dev-mode request that names none.
DEV_ACTOR = "dev"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="ingest-gateway"'}


def is_tenant(text: str) -> bool:
    return _TENANT.fullmatch(text) is not None


@dataclass(frozen=True)
class Principal:
    """The caller: its tenant, its actor id (recorded as the actor of its commands), its roles
    (for attribute-based rules) and the scopes it may use."""

    tenant: str
    actor: str
    roles: frozenset[str]
    scopes: frozenset[str]

    def may(self, scope: str) -> bool:
        return scope in self.scopes


def dev_principal(headers: Mapping[str, str]) -> Principal:
    """The principal of an unauthenticated dev-mode request (headers with lower-case names)."""
    tenant = (headers.get("x-tenant") or "").strip() or DEFAULT_TENANT
    if not is_tenant(tenant):
        raise Problem(
            400, "invalid_tenant", f"X-Tenant must match {TENANT_PATTERN} (lower case, ≤ 63)"
        )
    actor = (headers.get("x-actor") or "").strip()[:200] or DEV_ACTOR
    roles = frozenset(
        role.strip() for role in (headers.get("x-roles") or "").split(",") if role.strip()
    )
    return Principal(tenant, actor, roles, SCOPES)


def bearer_token(headers: Mapping[str, str]) -> bytes | None:
    """The token of an `Authorization: Bearer …` header, if any."""
    scheme, _, value = (headers.get("authorization") or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip().encode()


class PrincipalResolver:
    """Resolves the principal of a request from its headers alone (no body byte is read)."""

    def __init__(self, store: CredentialStore, *, dev: bool) -> None:
        self.store = store
        self.dev = dev

    def authorize(self, headers: Mapping[str, str], scope: str) -> Principal:
        """The principal, if it may use `scope`; else raises `Problem` (401, 403 or 400)."""
        token = bearer_token(headers)
        if token is not None:
            principals = self.store.principals_of(token)
            for principal in principals:
                if principal.may(scope):
                    return principal
            if principals:
                raise Problem(
                    403, "forbidden_scope", f"this credential does not carry the {scope} scope"
                )
        if self.dev and token is None:
            return dev_principal(headers)
        detail = "a bearer token is required" if token is None else "invalid credentials"
        raise Problem(401, "unauthenticated", detail, headers=_CHALLENGE)


def attach(app: FastAPI, resolver: PrincipalResolver) -> None:
    """Make `require` resolve principals with `resolver` on `app`."""
    app.state.principals = resolver


def require(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the request's `Principal`, which may use `scope`.

    `Depends(require("read"))`. Needs `attach` (done by `create_app`) and the problem handler
    (`problems.install`, also done by `create_app`); without a resolver every request is 401.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}: one of {sorted(SCOPES)}")

    async def principal(request: Request) -> Principal:
        resolver = getattr(request.app.state, "principals", None)
        if not isinstance(resolver, PrincipalResolver):
            raise Problem(401, "unauthenticated", "no credentials are configured")
        return resolver.authorize(request.headers, scope)

    return principal
