"""Clients, their deposit accounts, and where their tokens live on each network.

On a permissioned network the bank manages each client's wallet (a key in the bank's
key store); on a public one the client owns its address and proves it by signing a
challenge (EIP-191), after which the address is screened and recorded. Each holder's
balance of each token on each network is mirrored by a ledger account.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import is_address, to_checksum_address
from sqlalchemy import Connection, Engine, select, update

from andchain.chains.keys import KeyStore
from andchain.compliance import audit
from andchain.compliance.service import Compliance
from andchain.config import Settings
from andchain.db import IN_LIST_MAX, in_chunks, write_transaction
from andchain.errors import Conflict, DomainError, NotFound
from andchain.ledger import AccountFlags, AccountKind, AccountSpec, IdSource, Ledger, Result, TransferSpec
from andchain.ledger.model import Clock
from andchain.ops.holds import book
from andchain.tokens import schema
from andchain.tokens.model import (
    BANK_CASH,
    BANK_SEIZED,
    BANK_SUSPENSE,
    TOKENS,
    Client,
    ClientKind,
    ClientStatus,
    RegisteredAddress,
    TokenDef,
    Wallet,
    check_amount,
    dda_account,
    holder_account,
)

log = logging.getLogger(__name__)


class Clients:
    def __init__(
        self, engine: Engine, ledger: Ledger, keys: KeyStore, settings: Settings, clock: Clock, ids: IdSource
    ) -> None:
        self.engine = engine
        self.ledger = ledger
        self.keys = keys
        self.settings = settings
        self.clock = clock
        self.ids = ids
        # Screening, KYC, limits and monitoring for every flow that goes through a client.
        self.compliance = Compliance(engine, settings, clock, ids)
        # Wallets never change owner or address; only their allow-listed flag turns true.
        self._wallets: dict[tuple[str, str], Wallet] = {}
        self._owners: dict[tuple[str, str], str] = {}
        self._mirrored: set[tuple[str, str]] = set()  # accounts never disappear: opened once is enough

    # ------------------------------------------------------------ accounts

    def bank_accounts(self, conn: Connection | None = None) -> None:
        specs = [
            AccountSpec(BANK_CASH, "USD", kind=AccountKind.ASSET),
            AccountSpec(BANK_SUSPENSE, "USD", kind=AccountKind.LIABILITY),
            AccountSpec(BANK_SEIZED, "USD", kind=AccountKind.LIABILITY),
            AccountSpec("bank:mmf:issuance", "MMF", kind=AccountKind.EQUITY),
        ]
        results = self.ledger.create_accounts(specs, conn=conn)
        bad = [r for r in results if not r.ok]
        if bad:
            raise DomainError(f"bank account {bad[0].id} refused: {bad[0].result.value}", code=bad[0].result.value)

    def holder_accounts(self, network: str, address: str, conn: Connection | None = None) -> None:
        """The ledger mirrors of one address's balance of every token on `network`."""
        key = (network, address.lower())
        if key in self._mirrored:
            return
        specs = [
            AccountSpec(holder_account(network, token, address), token.asset.code, kind=AccountKind.LIABILITY)
            for token in TOKENS.values()
        ]
        results = self.ledger.create_accounts(specs, conn=conn)
        bad = [r for r in results if not r.ok]
        if bad:
            raise DomainError(f"mirror account {bad[0].id} refused: {bad[0].result.value}", code=bad[0].result.value)
        if conn is None:  # inside a caller's transaction it may still roll back
            self._mirrored.add(key)

    def holder_id(
        self,
        network: str,
        token: TokenDef,
        address: str,
        conn: Connection | None = None,
        known: Mapping[str, int] | None = None,
    ) -> int:
        """The id of an address's mirror of a token, opened when missing; `known`: ids read already."""
        name = holder_account(network, token, address)
        if known is not None and name in known:
            return known[name]
        (result,) = self.ledger.create_accounts(
            [AccountSpec(name, token.asset.code, kind=AccountKind.LIABILITY)], conn=conn
        )
        if not result.ok or result.account_id is None:
            raise DomainError(f"mirror account {name} refused: {result.result.value}", code=result.result.value)
        return result.account_id

    def account_id(self, name: str, conn: Connection | None = None) -> int:
        if conn is not None:
            from andchain.ledger import schema as ledger_schema

            found = conn.execute(
                select(ledger_schema.accounts.c.id).where(ledger_schema.accounts.c.name == name)
            ).scalar()
            if found is None:
                raise NotFound(f"no account {name!r}", code="account_not_found")
            return int(found)
        return self.ledger.account(name).id

    # ------------------------------------------------------------ clients

    def onboard(self, name: str, kind: str = ClientKind.LEGAL, *, by: str = "andchain") -> Client:
        """A client record, its compliance party and its USD deposit account (idempotent by name). A new
        client's name is screened first: a sanctioned name is refused and an alert opened."""
        if not isinstance(name, str) or not name.strip() or len(name) > 200 or "\x00" in name:
            raise DomainError("client name must be 1-200 characters", code="invalid_request")
        try:
            kind = ClientKind(kind).value
        except ValueError:
            raise DomainError(f"client kind must be legal or natural, was {kind!r}", code="invalid_request") from None
        t = schema.clients
        with self.engine.connect() as conn:
            known = conn.execute(select(t.c.id).where(t.c.name == name)).scalar()
        if known is None:
            self.compliance.screen_name(name, flow="onboarding")
        with write_transaction(self.engine) as conn:
            self.bank_accounts(conn)
            row = conn.execute(select(t).where(t.c.name == name)).first()
            if row is None:
                client_id = self.ids.new_id().lower()
                conn.execute(
                    t.insert().values(
                        id=client_id, name=name, kind=kind, status=ClientStatus.ACTIVE.value, created_at_us=self.clock()
                    )
                )
            elif row.kind != kind:
                raise Conflict(f"client {name!r} exists as a {row.kind} person", code="client_exists")
            else:
                client_id = row.id
            dda = AccountSpec(
                dda_account(client_id),
                "USD",
                kind=AccountKind.LIABILITY,
                flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
            )
            (result,) = self.ledger.create_accounts([dda], conn=conn)
            if not result.ok:
                raise DomainError(f"deposit account refused: {result.result.value}", code=result.result.value)
            self.compliance.ensure_party(conn, client_id)
            if row is None:
                audit.append(
                    conn, self.clock, by, "client.onboarded", f"client:{client_id}", {"name": name, "kind": kind}
                )
        return self.client(client_id)

    def clients_named(self, refs: Sequence[str]) -> dict[str, Client]:
        """The clients these references name (an id or a name each), by reference, read at once; a
        reference that names none is left out (`client` gives its error)."""
        valid = sorted({ref for ref in refs if isinstance(ref, str) and ref and len(ref) <= 200})
        t = schema.clients
        by_id: dict[str, Client] = {}
        by_name: dict[str, Client] = {}
        with self.engine.connect() as conn:
            for chunk in in_chunks(valid, IN_LIST_MAX // 2):  # two IN lists of the chunk's size
                ids = [ref.lower() for ref in chunk]
                for row in conn.execute(select(t).where(t.c.id.in_(ids) | t.c.name.in_(chunk))):
                    client = Client(row.id, row.name, row.kind, row.status, int(row.created_at_us))
                    by_id[client.id] = by_name[client.name] = client
        named = {ref: by_id.get(ref.lower()) or by_name.get(ref) for ref in valid}
        return {ref: client for ref, client in named.items() if client is not None}

    def client(self, ref: str) -> Client:
        if not isinstance(ref, str) or not ref or len(ref) > 200:
            raise NotFound(f"no client {ref!r}", code="client_not_found")
        t = schema.clients
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where((t.c.id == ref.lower()) | (t.c.name == ref))).first()
        if row is None:
            raise NotFound(f"no client {ref!r}", code="client_not_found")
        return Client(row.id, row.name, row.kind, row.status, int(row.created_at_us))

    def clients(self, *, after_id: str | None = None, limit: int | None = None) -> list[Client]:
        """Clients in the order of their ids (time-ordered: the order they were onboarded), a page at a time
        when `limit` is given: those after `after_id`."""
        t = schema.clients
        query = select(t).order_by(t.c.id)
        if after_id is not None:
            query = query.where(t.c.id > after_id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [Client(r.id, r.name, r.kind, r.status, int(r.created_at_us)) for r in conn.execute(query)]

    def set_status(self, client_ref: str, status: str) -> Client:
        """Suspend a client, or make it active again. A suspended client's requests (deposits, mints,
        payments to or from it, redemptions, moves, DvP) are refused with `client_not_active`; what it
        already asked for goes on. Setting the status it already has changes nothing."""
        try:
            wanted = ClientStatus(status)
        except ValueError:
            raise DomainError(
                f"client status must be one of {', '.join(s.value for s in ClientStatus)}, was {status!r}",
                code="invalid_request",
            ) from None
        client = self.client(client_ref)
        if client.status == wanted:
            return client
        t = schema.clients
        with write_transaction(self.engine) as conn:
            conn.execute(update(t).where(t.c.id == client.id).values(status=wanted.value))
        log.info("client status changed client=%s from=%s to=%s", client.id, client.status, wanted.value)
        return self.client(client.id)

    def active(self, ref: str) -> Client:
        return self.ensure_active(self.client(ref))

    @staticmethod
    def ensure_active(client: Client) -> Client:
        """The client, if it may move value now (`client_not_active` otherwise)."""
        if client.status != ClientStatus.ACTIVE:
            raise DomainError(f"client {client.name} is {client.status}", code="client_not_active")
        return client

    def deposit(
        self,
        client_ref: str,
        amount_minor: int,
        reference: str,
        memo: str = "",
        *,
        cash: bool = False,
        before: Callable[[Connection], None] | None = None,
    ) -> str:
        """Credit a client's deposit account: an operator deposit (`cash` when it is currency paid in at a
        teller, which the cash monitoring rules count) or a booked camt.054 credit notice (`before` records
        the notice's payment in the same transaction).

        The reference (the notice's id) is the idempotency key: the same notice books once; the deposit is
        recorded for monitoring (cash aggregates, structuring) in the transaction that books it.
        """
        client = self.active(client_ref)
        check_amount(amount_minor)
        if not isinstance(reference, str) or not reference or len(reference) > 100:
            raise DomainError("a deposit needs a reference of 1-100 characters", code="invalid_request")
        transfer_id = f"deposit:{reference}"
        self.compliance.screen_party(client.id, flow="deposit")
        with write_transaction(self.engine) as conn:
            self._book_deposit(conn, client, amount_minor, transfer_id, reference, memo, cash, before)
        return transfer_id

    def _book_deposit(
        self,
        conn: Connection,
        client: Client,
        amount_minor: int,
        transfer_id: str,
        reference: str,
        memo: str,
        cash: bool,
        before: Callable[[Connection], None] | None,
    ) -> None:
        # The party's lock before the ledger's rows, as every flow takes them: a deposit that locked the DDA
        # first and then waited for the party could meet a mint of the same client in a circle (PostgreSQL).
        self.compliance.lock(conn, [client.id])
        (result,) = book(
            self.ledger,
            [
                TransferSpec(
                    self.account_id(BANK_CASH, conn),
                    self.account_id(dda_account(client.id), conn),
                    amount_minor,
                    id=transfer_id,
                    code="deposit",
                    memo=(memo or reference)[:256],
                    asset="USD",
                )
            ],
            what=f"deposit {reference}",
            conn=conn,
        )
        if result.result == Result.OK:  # booked now, not before: recorded once
            if before is not None:
                before(conn)
            self.compliance.admit(
                conn, client.id, "deposit", amount_minor, transfer_id, direction="in", cash=cash, limits=False
            )

    def dda_balance(self, client_ref: str) -> int:
        return self.ledger.account(dda_account(self.client(client_ref).id)).balance_posted

    # ------------------------------------------------------------ wallets

    def wallet(self, client_ref: str, network: str) -> Wallet:
        """The client's bank-managed address on `network` (created on first use; allow-listed by its first op)."""
        return self.wallet_of(self.active(client_ref), network)

    def wallet_of(self, client: Client, network: str) -> Wallet:
        """`wallet` of a client already read (active, or refused)."""
        self.ensure_active(client)
        cached = self._wallets.get((client.id, network))
        if cached is not None:
            return cached
        self.settings.network(network)
        t = schema.wallets
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.client_id == client.id, t.c.network == network)).first()
        if row is None:
            label = f"client:{client.id}"
            address = self.keys.create(label)
            with write_transaction(self.engine) as conn:
                exists = conn.execute(
                    select(t.c.address).where(t.c.client_id == client.id, t.c.network == network)
                ).first()
                if exists is None:
                    conn.execute(
                        t.insert().values(
                            network=network,
                            address=address,
                            client_id=client.id,
                            key_label=label,
                            allowlisted=False,
                            created_at_us=self.clock(),
                        )
                    )
                self.holder_accounts(network, address, conn)
            return self.wallet_of(client, network)
        wallet = Wallet(row.client_id, row.network, row.address, bool(row.allowlisted))
        self._wallets[(client.id, network)] = wallet
        return wallet

    def wallets_on(self, network: str, client_ids: Sequence[str]) -> dict[str, Wallet]:
        """The bank-managed wallets these clients have on `network` (by client; none is created here)."""
        t = schema.wallets
        with self.engine.connect() as conn:
            return {
                row.client_id: Wallet(row.client_id, row.network, row.address, bool(row.allowlisted))
                for chunk in in_chunks(sorted(set(client_ids)))
                for row in conn.execute(select(t).where(t.c.network == network, t.c.client_id.in_(chunk)))
            }

    def wallets(self, client_id: str) -> list[Wallet]:
        """The client's bank-managed wallets, one per network where it has one (none is created here)."""
        t = schema.wallets
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.client_id == client_id).order_by(t.c.network))
            return [Wallet(r.client_id, r.network, r.address, bool(r.allowlisted)) for r in rows]

    def addresses(self, client_id: str) -> list[RegisteredAddress]:
        """The addresses the client registered on public networks (verified or blocked), oldest first."""
        a = schema.client_addresses
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(a).where(a.c.client_id == client_id).order_by(a.c.registered_at_us, a.c.network, a.c.address)
            )
            return [
                RegisteredAddress(
                    r.client_id, r.network, r.address, r.status, bool(r.allowlisted), int(r.registered_at_us)
                )
                for r in rows
            ]

    def holder(self, client_id: str, network: str) -> str:
        """Where the client's tokens live on a network: a bank-managed wallet on a permissioned one,
        the client's own verified address on a public one."""
        if self.settings.network(network).kind == "permissioned":
            return self.wallet(client_id, network).address
        a = schema.client_addresses
        with self.engine.connect() as conn:
            address = conn.execute(
                select(a.c.address)
                .where(a.c.client_id == client_id, a.c.network == network, a.c.status == "verified")
                .order_by(a.c.registered_at_us)
            ).scalar()
        if address is None:
            raise DomainError(
                f"the client has no verified address on {network}; register one first", code="no_registered_address"
            )
        return str(address)

    def holder_of(self, client: Client, network: str) -> str:
        """`holder` of a client already read."""
        if self.settings.network(network).kind == "permissioned":
            return self.wallet_of(client, network).address
        return self.holder(client.id, network)

    def bank_managed(self, network: str, address: str) -> bool:
        """Whether the bank holds the key of this client address (a managed wallet), so it can sign for it."""
        t = schema.wallets
        with self.engine.connect() as conn:
            found = conn.execute(
                select(t.c.client_id).where(t.c.network == network, t.c.address == to_checksum_address(address))
            ).first()
        return found is not None

    def wallet_owner(self, network: str, address: str) -> str | None:
        """The client an address on a network belongs to: its bank-managed wallet or its registered address."""
        key = (network, address.lower())
        if key in self._owners:
            return self._owners[key]
        t, a = schema.wallets, schema.client_addresses
        checksum = to_checksum_address(address)
        with self.engine.connect() as conn:
            owner = conn.execute(select(t.c.client_id).where(t.c.network == network, t.c.address == checksum)).scalar()
            if owner is None:
                owner = conn.execute(
                    select(a.c.client_id).where(
                        a.c.network == network, a.c.address == checksum, a.c.status == "verified"
                    )
                ).scalar()
        if owner is not None:
            self._owners[key] = owner
        return owner

    def allowlisted_wallet(self, network: str, address: str) -> bool:
        """Whether the bank already allow-listed this client wallet on the deposit token (from the cache first)."""
        for wallet in self._wallets.values():
            if wallet.network == network and wallet.address.lower() == address.lower():
                if wallet.allowlisted:
                    return True
                break
        owner = self.wallet_owner(network, address)
        return (
            owner is not None
            and self.settings.network(network).kind == "permissioned"
            and (self.wallet(owner, network).allowlisted)
        )

    def mark_allowlisted(self, network: str, address: str, conn: Connection | None = None) -> None:
        for key, wallet in list(self._wallets.items()):
            if wallet.network == network and wallet.address.lower() == address.lower():
                self._wallets[key] = Wallet(wallet.client_id, network, wallet.address, True)
        checksum = to_checksum_address(address)
        statements = [
            update(t).where(t.c.network == network, t.c.address == checksum).values(allowlisted=True)
            for t in (schema.wallets, schema.client_addresses)
        ]
        if conn is not None:
            for stmt in statements:
                conn.execute(stmt)
        else:
            with write_transaction(self.engine) as own:
                for stmt in statements:
                    own.execute(stmt)

    # ------------------------------------------------- client-owned addresses

    def challenge(self, client_ref: str, network: str) -> tuple[str, str]:
        """A message the client signs (EIP-191 personal_sign) with the key of the address it registers."""
        client = self.client(client_ref)
        settings = self.settings.network(network)
        if settings.kind != "public":
            raise DomainError(
                f"{network} is a permissioned network: the bank manages client addresses there",
                code="not_a_public_network",
            )
        nonce = secrets.token_hex(16)
        expires = self.clock() + self.settings.compliance.challenge_ttl_s * 1_000_000
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

    def _check_challenge(self, row: Any, client: Client, network: str, address: str, signature: str) -> None:
        if row is None or row.client_id != client.id or row.network != network:
            raise NotFound("no such challenge for this client and network", code="challenge_not_found")
        if row.used:
            raise Conflict("this challenge was already used", code="challenge_used")
        if row.expires_at_us < self.clock():
            raise DomainError("the challenge expired; ask for a new one", code="challenge_expired")
        try:
            signer = Account.recover_message(encode_defunct(text=row.message), signature=signature)
        except Exception:
            raise DomainError("the signature is not a valid EIP-191 signature", code="invalid_signature") from None
        if signer.lower() != address.lower():
            raise DomainError(f"the challenge was signed by {signer}, not by {address}", code="invalid_signature")

    def register(self, client_ref: str, network: str, nonce: str, address: str, signature: str) -> str:
        """Verify the signed challenge, screen the address, record it; it is allow-listed by its first op."""
        client = self.client(client_ref)
        if not isinstance(address, str) or not is_address(address):
            raise DomainError(f"not an address: {address!r}", code="invalid_address")
        t = schema.challenges
        with self.engine.connect() as conn:
            self._check_challenge(conn.execute(select(t).where(t.c.nonce == nonce)).first(), client, network,
                                  address, signature)  # fmt: skip
        # Screened once its owner proved it: nobody opens alerts with addresses it does not hold.
        self.compliance.screen(client.id, flow="address_registration", addresses=((network, address),))
        with write_transaction(self.engine) as conn:
            row = conn.execute(select(t).where(t.c.nonce == nonce)).first()
            self._check_challenge(row, client, network, address, signature)
            address = to_checksum_address(address)
            status = "verified"
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
                        registered_at_us=self.clock(),
                    )
                )
        self.holder_accounts(network, address)
        return address
