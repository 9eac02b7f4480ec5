"""USDC on a network: the local stand-in where andchain runs the node, the real contract elsewhere.

Real USDC is Circle's, at a known address on each public network; andchain never deploys it
there. On the local development networks a stand-in with the same interface and 6 decimals
(`UsdcStandIn.vy`) plays its part, so that a client's USDC deposit, a custodian holding USDC
and a conversion to USD deposits all run for real on a node. The stand-in's issuer key (Circle's
part) lives in the local key store under `usdc:issuer`.
"""

from __future__ import annotations

from andchain.chains.client import Call, ChainClient
from andchain.chains.contracts import ContractAbi, artifact

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
