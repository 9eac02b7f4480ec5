"""Deposit tokens on the bank's networks: one object that wires the parts together.

The ledger is the book of record. A client's dollars sit in its deposit account
(DDA); minting moves them, in two phases, to the mirror of the client's token
balance on that network (pending until the mint is final on chain, voided if the
chain refuses it). Every other movement of tokens is booked from the chain's own
events (tokens/booking.py). The parts, each given only what it uses:

- clients.py: clients, deposit accounts, wallets and client-owned addresses;
- setup.py: deploying the contracts and giving the bank's roles;
- requests.py: mint, pay, redeem, DvP, moves... recorded with their holds;
- actions.py: the chain steps of each operation and what they book;
- booking.py: what events book, and the listener's handler;
- controls.py: the pause switch and rate limits for moves.
"""

from __future__ import annotations

from typing import Any

from andchain.chains.client import ChainClient
from andchain.context import Context
from andchain.ops import Operation, Operations
from andchain.ops.chain import ChainOpsHandler
from andchain.tokens.actions import ACTIONS
from andchain.tokens.booking import DVP_ABI, TOKEN_ABI, Booking, event_transfer_id
from andchain.tokens.clients import Clients
from andchain.tokens.controls import NetworkControls
from andchain.tokens.model import DEPOSIT_TOKEN, TOKENS, Client, Wallet
from andchain.tokens.requests import Requests
from andchain.tokens.setup import TokenSetup

__all__ = ["DVP_ABI", "TOKEN_ABI", "TokenService", "event_transfer_id"]


class TokenService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.ledger = ctx.ledger
        for token in TOKENS.values():
            ctx.assets.add(token.asset)
        self.ops = Operations(ctx.engine, clock=ctx.clock, settings=ctx.settings.ops)
        self.clients = Clients(ctx.engine, ctx.ledger, ctx.keys, ctx.settings, ctx.clock, ctx.ledger.ids)
        self.clients.compliance = ctx.compliance
        self.setup_ = TokenSetup(
            ctx.ledger, self.clients, ctx.keys, ctx.chain, ctx.register_assets, fund_gas=ctx.fund_gas
        )
        self.booking = Booking(ctx.ledger, self.clients, ctx.chain)
        self.controls = NetworkControls(ctx.engine, ctx.settings, ctx.clock)
        self.requests = Requests(
            ctx.engine, self.ops, ctx.ledger, self.clients, self.setup_, self.controls, ctx.chain, ctx.settings
        )

    def actions(self) -> list[Any]:
        return [
            cls(self.ledger, self.clients, self.booking, self.setup_, self.ctx.chain, self.ctx.settings)
            for cls in ACTIONS
        ]

    def handler(self) -> ChainOpsHandler:
        return ChainOpsHandler(self.ops, self.ctx.chain, self.actions())

    # ------------------------------------------------------------- set-up

    def chain(self, network: str) -> ChainClient:
        return self.ctx.chain(network)

    def bank(self, role: str) -> str:
        return self.setup_.bank(role)

    def token_address(self, network: str, deployment: str = DEPOSIT_TOKEN) -> str:
        return self.setup_.token_address(network, deployment)

    def setup(self, network: str) -> dict[str, str]:
        return self.setup_.setup(network)

    # ------------------------------------------------------------ clients

    def onboard(self, name: str, kind: str = "legal", *, by: str = "andchain") -> Client:
        return self.clients.onboard(name, kind, by=by)

    def client(self, ref: str) -> Client:
        return self.clients.client(ref)

    def deposit(self, client_ref: str, amount_minor: int, reference: str, memo: str = "", *, cash: bool = False) -> str:
        return self.clients.deposit(client_ref, amount_minor, reference, memo, cash=cash)

    def dda_balance(self, client_ref: str) -> int:
        return self.clients.dda_balance(client_ref)

    def wallet(self, client_ref: str, network: str) -> Wallet:
        return self.clients.wallet(client_ref, network)

    def holder(self, client_id: str, network: str) -> str:
        return self.clients.holder(client_id, network)

    def wallet_owner(self, network: str, address: str) -> str | None:
        return self.clients.wallet_owner(network, address)

    # ------------------------------------------------------------ requests

    def mint(self, client_ref: str, network: str, amount_minor: int, idempotency_key: str) -> Operation:
        return self.requests.mint(client_ref, network, amount_minor, idempotency_key)

    def pay(
        self, from_ref: str, to_ref: str, network: str, amount_minor: int, memo: str, idempotency_key: str
    ) -> Operation:
        return self.requests.pay(from_ref, to_ref, network, amount_minor, memo, idempotency_key)

    def redeem(self, client_ref: str, network: str, amount_minor: int, idempotency_key: str) -> Operation:
        return self.requests.redeem(client_ref, network, amount_minor, idempotency_key)

    def issue_shares(self, client_ref: str, network: str, shares_minor: int, idempotency_key: str) -> Operation:
        return self.requests.issue_shares(client_ref, network, shares_minor, idempotency_key)

    def dvp(
        self,
        buyer_ref: str,
        seller_ref: str,
        network: str,
        cash_minor: int,
        shares_minor: int,
        idempotency_key: str,
        *,
        ttl_s: int = 3600,
    ) -> Operation:
        return self.requests.dvp(buyer_ref, seller_ref, network, cash_minor, shares_minor, idempotency_key, ttl_s=ttl_s)

    def move(self, client_ref: str, source: str, destination: str, amount_minor: int, key: str) -> Operation:
        return self.requests.move(client_ref, source, destination, amount_minor, key)

    def return_stray(
        self, network: str, receiver: str, amount_minor: int, key: str, *, deployment: str = DEPOSIT_TOKEN
    ) -> Operation:
        return self.requests.return_stray(network, receiver, amount_minor, key, deployment=deployment)
