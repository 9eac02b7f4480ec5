"""The FastAPI application."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from sqlalchemy import text

from andchain import __version__, migrate
from andchain.api import problems
from andchain.api.body import StrictJSONRoute
from andchain.api.deps import context
from andchain.api.idempotency import IdempotencyStore
from andchain.api.limits import RequestLimits, RequestLimitsMiddleware
from andchain.api.routers import events, ledger
from andchain.context import Context
from andchain.ops import Operations
from andchain.ops.worker import worker_status


def create_app(ctx: Context | None = None, *, limits: RequestLimits | None = None) -> FastAPI:
    ctx = ctx or Context()
    app = FastAPI(
        title="andchain",
        version=__version__,
        description=(
            "The bank's book of record and digital-asset platform. Every POST requires an Idempotency-Key; "
            "every error is application/problem+json with a stable `code`."
        ),
    )
    app.router.route_class = StrictJSONRoute
    app.state.context = ctx
    app.state.idempotency = IdempotencyStore(ctx.engine, ctx.clock, ctx.settings.api.idempotency_stale_after_s)
    app.state.limits = limits or RequestLimits()
    app.add_middleware(RequestLimitsMiddleware, limits=app.state.limits)
    problems.install(app)
    app.include_router(ledger.router)
    app.include_router(events.router)

    @app.get(
        "/health",
        tags=["system"],
        summary="Liveness, database reachability and the workers' heartbeats",
        responses=problems.responses({200: "the process runs and the database answers"}),
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
        lag_blocks: dict[str, int | None] = {}
        for w in workers:
            if w["alive"]:
                for network, lag in (w.get("lag_blocks") or {}).items():
                    if lag is not None or network not in lag_blocks:
                        lag_blocks[network] = lag
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
