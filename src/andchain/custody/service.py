"""The bank's side of custody: accounts at custodians, positions in the ledger, and every transfer
that moves value as an operation.

Each client (and the bank's trading desk) has an account at a custodian, opened once and
recorded here. What a custodian holds for an owner is mirrored in the ledger, per asset:

    custodians:<name>:clients:<client id>:<asset>   what the bank owes the client (liability)
    custodians:<name>:desk:<asset>                  the desk's own (equity)
    custodians:<name>:holdings:<asset>              what the custodian holds for the bank (asset)

A deposit the custodian reports (its webhook, or polling as a backstop) debits holdings and
credits the owner's position once per custodian transfer. A withdrawal, an internal transfer
between two owners, and a stablecoin conversion are operations (`ops`): their ledger holds are
reserved with the operation, the custodian gets the request under a key derived from the
operation (`submit_once` looks it up before any retry, so nothing is sent twice), the reported
states move only forward (`custody.states.advance`), the holds are posted when the custodian
reports the transfer completed and voided when it failed, was rejected or cancelled. A report
that contradicts a terminal state stops the operation where an operator sees it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from andchain.context import Context
from andchain.custody import schema
from andchain.custody.assets import AssetMap, AssetNotSupported
from andchain.custody.port import (
    DESK,
    Custodian,
    CustodianAnswerUnreadable,
    CustodianRefused,
    CustodianUnavailable,
    CustodyTransfer,
    DepositAddress,
    Destination,
    TransferNotFound,
    TransferRequest,
    WebhookEvent,
    WebhookRejected,
    submit_once,
)
from andchain.custody.states import BROADCAST, TERMINAL, CustodyState, advance
from andchain.db import write_transaction
from andchain.errors import Conflict, DomainError, NotFound
from andchain.events import store as events
from andchain.ledger import AccountFlags, AccountKind, AccountSpec, TransferSpec
from andchain.money import format_minor, parse_minor
from andchain.ops import holds
from andchain.ops.core import Operation, Operations, OpStatus
from andchain.ops.worker import database_away, postpone
from andchain.tokens.model import Client, ClientKind, check_amount, dda_account

log = logging.getLogger(__name__)

WITHDRAWAL = "custody_withdrawal"
TRANSFER = "custody_transfer"
CONVERT = "stablecoin_convert"
KINDS = (WITHDRAWAL, TRANSFER, CONVERT)
# What the bank pays out or takes in, in USD, against the stablecoins its desk takes in or pays out.
CONVERSION_ACCOUNT = "bank:usd:stablecoin"
STABLECOINS = ("USDC",)
KEY_PREFIX = "andchain-"
PAGES_PER_POLL = 20
# At most this many deposits in flight are looked up again per poll (the oldest first).
FOLLOW_MAX = 200
CONTRADICTION = "custody_contradiction"
# Networks beside the bank's own EVM networks where a client may withdraw (addresses checked by the
# custodian, with their checksums).
BITCOIN_NETWORKS = frozenset({"bitcoin"})


def position_account(custodian: str, owner: str, asset: str) -> str:
    if owner == DESK:
        return f"custodians:{custodian}:desk:{asset.lower()}"
    return f"custodians:{custodian}:clients:{owner}:{asset.lower()}"


def holdings_account(custodian: str, asset: str) -> str:
    return f"custodians:{custodian}:holdings:{asset.lower()}"


def custody_key(op_id: str) -> str:
    """The idempotency key the custodian gets for an operation: known before anything is sent."""
    return f"{KEY_PREFIX}{op_id}"


def op_of_key(key: str | None) -> str | None:
    if key and key.startswith(KEY_PREFIX):
        return key[len(KEY_PREFIX) :]
    return None


def deposit_transfer_id(custodian: str, transfer_id: str) -> str:
    """The ledger transfer that credits one deposit: the same for every report of it."""
    text = f"custody:{custodian}:in:{transfer_id}"
    if len(text) <= 128:
        return text
    return f"custody:{custodian}:in:sha256:{hashlib.sha256(transfer_id.encode()).hexdigest()}"[:128]


class WebhookUnreadable(DomainError):
    """A notification whose signature verified but whose body is not what the custodian documents."""

    code = "webhook_unreadable"
    http_status = 422


@dataclass(frozen=True)
class AccountRecord:
    custodian: str
    owner: str
    account_id: str
    name: str
    created_at_us: int


@dataclass(frozen=True)
class Position:
    custodian: str
    owner: str
    asset: str
    account: str
    balance_minor: int
    pending_out_minor: int
    pending_in_minor: int
    scale: int

    def view(self) -> dict[str, Any]:
        return {
            "custodian": self.custodian,
            "owner": self.owner,
            "asset": self.asset,
            "account": self.account,
            "balance": format_minor(self.balance_minor, self.scale),
            "available": format_minor(self.balance_minor - self.pending_out_minor, self.scale),
            "pending_out": format_minor(self.pending_out_minor, self.scale),
            "pending_in": format_minor(self.pending_in_minor, self.scale),
        }


def ivms101(client: Client, account: str, beneficiary_account: str) -> dict[str, Any]:
    """IVMS101 originator and beneficiary for a transfer between a client's own accounts (its
    custody account, its own wallet elsewhere): the same person on both sides."""
    if client.kind == ClientKind.NATURAL:
        person: dict[str, Any] = {
            "naturalPerson": {
                "name": {"nameIdentifier": [{"primaryIdentifier": client.name, "nameIdentifierType": "LEGL"}]},
                "customerIdentification": client.id,
            }
        }
    else:
        person = {
            "legalPerson": {
                "name": {"nameIdentifier": [{"legalPersonName": client.name, "legalPersonNameIdentifierType": "LEGL"}]},
                "customerNumber": client.id,
            }
        }
    return {
        "originator": {"originatorPersons": [person], "accountNumber": [account]},
        "beneficiary": {"beneficiaryPersons": [person], "accountNumber": [beneficiary_account]},
    }


def _both(
    first: Callable[[Connection], None] | None, second: Callable[[Connection], None] | None
) -> Callable[[Connection], None] | None:
    """Two steps of one recording transaction, in order (either may be absent)."""
    if first is None or second is None:
        return first or second

    def both(conn: Connection) -> None:
        first(conn)
        second(conn)

    return both


class CustodyService:
    def __init__(self, ctx: Context, *, custodians: Mapping[str, Custodian] | None = None, tokens: Any = None) -> None:
        from andchain.tokens.service import TokenService

        self.ctx = ctx
        self.settings = ctx.settings.custody
        self.ledger = ctx.ledger
        self.tokens = tokens or TokenService(ctx)
        self.clients = self.tokens.clients
        self.ops: Operations = self.tokens.ops
        self._custodians: dict[str, Custodian] = dict(custodians or {})
        self._opened: set[str] = set()

    # ---------------------------------------------------------------- custodians

    def names(self) -> list[str]:
        return sorted(set(self.settings.custodians) | set(self._custodians))

    def custodian(self, name: str) -> Custodian:
        if name not in self._custodians:
            from andchain.custody.registry import custodian

            self._custodians[name] = custodian(self.ctx, name)
        return self._custodians[name]

    def _check_custodian(self, name: str) -> None:
        if name not in self._custodians and name not in self.settings.custodians:
            raise NotFound(
                f"no custodian {name!r} is configured; configured: {', '.join(self.names()) or 'none'}",
                code="custodian_not_found",
            )

    def check_asset(self, custodian: str, asset: str, network: str) -> None:
        """Refuse, before anything is recorded, an asset the custodian is not configured to hold on the
        network (Fireblocks' and Prime's asset maps): never an operation that cannot be sent."""
        assets = getattr(self.custodian(custodian), "assets", None)
        if isinstance(assets, AssetMap):
            assets.provider_id(asset, network)

    def scale(self, asset: str) -> int:
        try:
            return self.ctx.settings.asset_registry.get(asset).scale
        except Exception:
            raise DomainError(f"unknown asset {asset!r}", code="unknown_asset") from None

    # ------------------------------------------------------------------ accounts

    def owner_of(self, ref: str, *, active: bool = True) -> tuple[str, Client | None]:
        """`desk`, or a client by id or name (active, unless `active` is False)."""
        if ref == DESK:
            return DESK, None
        client = self.clients.active(ref) if active else self.clients.client(ref)
        return client.id, client

    def account(self, custodian: str, owner: str) -> AccountRecord | None:
        t = schema.accounts
        with self.ctx.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.custodian == custodian, t.c.owner == owner)).first()
        return (
            None
            if row is None
            else AccountRecord(row.custodian, row.owner, row.account_id, row.name, row.created_at_us)
        )

    def accounts(self, custodian: str | None = None, owner: str | None = None) -> list[AccountRecord]:
        t = schema.accounts
        query = select(t).order_by(t.c.custodian, t.c.owner)
        if custodian is not None:
            query = query.where(t.c.custodian == custodian)
        if owner is not None:
            query = query.where(t.c.owner == owner)
        with self.ctx.engine.connect() as conn:
            return [
                AccountRecord(r.custodian, r.owner, r.account_id, r.name, r.created_at_us) for r in conn.execute(query)
            ]

    def owner_of_account(self, custodian: str, account_id: str) -> str | None:
        t = schema.accounts
        with self.ctx.engine.connect() as conn:
            found = conn.execute(
                select(t.c.owner).where(t.c.custodian == custodian, t.c.account_id == account_id)
            ).scalar()
        return None if found is None else str(found)

    def open_account(self, custodian: str, owner_ref: str) -> AccountRecord:
        """The owner's account at the custodian, opened there once (under a key naming the owner, so
        that a retry after a timeout finds the same account) and recorded here."""
        self._check_custodian(custodian)
        owner, client = self.owner_of(owner_ref)
        existing = self.account(custodian, owner)
        if existing is not None:
            return existing
        name = "andchain desk" if client is None else f"andchain client {client.id}"
        opened = self.custodian(custodian).create_account(name, owner=owner, idempotency_key=f"{KEY_PREFIX}{owner}")
        t = schema.accounts
        try:
            with write_transaction(self.ctx.engine) as conn:
                conn.execute(
                    t.insert().values(
                        custodian=custodian,
                        owner=owner,
                        account_id=opened.id,
                        name=opened.name,
                        created_at_us=self.ctx.clock(),
                    )
                )
        except IntegrityError:
            pass  # opened at once by another request: the same account (the same key)
        record = self.account(custodian, owner)
        if record is None or record.account_id != opened.id:
            raise Conflict(
                f"custodian {custodian} answered account {opened.id} for {owner}, recorded is "
                f"{record.account_id if record else 'none'}",
                code="custody_account_mismatch",
            )
        return record

    def _required_account(self, custodian: str, owner: str) -> AccountRecord:
        record = self.account(custodian, owner)
        if record is None:
            who = "the desk" if owner == DESK else f"client {owner}"
            raise DomainError(
                f"{who} has no account at custodian {custodian}; open one first", code="custody_account_missing"
            )
        return record

    def ensure_positions(self, custodian: str, owner: str, asset: str, conn: Connection | None = None) -> None:
        """The owner's position and the custodian's holdings for `asset` in the ledger (idempotent)."""
        marker = f"{custodian}\x00{owner}\x00{asset}"
        if marker in self._opened:
            return
        registry = self.ctx.settings.asset_registry
        self.ctx.register_assets([registry.get(asset)])
        kind = AccountKind.EQUITY if owner == DESK else AccountKind.LIABILITY
        specs = [
            AccountSpec(holdings_account(custodian, asset), asset, kind=AccountKind.ASSET),
            AccountSpec(
                position_account(custodian, owner, asset),
                asset,
                kind=kind,
                flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
            ),
        ]
        if asset in STABLECOINS:
            specs.append(AccountSpec(CONVERSION_ACCOUNT, "USD", kind=AccountKind.EQUITY))
        for result in self.ledger.create_accounts(specs, conn=conn):
            if not (result.ok or result.result.value == "exists"):
                raise DomainError(f"custody position refused: {result.result.value}", code=result.result.value)
        self._opened.add(marker)

    def deposit_address(self, custodian: str, owner_ref: str, asset: str, network: str) -> DepositAddress:
        self.scale(asset)
        record = self.open_account(custodian, owner_ref)
        self.ensure_positions(custodian, record.owner, asset)
        return self.custodian(custodian).deposit_address(record.account_id, asset, network)

    def positions(self, owner: str | None = None, custodian: str | None = None) -> list[Position]:
        out = []
        for record in self.accounts(custodian, owner):
            prefix = position_account(record.custodian, record.owner, "")
            after = 0
            while True:
                page = self.ledger.list_accounts(prefix=prefix, after_id=after, limit=500)
                for account in page:
                    asset = account.asset
                    out.append(
                        Position(
                            record.custodian,
                            record.owner,
                            asset,
                            account.name,
                            account.balance_posted,
                            account.debits_pending,
                            account.credits_pending,
                            self.scale(asset),
                        )
                    )
                if len(page) < 500:
                    break
                after = page[-1].id
        return out

    # ---------------------------------------------------------------- operations

    def _record(
        self,
        kind: str,
        key: str,
        request: dict[str, Any],
        payload: dict[str, Any],
        network: str,
        before: Callable[[Connection], None] | None = None,
    ) -> Operation:
        """The operation and its holds, in one transaction; the same key and request find it again.
        `before` runs in that transaction when the operation is new (a trade recorded with its leg)."""
        # (Callers looked the key up; a twin request racing this one finds its operation in create.)
        with write_transaction(self.ctx.engine) as conn:
            op, created = self.ops.create(
                kind, key, payload, request=request, network=network, conn=conn, state={"reserved": True}
            )
            if created:
                if before is not None:
                    before(conn)
                for spec in payload["holds"]:
                    holds.reserve(
                        self.ledger,
                        holds.Hold(spec["id"].format(op=op.id), spec["code"]),
                        self.ledger.account(spec["debit"], conn=conn).id,
                        self.ledger.account(spec["credit"], conn=conn).id,
                        int(spec["amount"]),
                        spec["asset"],
                        memo=f"{kind} {op.id}",
                        conn=conn,
                    )
        return op

    def _travel_rule(
        self,
        client: Client | None,
        asset: str,
        amount_minor: int,
        source: str,
        destination: str,
        usd: int | None,
        supplied: object | None = None,
    ) -> dict[str, Any] | None:
        """The IVMS101 data a client's withdrawal carries (compliance.travel_rule_usd in the bank's
        jurisdiction, `usd` being its worth; for an asset without a USD price, custody.travel_rule_from):
        the data the client supplied (a beneficiary at another institution), else its own on both sides."""
        if client is None:
            return None
        required = None
        if usd is None:
            above = self.settings.travel_rule_from.get(asset)
            required = above is not None and amount_minor >= parse_minor(above, self.scale(asset))
        return self.clients.compliance.travel_rule(
            flow="withdrawal",
            amount_usd_minor=usd,
            supplied=supplied,
            default=lambda: ivms101(client, source, destination),
            required=required,
            client_id=client.id,
        )

    def _usd(self, client: Client | None, asset: str, amount_minor: int) -> int | None:
        """A client's movement's worth in USD cents, asked once per request (None: no client, or not known)."""
        if client is None:
            return None
        return self.clients.compliance.usd_minor(asset, amount_minor, self.scale(asset))

    def _admit(
        self, client: Client | None, flow: str, usd: int | None, key: str, travel: dict[str, Any] | None
    ) -> Callable[[Connection], None] | None:
        """What a client's movement checks and records in its operation's transaction (compliance)."""
        if client is None:
            return None
        compliance = self.clients.compliance
        ref = f"{flow}:{key}"

        def admit(conn: Connection) -> None:
            compliance.admit(conn, client.id, flow, usd, ref)
            if travel is not None:
                compliance.record_travel_rule(conn, ref, flow, usd, travel)

        return admit

    def _check_destination(self, client: Client | None, network: str, address: str) -> None:
        """A client's withdrawal on one of the bank's EVM networks goes to an address the client proved
        it owns (registered and verified: allow-listed); on Bitcoin the custodian checks the address;
        any other network is refused. The bank's desk sends where its operators say."""
        if client is None:
            return
        if network not in self.ctx.settings.networks:
            if network in BITCOIN_NETWORKS:
                return  # no ownership proof exists there yet: the custodian checks the address itself
            raise DomainError(
                f"a client's withdrawal goes to one of the bank's networks or to Bitcoin, was {network!r}",
                code="network_not_allowed",
            )
        for registered in self.clients.addresses(client.id):
            if registered.network == network and registered.address.lower() == address.lower():
                if registered.status == "verified":
                    return
                raise DomainError(
                    f"{address} is {registered.status} for client {client.name} on {network}",
                    code="address_not_allowed",
                )
        raise DomainError(
            f"{address} is not an address client {client.name} registered on {network}; register and verify it first",
            code="address_not_registered",
        )

    def withdraw(
        self,
        custodian: str,
        owner_ref: str,
        asset: str,
        network: str,
        amount_minor: int,
        address: str,
        key: str,
        *,
        note: str = "",
        travel_rule: object | None = None,
        before: Callable[[Connection], None] | None = None,
    ) -> Operation:
        """Withdraw from the owner's account at the custodian to an external address. `before` runs in the
        transaction that records it (a rewards redemption holds the points there). A client's withdrawal
        is screened (the client, the destination), admitted by compliance (KYC, freeze, tier limits) and
        carries the travel rule's data from its threshold (`travel_rule`: IVMS101 the client supplies)."""
        self._check_custodian(custodian)
        check_amount(amount_minor)
        self.scale(asset)
        if not isinstance(address, str) or not 0 < len(address) <= 128 or not address.isprintable():
            raise DomainError("a withdrawal needs the destination address", code="invalid_request")
        owner, client = self.owner_of(owner_ref, active=False)
        request = {
            "custodian": custodian,
            "owner": owner,
            "asset": asset,
            "network": network,
            "amount": amount_minor,
            "address": address,
            "note": note,
        }
        replayed = self.ops.replay(WITHDRAWAL, key, request)
        if replayed is not None:
            return replayed
        if client is not None:
            client = self.clients.active(client.id)  # a new request: its client must be active
        self._check_destination(client, network, address)
        self.check_asset(custodian, asset, network)
        if client is not None:
            self.clients.compliance.screen(client.id, flow="withdrawal", addresses=((network, address),))
        record = self._required_account(custodian, owner)
        self.ensure_positions(custodian, owner, asset)
        usd = self._usd(client, asset, amount_minor)
        travel = self._travel_rule(client, asset, amount_minor, record.account_id, address, usd, travel_rule)
        admit = self._admit(client, "withdrawal", usd, key, travel)
        payload = {
            **request,
            "client": client.id if client else None,
            "source_account": record.account_id,
            "destination": {"address": address},
            "travel_rule": travel,
            "holds": [
                {
                    "id": f"{WITHDRAWAL}:{{op}}",
                    "code": WITHDRAWAL,
                    "debit": position_account(custodian, owner, asset),
                    "credit": holdings_account(custodian, asset),
                    "amount": amount_minor,
                    "asset": asset,
                }
            ],
        }
        return self._record(WITHDRAWAL, key, request, payload, network, _both(admit, before))

    def transfer(
        self,
        custodian: str,
        from_ref: str,
        to_ref: str,
        asset: str,
        network: str,
        amount_minor: int,
        key: str,
        *,
        before: Callable[[Connection], None] | None = None,
        admit: bool = True,
    ) -> Operation:
        """Move value between two owners' accounts at the same custodian (a client and the desk). `admit`
        False: the leg of a trade compliance admitted already (its asset delivered), not counted again."""
        self._check_custodian(custodian)
        check_amount(amount_minor)
        self.scale(asset)
        source, source_client = self.owner_of(from_ref, active=False)
        target, target_client = self.owner_of(to_ref, active=False)
        if source == target:
            raise DomainError(
                "an internal transfer goes between two different owners", code="accounts_must_be_different"
            )
        request = {
            "custodian": custodian,
            "from": source,
            "to": target,
            "asset": asset,
            "network": network,
            "amount": amount_minor,
        }
        replayed = self.ops.replay(TRANSFER, key, request)
        if replayed is not None:
            return replayed
        for party in (source_client, target_client):
            if party is not None:
                self.clients.active(party.id)
        self.check_asset(custodian, asset, network)
        from_record = self._required_account(custodian, source)
        to_record = self.open_account(custodian, target)
        self.ensure_positions(custodian, source, asset)
        self.ensure_positions(custodian, target, asset)
        party = source_client or target_client
        if source_client is not None and admit:
            self.clients.compliance.screen(source_client.id, flow="custody_transfer")
            usd = self._usd(source_client, asset, amount_minor)
            before = _both(self._admit(source_client, "custody_transfer", usd, key, None), before)
        payload = {
            **request,
            "client": party.id if party is not None else None,
            "source_account": from_record.account_id,
            "destination": {"account_id": to_record.account_id},
            "travel_rule": None,
            "holds": [
                {
                    "id": f"{TRANSFER}:{{op}}",
                    "code": TRANSFER,
                    "debit": position_account(custodian, source, asset),
                    "credit": position_account(custodian, target, asset),
                    "amount": amount_minor,
                    "asset": asset,
                }
            ],
        }
        return self._record(TRANSFER, key, request, payload, network, before)

    def convert(
        self,
        client_ref: str,
        amount_minor: int,
        from_asset: str,
        to_asset: str,
        key: str,
        *,
        network: str | None = None,
        custodian: str | None = None,
    ) -> Operation:
        """Convert a client's stablecoins into USD deposits 1:1, or USD deposits into stablecoins
        withdrawn to the client's allow-listed address. `amount_minor` is in `from_asset`'s units.

        Stablecoins to USD: the client's coins move to the desk's account at the custodian (an
        internal transfer); when the custodian completes it, the client's position goes to the
        desk's and the bank credits the client's deposit account. USD to stablecoins: the client's
        deposits are reserved and the desk's coins withdrawn to the client's address; both are
        booked when the custodian completes the withdrawal, and released if it does not."""
        custodian = custodian or self.settings.stablecoin_custodian
        network = network or self.settings.stablecoin_network
        self._check_custodian(custodian)
        check_amount(amount_minor)
        pair = (from_asset.upper(), to_asset.upper())
        if pair[1] == "USD" and pair[0] in STABLECOINS:
            coin, to_usd = pair[0], True
        elif pair[0] == "USD" and pair[1] in STABLECOINS:
            coin, to_usd = pair[1], False
        else:
            raise DomainError(
                f"a conversion is between USD and a stablecoin ({', '.join(STABLECOINS)}), "
                f"was {from_asset} to {to_asset}",
                code="conversion_not_supported",
            )
        client = self.clients.client(client_ref)
        coin_scale, usd_scale = self.scale(coin), self.scale("USD")
        factor = 10 ** (coin_scale - usd_scale)
        if to_usd:
            if amount_minor % factor:
                raise DomainError(
                    f"{format_minor(amount_minor, coin_scale)} {coin} is not a whole number of cents",
                    code="excess_precision",
                )
            coin_minor, usd_minor = amount_minor, amount_minor // factor
        else:
            coin_minor, usd_minor = amount_minor * factor, amount_minor
        request = {
            "custodian": custodian,
            "client": client.id,
            "from": pair[0],
            "to": pair[1],
            "network": network,
            "amount": amount_minor,
        }
        replayed = self.ops.replay(CONVERT, key, request)
        if replayed is not None:
            return replayed
        client = self.clients.active(client.id)
        self.clients.compliance.screen_party(client.id, flow="conversion")
        self.check_asset(custodian, coin, network)
        desk = self.open_account(custodian, DESK)
        self.ensure_positions(custodian, DESK, coin)
        self.ensure_positions(custodian, client.id, coin)
        client_position = position_account(custodian, client.id, coin)
        desk_position = position_account(custodian, DESK, coin)
        if to_usd:
            source = self._required_account(custodian, client.id)
            payload = {
                **request,
                "coin": coin,
                "coin_amount": coin_minor,
                "usd_amount": usd_minor,
                "source_account": source.account_id,
                "destination": {"account_id": desk.account_id},
                "travel_rule": None,
                "holds": [
                    {"id": f"{CONVERT}:{{op}}", "code": CONVERT, "debit": client_position, "credit": desk_position,
                     "amount": coin_minor, "asset": coin},
                    {"id": f"{CONVERT}:{{op}}:usd", "code": CONVERT, "debit": CONVERSION_ACCOUNT,
                     "credit": dda_account(client.id), "amount": usd_minor, "asset": "USD"},
                ],
            }  # fmt: skip
        else:
            address = self.clients.holder(client.id, network)
            self._check_destination(client, network, address)
            self.clients.compliance.screen(client.id, flow="conversion", addresses=((network, address),))
            payload = {
                **request,
                "coin": coin,
                "coin_amount": coin_minor,
                "usd_amount": usd_minor,
                "source_account": desk.account_id,
                "destination": {"address": address},
                "travel_rule": self._travel_rule(
                    client, coin, coin_minor, dda_account(client.id), address, self._usd(client, coin, coin_minor)
                ),
                "holds": [
                    {"id": f"{CONVERT}:{{op}}:usd", "code": CONVERT, "debit": dda_account(client.id),
                     "credit": CONVERSION_ACCOUNT, "amount": usd_minor, "asset": "USD"},
                    {"id": f"{CONVERT}:{{op}}", "code": CONVERT, "debit": desk_position,
                     "credit": holdings_account(custodian, coin), "amount": coin_minor, "asset": coin},
                ],
            }  # fmt: skip
        admit = self._admit(client, "conversion", usd_minor, key, payload["travel_rule"])
        return self._record(CONVERT, key, request, payload, network, admit)

    # ------------------------------------------------------------ advancing them

    def request_of(self, op: Operation) -> TransferRequest:
        p = op.payload
        target = p["destination"]
        destination = (
            Destination(account_id=target["account_id"])
            if "account_id" in target
            else Destination(address=target["address"])
        )
        return TransferRequest(
            idempotency_key=custody_key(op.id),
            source_account_id=p["source_account"],
            destination=destination,
            asset=str(p.get("coin") or p["asset"]),
            network=p["network"],
            amount_minor=int(p.get("coin_amount", p["amount"])),
            note=f"{op.kind} {op.id}",
            travel_rule=p.get("travel_rule"),
        )

    def holds_of(self, op: Operation) -> list[holds.Hold]:
        return [holds.Hold(spec["id"].format(op=op.id), spec["code"]) for spec in op.payload.get("holds", [])]

    def release(self, op: Operation, conn: Connection) -> None:
        for hold in self.holds_of(op):
            holds.void(self.ledger, hold, conn=conn)

    def step(self, op: Operation) -> None:
        """Move one custody operation on: send it (once), or look its transfer up."""
        c = op.state.get("custody") or {}
        custodian = self.custodian(op.payload["custodian"])
        if c.get("transfer_id"):
            self.apply(op, custodian.get(c["transfer_id"]), looked_up=True)
            return
        request = self.request_of(op)
        first = not c.get("submitting")
        client = op.payload.get("client")
        if first and op.kind == WITHDRAWAL and client and self.clients.compliance.party(client).frozen:
            # Frozen on a lawful order after it asked: a withdrawal not yet sent never leaves.
            self._end(op, None, failed=("party_frozen", "the client was frozen on a lawful order before it was sent"))
            return
        if first:
            # Recorded before the request leaves: after a crash or a timeout, the next attempt looks
            # the key up first (and the operation can no longer be cancelled without asking).
            updated = self.ops.update_if_current(
                op,
                state={**op.state, "custody": {"submitting": True}, "done": ["submit"]},
                detail=f"sending to custodian {custodian.name} under key {request.idempotency_key}",
            )
            if updated is None:
                return
            op = updated
        else:
            # An earlier attempt may have reached the custodian: only its answer to the look-up says
            # whether it did. A refusal of the look-up itself (a rotated key, a 4xx) says nothing of
            # that, so it never releases the holds: an operator looks.
            try:
                found = custodian.find(request.idempotency_key)
            except CustodianRefused as exc:
                self.ops.attention(
                    op,
                    "custody_lookup_refused",
                    f"custodian {custodian.name} refused the look-up of key {request.idempotency_key}: {exc.message}",
                )
                return
            if found is not None:
                self.apply(op, found, looked_up=True)
                return
        try:
            transfer = submit_once(custodian, request, first_attempt=True)
        except (CustodianRefused, AssetNotSupported) as exc:
            # Refused for good before or when it was sent, with nothing there for its key: nothing moved.
            self._end(op, None, failed=("custodian_refused", f"custodian {custodian.name} refused: {exc.message}"))
            return
        self.apply(op, transfer, looked_up=True)

    def _poll_delay_us(self, op: Operation) -> int:
        """The next look-up of a transfer in flight: soon while it is young (most complete in well under
        a second), then a tenth of its age, at most `custody.transfer_poll_max_s`."""
        age_s = max(0.0, (self.ctx.clock() - op.created_at_us) / 1_000_000)
        return int(min(self.settings.transfer_poll_max_s, max(0.1, age_s / 10)) * 1_000_000)

    def apply(self, op: Operation, transfer: CustodyTransfer, *, looked_up: bool = False) -> bool:
        """Apply what the custodian reported of the operation's transfer; False if the operation changed
        meanwhile (nothing written: read it again). `looked_up`: the custodian answered this worker's
        own call, so the operation's count of failed attempts starts again."""
        if op.terminal or (op.status == OpStatus.NEEDS_ATTENTION and op.error_code == CONTRADICTION):
            self._note_terminal_report(op, transfer)
            return True
        c = dict(op.state.get("custody") or {})
        if c.get("transfer_id") and c["transfer_id"] != transfer.id:
            return self._stop(
                op,
                CONTRADICTION,
                f"custodian reported transfer {transfer.id} for key {custody_key(op.id)}, "
                f"recorded is {c['transfer_id']}",
            )
        current = CustodyState(c.get("state", CustodyState.CREATED.value))
        step = advance(current, transfer.state)
        c.update(
            transfer_id=transfer.id,
            state=step.state.value,
            raw_status=transfer.raw_status if step.changed or not c.get("raw_status") else c["raw_status"],
            tx_hash=transfer.tx_hash or c.get("tx_hash"),
        )
        c.pop("submitting", None)
        state = {**op.state, "custody": c}
        if step.contradiction:
            return self._stop(
                op, CONTRADICTION, f"custodian reported {transfer.state} after {current} for transfer {transfer.id}"
            )
        if step.state in TERMINAL:
            return self._end(op, transfer, state=state)
        status = OpStatus.CONFIRMING if step.state in BROADCAST else OpStatus.SUBMITTED
        if op.status == OpStatus.NEEDS_ATTENTION:
            status = op.status  # an operator resumes it; the report is kept
        with write_transaction(self.ctx.engine) as conn:
            done = self.ops.update_if_current(
                op,
                status=status,
                state=state,
                retry_in_us=self._poll_delay_us(op),
                detail=f"custodian: {transfer.raw_status} ({step.state})" if step.changed else "",
                conn=conn,
                reset_attempts=looked_up,
            )
            if done is None:
                return False
            self._mirror(conn, op.payload["custodian"], transfer, op_id=op.id, account_id=op.payload["source_account"])
        return True

    def _stop(self, op: Operation, code: str, reason: str) -> bool:
        """Stop the operation for an operator; False when it changed meanwhile (the report comes again)."""
        return self.ops.attention(op, code, reason) is not None

    def _end(
        self,
        op: Operation,
        transfer: CustodyTransfer | None,
        *,
        state: dict[str, Any] | None = None,
        failed: tuple[str, str] | None = None,
    ) -> bool:
        """Post the holds (completed) or void them (failed, rejected, cancelled, refused), with the
        operation's end, in one transaction."""
        completed = transfer is not None and transfer.state is CustodyState.COMPLETED
        if transfer is not None and not completed:
            failed = (f"custody_{transfer.state.value}", f"custodian {op.payload['custodian']}: {transfer.raw_status}"
                      + (f" ({transfer.raw_sub_status})" if transfer.raw_sub_status else ""))  # fmt: skip
        with write_transaction(self.ctx.engine) as conn:
            if completed:
                assert transfer is not None
                done = self.ops.update_if_current(
                    op,
                    status=OpStatus.SUCCEEDED,
                    state=state,
                    result={"transfer_id": transfer.id, "tx_hash": transfer.tx_hash, "custody_state": "completed"},
                    detail=f"custodian completed transfer {transfer.id}",
                    conn=conn,
                )
            else:
                assert failed is not None
                done = self.ops.update_if_current(
                    op, status=OpStatus.FAILED, state=state, error=failed, detail=failed[1], conn=conn
                )
            if done is None:
                return False
            for hold in self.holds_of(op):
                (holds.post if completed else holds.void)(self.ledger, hold, conn=conn)
            if transfer is not None:
                self._mirror(
                    conn, op.payload["custodian"], transfer, op_id=op.id, account_id=op.payload["source_account"]
                )
        return True

    def _note_terminal_report(self, op: Operation, transfer: CustodyTransfer) -> None:
        """A report of an operation that ended: kept in the mirror (reconcile names a transfer the
        custodian completed for an operation that failed), and logged when it contradicts the end."""
        recorded = (op.state.get("custody") or {}).get("state")
        ended_failed = op.status in (OpStatus.FAILED, OpStatus.CANCELLED)
        contradicts = (
            recorded is not None
            and CustodyState(recorded) in TERMINAL
            and advance(CustodyState(recorded), transfer.state).contradiction
        ) or (ended_failed and transfer.state in BROADCAST)
        if contradicts:
            log.error(
                "custodian contradicts a finished operation op=%s status=%s recorded=%s reported=%s transfer=%s",
                op.id,
                op.status,
                recorded,
                transfer.state,
                transfer.id,
            )
        with write_transaction(self.ctx.engine) as conn:
            self._mirror(conn, op.payload["custodian"], transfer, op_id=op.id, account_id=op.payload["source_account"])
            if contradicts and ended_failed and transfer.state in BROADCAST:
                # Kept as reported, over the end the bank recorded: reconcile names it (value left
                # while the holds were released), until an operator has looked.
                t = schema.transfers
                conn.execute(
                    update(t)
                    .where(t.c.custodian == op.payload["custodian"], t.c.transfer_id == transfer.id)
                    .values(state=transfer.state.value, raw_status=transfer.raw_status[:100], op_id=op.id)
                )

    # ------------------------------------------------------------------ reports

    def _mirror(
        self, conn: Connection, custodian: str, transfer: CustodyTransfer, *, op_id: str | None, account_id: str | None
    ) -> None:
        """What the custodian last reported of a transfer (never a state before the recorded one)."""
        t = schema.transfers
        row = conn.execute(select(t.c.state).where(t.c.custodian == custodian, t.c.transfer_id == transfer.id)).first()
        now = self.ctx.clock()
        if row is None:
            try:
                with conn.begin_nested():
                    conn.execute(
                        t.insert().values(
                            custodian=custodian,
                            transfer_id=transfer.id,
                            idempotency_key=(transfer.idempotency_key or "")[:200] or None,
                            op_id=op_id,
                            incoming=int(transfer.incoming),
                            account_id=account_id,
                            asset=transfer.asset,
                            network=transfer.network,
                            amount_minor=str(transfer.amount_minor),
                            state=transfer.state.value if transfer.state is not CustodyState.UNKNOWN else "created",
                            raw_status=transfer.raw_status[:100],
                            tx_hash=(transfer.tx_hash or "")[:100] or None,
                            booked=None,
                            updated_at_us=now,
                        )
                    )
                return
            except IntegrityError:
                row = conn.execute(
                    select(t.c.state).where(t.c.custodian == custodian, t.c.transfer_id == transfer.id)
                ).one()
        for _ in range(3):
            step = advance(CustodyState(row.state), transfer.state)
            if not step.changed:
                return
            done = conn.execute(
                update(t)
                .where(t.c.custodian == custodian, t.c.transfer_id == transfer.id, t.c.state == row.state)
                .values(
                    state=step.state.value,
                    raw_status=transfer.raw_status[:100],
                    tx_hash=(transfer.tx_hash or "")[:100] or None,
                    updated_at_us=now,
                    **({"op_id": op_id} if op_id else {}),
                )
            )
            if done.rowcount == 1:
                return
            # Another report moved it meanwhile: compare with that one.
            row = conn.execute(
                select(t.c.state).where(t.c.custodian == custodian, t.c.transfer_id == transfer.id)
            ).one()

    def report(self, custodian: str, transfer: CustodyTransfer) -> str:
        """Take in one report of a transfer (a webhook, a poll): advance the operation it belongs to, or
        credit the deposit it is. What it did: `operation`, `deposit`, `recorded`."""
        op_id = op_of_key(transfer.idempotency_key) or self._op_of_transfer(custodian, transfer.id)
        if op_id is not None:
            for _ in range(5):
                try:
                    op = self.ops.get(op_id)
                except NotFound:
                    break
                if op.kind not in KINDS or op.payload.get("custodian") != custodian:
                    break
                if self.apply(op, transfer):
                    return "operation"
            else:
                log.info("custody report left to the worker op=%s (the operation keeps changing)", op_id)
                return "operation"
        if transfer.incoming:
            return self.credit_deposit(custodian, transfer)
        with write_transaction(self.ctx.engine) as conn:
            self._mirror(conn, custodian, transfer, op_id=None, account_id=transfer.source_account_id)
        return "recorded"

    def _op_of_transfer(self, custodian: str, transfer_id: str) -> str | None:
        t = schema.transfers
        with self.ctx.engine.connect() as conn:
            found = conn.execute(
                select(t.c.op_id).where(t.c.custodian == custodian, t.c.transfer_id == transfer_id)
            ).scalar()
        return None if found is None else str(found)

    def credit_deposit(self, custodian: str, transfer: CustodyTransfer) -> str:
        """A deposit the custodian completed into an account of the bank's: credit its owner's position,
        once per custodian transfer whatever the number of reports."""
        account_id = transfer.destination.account_id if transfer.destination else None
        owner = self.owner_of_account(custodian, account_id) if account_id else None
        if owner is not None and transfer.amount_minor <= 0:
            log.warning("deposit of no value recorded only custodian=%s transfer=%s", custodian, transfer.id)
            owner = None
        if (
            owner is not None
            and transfer.source_account_id
            and self.owner_of_account(custodian, transfer.source_account_id)
        ):
            # The receiving side of a transfer between two of the bank's accounts (a custodian that
            # lists both sides): the operation that asked for it books it, never this.
            owner = None
        if owner is not None and transfer.state is CustodyState.COMPLETED:
            self.ensure_positions(custodian, owner, transfer.asset)
        t = schema.transfers
        with write_transaction(self.ctx.engine) as conn:
            self._mirror(conn, custodian, transfer, op_id=None, account_id=account_id)
            if owner is None or transfer.state is not CustodyState.COMPLETED:
                if owner is None:
                    log.warning(
                        "deposit into an account the bank did not open custodian=%s transfer=%s", custodian, transfer.id
                    )
                return "recorded"
            booked = conn.execute(
                select(t.c.booked).where(t.c.custodian == custodian, t.c.transfer_id == transfer.id)
            ).scalar()
            if booked:
                return "deposit"
            ledger_id = deposit_transfer_id(custodian, transfer.id)
            (result,) = holds.book(
                self.ledger,
                [
                    TransferSpec(
                        self.ledger.account(holdings_account(custodian, transfer.asset), conn=conn).id,
                        self.ledger.account(position_account(custodian, owner, transfer.asset), conn=conn).id,
                        transfer.amount_minor,
                        id=ledger_id,
                        asset=transfer.asset,
                        code="custody_deposit",
                        memo=f"deposit {transfer.id} at {custodian}",
                    )
                ],
                conn=conn,
                what=f"deposit {transfer.id}",
            )
            conn.execute(
                update(t).where(t.c.custodian == custodian, t.c.transfer_id == transfer.id).values(booked=ledger_id)
            )
            if result.ok:
                scale = self.scale(transfer.asset)
                events.append(
                    conn,
                    [
                        events.NewEvent(
                            "custody.deposit_credited",
                            transfer.id,
                            {
                                "custodian": custodian,
                                "transfer_id": transfer.id,
                                "asset": transfer.asset,
                                "network": transfer.network,
                                "amount": format_minor(transfer.amount_minor, scale),
                                "amount_minor": str(transfer.amount_minor),
                                "tx_hash": transfer.tx_hash,
                                "owner": owner,
                            },
                            None if owner == DESK else owner,
                        )
                    ],
                    self.ctx.clock(),
                )
        return "deposit"

    def webhook(self, custodian: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        """A custodian's notification: verified (WebhookRejected otherwise), taken in once per event id."""
        try:
            self._check_custodian(custodian)
            port = self.custodian(custodian)
        except DomainError as exc:
            # Nothing of the configuration to an anonymous caller; the operator reads the log.
            log.warning("webhook for custodian %r refused: %s", custodian[:64], exc.message)
            raise NotFound("no such webhook endpoint", code="custodian_not_found") from None
        try:
            event: WebhookEvent = port.verify_webhook(headers, body)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise WebhookUnreadable(f"the notification's body cannot be read: {type(exc).__name__}") from None
        except DomainError as exc:
            if isinstance(exc, WebhookRejected):
                raise
            raise WebhookUnreadable(f"the notification's body cannot be read: {exc.message}") from None
        t = schema.webhooks
        with self.ctx.engine.connect() as conn:
            seen = conn.execute(
                select(t.c.applied).where(t.c.custodian == custodian, t.c.event_id == event.id[:200])
            ).first()
        if seen is not None and seen.applied:
            return {"event": event.id, "duplicate": True}
        outcome = self.report(custodian, event.transfer) if event.transfer is not None else "recorded"
        try:
            with write_transaction(self.ctx.engine) as conn:
                if seen is None:
                    conn.execute(
                        t.insert().values(
                            custodian=custodian,
                            event_id=event.id[:200],
                            type=event.type[:100],
                            transfer_id=event.transfer.id if event.transfer else None,
                            received_at_us=self.ctx.clock(),
                            applied=1,
                        )
                    )
                else:
                    conn.execute(
                        update(t).where(t.c.custodian == custodian, t.c.event_id == event.id[:200]).values(applied=1)
                    )
        except IntegrityError:
            return {"event": event.id, "duplicate": True}
        return {"event": event.id, "duplicate": False, "outcome": outcome}

    def cursor(self, custodian: str) -> str | None:
        t = schema.cursors
        with self.ctx.engine.connect() as conn:
            return conn.execute(select(t.c.cursor).where(t.c.custodian == custodian)).scalar()

    def _save_cursor(self, custodian: str, cursor: str | None) -> None:
        t = schema.cursors
        with write_transaction(self.ctx.engine) as conn:
            done = conn.execute(
                update(t).where(t.c.custodian == custodian).values(cursor=cursor, updated_at_us=self.ctx.clock())
            )
            if done.rowcount == 0:
                conn.execute(t.insert().values(custodian=custodian, cursor=cursor, updated_at_us=self.ctx.clock()))

    def deposits_in_flight(self, custodian: str, limit: int = FOLLOW_MAX) -> list[str]:
        """Deposits into the bank's accounts that the custodian reported and the bank has not credited:
        not complete when last seen (a custodian lists a transfer once, when it is new, so its later
        states are looked up), or complete when its account was not yet the bank's. Least recently
        looked at first, so that none waits behind others."""
        t, a = schema.transfers, schema.accounts
        ours = select(a.c.account_id).where(a.c.custodian == custodian)
        with self.ctx.engine.connect() as conn:
            rows = conn.execute(
                select(t.c.transfer_id)
                .where(
                    t.c.custodian == custodian,
                    t.c.incoming == 1,
                    t.c.booked.is_(None),
                    t.c.account_id.in_(ours),
                    t.c.state.notin_(
                        [CustodyState.FAILED.value, CustodyState.REJECTED.value, CustodyState.CANCELLED.value]
                    ),
                )
                .order_by(t.c.updated_at_us, t.c.transfer_id)
                .limit(limit)
            )
            return [str(r.transfer_id) for r in rows]

    def _follow(self, custodian: str, transfer_id: str) -> CustodyTransfer | None:
        """Look one deposit up again; None when the custodian does not show it or answers nonsense for
        it (logged, tried later). Marked as looked at first, so that one that fails never holds the
        others back."""
        t = schema.transfers
        with write_transaction(self.ctx.engine) as conn:
            conn.execute(
                update(t)
                .where(t.c.custodian == custodian, t.c.transfer_id == transfer_id)
                .values(updated_at_us=self.ctx.clock())
            )
        try:
            return self.custodian(custodian).get(transfer_id)
        except (TransferNotFound, CustodianRefused, CustodianAnswerUnreadable) as exc:
            log.warning("deposit not read again custodian=%s transfer=%s: %s", custodian, transfer_id, exc.message)
            return None

    def _take_in(self, custodian: str, transfer: CustodyTransfer) -> None:
        """One report from polling; a transfer that cannot be taken in (a deterministic failure) is
        logged and set aside, never a reason to stop reading the others."""
        try:
            self.report(custodian, transfer)
        except Exception as exc:
            if database_away(exc) or (
                isinstance(exc, CustodianUnavailable) and not isinstance(exc, CustodianAnswerUnreadable)
            ):
                raise
            log.error(
                "custodian transfer set aside custodian=%s transfer=%s: %s",
                custodian,
                transfer.id[:200],
                getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}",
            )

    def poll(self, custodian: str) -> tuple[int, bool]:
        """Read the custodian's transfers since the last poll and take each in, then look up the deposits
        it listed before that are not complete yet (the backstop of its webhooks); (how many were read,
        whether more are waiting)."""
        port = self.custodian(custodian)
        cursor = self.cursor(custodian)
        read = 0
        more = True
        for _ in range(PAGES_PER_POLL):
            page = port.transfers(cursor)
            for transfer in page.transfers:
                self._take_in(custodian, transfer)
            read += len(page.transfers)
            if page.cursor != cursor:
                cursor = page.cursor
                self._save_cursor(custodian, cursor)
            if not page.more:
                more = False
                break
        for transfer_id in self.deposits_in_flight(custodian):
            followed = self._follow(custodian, transfer_id)
            if followed is not None:
                self._take_in(custodian, followed)
        return read, more

    def arriving(self, custodian: str, pages: int = PAGES_PER_POLL) -> Iterable[CustodyTransfer]:
        """Deposits into the bank's accounts that the custodian shows and the bank has not credited yet
        (those it reported before, and those listed from the last poll's cursor on), changing nothing:
        what reconcile counts as arriving. Not failed ones: a custodian may count a deposit in its
        total while it confirms."""
        port = self.custodian(custodian)
        seen: set[str] = set()
        failed = (CustodyState.FAILED, CustodyState.REJECTED, CustodyState.CANCELLED)
        for transfer_id in self.deposits_in_flight(custodian, limit=10_000):
            try:
                transfer = port.get(transfer_id)
            except TransferNotFound:
                continue
            if transfer.incoming and transfer.state not in failed:
                seen.add(transfer.id)
                yield transfer
        cursor = self.cursor(custodian)
        t = schema.transfers
        for _ in range(pages):
            page = port.transfers(cursor)
            for transfer in page.transfers:
                if transfer.incoming and transfer.state not in failed and transfer.id not in seen:
                    with self.ctx.engine.connect() as conn:
                        booked = conn.execute(
                            select(t.c.booked).where(t.c.custodian == custodian, t.c.transfer_id == transfer.id)
                        ).scalar()
                    if not booked:
                        yield transfer
            cursor = page.cursor
            if not page.more:
                return

    def completed_for_failed(self, custodian: str) -> list[tuple[str, str]]:
        """Transfers the custodian reported completed (or on their way out) for an operation that ended
        failed or cancelled: value left while the bank released its holds. (transfer id, operation id)."""
        from andchain.ops import schema as ops_schema

        t, o = schema.transfers, ops_schema.operations
        out_states = [s.value for s in BROADCAST]
        with self.ctx.engine.connect() as conn:
            rows = conn.execute(
                select(t.c.transfer_id, t.c.op_id)
                .join(o, o.c.id == t.c.op_id)
                .where(
                    t.c.custodian == custodian,
                    t.c.state.in_(out_states),
                    o.c.status.in_([OpStatus.FAILED.value, OpStatus.CANCELLED.value]),
                )
            )
            return [(str(r.transfer_id), str(r.op_id)) for r in rows]


class CustodyHandler:
    """The worker's handler of custody operations."""

    kinds = KINDS

    def __init__(self, service: CustodyService) -> None:
        self.service = service
        self.ops = service.ops

    def advance(self, ops: list[Operation]) -> None:
        """Each operation on its own: a custodian that does not answer one postpones only that one."""
        for op in ops:
            try:
                self.service.step(op)
            except CustodianUnavailable as exc:
                postpone(self.ops, op, exc)

    def recover(self) -> None:
        """Nothing: every operation finds its transfer by its key."""

    def release(self, op: Operation, conn: Connection) -> None:
        self.service.release(op, conn)

    def quarantine(self, op: Operation, exc: BaseException) -> None:
        current = self.ops.get(op.id)
        if current.terminal or current.status == OpStatus.NEEDS_ATTENTION:
            return
        self.ops.attention(current, "internal_error", f"{type(exc).__name__}: {exc}")


class CustodyPollPart:
    """Polls one custodian's transfers beside the webhooks, once the bank has an account there."""

    def __init__(self, service: CustodyService, custodian: str, monotonic: Any = None) -> None:
        import time

        self.service = service
        self.custodian = custodian
        self.name = f"custody-poll:{custodian}"
        self._monotonic = monotonic or time.monotonic
        self._next_s = 0.0
        self._idle = False

    def run(self) -> None:
        if self._monotonic() < self._next_s:
            return
        if not self.service.accounts(self.custodian):
            self._idle = True
            self._next_s = self._monotonic() + self.service.settings.poll_s
            return
        _, more = self.service.poll(self.custodian)
        self._idle = not more
        self._next_s = 0.0 if more else self._monotonic() + self.service.settings.poll_s

    def idle(self) -> bool:
        return self._idle
