"""USDC on a network: the local stand-in where andchain runs the node, the real contract elsewhere.

Real USDC is Circle's, at a known address on each public network; andchain never deploys it
there. On the local development networks a stand-in with the same interface and 6 decimals
(`UsdcStandIn.vy`) plays its part, so that a client's USDC deposit, a custodian holding USDC
and a conversion to USD deposits all run for real on a node. The stand-in's issuer key (Circle's
part) lives in the local key store under `usdc:issuer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from andchain.chains.client import Call, ChainClient
from andchain.chains.contracts import ContractAbi, artifact

if TYPE_CHECKING:
    from andchain.context import Context

USDC = "usdc"  # the deployment's name on each network
ISSUER_LABEL = "usdc:issuer"
USDC_DECIMALS = 6
MINTER_ALLOWANCE = 10**18  # a trillion dollars of stand-in USDC per minter: never the limit in development


def usdc_abi() -> ContractAbi:
    return artifact("UsdcStandIn").abi


def deploy_stand_in(chain: ChainClient, issuer: str, minters: list[str] | None = None) -> str:
    """Deploy (or adopt) the stand-in on a local network and let `minters` mint it."""
    if not chain.network.local:
        raise ValueError(f"network {chain.name} is not local: its USDC is Circle's, never a stand-in")
    abi = usdc_abi()
    address = chain.deploy(USDC, "UsdcStandIn", [issuer], issuer)
    calls = [
        Call(address, abi.encode_call("configureMinter", minter, MINTER_ALLOWANCE))
        for minter in minters or []
        if chain.read(address, abi, "minterAllowance", minter) < MINTER_ALLOWANCE // 2
    ]
    chain.transact_many(issuer, calls)
    return address


MINTER_LABEL = "usdc:minter"


def setup_local(ctx: Context, network: str) -> str:
    """Development: the stand-in on a local network, its issuer and minter keys in the local key store."""
    chain = ctx.chain(network)
    if not chain.network.local:
        raise ValueError(f"network {network} is not local: its USDC is Circle's, never a stand-in")
    issuer = ctx.keys.create(ISSUER_LABEL)  # an existing label keeps its key
    minter = ctx.keys.create(MINTER_LABEL)
    ctx.fund_gas(network, [issuer, minter])
    return deploy_stand_in(chain, issuer, [minter])


def faucet(ctx: Context, network: str, to: str, amount_minor: int) -> str:
    """Development: mint stand-in USDC to `to` (Circle's part, played on a local node); the hash."""
    address = setup_local(ctx, network)
    chain = ctx.chain(network)
    minter = ctx.keys.create(MINTER_LABEL)
    return chain.transact(minter, Call(address, usdc_abi().encode_call("mint", to, amount_minor))).tx_hash
