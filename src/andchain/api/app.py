"""The FastAPI application."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from sqlalchemy import text

from andchain import __version__, migrate
from andchain.api import problems
from andchain.api.deps import context
from andchain.api.idempotency import IdempotencyStore
from andchain.api.routers import ledger
from andchain.context import Context
from andchain.ops import Operations
from andchain.ops.worker import worker_status


def create_app(ctx: Context | None = None) -> FastAPI:
    ctx = ctx or Context()
    app = FastAPI(
        title="andchain",
        version=__version__,
        description="The bank's book of record and digital-asset platform. Every POST takes an Idempotency-Key.",
    )
    app.state.context = ctx
    app.state.idempotency = IdempotencyStore(ctx.engine, ctx.clock, ctx.settings.api.idempotency_stale_after_s)
    problems.install(app)
    app.include_router(ledger.router)

    @app.get("/health", tags=["system"], summary="Liveness and database reachability")
    def health(ctx: Context = Depends(context)) -> dict[str, Any]:
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        revision = migrate.current(ctx.engine)
        ops = Operations(ctx.engine, clock=ctx.clock, settings=ctx.settings.ops)
        workers = worker_status(ops, ctx.settings.ops.worker_stale_after_s)
        thread = getattr(app.state, "worker_thread", None)
        in_process = None if thread is None else thread.is_alive()
        degraded = in_process is False or (thread is not None and not any(w["alive"] for w in workers))
        return {
            "status": "degraded" if degraded else "ok",
            "version": __version__,
            "database": ctx.engine.dialect.name,
            "schema_revision": revision,
            "schema_current": revision == migrate.head(),
            "worker": {"in_process": in_process, "workers": workers},
            "operations": ops.counts(),
        }

    return app
