"""The console's per-app state and what every page handler does: find the visitor, answer
with a rendered template (security headers, session cookie), parse a posted form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ingest_worker.service.console.session import Sessions, Visitor, csrf_valid
from ingest_worker.service.console.settings import ConsoleSettings
from ingest_worker.service.console.views import environment
from ingest_worker.service.gateway.principal import Principal, PrincipalResolver

#: A posted console form is small: anything bigger is refused before parsing.
MAX_FORM_BYTES = 16 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"
CSRF_REFUSAL = (
    "This form's security token is missing or does not match your session (CSRF). "
    "Reload the page and try again."
)


@dataclass
class Console:
    """One gateway app's console: its settings, sessions and templates."""

    config: ConsoleSettings
    sessions: Sessions
    templates: jinja2.Environment

    @property
    def dev(self) -> bool:
        return self.sessions.dev


def console_of(request: Request) -> Console:
    """The app's console, made on first use (the session key is generated then under dev);
    its settings are `app.state.console_settings` when set, else the environment's."""
    console = getattr(request.app.state, "console", None)
    if console is None:
        resolver = getattr(request.app.state, "principals", None)
        given = getattr(request.app.state, "console_settings", None)
        config = given if isinstance(given, ConsoleSettings) else ConsoleSettings()
        console = Console(
            config,
            Sessions(config, resolver if isinstance(resolver, PrincipalResolver) else None),
            environment(),
        )
        request.app.state.console = console
    assert isinstance(console, Console)
    return console


def url_tenant(visitor: Visitor) -> str | None:
    """The tenant kept in the URL: under dev while not signed in (the "Tenant" control)."""
    if visitor.dev and visitor.token_digest is None and visitor.principal is not None:
        return visitor.principal.tenant
    return None


def render(
    request: Request,
    visitor: Visitor,
    template: str,
    context: dict[str, Any],
    status: int = 200,
) -> Response:
    console = console_of(request)
    principal: Principal | None = visitor.principal
    body = console.templates.get_template(template).render(
        request_path=request.url.path,
        principal=principal,
        signed_in=visitor.token_digest is not None,
        dev=console.dev,
        tenant_in_url=url_tenant(visitor),
        csrf=visitor.csrf,
        **context,
    )
    return console.sessions.write(visitor, HTMLResponse(body, status_code=status))


def redirect(request: Request, visitor: Visitor, location: str) -> Response:
    return console_of(request).sessions.write(visitor, RedirectResponse(location, status_code=303))


def to_sign_in(request: Request, visitor: Visitor) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return redirect(request, visitor, "/console/sign-in?" + urlencode({"next": target}))


def safe_next(target: str | None) -> str:
    """Only a path of this site (never `//host` or a scheme): no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


class FormRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_form(request: Request) -> dict[str, str]:
    """A posted URL-encoded form (first value of each field), at most `MAX_FORM_BYTES`."""
    kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if kind != FORM_TYPE:
        raise FormRefused(415, f"a console form is posted as {FORM_TYPE}")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_FORM_BYTES):
        raise FormRefused(413, "the form is too large")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FORM_BYTES:
            raise FormRefused(413, "the form is too large")
    try:
        parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise FormRefused(400, "the form could not be read") from None
    return {k: v[0] for k, v in parsed.items() if v}


async def posted_form(request: Request, visitor: Visitor) -> dict[str, str] | Response:
    """The posted form once it passes `read_form`'s checks and carries the visitor's CSRF
    token; otherwise the refusal to answer with."""
    try:
        form = await read_form(request)
    except FormRefused as exc:
        return refused(request, visitor, exc.status, exc.message)
    if not csrf_valid(visitor, form.get("csrf")):
        return refused(request, visitor, 403, CSRF_REFUSAL)
    return form


def refused(request: Request, visitor: Visitor, status: int, message: str) -> Response:
    """A refusal page; to htmx (a quick action), the section it replaces, saying why."""
    template = "_refused.html" if request.headers.get("hx-request") == "true" else "refused.html"
    return render(request, visitor, template, {"status": status, "message": message}, status)
