"""The gateway's ASGI application (FastAPI): the route groups a deployment exposes.

`INGEST_GATEWAY_ROUTES` picks them: `ingest` (the webhooks, `routes/`), `read` and `console`
(served by modules of their own when installed, see `OPTIONAL_ROUTERS`). The probes and
`/metrics` are always served. Every ingest POST goes through `intake.Gateway.accept`.

The ingest POSTs are the hot path: `GatewayApp` hands them straight to their handler while no
tracer is installed, past FastAPI's middleware stack and router (which cost about a third of a
request's CPU and add nothing to them: the handler takes the bare request, renders its own
refusals, and reads the body within its own limits). With tracing on they take FastAPI's path,
which opens the request's SERVER span.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping, Sequence

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from ingest_worker import tracing
from ingest_worker.service.config import Settings
from ingest_worker.service.gateway import openapi, principal, problems
from ingest_worker.service.gateway.auth import IngestAuthenticator
from ingest_worker.service.gateway.credentials import CredentialStore
from ingest_worker.service.gateway.intake import Gateway, Producer
from ingest_worker.service.gateway.limits import RateLimiter
from ingest_worker.service.gateway.metrics import GatewayMetrics
from ingest_worker.service.gateway.routes import enqueue, operations, signals
from ingest_worker.service.gateway.settings import GatewaySettings
from ingest_worker.service.gateway.traces import TELEMETRY
from ingest_worker.sources.contract import Source
from ingest_worker.sources.signatures import SignatureScheme

log = structlog.get_logger("ingest_worker.gateway")

#: An ingest route's endpoint: the bare request in, the response (refusals included) out.
Handler = Callable[[Request], Awaitable[Response]]


class GatewayApp(FastAPI):
    """FastAPI, with the ingest POSTs (`direct`: path → endpoint) served without its middleware
    and router while tracing is off (see the module's docstring)."""

    direct: dict[str, Handler]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not tracing.active():
            handler = self.direct.get(scope["path"])
            if handler is not None:
                scope["app"] = self
                response = await handler(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def direct_routes(router: APIRouter) -> dict[str, Handler]:
    """The POST routes of `router` whose endpoint takes only the request (no dependency)."""
    found: dict[str, Handler] = {}
    for route in router.routes:
        if not isinstance(route, APIRoute) or route.methods != {"POST"}:
            continue
        d = route.dependant
        params = (d.path_params, d.query_params, d.header_params, d.cookie_params, d.body_params)
        if d.request_param_name and not d.dependencies and not any(params):
            found[route.path] = route.endpoint
    return found


#: Route groups served by modules that may be absent from a build: (group, module). The module
#: exposes `router: APIRouter`; it is included when its group is in `INGEST_GATEWAY_ROUTES`.
OPTIONAL_ROUTERS: tuple[tuple[str, str], ...] = (
    ("read", "ingest_worker.service.gateway.read_api"),
    ("console", "ingest_worker.service.console"),
)


def signature_schemes(
    sources: Sequence[Source], config: GatewaySettings
) -> dict[str, SignatureScheme]:
    """The signature scheme each source declares (`Source.signature`); Grafana's timestamp
    header is the one Grafana is configured with."""
    schemes = {s.name: s.signature for s in sources if s.signature is not None}
    grafana = schemes.get("grafana")
    if grafana is not None and grafana.timestamp_header is not None:
        header = config.grafana_timestamp_header.lower()
        schemes["grafana"] = SignatureScheme(grafana.header, grafana.verify, header)
    return schemes


def _optional_router(module_path: str) -> APIRouter | None:
    try:
        module = importlib.import_module(module_path)
    except ModuleNotFoundError as exc:
        if exc.name != module_path:
            raise
        return None
    router = getattr(module, "router", None)
    return router if isinstance(router, APIRouter) else None


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    reason = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    return JSONResponse(
        {"reason": reason, "message": str(exc.detail)},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def create_app(
    settings: Settings,
    config: GatewaySettings,
    producer: Producer,
    *,
    sources: Sequence[Source],
    dev: bool = False,
    metrics: GatewayMetrics | None = None,
    schemes: Mapping[str, SignatureScheme] | None = None,
) -> GatewayApp:
    """The gateway application for `sources` (the registry's, normally)."""
    store = CredentialStore(config)
    gateway = Gateway(
        settings=settings,
        config=config,
        producer=producer,
        auth=IngestAuthenticator(
            store,
            dev=dev,
            schemes=schemes if schemes is not None else signature_schemes(sources, config),
            max_age_seconds=config.signature_max_age_seconds,
        ),
        limiter=RateLimiter(config),
        metrics=metrics or GatewayMetrics(),
        sources={s.name: s for s in sources},
    )
    app = GatewayApp(
        title="ingest-worker webhook gateway",
        version="1",
        description="HTTP → Kafka for alerting tools. A 202 means the broker acknowledged the "
        "record (acks=all); a 503 means nothing was accepted.",
        docs_url="/docs",
        redoc_url=None,
        # A redirect would be built from the request's Host header: unknown paths are 404.
        redirect_slashes=False,
        telemetry=TELEMETRY,
    )
    app.direct = {}
    app.state.gateway = gateway
    app.state.settings = settings
    app.state.gateway_config = config
    principal.attach(app, principal.PrincipalResolver(store, dev=dev))
    problems.install(app)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(operations.router(gateway))
    groups = config.route_groups
    if "ingest" in groups:
        for routes in (signals.router(gateway, sources), enqueue.router(gateway)):
            app.include_router(routes)
            app.direct.update(direct_routes(routes))
    for group, module_path in OPTIONAL_ROUTERS:
        if group in groups and (router := _optional_router(module_path)) is not None:
            app.include_router(router)
            log.debug("gateway_route_group", group=group, module=module_path)
    openapi.install(app, sources)
    return app
