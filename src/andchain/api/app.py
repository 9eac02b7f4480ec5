"""The FastAPI application."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from starlette.types import ASGIApp

from andchain import __version__, migrate
from andchain.api import problems, ratelimit
from andchain.api.audit import AuditMiddleware
from andchain.api.body import StrictJSONRoute
from andchain.api.deps import context
from andchain.api.idempotency import IdempotencyStore
from andchain.api.limits import RequestLimits, RequestLimitsMiddleware
from andchain.api.observe import METRICS_CONTENT_TYPE, HttpMetrics, RequestContextMiddleware
from andchain.api.routers import (
    clients,
    compliance,
    connect,
    custody,
    desk,
    events,
    ledger,
    networks,
    operations,
    reconcile,
    rules,
    tokens,
)
from andchain.api.security import AllowedHostsMiddleware, SecurityHeadersMiddleware, allowed_hosts
from andchain.context import Context
from andchain.metrics import PlatformCollector, live_lag_blocks
from andchain.ops import Operations
from andchain.ops.worker import worker_status
from andchain.trading.prices import install as install_prices

# Swagger UI and ReDoc, served from this process (the files of the fastapi-offline package):
# the documentation works on a network that reaches no CDN, and loads no third party's code.
DOCS_STATIC_URL = "/static/docs"
DOCS_STATIC_DIR = files("fastapi_offline") / "static"


class AndchainAPI(FastAPI):
    """FastAPI, with the request context and the security headers outside everything else,
    Starlette's error middleware included: a 500 carries its X-Request-Id and is counted too."""

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()
        return RequestContextMiddleware(SecurityHeadersMiddleware(inner), metrics=self.state.http_metrics)


def create_app(
    ctx: Context | None = None, *, limits: RequestLimits | None = None, bind_host: str | None = None
) -> FastAPI:
    """The API. `limits` defaults to api.body_bytes_max and the built-in header limits;
    `bind_host` (the address `andchain serve` listens on) joins api.allowed_hosts."""
    ctx = install_prices(ctx or Context())
    api = ctx.settings.api
    app = AndchainAPI(
        title="andchain",
        version=__version__,
        description=(
            "The bank's book of record and digital-asset platform. Every POST requires an Idempotency-Key; "
            "every error is application/problem+json with a stable `code`."
        ),
        docs_url=None,
        redoc_url=None,
    )
    app.router.route_class = StrictJSONRoute
    app.state.context = ctx
    app.state.api_keys = ctx.api_keys
    app.state.idempotency = IdempotencyStore(ctx.engine, ctx.clock, api.idempotency_stale_after_s)
    app.state.limits = limits or RequestLimits(body_bytes_max=api.body_bytes_max)
    app.state.rate_limiter = ratelimit.Limiter(api)
    registry = CollectorRegistry()
    app.state.http_metrics = HttpMetrics(registry)
    registry.register(PlatformCollector(ctx.engine, ctx.clock, ctx.settings.ops))
    app.add_middleware(RequestLimitsMiddleware, limits=app.state.limits)
    app.add_middleware(AllowedHostsMiddleware, hosts=allowed_hosts(api, bind_host))
    app.add_middleware(AuditMiddleware, engine=ctx.engine, clock=ctx.clock)
    problems.install(app)
    for router in (
        ledger,
        clients,
        tokens,
        custody,
        desk,
        rules,
        operations,
        networks,
        reconcile,
        events,
        connect,
        compliance,
    ):
        app.include_router(router.router)
    app.include_router(connect.oauth)
    app.mount(DOCS_STATIC_URL, StaticFiles(directory=str(DOCS_STATIC_DIR)), name="docs-static")

    @app.get("/metrics", include_in_schema=False)
    @ratelimit.exempt
    def metrics() -> Response:
        """Prometheus exposition; not rate limited, for the monitoring network only (docs/api.md)."""
        return Response(app.state.http_metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/docs", include_in_schema=False)
    @ratelimit.exempt
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{DOCS_STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC_URL}/favicon.png",
            # No badge fetched from the public validator service.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    @ratelimit.exempt
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{DOCS_STATIC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_STATIC_URL}/favicon.png",
            with_google_fonts=False,
        )

    @app.get(
        "/health/live",
        tags=["system"],
        summary="Liveness only: the process answers (no database, no key)",
        responses=problems.responses({200: "the process answers"}, authenticated=False),
    )
    def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/health",
        tags=["system"],
        summary="Liveness, database reachability and the workers' heartbeats",
        responses=problems.responses({200: "the process runs and the database answers"}, authenticated=False),
    )
    def health(ctx: Context = Depends(context)) -> dict[str, Any]:
        """`status` is `degraded` when this process runs a worker (`andchain serve --worker`) whose
        thread has died or whose heartbeat is older than ops.worker_stale_after_s.

        `worker.lag_blocks` is, per network, how many final blocks the listener has yet to read,
        as reported by the live worker that holds the listener's lease."""
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        revision = migrate.current(ctx.engine)
        ops = Operations(ctx.engine, clock=ctx.clock, settings=ctx.settings.ops)
        workers = worker_status(ops, ctx.settings.ops.worker_stale_after_s)
        lag_blocks = live_lag_blocks(workers)
        thread = getattr(app.state, "worker_thread", None)
        owner = getattr(app.state, "worker_owner", None)
        in_process: dict[str, Any] | None = None
        degraded = False
        if thread is not None:
            beat = next((w for w in workers if w["owner"] == owner), None)
            thread_alive = thread.is_alive()
            beating = beat is not None and bool(beat["alive"])
            in_process = {
                "owner": owner,
                "thread_alive": thread_alive,
                "heartbeat_fresh": beating,
                "last_beat_s_ago": None if beat is None else beat["last_beat_s_ago"],
            }
            degraded = not (thread_alive and beating)
        return {
            "status": "degraded" if degraded else "ok",
            "version": __version__,
            "database": ctx.engine.dialect.name,
            "schema_revision": revision,
            "schema_current": revision == migrate.head(),
            "worker": {
                "in_process": in_process,
                "alive": any(w["alive"] for w in workers),
                "lag_blocks": lag_blocks,
                "workers": workers,
            },
            "operations": ops.counts(),
        }

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            app.openapi_schema = problem_media_types(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def problem_media_types(document: dict[str, Any]) -> dict[str, Any]:
    """Errors are application/problem+json: FastAPI files every response model under
    application/json, so the 4xx and 5xx ones are moved to the media type they are sent with.

    FastAPI also adds a 422 with its own schema to any route with parameters; every
    route that can answer 422 declares it with the Problem schema, so what remains of
    FastAPI's (on routes whose only parameter is a path string) is not true and goes.
    """
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            for status, response in list(responses.items()):
                content = response.get("content", {})
                if content.get("application/json", {}).get("schema", {}).get("$ref") == _FASTAPI_422:
                    del responses[status]
                elif str(status)[0] in "45" and "application/json" in content:
                    content[problems.PROBLEM_MEDIA_TYPE] = content.pop("application/json")
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return document
