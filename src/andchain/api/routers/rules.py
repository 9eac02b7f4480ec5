"""/v1/rules: programmable payments (scheduled payments and sweeps) that the worker runs.

Who may call: a client for its own rules (its id implied), operator and admin for any
client; the bank's readers see every rule, a client only its own (another's is 404).
Each run of a rule is an ordinary operation (see /v1/operations).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from andchain.api.auth import BANK_WRITERS, READERS, Principal, Role, allow
from andchain.api.body import StrictJSONRoute
from andchain.api.deps import decode_id_cursor, encode_id_cursor, idempotency, token_service
from andchain.api.idempotency import IdempotencyStore, idempotency_key
from andchain.api.problems import responses
from andchain.api.routers.common import (
    CLIENT_DESCRIPTION,
    CLIENT_REF_LENGTH_MAX,
    NETWORK_LENGTH_MAX,
    acting_client,
    hidden_payee,
    iso,
    own_client,
    visible_client,
)
from andchain.api.routers.ledger import AMOUNT_DESCRIPTION, AMOUNT_PATTERN, idempotent, scoped
from andchain.errors import NotFound
from andchain.money import format_minor, parse_minor
from andchain.tokens.model import DEPOSIT_TOKEN, TOKENS
from andchain.tokens.rules import EVERY_MIN_S, Rule, Rules
from andchain.tokens.service import TokenService

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute)

USD = TOKENS[DEPOSIT_TOKEN].decimals
START_IN_MAX_S = 10 * 365 * 86_400
_NO_RULE = {404: "rule_not_found: no such rule (another client's, for a client key)"}
_CREATE_REFUSED = {
    404: "client_not_found (also another client's, for a client key), unknown_network",
    422: (
        "invalid_rule (the same payee, a repeat under 60 s, a memo over 32 bytes...), excess_precision, "
        "client_not_active, payee_not_payable (a client key: the payee is no active client)"
    ),
}


class ScheduleIn(BaseModel):
    """A scheduled payment: `amount` to `payee`, once, or every `every_s` seconds."""

    model_config = ConfigDict(extra="forbid", strict=True)

    kind: Literal["scheduled"]
    client: str | None = Field(
        default=None, min_length=1, max_length=CLIENT_REF_LENGTH_MAX, description="the payer: " + CLIENT_DESCRIPTION
    )
    payee: str = Field(min_length=1, max_length=CLIENT_REF_LENGTH_MAX, description="the other client's id (or name)")
    network: str = Field(default="internal", min_length=1, max_length=NETWORK_LENGTH_MAX)
    amount: str = Field(pattern=AMOUNT_PATTERN, description="deposit tokens (USD): " + AMOUNT_DESCRIPTION)
    memo: str = Field(default="", max_length=256, description="the payment reference (at most 32 bytes)")
    in_s: int = Field(default=0, ge=0, le=START_IN_MAX_S, description="the first run, this many seconds from now")
    every_s: int | None = Field(
        default=None, ge=1, le=START_IN_MAX_S, description=f"repeat every this many seconds (at least {EVERY_MIN_S})"
    )


class SweepIn(BaseModel):
    """A sweep: keep at most `max` in tokens on a network; the worker redeems the excess."""

    model_config = ConfigDict(extra="forbid", strict=True)

    kind: Literal["sweep"]
    client: str | None = Field(
        default=None, min_length=1, max_length=CLIENT_REF_LENGTH_MAX, description=CLIENT_DESCRIPTION
    )
    network: str = Field(default="internal", min_length=1, max_length=NETWORK_LENGTH_MAX)
    max: str = Field(
        pattern=AMOUNT_PATTERN,
        description="keep at most this in tokens on the network; the excess is redeemed to the deposit account: "
        + AMOUNT_DESCRIPTION,
    )


class RuleOut(BaseModel):
    id: str
    client: str
    kind: Literal["scheduled", "sweep"]
    network: str
    status: str = Field(description="active, cancelled, completed (a one-off that ran), failed (a one-off refused)")
    next_run_at: str | None = Field(description="when a scheduled payment runs next")
    runs: int
    payee: str | None = Field(default=None, description="scheduled: who is paid")
    amount: str | None = Field(default=None, description="scheduled: USD per run")
    memo: str | None = None
    every_s: int | None = None
    max: str | None = Field(default=None, description="sweep: the most kept in tokens (USD)")


class RulePage(BaseModel):
    data: list[RuleOut]
    next_cursor: str | None


def rule_view(rule: Rule) -> dict[str, Any]:
    p = rule.params
    view: dict[str, Any] = {
        "id": rule.id,
        "client": rule.client_id,
        "kind": rule.kind,
        "network": rule.network,
        "status": rule.status,
        "next_run_at": iso(rule.next_run_at_us) if rule.kind == "scheduled" else None,
        "runs": rule.runs,
        # Every field, as the GET routes' model gives them: a POST's answer is not passed through it.
        **dict.fromkeys(("payee", "amount", "memo", "every_s", "max")),
    }
    if rule.kind == "scheduled":
        view |= {
            "payee": p["to"],
            "amount": format_minor(p["amount"], USD),
            "memo": p["memo"],
            "every_s": p.get("every_s"),
        }
    else:
        view["max"] = format_minor(p["max"], USD)
    return view


def _visible_rule(principal: Principal, rules: Rules, rule_id: str) -> Rule:
    rule = rules.get(rule_id)
    own = own_client(principal)
    if own is not None and rule.client_id != own:
        raise NotFound(f"no rule {rule_id!r}", code="rule_not_found")
    return rule


RuleIn = Annotated[ScheduleIn | SweepIn, Body(discriminator="kind")]


@router.post(
    "/rules",
    status_code=201,
    response_model=RuleOut,
    tags=["rules"],
    summary="Make a rule: a scheduled payment (kind scheduled) or a sweep (kind sweep)",
    openapi_extra=idempotent(),
    responses=responses({201: "the rule"}, _CREATE_REFUSED, post=True),
)
def create_rule(
    body: RuleIn,
    principal: Principal = allow(BANK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    # The rule and the stored answer commit together: a retry finds the answer, never makes a second rule.
    def handler(conn: Connection) -> tuple[int, dict[str, Any]]:
        rules = Rules(service)
        client = acting_client(principal, service, body.client)
        if isinstance(body, SweepIn):
            return 201, rule_view(rules.sweep(client, body.network, parse_minor(body.max, USD), conn=conn))
        rule = hidden_payee(
            principal,
            lambda: rules.schedule(
                client,
                body.payee,
                body.network,
                parse_minor(body.amount, USD),
                body.memo,
                at_us=rules.clock() + body.in_s * 1_000_000,
                every_s=body.every_s,
                conn=conn,
            ),
        )
        return 201, rule_view(rule)

    return store.run_atomic(scoped(principal, "POST /v1/rules"), key, body.model_dump(mode="json"), handler)


@router.get(
    "/rules",
    response_model=RulePage,
    tags=["rules"],
    summary="List rules, oldest first",
    responses=responses(
        {200: "a page of rules (a client key: its own)"},
        {
            400: "invalid_cursor: the cursor is not one this API returned",
            404: "client_not_found: the client filter names no client (another client, for a client key)",
            422: "invalid_request: a query parameter is out of range (limit is 1 to 1000)",
        },
    ),
)
def list_rules(
    principal: Principal = allow(READERS, Role.CLIENT),
    service: TokenService = Depends(token_service),
    client: Annotated[str | None, Query(max_length=CLIENT_REF_LENGTH_MAX, description="only this client's")] = None,
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    after = decode_id_cursor(cursor)
    own = own_client(principal)
    client_id = None if client is None else visible_client(principal, service, client).id
    rows = Rules(service).list(client_id or own, after_id=after, limit=limit)
    return {
        "data": [rule_view(r) for r in rows],
        "next_cursor": encode_id_cursor(rows[-1].id) if len(rows) == limit else None,
    }


@router.get(
    "/rules/{rule_id}",
    response_model=RuleOut,
    tags=["rules"],
    summary="A rule",
    responses=responses({200: "the rule"}, _NO_RULE),
)
def get_rule(
    rule_id: Annotated[str, PathParam(description="the rule's id")],
    principal: Principal = allow(READERS, Role.CLIENT),
    service: TokenService = Depends(token_service),
) -> dict[str, Any]:
    return rule_view(_visible_rule(principal, Rules(service), rule_id))


@router.post(
    "/rules/{rule_id}/cancel",
    response_model=RuleOut,
    tags=["rules"],
    summary="Cancel a rule; a run already started finishes",
    openapi_extra=idempotent(),
    responses=responses(
        {200: "the cancelled rule"}, {**_NO_RULE, 422: "rule_not_active: it is already finished"}, post=True
    ),
)
def cancel_rule(
    rule_id: Annotated[str, PathParam(description="the rule's id")],
    principal: Principal = allow(BANK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def handler() -> tuple[int, dict[str, Any]]:
        rules = Rules(service)
        rule = _visible_rule(principal, rules, rule_id)
        return 200, rule_view(rules.cancel(rule.id))

    return store.run(scoped(principal, "POST /v1/rules/{rule_id}/cancel"), key, {"rule": rule_id}, handler)
