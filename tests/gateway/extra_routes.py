"""A route group module as the optional ones are built (`router: APIRouter`), for the hook's test."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from ingest_worker.service.gateway.principal import Principal, require

router = APIRouter()


@router.get("/v1/whoami")
async def whoami(who: Principal = Depends(require("read"))) -> dict[str, Any]:  # noqa: B008
    return {"tenant": who.tenant, "actor": who.actor}
