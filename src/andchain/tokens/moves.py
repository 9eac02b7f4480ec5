"""Moving the deposit token between networks: native burn-and-mint, crash-safe, rate-limited.

The bank issues the token on every network, so a move burns on the source and mints
on the destination; no bridge contract holds funds. The ledger moves the liability
from the source holder's mirror to the destination's in two phases: pending when the
move is accepted, posted once the destination mint is final. The mint waits for the
burn's finality on the source. If the destination refuses the mint for good, or does
not answer within the retry budget, a compensating mint on the source gives the
client its tokens back and the pending transfer is voided (tokens/actions.py,
MoveAction). Each network has a pause switch and rate limits (tokens/controls.py).

Clients own their addresses on public networks: they prove it by signing a challenge
(EIP-191), the address is screened, then allow-listed on the token by its first
operation (tokens/clients.py).

`Moves` gathers what an operator or a client does about moves in one place.
"""

from __future__ import annotations

from andchain.ops import Operation
from andchain.tokens.controls import Controls
from andchain.tokens.service import TokenService

__all__ = ["Controls", "Moves"]


class Moves:
    def __init__(self, service: TokenService) -> None:
        self.s = service

    def controls(self, network: str) -> Controls:
        return self.s.controls.controls(network)

    def pause(self, network: str, reason: str) -> Controls:
        return self.s.controls.pause(network, reason)

    def resume(self, network: str) -> Controls:
        return self.s.controls.resume(network)

    def challenge(self, client_ref: str, network: str) -> tuple[str, str]:
        return self.s.clients.challenge(client_ref, network)

    def register(self, client_ref: str, network: str, nonce: str, address: str, signature: str) -> str:
        return self.s.clients.register(client_ref, network, nonce, address, signature)

    def move(
        self, client_ref: str, source: str, destination: str, amount_minor: int, idempotency_key: str
    ) -> Operation:
        return self.s.move(client_ref, source, destination, amount_minor, idempotency_key)
