"""What the chain's events book in the ledger: the mirror of every holder of every bank token.

Every movement of tokens between two addresses is booked from its `Transfer` event,
whoever sent it and wherever it went (a stranger's address, the DvP contract itself:
each address has its own mirror account), under a transfer id made from the event
(chain id, transaction hash, ordinal, and the generation after a reorg), so whether
the operation that caused it or the listener books it first, it is booked once.
Tokens that leave the supply are booked from their own events: `Redeemed` credits the
holder's deposit account (or suspense when the holder is unknown), a burning `Seized`
goes to the seizure account; mints and a move's burn are booked by their operations
(posting their holds), never here.

Events that move no value (a zero amount, a transfer to oneself, approvals, permits,
role changes, DvP bookkeeping) are recorded as seen by the listener and book nothing:
anyone can emit them, and none may stop the worker.

A `Transfer` booked now (not one booked before) whose receiver is a client's address
emits `payment.received` for that client, in the same transaction as the booking.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection

from andchain.chains.client import ChainClient, Receipt
from andchain.chains.contracts import ContractAbi, artifact
from andchain.chains.listener import ChainEvent, Listener, decode_logs
from andchain.events import NewEvent, append
from andchain.events.store import collecting as events_collecting
from andchain.ledger import CreateResult, Ledger, Result, TransferSpec
from andchain.money import format_minor
from andchain.ops import journal
from andchain.ops.holds import book, book_later, deferring, flush
from andchain.tokens.clients import Clients
from andchain.tokens.model import (
    BANK_SEIZED,
    BANK_SUSPENSE,
    DEPOSIT_TOKEN,
    DVP,
    FUND_SHARE,
    TOKENS,
    TokenDef,
    dda_account,
    holder_account,
)

TOKEN_ABI = artifact("PermissionedToken").abi
DVP_ABI = artifact("DvPSettlement").abi
ZERO = "0x" + "00" * 20
MMF_ISSUANCE = "bank:mmf:issuance"


def event_transfer_id(chain_id: int, tx_hash: str, ordinal: int, generation: int = 0) -> str:
    base = f"chain:{chain_id}:{tx_hash.lower()}:{ordinal}"
    return base if not generation else f"{base}:g{generation}"


class Booking:
    def __init__(self, ledger: Ledger, clients: Clients, chains: Callable[[str], ChainClient]) -> None:
        self.ledger = ledger
        self.clients = clients
        self.chains = chains
        self._contracts: dict[str, dict[str, ContractAbi]] = {}
        self._tokens: dict[str, dict[str, TokenDef]] = {}
        # A worker's batch of final steps, read ahead in its transaction (`read_mirrors`): each receipt's
        # events, decoded once, and the holder mirrors they name. Kept with that connection only, and only
        # for `book_receipt`.
        self._finals: tuple[Connection, dict[tuple[str, str], list[ChainEvent]], dict[str, int]] | None = None

    # ------------------------------------------------------------ contracts

    def contracts(self, network: str) -> Mapping[str, ContractAbi]:
        """The bank's contracts on `network`: lower-case address -> ABI (cached once all are deployed)."""
        cached = self._contracts.get(network)
        if cached is not None:
            return cached
        chain = self.chains(network)
        found: dict[str, ContractAbi] = {}
        tokens: dict[str, TokenDef] = {}
        for token in TOKENS.values():
            address = chain.deployment(token.deployment, required=False)
            if address:
                found[address.lower()] = TOKEN_ABI
                tokens[address.lower()] = token
        dvp = chain.deployment(DVP, required=False)
        if dvp:
            found[dvp.lower()] = DVP_ABI
        if len(tokens) == len(TOKENS) and dvp:  # complete: deployments never disappear
            self._contracts[network], self._tokens[network] = found, tokens
        return found

    def token_at(self, network: str, address: str) -> TokenDef | None:
        self.contracts(network)
        tokens = self._tokens.get(network)
        if tokens is None:
            chain = self.chains(network)
            for token in TOKENS.values():
                deployed = chain.deployment(token.deployment, required=False)
                if deployed and deployed.lower() == address.lower():
                    return token
            return None
        return tokens.get(address.lower())

    # --------------------------------------------------------------- events

    def _mirrors(self, events: list[ChainEvent], conn: Connection) -> dict[str, int]:
        """The ids of the holder mirrors these events name that exist, read in one statement (in `conn`: what
        this transaction wrote is seen, and nothing is kept past it)."""
        names = [
            holder_account(event.network, token, address)
            for event in events
            if (token := self.token_at(event.network, event.address)) is not None
            for field in ("sender", "receiver", "holder")
            if isinstance(address := event.args.get(field), str)
        ]
        return {name: account.id for name, account in self.ledger.accounts_named(names, conn=conn).items()}

    def read_mirrors(self, conn: Connection, receipts: list[tuple[str, Receipt]]) -> None:
        """Final receipts about to be booked through `conn` (a worker's batch of final steps): the holder
        mirrors their events name, read in one statement for all of them."""
        decoded = {(network, receipt.tx_hash): self._events_of(network, receipt) for network, receipt in receipts}
        events = [event for found in decoded.values() for event in found]
        self._finals = (conn, decoded, self._mirrors(events, conn) if events else {})

    def _events_of(self, network: str, receipt: Receipt) -> list[ChainEvent]:
        return decode_logs(network, self.chains(network).chain_id, self.contracts(network), receipt.logs)

    def specs(
        self, event: ChainEvent, conn: Connection, mirrors: Mapping[str, int] | None = None
    ) -> list[TransferSpec]:
        """The transfers one event books (none for an event that moves no value). `mirrors`: holder mirror
        ids read already (`_mirrors`); one missing is opened."""
        token = self.token_at(event.network, event.address)
        if token is None:
            return []  # the DvP contract's own events: its Transfers carry the movements
        args = event.args
        tid = event_transfer_id(event.chain_id, event.tx_hash, event.ordinal, event.generation)
        network = event.network
        if event.name == "Transfer":
            sender, receiver, value = args["sender"], args["receiver"], int(args["value"])
            if value <= 0 or sender.lower() == receiver.lower() or ZERO in (sender.lower(), receiver.lower()):
                return []
            return [
                TransferSpec(
                    self.clients.holder_id(network, token, sender, conn, mirrors),
                    self.clients.holder_id(network, token, receiver, conn, mirrors),
                    value,
                    id=tid,
                    code="token_transfer",
                    memo=f"{event.tx_hash[:18]}:{event.ordinal}",
                )
            ]
        if event.name == "Redeemed" and int(args["value"]) > 0:
            if token.deployment == FUND_SHARE:
                target = MMF_ISSUANCE
            else:
                owner = self.clients.wallet_owner(network, args["holder"])
                target = dda_account(owner) if owner else BANK_SUSPENSE
            return [
                TransferSpec(
                    self.clients.holder_id(network, token, args["holder"], conn, mirrors),
                    self.clients.account_id(target, conn),
                    int(args["value"]),
                    id=tid,
                    code="redeem",
                    memo=f"redeemed on {network}",
                )
            ]
        if event.name == "Seized" and args["burned"] and int(args["value"]) > 0:
            target = BANK_SEIZED if token.deployment == DEPOSIT_TOKEN else MMF_ISSUANCE
            return [
                TransferSpec(
                    self.clients.holder_id(network, token, args["holder"], conn, mirrors),
                    self.clients.account_id(target, conn),
                    int(args["value"]),
                    id=tid,
                    code="seize",
                    memo="seized and burned",
                )
            ]
        return []

    def book_event(self, event: ChainEvent, conn: Connection) -> None:
        """Book one event, once (the transfer id comes from the event). Most events the listener reads were
        booked already by the operation that sent them: one look-up of the id, no accounts opened."""
        self.book_events([event], conn)

    def book_events(self, events: list[ChainEvent], conn: Connection) -> None:
        """`book_event` for each event in order, with one look-up for those booked already and one ledger
        call for the others (their ledger rows locked at once, in one order, as a worker's batch of final
        steps locks its own)."""
        tids = [event_transfer_id(e.chain_id, e.tx_hash, e.ordinal, e.generation) for e in events]
        found = {t.id: t for t in self.ledger.lookup_transfers(tids, conn=conn)} if tids else {}
        new = [
            event
            for event, tid in zip(events, tids, strict=True)
            # one booked already was booked (and announced) by whoever booked it first; another amount is
            # refused below
            if (booked := found.get(tid)) is None or booked.amount != int(event.args.get("value", booked.amount))
        ]
        mirrors = self._mirrors(new, conn) if new else {}
        with events_collecting(conn):  # the payments' announcements in one statement
            with deferring() as bookings:
                for event in new:
                    self._book_new(event, conn, mirrors)
            flush(conn, bookings)

    def _book_new(self, event: ChainEvent, conn: Connection, mirrors: Mapping[str, int]) -> None:
        specs = self.specs(event, conn, mirrors)
        book_later(
            self.ledger,
            specs,
            lambda results: self._announce([(event, specs)], results, conn),
            conn=conn,
            what=f"{event.name} {event.tx_hash}:{event.ordinal} on {event.network}",
        )

    def book_receipt(self, network: str, receipt: Receipt, conn: Connection) -> None:
        """Book every event of a final receipt (the listener books the same ids)."""
        finals = self._finals if self._finals is not None and self._finals[0] is conn else None
        ahead = finals[1].get((network, receipt.tx_hash)) if finals is not None else None
        mirrors: Mapping[str, int]
        if finals is not None and ahead is not None:
            events, mirrors = ahead, finals[2]  # read with its batch's (a mirror missing there is opened)
        else:
            events = self._events_of(network, receipt)
            mirrors = self._mirrors(events, conn) if events else {}
        booked = [(event, self.specs(event, conn, mirrors)) for event in events]
        specs = [spec for _, event_specs in booked for spec in event_specs]
        book_later(
            self.ledger,
            specs,
            lambda results: self._announce(booked, results, conn),
            conn=conn,
            what=f"events of {receipt.tx_hash} on {network}",
        )

    def _announce(
        self, booked: list[tuple[ChainEvent, list[TransferSpec]]], results: list[CreateResult], conn: Connection
    ) -> None:
        """`payment.received` for each Transfer booked by this call whose receiver belongs to a client: whether
        the listener or the operation books it first, it is booked, and announced, once."""
        fresh = {r.id for r in results if r.result == Result.OK}
        received = []
        for event, specs in booked:
            if event.name != "Transfer" or not specs or specs[0].id not in fresh:
                continue
            token = self.token_at(event.network, event.address)
            owner = self.clients.wallet_owner(event.network, event.args["receiver"])
            if token is None or owner is None:
                continue
            value = int(event.args["value"])
            received.append(
                NewEvent(
                    "payment.received",
                    specs[0].id,
                    {
                        "network": event.network,
                        "token": token.symbol,
                        "asset": token.asset.code,
                        "amount": format_minor(value, token.decimals),
                        "amount_minor": str(value),
                        "from": event.args["sender"],
                        "to": event.args["receiver"],
                        "tx_hash": event.tx_hash,
                        "block": event.block_number,
                        "transfer": specs[0].id,
                    },
                    owner,
                )
            )
        append(conn, received, self.ledger.clock())

    def retract(self, event: ChainEvent, conn: Connection) -> bool:
        """A block the ledger had booked left the chain. An operation's own transaction is kept (its
        operation sends the same bytes again and reconcile shows it in flight); any other event's
        booking is reversed, and booked anew if its transaction comes back."""
        if journal.owned(conn, event.network, [event.tx_hash]):
            return False
        base = event_transfer_id(event.chain_id, event.tx_hash, event.ordinal, event.generation)
        booked = self.ledger.lookup_transfers([base])
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
        book(self.ledger, reversals, conn=conn, what=f"retraction of {base}")
        return True


class TokenMirror:
    """The listener's handler for one network's bank contracts."""

    def __init__(self, booking: Booking, network: str) -> None:
        self.booking = booking
        self.network = network

    def deliver(self, event: ChainEvent, conn: Connection) -> None:
        self.booking.book_event(event, conn)

    def deliver_many(self, events: list[ChainEvent], conn: Connection) -> None:
        self.booking.book_events(events, conn)

    def retract(self, event: ChainEvent, conn: Connection) -> bool:
        return self.booking.retract(event, conn)


def token_listener(booking: Booking, network: str, **kwargs: Any) -> Listener | None:
    """The listener of the bank's contracts on `network`, or None until every one of them is deployed there
    (a listener reads a fixed set of contracts: one built half-way through a set-up would miss the rest)."""
    contracts = booking.contracts(network)
    if len(contracts) < len(TOKENS) + 1:
        return None
    chain = booking.chains(network)
    return Listener(f"tokens:{network}", chain, dict(contracts), TokenMirror(booking, network), **kwargs)
