"""`/healthz`, `/readyz`, `/metrics`: served by every deployment, whatever its route groups."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from ingest_worker.service.gateway.intake import Gateway


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    broker: bool


def router(gateway: Gateway) -> APIRouter:
    routes = APIRouter(tags=["operations"])

    @routes.get("/healthz", response_model=Liveness)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})

    @routes.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "The broker does not answer."}},
    )
    async def readyz() -> JSONResponse:
        ok = bool(gateway.producer.broker_ok)
        return JSONResponse(
            {"ready": ok, "broker": ok},
            status_code=200 if ok else 503,
            headers={"Cache-Control": "no-store"},
        )

    @routes.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return routes
