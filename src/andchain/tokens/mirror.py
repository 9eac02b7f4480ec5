"""The listener's handler for the bank's tokens: mirrors holder balances per network in the ledger."""

from __future__ import annotations

from sqlalchemy import Connection

from andchain.chains.listener import ChainEvent, Listener
from andchain.ledger import TransferSpec
from andchain.tokens.model import DEPOSIT_TOKEN, DVP, TOKENS
from andchain.tokens.service import DVP_ABI, TOKEN_ABI, TokenService, event_transfer_id


class TokenMirror:
    def __init__(self, service: TokenService, network: str) -> None:
        self.s = service
        self.network = network

    def deliver(self, event: ChainEvent, conn: Connection) -> None:
        self.s.book_event(
            self.network, event.chain_id, event.name, event.args, event.address, event.tx_hash, event.log_index, conn
        )

    def retract(self, event: ChainEvent, conn: Connection) -> None:
        """A block the ledger had booked is gone: book the reverse of what its event booked."""
        base = event_transfer_id(event.chain_id, event.tx_hash, event.log_index)
        booked = self.s.ledger.lookup_transfers([base, f"{base}:a", f"{base}:b"])
        reversals = [
            TransferSpec(
                t.credit_account_id,
                t.debit_account_id,
                t.amount,
                id=f"retract:{t.id}",
                code="reorg_reversal",
                memo=f"block {event.block_number} left the chain",
            )
            for t in booked
        ]
        if reversals:
            self.s.ledger.create_transfers(reversals, conn=conn)


def token_listener(service: TokenService, network: str, start_block: int = 0) -> Listener | None:
    chain = service.chain(network)
    contracts = {}
    for token in TOKENS.values():
        address = chain.deployment(token.deployment, required=False)
        if address:
            contracts[address] = TOKEN_ABI
    dvp = chain.deployment(DVP, required=False)
    if dvp:
        contracts[dvp] = DVP_ABI
    if not chain.deployment(DEPOSIT_TOKEN, required=False):
        return None
    return Listener(f"tokens:{network}", chain, contracts, TokenMirror(service, network), start_block=start_block)
