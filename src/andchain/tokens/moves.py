"""Moving the deposit token between networks: native burn-and-mint, crash-safe, rate-limited.

The bank issues the token on every network, so a move burns on the source and mints
on the destination; no bridge contract holds funds. The ledger moves the liability
from the source holder's mirror to the destination's in two phases: pending when the
move is accepted, posted once the destination mint is final. The mint waits for the
burn's finality on the source. If the destination refuses the mint for good, a
compensating mint on the source gives the client its tokens back and the pending
transfer is voided. Each network has an outbound and an inbound token bucket and a
pause switch; a move that would exceed a bucket or touch a paused network is refused
with a clear code, never queued silently.

Clients own their addresses on public networks: they prove it by signing a challenge
(EIP-191), the address is screened, then allow-listed on the token.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address
from sqlalchemy import Connection, select, update

from andchain.chains.client import Call, Receipt
from andchain.chains.contracts import memo32
from andchain.db import write_transaction
from andchain.errors import Conflict, DomainError, NotFound
from andchain.ledger import Result, TransferFlags, TransferSpec
from andchain.ops import Operation
from andchain.ops.chain import OperationFailed, PlannedCall
from andchain.tokens import schema
from andchain.tokens.actions import _Base, _done
from andchain.tokens.model import DEPOSIT_TOKEN, TOKENS, holder_account
from andchain.tokens.service import TOKEN_ABI, TokenService

DEPOSIT = TOKENS[DEPOSIT_TOKEN]


@dataclass(frozen=True)
class Controls:
    network: str
    paused: bool
    reason: str | None
    outbound_available: int
    inbound_available: int


class Moves:
    def __init__(self, service: TokenService) -> None:
        self.s = service
        self.ctx = service.ctx
        self.engine = service.ctx.engine

    # ------------------------------------------------------------ controls

    def _row(self, conn: Connection, network: str) -> Any:
        t = schema.network_controls
        query = select(t).where(t.c.network == network)
        if self.engine.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            n = self.ctx.settings.network(network)
            now = self.ctx.clock()
            conn.execute(
                t.insert().values(
                    network=network,
                    paused=False,
                    reason=None,
                    outbound_level=str(n.move_outbound_capacity),
                    inbound_level=str(n.move_inbound_capacity),
                    levels_at_us=now,
                    updated_at_us=now,
                )
            )
            row = conn.execute(query).first()
        return row

    def _levels(self, row: Any, now: int) -> tuple[int, int]:
        n = self.ctx.settings.network(row.network)
        elapsed_us = max(0, now - int(row.levels_at_us))
        outbound = min(
            n.move_outbound_capacity, int(row.outbound_level) + n.move_outbound_refill_per_s * elapsed_us // 1_000_000
        )
        inbound = min(
            n.move_inbound_capacity, int(row.inbound_level) + n.move_inbound_refill_per_s * elapsed_us // 1_000_000
        )
        return outbound, inbound

    def controls(self, network: str) -> Controls:
        with write_transaction(self.engine) as conn:
            row = self._row(conn, network)
        outbound, inbound = self._levels(row, self.ctx.clock())
        return Controls(network, bool(row.paused), row.reason, outbound, inbound)

    def pause(self, network: str, reason: str) -> Controls:
        return self._set_paused(network, True, reason)

    def resume(self, network: str) -> Controls:
        return self._set_paused(network, False, None)

    def _set_paused(self, network: str, paused: bool, reason: str | None) -> Controls:
        with write_transaction(self.engine) as conn:
            self._row(conn, network)
            t = schema.network_controls
            conn.execute(
                update(t)
                .where(t.c.network == network)
                .values(paused=paused, reason=reason, updated_at_us=self.ctx.clock())
            )
        return self.controls(network)

    def _consume(self, conn: Connection, source: str, destination: str, amount: int) -> None:
        now = self.ctx.clock()
        t = schema.network_controls
        rows = {name: self._row(conn, name) for name in sorted({source, destination})}
        for name, row in rows.items():
            if row.paused:
                raise DomainError(
                    f"network {name} is paused for moves: {row.reason or 'no reason given'}", code="network_paused"
                )
        out_src, in_src = self._levels(rows[source], now)
        out_dst, in_dst = self._levels(rows[destination], now)
        if amount > out_src:
            raise DomainError(
                f"moving {amount} cents out of {source} exceeds its outbound limit ({out_src} cents available now)",
                code="rate_limited",
            )
        if amount > in_dst:
            raise DomainError(
                f"moving {amount} cents into {destination} exceeds its inbound limit ({in_dst} cents available now)",
                code="rate_limited",
            )
        conn.execute(
            update(t)
            .where(t.c.network == source)
            .values(outbound_level=str(out_src - amount), inbound_level=str(in_src), levels_at_us=now)
        )
        conn.execute(
            update(t)
            .where(t.c.network == destination)
            .values(outbound_level=str(out_dst), inbound_level=str(in_dst - amount), levels_at_us=now)
        )

    # ----------------------------------------------------------- addresses

    def challenge(self, client_ref: str, network: str) -> tuple[str, str]:
        """A message the client signs (EIP-191 personal_sign) with the key of the address it registers."""
        client = self.s.client(client_ref)
        settings = self.ctx.settings.network(network)
        if settings.kind != "public":
            raise DomainError(
                f"{network} is a permissioned network: the bank manages client addresses there",
                code="not_a_public_network",
            )
        nonce = secrets.token_hex(16)
        expires = self.ctx.clock() + self.ctx.settings.compliance.challenge_ttl_s * 1_000_000
        message = (
            f"andchain address registration\nclient: {client.id}\nnetwork: {network} "
            f"(chain id {settings.chain_id})\nnonce: {nonce}"
        )
        with write_transaction(self.engine) as conn:
            conn.execute(
                schema.challenges.insert().values(
                    nonce=nonce,
                    client_id=client.id,
                    network=network,
                    message=message,
                    expires_at_us=expires,
                    used=False,
                )
            )
        return nonce, message

    def register(self, client_ref: str, network: str, nonce: str, address: str, signature: str) -> str:
        """Verify the signed challenge, screen the address, record it; it is allow-listed by its first op."""
        client = self.s.client(client_ref)
        t = schema.challenges
        with write_transaction(self.engine) as conn:
            row = conn.execute(select(t).where(t.c.nonce == nonce)).first()
            if row is None or row.client_id != client.id or row.network != network:
                raise NotFound("no such challenge for this client and network", code="challenge_not_found")
            if row.used:
                raise Conflict("this challenge was already used", code="challenge_used")
            if row.expires_at_us < self.ctx.clock():
                raise DomainError("the challenge expired; ask for a new one", code="challenge_expired")
            try:
                signer = Account.recover_message(encode_defunct(text=row.message), signature=signature)
            except Exception:
                raise DomainError("the signature is not a valid EIP-191 signature", code="invalid_signature") from None
            if signer.lower() != address.lower():
                raise DomainError(f"the challenge was signed by {signer}, not by {address}", code="invalid_signature")
            address = to_checksum_address(address)
            blocked = {a.lower() for a in self.ctx.settings.compliance.blocked_addresses}
            status = "blocked" if address.lower() in blocked else "verified"
            conn.execute(update(t).where(t.c.nonce == nonce).values(used=True))
            a = schema.client_addresses
            existing = conn.execute(select(a).where(a.c.network == network, a.c.address == address)).first()
            if existing is not None and existing.client_id != client.id:
                raise Conflict(f"{address} is registered to another client", code="address_taken")
            if existing is None:
                conn.execute(
                    a.insert().values(
                        network=network,
                        address=address,
                        client_id=client.id,
                        status=status,
                        allowlisted=False,
                        signature=signature,
                        registered_at_us=self.ctx.clock(),
                    )
                )
        if status == "blocked":
            raise DomainError(f"{address} failed screening and cannot be used", code="address_blocked")
        self.s._holder_accounts(None, network, address)
        return address

    # ----------------------------------------------------------------- move

    def move(
        self, client_ref: str, source: str, destination: str, amount_minor: int, idempotency_key: str
    ) -> Operation:
        client = self.s.client(client_ref)
        if source == destination:
            raise DomainError("source and destination networks must differ", code="same_network")
        if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
            raise DomainError(
                f"amount must be a positive integer of cents, was {amount_minor!r}", code="amount_must_be_positive"
            )
        for network in (source, destination):
            self.s._deployed(network)
        from_holder, to_holder = self.s.holder(client.id, source), self.s.holder(client.id, destination)
        payload = {
            "client": client.id,
            "source": source,
            "destination": destination,
            "amount": amount_minor,
            "from": from_holder,
            "to": to_holder,
        }
        try:
            existing = self.s.ops.by_key(idempotency_key)
        except NotFound:
            existing = None
        if existing is not None:
            return self.s.ops.create("move", idempotency_key, payload, network=source)[0]  # same or a conflict
        held = self.s.ledger.account(holder_account(source, DEPOSIT, from_holder)).available
        if held < amount_minor:
            raise DomainError(
                f"the client holds {held} cents of tokens on {source}, cannot move {amount_minor}",
                code="insufficient_funds",
            )
        if self.ctx.settings.network(source).kind == "public":
            allowance = self.s.chain(source).read(
                self.s.token_address(source), TOKEN_ABI, "allowance", from_holder, self.s.bank("minter")
            )
            if allowance < amount_minor:
                raise DomainError(
                    f"{from_holder} must first approve the bank's minter {self.s.bank('minter')} "
                    f"for {amount_minor} on {source} (allowance {allowance})",
                    code="approval_required",
                )
        with write_transaction(self.engine) as conn:
            self._consume(conn, source, destination, amount_minor)
            op, _ = self.s.ops.create("move", idempotency_key, payload, network=source, conn=conn)
        self.reserve(op)
        return self.s.ops.update(op, state={**op.state, "reserved": True})

    def reserve(self, op: Operation) -> None:
        p = op.payload
        src = self.s.ledger.account(holder_account(p["source"], DEPOSIT, p["from"])).id
        dst = self.s.ledger.account(holder_account(p["destination"], DEPOSIT, p["to"])).id
        result = self.s.ledger.create_transfer(
            TransferSpec(
                src,
                dst,
                p["amount"],
                id=f"move:{op.id}",
                asset="USD",
                flags=TransferFlags.PENDING,
                code="move",
                memo=f"{p['source']} -> {p['destination']}",
            )
        )
        if result.result not in (Result.OK, Result.EXISTS):
            raise DomainError(f"move {op.id} refused by the ledger: {result.result.value}", code=result.result.value)


class MoveAction(_Base):
    kinds = ("move",)

    def __init__(self, service: TokenService) -> None:
        super().__init__(service)
        self.moves = Moves(service)

    def next_call(self, op: Operation) -> PlannedCall | None:
        p = op.payload
        if not op.state.get("reserved"):  # only a crash between recording and reserving leaves it undone
            self.moves.reserve(op)
        done = _done(op)
        source, destination = p["source"], p["destination"]
        minter = self.s.bank("minter")
        src_token, dst_token = self.s.token_address(source), self.s.token_address(destination)
        bank_managed = self.ctx_kind(source) == "permissioned"
        if op.state.get("compensate"):
            if "remint" in done:
                return None
            return PlannedCall(
                minter,
                Call(src_token, TOKEN_ABI.encode_call("mint", p["from"], p["amount"], memo32(op.id))),
                "remint",
                source,
            )
        if (
            bank_managed
            and "approve" not in done
            and self.s.chain(source).read(src_token, TOKEN_ABI, "allowance", p["from"], minter) < p["amount"]
        ):
            # A bank-managed wallet lets the bank's own minter burn from it without limit, once:
            # the bank holds both keys anyway, and per-move approvals of concurrent moves would
            # overwrite one another (an ERC-20 approval replaces, it does not add).
            return PlannedCall(
                p["from"], Call(src_token, TOKEN_ABI.encode_call("approve", minter, 2**256 - 1)), "approve", source
            )
        if "burn" not in done:
            return PlannedCall(
                minter,
                Call(src_token, TOKEN_ABI.encode_call("burnFrom", p["from"], p["amount"], memo32(op.id))),
                "burn",
                source,
            )
        step = self._allowlist_on(op, destination, p["to"])
        if step is not None:
            return step
        if "mint" not in done:
            return PlannedCall(
                minter,
                Call(dst_token, TOKEN_ABI.encode_call("mint", p["to"], p["amount"], memo32(op.id))),
                "mint",
                destination,
            )
        return None

    def ctx_kind(self, network: str) -> str:
        return self.s.ctx.settings.network(network).kind

    def _allowlist_on(self, op: Operation, network: str, address: str) -> PlannedCall | None:
        step = f"allowlist:{network}:{address.lower()}"
        if step in _done(op):
            return None
        chain = self.s.chain(network)
        token = self.s.token_address(network)
        if chain.read(token, TOKEN_ABI, "allowlisted", address):
            return None
        return PlannedCall(
            self.s.bank("compliance"),
            Call(token, TOKEN_ABI.encode_call("setAllowlisted", address, True)),
            step,
            network,
        )

    def step_done(self, op: Operation, receipt: Receipt) -> dict[str, Any]:
        return {}

    def reverted(self, op: Operation, step: str, reason: str) -> dict[str, Any] | None:
        """The destination refused the mint for good: give the client its tokens back on the source."""
        if step in ("mint",) or step.startswith("allowlist:"):
            return {"compensate": True, "destination_error": reason}
        return None

    def finish(self, op: Operation) -> dict[str, Any]:
        p = op.payload
        done = {d.get("step"): d for d in op.state.get("done", [])}
        if op.state.get("compensate"):
            self.s.ledger.create_transfer(
                TransferSpec(
                    id=f"move:{op.id}:void",
                    pending_id=f"move:{op.id}",
                    flags=TransferFlags.VOID_PENDING,
                    code="move_void",
                )
            )
            raise OperationFailed(
                "destination_failed",
                f"the mint on {p['destination']} failed ({op.state.get('destination_error')}); "
                f"the tokens were minted back on {p['source']}",
                {"burn_tx": done["burn"]["hash"], "remint_tx": done["remint"]["hash"], "compensated": True},
            )
        result = self.s.ledger.create_transfer(
            TransferSpec(
                id=f"move:{op.id}:post", pending_id=f"move:{op.id}", flags=TransferFlags.POST_PENDING, code="move"
            )
        )
        if result.result not in (Result.OK, Result.EXISTS):
            raise DomainError(f"posting move {op.id} refused: {result.result.value}", code=result.result.value)
        return {
            "burn_tx": done["burn"]["hash"],
            "burn_block": done["burn"]["block"],
            "mint_tx": done["mint"]["hash"],
            "mint_block": done["mint"]["block"],
            "amount": p["amount"],
        }

    def failed(self, op: Operation, code: str, reason: str) -> None:
        if "burn" in _done(op):
            return  # never void after the burn: the compensating path restores the client
        self.s.ledger.create_transfer(
            TransferSpec(
                id=f"move:{op.id}:void", pending_id=f"move:{op.id}", flags=TransferFlags.VOID_PENDING, code="move_void"
            )
        )
