"""Signing in and out (`/console/sign-in`, `/console/sign-out`) and the static files."""

from __future__ import annotations

import mimetypes
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from ingest_worker.service.console.core import (
    console_of,
    posted_form,
    redirect,
    render,
    safe_next,
)
from ingest_worker.service.console.session import NotConfigured

router = APIRouter(include_in_schema=False)


@router.get("/console/sign-in")
async def sign_in_page(request: Request) -> Response:
    console = console_of(request)
    visitor = console.sessions.visitor(request)
    context = {"next": safe_next(request.query_params.get("next")), "error": None,
               "configured": console.sessions.configured}  # fmt: skip
    return render(request, visitor, "sign_in.html", context)


@router.post("/console/sign-in")
async def sign_in(request: Request) -> Response:
    console = console_of(request)
    visitor = console.sessions.visitor(request)
    form = await posted_form(request, visitor)
    if isinstance(form, Response):
        return form
    target = safe_next(form.get("next"))
    try:
        principal = console.sessions.sign_in(visitor, form.get("token", "").strip())
    except NotConfigured:
        context = {"next": target, "error": None, "configured": False}
        return render(request, visitor, "sign_in.html", context, 503)
    if principal is None:
        context = {
            "next": target,
            "error": "That token is not valid, or it does not carry the read scope.",
            "configured": True,
        }
        return render(request, visitor, "sign_in.html", context, 401)
    return redirect(request, visitor, target)


@router.post("/console/sign-out")
async def sign_out(request: Request) -> Response:
    console = console_of(request)
    visitor = console.sessions.visitor(request)
    form = await posted_form(request, visitor)
    if isinstance(form, Response):
        return form
    console.sessions.sign_out(visitor)
    return redirect(request, visitor, "/console/sign-in")


def _static_files() -> dict[str, tuple[bytes, str]]:
    """Every file under static/, read once: served by name from this table only."""
    root = resources.files("ingest_worker.service.console") / "static"
    table: dict[str, tuple[bytes, str]] = {}

    def walk(node: resources.abc.Traversable, prefix: str) -> None:
        for child in node.iterdir():
            name = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, name + "/")
            elif child.is_file():
                kind = mimetypes.guess_type(child.name)[0] or "text/plain"
                if child.name.endswith(".LICENSE"):
                    kind = "text/plain"
                table[name] = (child.read_bytes(), kind)

    walk(root, "")
    return table


STATIC = _static_files()


@router.get("/console/static/{name:path}")
async def static(name: str) -> Response:
    found = STATIC.get(name)
    if found is None:
        return PlainTextResponse("not found", status_code=404)
    body, kind = found
    charset = "; charset=utf-8" if kind.startswith("text/") or kind.endswith("javascript") else ""
    return Response(
        body,
        media_type=kind + charset,
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
