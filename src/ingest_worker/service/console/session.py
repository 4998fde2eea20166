"""Who is using the console: signed session cookies, CSRF tokens and the security headers.

The session cookie (HttpOnly, SameSite=Strict, Secure outside dev) is signed with
`INGEST_CONSOLE_SESSION_SECRET` (itsdangerous). It carries a CSRF token — every visitor gets
one before any form is shown — and, once signed in, the SHA-256 of the bearer token: the
principal is looked up again on every request, so a token removed from the credentials ends
its sessions. The token itself is never stored. Under `ingest-worker dev` the console is open:
the tenant comes from the URL (`tenant`), the actor from `X-Actor` / `X-Roles` when present,
otherwise `console` with the on-call roles.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import Request
from fastapi.responses import Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ingest_worker.service.console.settings import ConsoleSettings
from ingest_worker.service.gateway.principal import (
    DEFAULT_TENANT,
    SCOPES,
    Principal,
    PrincipalResolver,
    is_tenant,
)

log = structlog.get_logger("ingest_worker.console")

COOKIE = "ingest_console"
#: The actor and roles of a dev-mode console action without X-Actor / X-Roles.
DEV_ACTOR = "console"
DEV_ROLES = frozenset({"ONCALL_ENGINEER", "SRE_LEAD"})
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class NotConfigured(Exception):
    """Signing in outside dev needs `INGEST_CONSOLE_SESSION_SECRET`."""


@dataclass
class Visitor:
    """One request's view of its session: the CSRF token, the principal (None: signed out
    outside dev) and whether the cookie must be (re)written."""

    csrf: str
    principal: Principal | None
    token_digest: str | None = None
    #: No valid cookie came with the request: no form of it can carry a matching token.
    fresh: bool = False
    dirty: bool = False
    dev: bool = False
    data: dict[str, Any] = field(default_factory=dict)


class Sessions:
    """Reads and writes the console's session cookie for one gateway app."""

    def __init__(self, config: ConsoleSettings, resolver: PrincipalResolver | None) -> None:
        self.config = config
        self.resolver = resolver
        self.dev = bool(resolver is not None and resolver.dev)
        secret = config.session_secret.get_secret_value() if config.session_secret else None
        if secret is None and self.dev:
            secret = secrets.token_urlsafe(32)
            log.info("console_session_secret_generated", dev=True)
        self.configured = secret is not None
        self._signer = URLSafeTimedSerializer(
            secret or secrets.token_urlsafe(32), salt="ingest-console-session"
        )

    # ------------------------------------------------------------------ reading
    def visitor(self, request: Request) -> Visitor:
        data = self._load(request.cookies.get(COOKIE))
        csrf = data.get("csrf")
        fresh = dirty = False
        if not isinstance(csrf, str) or len(csrf) < 32:
            csrf, fresh, dirty, data = secrets.token_urlsafe(32), True, True, {}
        digest = data.get("tok")
        principal = self._signed_in(digest) if isinstance(digest, str) else None
        if isinstance(digest, str) and principal is None:
            data.pop("tok", None)  # the token was removed or lost its scope: signed out
            dirty = True
        if principal is None and self.dev:
            principal = dev_principal(request)
        return Visitor(
            csrf=csrf,
            principal=principal,
            token_digest=digest if principal is not None and isinstance(digest, str) else None,
            fresh=fresh,
            dirty=dirty,
            dev=self.dev,
            data=data,
        )

    def _load(self, cookie: str | None) -> dict[str, Any]:
        if not cookie or not self.configured:
            return {}
        try:
            data = self._signer.loads(cookie, max_age=self.config.session_max_age_seconds)
        except BadSignature:
            return {}
        return data if isinstance(data, dict) else {}

    def _signed_in(self, digest: str) -> Principal | None:
        if self.resolver is None:
            return None
        try:
            raw = bytes.fromhex(digest)
        except ValueError:
            return None
        for principal in self.resolver.store.principals_of_digest(raw):
            if principal.may("read"):
                return principal
        return None

    # ------------------------------------------------------------------ writing
    def sign_in(self, visitor: Visitor, token: str) -> Principal | None:
        """The principal of `token` if it carries the read scope; the session then holds its
        digest and a fresh CSRF token (nothing of the signed-out session carries over)."""
        if not self.configured:
            raise NotConfigured
        if self.resolver is None or not token:
            return None
        for principal in self.resolver.store.principals_of(token.encode()):
            if principal.may("read"):
                visitor.token_digest = hashlib.sha256(token.encode()).hexdigest()
                visitor.csrf = secrets.token_urlsafe(32)
                visitor.principal = principal
                visitor.data = {"tok": visitor.token_digest}
                visitor.dirty = True
                return principal
        return None

    def sign_out(self, visitor: Visitor) -> None:
        visitor.token_digest = None
        visitor.principal = None
        visitor.csrf = secrets.token_urlsafe(32)
        visitor.data = {}
        visitor.dirty = True

    def write(self, visitor: Visitor, response: Response) -> Response:
        """The security headers, and the cookie when it changed."""
        response.headers.update(SECURITY_HEADERS)
        if visitor.dirty and self.configured:
            data = {"csrf": visitor.csrf}
            if visitor.token_digest is not None:
                data["tok"] = visitor.token_digest
            response.set_cookie(
                COOKIE,
                self._signer.dumps(data),
                max_age=self.config.session_max_age_seconds,
                path="/",
                httponly=True,
                secure=not self.dev,
                samesite="strict",
            )
        return response


def csrf_valid(visitor: Visitor, submitted: str | None) -> bool:
    """The form's token is the session's (constant time); a fresh session has none to match."""
    if not submitted or visitor.fresh:
        return False
    return hmac.compare_digest(visitor.csrf.encode(), submitted.encode())


def dev_tenant(request: Request) -> str:
    """The dev-mode tenant: the URL's `tenant` (the "Tenant" control), else `default`."""
    tenant = (request.query_params.get("tenant") or "").strip()
    return tenant if tenant and is_tenant(tenant) else DEFAULT_TENANT


def dev_principal(request: Request, tenant: str | None = None) -> Principal:
    actor = (request.headers.get("x-actor") or "").strip()[:200] or DEV_ACTOR
    roles = frozenset(
        r.strip() for r in (request.headers.get("x-roles") or "").split(",") if r.strip()
    )
    return Principal(tenant or dev_tenant(request), actor, roles or DEV_ROLES, SCOPES)
