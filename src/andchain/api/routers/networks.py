"""/v1/networks: each configured network, its node's health, and the switches for moves.

Who may call: the bank's readers see the networks and their controls; pausing and
resuming moves is the admin's.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from andchain.api.auth import READERS, Principal, Role, allow
from andchain.api.body import StrictJSONRoute
from andchain.api.deps import context, idempotency, token_service
from andchain.api.idempotency import IdempotencyStore, idempotency_key
from andchain.api.problems import responses
from andchain.api.routers.ledger import idempotent, scoped
from andchain.context import Context
from andchain.money import format_minor
from andchain.tokens.controls import Controls
from andchain.tokens.model import DEPOSIT_TOKEN, TOKENS
from andchain.tokens.service import TokenService

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute)

USD = TOKENS[DEPOSIT_TOKEN].decimals
NETWORK_PATH = "the network's name, e.g. internal"
_NO_NETWORK = {404: "unknown_network: no network by that name is configured"}


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str = Field(min_length=1, max_length=500, description="why; shown to whoever is refused")


class ControlsOut(BaseModel):
    network: str
    paused: bool = Field(description="moves into or out of the network are refused (network_paused)")
    reason: str | None
    outbound_available: str = Field(description="USD that may leave the network now (rate limit)")
    inbound_available: str = Field(description="USD that may arrive on the network now (rate limit)")


class HealthOut(BaseModel):
    healthy: bool = Field(description="the node answers with the configured chain id")
    block: int | None = Field(description="the node's latest block number")
    node_chain_id: int | None = Field(description="the chain id the node answered")
    detail: str = Field(description="ok, or the node's error")


class NetworkOut(BaseModel):
    name: str
    display_name: str
    kind: Literal["permissioned", "public"]
    chain_id: int
    enabled: bool
    local: bool = Field(description="a development node andchain starts itself")
    confirmations: int
    health: HealthOut
    controls: ControlsOut


class NetworkList(BaseModel):
    data: list[NetworkOut]


def controls_view(controls: Controls) -> dict[str, Any]:
    return {
        "network": controls.network,
        "paused": controls.paused,
        "reason": controls.reason,
        "outbound_available": format_minor(controls.outbound_available, USD),
        "inbound_available": format_minor(controls.inbound_available, USD),
    }


@router.get(
    "/networks",
    response_model=NetworkList,
    tags=["networks"],
    summary="Every configured network: its chain id, its node's health and its controls",
    responses=responses({200: "every network; a node that does not answer is reported in its health"}),
)
def list_networks(
    principal: Principal = allow(READERS),
    ctx: Context = Depends(context),
    service: TokenService = Depends(token_service),
) -> dict[str, Any]:
    """Each node is asked once for its chain id and latest block, with a short timeout and no retry (the
    probe of `andchain networks status`), so that one node that is down does not hold the answer."""
    data = []
    for name, network in ctx.settings.networks.items():
        status = ctx.node(name).status()
        data.append(
            {
                "name": name,
                "display_name": network.display_name,
                "kind": network.kind,
                "chain_id": network.chain_id,
                "enabled": network.enabled,
                "local": network.local,
                "confirmations": network.confirmations,
                "health": {
                    "healthy": status.healthy,
                    "block": status.block,
                    "node_chain_id": status.chain_id,
                    "detail": status.detail,
                },
                "controls": controls_view(service.controls.controls(name)),
            }
        )
    return {"data": data}


@router.get(
    "/networks/{name}/controls",
    response_model=ControlsOut,
    tags=["networks"],
    summary="A network's pause switch and the headroom of its move rate limits",
    responses=responses({200: "the network's controls"}, _NO_NETWORK),
)
def get_controls(
    name: Annotated[str, PathParam(description=NETWORK_PATH)],
    principal: Principal = allow(READERS),
    ctx: Context = Depends(context),
    service: TokenService = Depends(token_service),
) -> dict[str, Any]:
    ctx.settings.network(name)
    return controls_view(service.controls.controls(name))


@router.post(
    "/networks/{name}/pause",
    response_model=ControlsOut,
    tags=["networks"],
    summary="Refuse every move into or out of a network until it is resumed",
    openapi_extra=idempotent(),
    responses=responses({200: "the network's controls, paused"}, _NO_NETWORK, post=True),
)
def pause(
    name: Annotated[str, PathParam(description=NETWORK_PATH)],
    body: PauseIn,
    principal: Principal = allow(Role.ADMIN),
    key: str = Depends(idempotency_key),
    ctx: Context = Depends(context),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def handler() -> tuple[int, dict[str, Any]]:
        ctx.settings.network(name)
        return 200, controls_view(service.controls.pause(name, body.reason))

    payload = {"network": name, **body.model_dump(mode="json")}
    return store.run(scoped(principal, "POST /v1/networks/{name}/pause"), key, payload, handler)


@router.post(
    "/networks/{name}/resume",
    response_model=ControlsOut,
    tags=["networks"],
    summary="Accept moves again on a paused network",
    openapi_extra=idempotent(),
    responses=responses({200: "the network's controls, not paused"}, _NO_NETWORK, post=True),
)
def resume(
    name: Annotated[str, PathParam(description=NETWORK_PATH)],
    principal: Principal = allow(Role.ADMIN),
    key: str = Depends(idempotency_key),
    ctx: Context = Depends(context),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def handler() -> tuple[int, dict[str, Any]]:
        ctx.settings.network(name)
        return 200, controls_view(service.controls.resume(name))

    return store.run(scoped(principal, "POST /v1/networks/{name}/resume"), key, {"network": name}, handler)
