"""Setting a network up for the bank's tokens: deploy (or adopt) the contracts and give the roles."""

from __future__ import annotations

from collections.abc import Callable

from eth_utils import keccak

from andchain.chains.client import Call, ChainClient
from andchain.chains.keys import KeyStore
from andchain.errors import DomainError
from andchain.ledger import Ledger
from andchain.money import Asset
from andchain.tokens.booking import TOKEN_ABI
from andchain.tokens.clients import Clients
from andchain.tokens.model import BANK_ROLES, DEPOSIT_TOKEN, DVP, TOKENS

MINTER_ALLOWANCE = 10**30
SUPPLY_CAP = 10**32

# Gives the bank's signers gas on a network where that costs nothing real (a local
# development node); on a real network the bank funds its gas wallets itself, and
# reconcile alerts when one runs low.
GasFunder = Callable[[str, list[str]], None]


class TokenSetup:
    def __init__(
        self,
        ledger: Ledger,
        clients: Clients,
        keys: KeyStore,
        chains: Callable[[str], ChainClient],
        register_assets: Callable[[list[Asset]], None],
        fund_gas: GasFunder | None = None,
    ) -> None:
        self.register_assets = register_assets
        self.ledger = ledger
        self.clients = clients
        self.keys = keys
        self.chains = chains
        self.fund_gas = fund_gas

    def bank(self, role: str) -> str:
        if role not in BANK_ROLES:
            raise DomainError(f"unknown bank role {role!r}")
        return self.keys.create(f"bank:{role}")

    def token_address(self, network: str, deployment: str = DEPOSIT_TOKEN) -> str:
        address = self.chains(network).deployment(deployment, required=False)
        if address is None:
            raise DomainError(
                f"{deployment} is not deployed on {network}; run `andchain tokens setup --network {network}`",
                code="token_not_deployed",
            )
        return address

    def setup(self, network: str) -> dict[str, str]:
        """Deploy (or adopt) the deposit token, the fund share and DvP on `network`; set the bank's roles."""
        chain = self.chains(network)
        admin = self.bank("admin")
        self.register_assets([token.asset for token in TOKENS.values()])
        self.clients.bank_accounts()
        if self.fund_gas is not None:
            self.fund_gas(network, [self.bank(role) for role in BANK_ROLES])
        # The contracts not deployed yet go out in one batch, then the roles in two: one block each,
        # not one per transaction.
        deployments = [(DVP, "DvPSettlement", [admin])] + [
            (token.deployment, "PermissionedToken", [token.name, token.symbol, token.decimals, SUPPLY_CAP, admin])
            for token in TOKENS.values()
        ]
        addresses = chain.deploy_many(deployments, admin)
        tokens = [addresses[token.deployment] for token in TOKENS.values()]
        self._roles(chain, tokens, addresses[DVP])
        return {name: addresses[name] for name in [t.deployment for t in TOKENS.values()] + [DVP]}

    def _roles(self, chain: ChainClient, tokens: list[str], dvp: str) -> None:
        admin, minter = self.bank("admin"), self.bank("minter")
        holders = {role: self.bank(role.lower()) for role in ("MASTER_MINTER", "PAUSER", "COMPLIANCE")}
        getters = {"MASTER_MINTER": "masterMinter", "PAUSER": "pauser", "COMPLIANCE": "compliance"}
        grants = [
            Call(token, TOKEN_ABI.encode_call("setRole", keccak(text=role), holders[role]))
            for token in tokens
            for role in holders
            if chain.read(token, TOKEN_ABI, getters[role]) != holders[role]
        ]
        chain.transact_many(admin, grants)
        chain.transact_many(
            holders["MASTER_MINTER"],
            [
                Call(token, TOKEN_ABI.encode_call("configureMinter", minter, MINTER_ALLOWANCE))
                for token in tokens
                if chain.read(token, TOKEN_ABI, "minterAllowance", minter) < MINTER_ALLOWANCE // 2
            ],
        )
        listings = []
        for token in tokens:
            wanted = [a for a in (self.bank("treasury"), dvp) if not chain.read(token, TOKEN_ABI, "allowlisted", a)]
            if wanted:
                listings.append(Call(token, TOKEN_ABI.encode_call("batchSetAllowlisted", wanted, True)))
        chain.transact_many(holders["COMPLIANCE"], listings)
