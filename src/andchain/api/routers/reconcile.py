"""/v1/reconcile: prove that the ledger and every chain agree; the last result, without running it again.

Who may call: the bank's readers (operator, compliance, auditor, admin), both to run it and
to read the last result. Reconcile only reads the ledger and the chains; running it records
its report, nothing else.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from andchain import reconcile_store
from andchain.api.auth import READERS, Principal, allow
from andchain.api.body import StrictJSONRoute
from andchain.api.deps import context, idempotency
from andchain.api.idempotency import IdempotencyStore, idempotency_key
from andchain.api.problems import responses
from andchain.api.routers.common import INTEGERS_NOTE, iso, plain
from andchain.api.routers.ledger import idempotent, scoped
from andchain.context import Context
from andchain.errors import NotFound
from andchain.reconcile import reconcile

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute)


class CheckOut(BaseModel):
    check: str = Field(examples=["supply"], description="ledger, chain, supply, holder, total, operation")
    subject: str
    expected: str
    found: str
    ok: bool


class ReconcileRunOut(BaseModel):
    id: str
    ok: bool = Field(description="no break")
    started_at: str
    finished_at: str
    requested_by: str = Field(description="the id of the API key that ran it")
    breaks: list[CheckOut]
    checks: list[CheckOut]
    in_flight: list[dict[str, Any]] = Field(
        description="what operations did on chain that the ledger does not hold yet (not breaks); " + INTEGERS_NOTE
    )
    alerts: list[str] = Field(description="worth a look, not breaks")


def run_view(run: reconcile_store.Run) -> dict[str, Any]:
    report = run.report
    return {
        "id": run.id,
        "ok": run.ok,
        "started_at": iso(run.started_at_us),
        "finished_at": iso(run.finished_at_us),
        "requested_by": run.requested_by,
        "breaks": report["breaks"],
        "checks": report["checks"],
        "in_flight": plain(report["in_flight"]),
        "alerts": report["alerts"],
    }


@router.post(
    "/reconcile",
    status_code=201,
    response_model=ReconcileRunOut,
    tags=["reconcile"],
    summary="Run the reconciliation of the ledger with every chain, and record its result",
    openapi_extra=idempotent(),
    responses=responses({201: "the run, recorded (ok is false when anything breaks)"}, post=True),
)
def run(
    principal: Principal = allow(READERS),
    key: str = Depends(idempotency_key),
    ctx: Context = Depends(context),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    """A node that does not answer is a break naming it, not an error of the request."""

    def handler() -> tuple[int, dict[str, Any]]:
        started = ctx.clock()
        report = reconcile(ctx)
        recorded = reconcile_store.record(
            ctx.engine,
            report.as_dict(),
            started_at_us=started,
            finished_at_us=max(started, ctx.clock()),
            requested_by=principal.key_id,
            ids=ctx.ledger.ids,
        )
        return 201, run_view(recorded)

    return store.run(scoped(principal, "POST /v1/reconcile"), key, {}, handler)


@router.get(
    "/reconcile/last",
    response_model=ReconcileRunOut,
    tags=["reconcile"],
    summary="The last recorded reconciliation",
    responses=responses({200: "the last run"}, {404: "reconcile_not_run: no run was recorded yet"}),
)
def last(
    principal: Principal = allow(READERS),
    ctx: Context = Depends(context),
) -> dict[str, Any]:
    found = reconcile_store.last_result(ctx.engine)
    if found is None:
        raise NotFound("no reconciliation was recorded yet: POST /v1/reconcile runs one", code="reconcile_not_run")
    return run_view(found)
