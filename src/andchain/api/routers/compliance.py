"""/v1/compliance: KYC, the sanctions list, alerts and their cases, lawful orders (freeze, unfreeze,
seize), ISO 20022 credit notices and payouts, travel-rule records, the audit log (docs/compliance.md).

Who may call: the compliance role and admin act; the bank's readers (operator, compliance, auditor,
admin) read. An operator also sends credit notices and payouts (the payments desk). Clients see none
of it. Every action is in the audit log.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from andchain.api.auth import READERS, Principal, Role, allow
from andchain.api.body import StrictJSONRoute
from andchain.api.deps import app_service, idempotency, token_service
from andchain.api.idempotency import IdempotencyStore, idempotency_key
from andchain.api.problems import responses
from andchain.api.routers.common import CLIENT_REF_LENGTH_MAX, iso
from andchain.api.routers.ledger import idempotent, scoped
from andchain.compliance import audit
from andchain.compliance.enforcement import Enforcement, Order
from andchain.compliance.payments import Payments
from andchain.compliance.service import Alert, Compliance, Party
from andchain.tokens.service import TokenService

router = APIRouter(prefix="/v1/compliance", route_class=StrictJSONRoute, tags=["compliance"])

OFFICERS = frozenset({Role.COMPLIANCE, Role.ADMIN})
PAYMENTS = frozenset({Role.COMPLIANCE, Role.OPERATOR, Role.ADMIN})
DOCUMENT_CHARS_MAX = 5 * 1024 * 1024


class PartyOut(BaseModel):
    client: str
    kyc_status: str
    tier: str
    country: str | None
    frozen: bool
    frozen_order: str | None
    updated_at: str | None


class AlertOut(BaseModel):
    id: str
    rule: str
    client: str | None
    subject: str
    details: dict[str, Any]
    status: str
    assignee: str | None
    reason: str | None
    resolution: str | None
    opened_at: str | None
    updated_at: str | None
    history: list[dict[str, Any]]


class OrderOut(BaseModel):
    id: str
    kind: str
    client: str
    reference: str
    authority: str
    operation: str | None = Field(description="the operation carrying it out on chain (GET /v1/operations/{id})")
    details: dict[str, Any]
    by: str
    created_at: str | None


class ListLoadOut(BaseModel):
    version: int
    source_format: str
    digest: str
    entries: int
    added: int
    removed: int
    changed: int
    unchanged: bool
    rescreen_hits: int | None = None


class CreditOut(BaseModel):
    ref: str
    status: str = Field(description="booked, suspense, not_booked, ignored or refused")
    client: str | None
    amount_minor: int
    currency: str
    end_to_end_id: str | None
    uetr: str | None
    reason: str | None


class NoticeOut(BaseModel):
    message_id: str
    replayed: bool
    credits: list[CreditOut]


class PayoutOut(BaseModel):
    ref: str
    client: str | None
    amount_minor: int
    end_to_end_id: str | None
    uetr: str | None
    tx_hash: str | None
    message_id: str
    pain001: str | None
    pacs008: str | None


class ListsOut(BaseModel):
    lists: list[dict[str, Any]]


class AlertsOut(BaseModel):
    alerts: list[AlertOut]
    next: str | None = Field(description="the `after` of the next page, if there may be one")


class OrdersOut(BaseModel):
    orders: list[OrderOut]


class PaymentsOut(BaseModel):
    payments: list[dict[str, Any]]


class TravelRuleOut(BaseModel):
    ref: str
    flow: str
    payload: dict[str, Any] = Field(description="the IVMS101 payload, as carried")
    sha256: str


class AuditEntryOut(BaseModel):
    seq: int
    at: str | None
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    hash: str


class AuditOut(BaseModel):
    entries: list[AuditEntryOut]
    next: int | None


class AuditHead(BaseModel):
    seq: int
    hash: str


class AuditReportOut(BaseModel):
    ok: bool
    entries: int
    head: AuditHead
    problems: list[str]


def _compliance(service: TokenService = Depends(token_service)) -> Compliance:
    return service.clients.compliance


def _enforcement(request: Request, service: TokenService = Depends(token_service)) -> Enforcement:
    return app_service(request, "enforcement", lambda: Enforcement(service))


def _payments(request: Request, service: TokenService = Depends(token_service)) -> Payments:
    return app_service(request, "payments", lambda: Payments(service))


def _by(principal: Principal) -> str:
    return f"api:{principal.key_id}"


def party_view(p: Party) -> dict[str, Any]:
    return {
        "client": p.client_id,
        "kyc_status": p.kyc_status,
        "tier": p.tier,
        "country": p.country,
        "frozen": p.frozen,
        "frozen_order": p.frozen_order,
        "updated_at": iso(p.updated_at_us),
    }


def alert_view(a: Alert) -> dict[str, Any]:
    return {
        "id": a.id,
        "rule": a.rule,
        "client": a.client_id,
        "subject": a.subject,
        "details": a.details,
        "status": a.status,
        "assignee": a.assignee,
        "reason": a.reason,
        "resolution": a.resolution,
        "opened_at": iso(a.opened_at_us),
        "updated_at": iso(a.updated_at_us),
        "history": [{**h, "at": iso(h["at_us"])} for h in a.history],
    }


def order_view(o: Order) -> dict[str, Any]:
    return {
        "id": o.id,
        "kind": o.kind,
        "client": o.client_id,
        "reference": o.reference,
        "authority": o.authority,
        "operation": o.operation_id,
        "details": o.details,
        "by": o.by,
        "created_at": iso(o.created_at_us),
    }


# ------------------------------------------------------------------ parties


class KycIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    status: Literal["pending", "approved", "rejected", "suspended"] | None = None
    tier: str | None = Field(default=None, min_length=1, max_length=32, examples=["enhanced"])
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$", description="ISO 3166 alpha-2")
    reason: str = Field(default="", max_length=2000)


@router.get(
    "/parties/{client}",
    response_model=PartyOut,
    summary="A client's KYC status, tier, country and freeze",
    responses=responses({200: "the party"}, {404: "client_not_found"}),
)
def get_party(
    client: Annotated[str, PathParam(max_length=CLIENT_REF_LENGTH_MAX)],
    principal: Principal = allow(READERS),
    service: TokenService = Depends(token_service),
) -> dict[str, Any]:
    client_id = service.clients.client(client).id
    return party_view(service.clients.compliance.party(client_id))


@router.post(
    "/parties/{client}/kyc",
    response_model=PartyOut,
    summary="Record the bank's KYC decision: status, tier, country",
    openapi_extra=idempotent(),
    responses=responses(
        {200: "the party"}, {404: "client_not_found", 422: "invalid_kyc_status, unknown_tier"}, post=True
    ),
)
def set_kyc(
    body: KycIn,
    client: Annotated[str, PathParam(max_length=CLIENT_REF_LENGTH_MAX)],
    principal: Principal = allow(OFFICERS),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def handler() -> tuple[int, dict[str, Any]]:
        client_id = service.clients.client(client).id
        party = service.clients.compliance.set_kyc(
            client_id, status=body.status, tier=body.tier, country=body.country, reason=body.reason, by=_by(principal)
        )
        return 200, party_view(party)

    payload = {"client": client, **body.model_dump(mode="json")}
    return store.run(scoped(principal, "POST /v1/compliance/parties/{client}/kyc"), key, payload, handler)


# ------------------------------------------------------------- sanctions


class ListIn(BaseModel):
    """Nothing to give: the list is read from `compliance.sanctions_list_path` on the server (never from a
    path a caller names), where the bank's list updates are placed."""

    model_config = ConfigDict(extra="forbid", strict=True)


@router.post(
    "/sanctions/lists",
    response_model=ListLoadOut,
    summary="Load the configured OFAC SDN list (diffed by content; every party and address screened again)",
    openapi_extra=idempotent(),
    responses=responses({200: "what changed"}, {422: "sanctions_list_missing, invalid_sanctions_list"}, post=True),
)
def load_list(
    body: ListIn,
    principal: Principal = allow(OFFICERS),
    key: str = Depends(idempotency_key),
    compliance: Compliance = Depends(_compliance),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def handler() -> tuple[int, dict[str, Any]]:
        return 200, compliance.load_list(None, by=_by(principal))

    return store.run(scoped(principal, "POST /v1/compliance/sanctions/lists"), key, body.model_dump(), handler)


@router.get(
    "/sanctions/lists",
    response_model=ListsOut,
    summary="The loaded versions of the sanctions list",
    responses=responses({200: "newest first"}),
)
def lists(principal: Principal = allow(READERS), compliance: Compliance = Depends(_compliance)) -> dict[str, Any]:
    return {"lists": compliance.lists()}


# ------------------------------------------------------------------ alerts


@router.get(
    "/alerts",
    response_model=AlertsOut,
    summary="The case queue: alerts, by status, rule or client",
    responses=responses({200: "a page"}),
)
def list_alerts(
    principal: Principal = allow(READERS),
    compliance: Compliance = Depends(_compliance),
    status: Literal["open", "assigned", "closed"] | None = None,
    rule: Annotated[str | None, Query(max_length=40)] = None,
    client: Annotated[str | None, Query(max_length=CLIENT_REF_LENGTH_MAX)] = None,
    after: Annotated[str | None, Query(max_length=40, description="the last id of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    found = compliance.alerts(status=status, rule=rule, client_id=client, after=after, limit=limit)
    return {"alerts": [alert_view(a) for a in found], "next": found[-1].id if len(found) == limit else None}


@router.get(
    "/alerts/{alert_id}",
    response_model=AlertOut,
    summary="One alert with its full history",
    responses=responses({200: "the alert"}, {404: "alert_not_found"}),
)
def get_alert(
    alert_id: Annotated[str, PathParam(max_length=40)],
    principal: Principal = allow(READERS),
    compliance: Compliance = Depends(_compliance),
) -> dict[str, Any]:
    return alert_view(compliance.alert(alert_id))


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    assignee: str = Field(min_length=1, max_length=120)


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str = Field(min_length=1, max_length=2000)
    resolution: Literal["false_positive", "reported", "no_action", "escalated"]


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    note: str = Field(min_length=1, max_length=2000)


_ALERT_REFUSED = {404: "alert_not_found", 409: "alert_closed, alert_changed"}


def _alert_change(
    store: IdempotencyStore, principal: Principal, key: str, action: str, alert_id: str, body: BaseModel, act: Any
) -> Any:
    """One step of an alert's case (assign, note, close), once per Idempotency-Key."""

    def handler() -> tuple[int, dict[str, Any]]:
        return 200, alert_view(act())

    payload = {"alert": alert_id, **body.model_dump()}
    return store.run(scoped(principal, f"POST /v1/compliance/alerts/{{id}}/{action}"), key, payload, handler)


@router.post(
    "/alerts/{alert_id}/assign",
    response_model=AlertOut,
    summary="Assign an alert to an investigator",
    openapi_extra=idempotent(),
    responses=responses({200: "the alert"}, _ALERT_REFUSED, post=True),
)
def assign_alert(
    body: AssignIn,
    alert_id: Annotated[str, PathParam(max_length=40)],
    principal: Principal = allow(OFFICERS),
    key: str = Depends(idempotency_key),
    compliance: Compliance = Depends(_compliance),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    return _alert_change(
        store,
        principal,
        key,
        "assign",
        alert_id,
        body,
        lambda: compliance.assign(alert_id, body.assignee, by=_by(principal)),
    )


@router.post(
    "/alerts/{alert_id}/close",
    response_model=AlertOut,
    summary="Close an alert with its reason and resolution (a false positive clears that hit)",
    openapi_extra=idempotent(),
    responses=responses({200: "the alert"}, {**_ALERT_REFUSED, 422: "reason_required"}, post=True),
)
def close_alert(
    body: CloseIn,
    alert_id: Annotated[str, PathParam(max_length=40)],
    principal: Principal = allow(OFFICERS),
    key: str = Depends(idempotency_key),
    compliance: Compliance = Depends(_compliance),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    return _alert_change(
        store,
        principal,
        key,
        "close",
        alert_id,
        body,
        lambda: compliance.close(alert_id, body.reason, body.resolution, by=_by(principal)),
    )


@router.post(
    "/alerts/{alert_id}/notes",
    response_model=AlertOut,
    summary="Add a note to an alert's history",
    openapi_extra=idempotent(),
    responses=responses({200: "the alert"}, _ALERT_REFUSED, post=True),
)
def note_alert(
    body: NoteIn,
    alert_id: Annotated[str, PathParam(max_length=40)],
    principal: Principal = allow(OFFICERS),
    key: str = Depends(idempotency_key),
    compliance: Compliance = Depends(_compliance),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    return _alert_change(
        store, principal, key, "notes", alert_id, body, lambda: compliance.note(alert_id, body.note, by=_by(principal))
    )


# ------------------------------------------------------------------ orders


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    kind: Literal["freeze", "unfreeze", "seize"]
    client: str = Field(min_length=1, max_length=CLIENT_REF_LENGTH_MAX)
    reference: str = Field(min_length=1, max_length=120, description="the lawful order's reference")
    authority: str = Field(min_length=1, max_length=200, description="who issued it (a court, an agency)")


@router.post(
    "/orders",
    status_code=201,
    response_model=OrderOut,
    summary="Carry out a lawful order: freeze, unfreeze or seize a client (ledger now, every network by its operation)",
    openapi_extra=idempotent(),
    responses=responses(
        {201: "the order, with the operation that carries it out on chain (GET /v1/operations/{id})"},
        {404: "client_not_found", 409: "already_frozen, not_frozen"},
        post=True,
    ),
)
def create_order(
    body: OrderIn,
    principal: Principal = allow(OFFICERS),
    key: str = Depends(idempotency_key),
    enforcement: Enforcement = Depends(_enforcement),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def handler() -> tuple[int, dict[str, Any]]:
        order = enforcement.carry_out(
            body.kind, body.client, reference=body.reference, authority=body.authority, by=_by(principal)
        )
        return 201, order_view(order)

    return store.run(scoped(principal, "POST /v1/compliance/orders"), key, body.model_dump(), handler)


@router.get(
    "/orders",
    response_model=OrdersOut,
    summary="Lawful orders, newest first",
    responses=responses({200: "the orders"}, {404: "client_not_found"}),
)
def list_orders(
    principal: Principal = allow(READERS),
    enforcement: Enforcement = Depends(_enforcement),
    client: Annotated[str | None, Query(max_length=CLIENT_REF_LENGTH_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    client_id = enforcement.clients.client(client).id if client else None
    return {"orders": [order_view(o) for o in enforcement.orders(client_id, limit)]}


@router.get(
    "/orders/{order_id}",
    response_model=OrderOut,
    summary="One lawful order",
    responses=responses({200: "the order"}, {404: "order_not_found"}),
)
def get_order(
    order_id: Annotated[str, PathParam(max_length=40)],
    principal: Principal = allow(READERS),
    enforcement: Enforcement = Depends(_enforcement),
) -> dict[str, Any]:
    return order_view(enforcement.order(order_id))


# ------------------------------------------------------------- ISO 20022


class NoticeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    camt054: str = Field(min_length=1, max_length=DOCUMENT_CHARS_MAX, description="the camt.054.001.08 document (XML)")


@router.post(
    "/credit-notices",
    response_model=NoticeOut,
    summary="Book a camt.054 credit notice: each booked USD credit funds its client's deposit account",
    openapi_extra=idempotent(),
    responses=responses(
        {200: "each credit and what became of it"}, {409: "message_id_reused", 422: "invalid_message"}, post=True
    ),
)
def credit_notice(
    body: NoticeIn,
    principal: Principal = allow(PAYMENTS),
    key: str = Depends(idempotency_key),
    payments: Payments = Depends(_payments),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def handler() -> tuple[int, dict[str, Any]]:
        return 200, payments.credit_notice(body.camt054.encode(), by=_by(principal))

    return store.run(scoped(principal, "POST /v1/compliance/credit-notices"), key, body.model_dump(), handler)


class PayoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    redemption: str = Field(min_length=1, max_length=40, description="the redemption operation's id")
    creditor_name: str = Field(min_length=1, max_length=140)
    creditor_account: str = Field(min_length=1, max_length=34, description="an IBAN or the account number")
    creditor_agent_bic: str = Field(pattern=r"^[A-Z0-9]{8}([A-Z0-9]{3})?$")


@router.post(
    "/payouts",
    status_code=201,
    response_model=PayoutOut,
    summary="Pay a completed redemption out to the client's bank account (pain.001 and pacs.008)",
    openapi_extra=idempotent(),
    responses=responses(
        {201: "the payout with its EndToEndId, UETR, burn transaction and both messages"},
        {404: "redemption_not_found", 422: "redemption_not_done, sanctions_hit, insufficient_funds"},
        post=True,
    ),
)
def payout(
    body: PayoutIn,
    principal: Principal = allow(PAYMENTS),
    key: str = Depends(idempotency_key),
    payments: Payments = Depends(_payments),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def handler() -> tuple[int, dict[str, Any]]:
        done = payments.payout(
            body.redemption,
            creditor_name=body.creditor_name,
            creditor_account=body.creditor_account,
            creditor_agent_bic=body.creditor_agent_bic,
            by=_by(principal),
        )
        return 201, done

    return store.run(scoped(principal, "POST /v1/compliance/payouts"), key, body.model_dump(), handler)


@router.get(
    "/payments",
    response_model=PaymentsOut,
    summary="Find ISO 20022 payments by EndToEndId, UETR or chain transaction hash",
    responses=responses({200: "the payments"}, {422: "invalid_request"}),
)
def find_payments(
    principal: Principal = allow(READERS),
    payments: Payments = Depends(_payments),
    end_to_end_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    uetr: Annotated[str | None, Query(min_length=1, max_length=36)] = None,
    tx_hash: Annotated[str | None, Query(pattern=r"^0x[0-9a-fA-F]{64}$")] = None,
) -> dict[str, Any]:
    return {"payments": payments.lookup(end_to_end_id=end_to_end_id, uetr=uetr, tx_hash=tx_hash)}


@router.get(
    "/travel-rule/{ref}",
    response_model=TravelRuleOut,
    summary="The IVMS101 data a movement carried",
    responses=responses({200: "the record"}, {404: "travel_rule_not_found"}),
)
def travel_rule(
    ref: Annotated[str, PathParam(max_length=200)],
    principal: Principal = allow(READERS),
    compliance: Compliance = Depends(_compliance),
) -> dict[str, Any]:
    from andchain.errors import NotFound

    found = compliance.travel_rule_of(ref)
    if found is None:
        raise NotFound(f"no travel-rule record {ref!r}", code="travel_rule_not_found")
    return found


# ------------------------------------------------------------------- audit


@router.get("/audit", response_model=AuditOut, summary="The audit log, in order", responses=responses({200: "a page"}))
def audit_log(
    request: Request,
    principal: Principal = allow(READERS),
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    engine = request.app.state.context.engine
    found = audit.entries(engine, after=after, limit=limit)
    return {
        "entries": [
            {
                "seq": e.seq,
                "at": iso(e.at_us),
                "actor": e.actor,
                "action": e.action,
                "subject": e.subject,
                "details": e.details,
                "hash": e.hash,
            }
            for e in found
        ],
        "next": found[-1].seq if len(found) == limit else None,
    }


@router.get(
    "/audit/verify",
    response_model=AuditReportOut,
    summary="Verify the audit log's hash chain end to end",
    responses=responses({200: "the report"}),
)
def audit_verify(request: Request, principal: Principal = allow(READERS)) -> dict[str, Any]:
    report = audit.verify(request.app.state.context.engine)
    return {
        "ok": report.ok,
        "entries": report.entries,
        "head": {"seq": report.head_seq, "hash": report.head_hash},
        "problems": list(report.problems),
    }
