"""The web console (`GET /` on the gateway): a server-rendered incident list and detail with
live updates and quick actions, served when `INGEST_GATEWAY_ROUTES` includes `console`.

It reads through the read API's backend and queries (`store.reads`) and acts through its
command path (`read_commands.send_command`) — never over HTTP to itself. Pages are Jinja2
templates; htmx and its SSE extension are vendored under `static/vendor/` with their
licences; nothing is fetched from elsewhere. Reading works without JavaScript.
"""

from __future__ import annotations

from fastapi import APIRouter

from ingest_worker.service.console import access, live, pages

router = APIRouter(include_in_schema=False)
router.include_router(pages.router)
router.include_router(access.router)
router.include_router(live.router)

__all__ = ["router"]
