"""Requests that move tokens: each one is checked, then recorded as an operation together with
the ledger hold it needs, in one database transaction, before anything is sent.

A request is identified by its idempotency key and by what the caller asked (client,
network, amount...): a retry with the same key and the same request returns the first
operation, whatever the state of the world when it is retried; the same key with a
different request is a conflict. Values derived while taking the request (the
holder's address, a deadline) are kept in the operation, never compared.
A request the ledger refuses (insufficient funds) records nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from eth_utils import is_address, to_checksum_address
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from andchain.chains.client import ChainClient
from andchain.chains.contracts import encode_memo
from andchain.compliance.service import Admission, Compliance, Party
from andchain.config import Settings
from andchain.db import lock_conflict, write_transaction
from andchain.errors import DomainError
from andchain.ledger import Ledger
from andchain.ops import Operation, Operations, holds
from andchain.ops.core import NewOperation
from andchain.tokens.booking import TOKEN_ABI
from andchain.tokens.clients import Clients
from andchain.tokens.controls import NetworkControls
from andchain.tokens.model import (
    DEPOSIT_TOKEN,
    DVP,
    FUND_SHARE,
    TOKENS,
    Client,
    check_amount,
    dda_account,
    holder_account,
)
from andchain.tokens.setup import TokenSetup

log = logging.getLogger(__name__)

DEPOSIT = TOKENS[DEPOSIT_TOKEN]
SHARES = TOKENS[FUND_SHARE]
MMF_ISSUANCE = "bank:mmf:issuance"
DVP_TTL_MAX_S = 30 * 86_400


# The most items one batch request records (`POST /v1/tokens/mints/batch`, `.../payments/batch`).
BATCH_MAX = 1000
# How many times a batch is recorded when PostgreSQL refuses its transaction for a lock conflict.
BATCH_ATTEMPTS = 3


@dataclass(frozen=True)
class _Admit:
    """What a request admits in its operation's transaction: its parties' movements (compliance), then the
    caller's other steps there."""

    compliance: Compliance
    admissions: tuple[Admission, ...]
    also: tuple[Callable[[Connection], None], ...] = ()

    def __call__(self, conn: Connection) -> None:
        self.compliance.admit_many(conn, self.admissions)
        for step in self.also:
            step(conn)

    @staticmethod
    def all(conn: Connection, admits: list[_Admit]) -> None:
        """Several requests' admissions, in order, at once; then their other steps, in order."""
        if admits:
            admits[0].compliance.admit_many(conn, [a for admit in admits for a in admit.admissions])
        for admit in admits:
            for step in admit.also:
                step(conn)


class _OneByOne(Exception):
    """A batch's items cannot all be recorded together: they are recorded one by one."""


@dataclass(frozen=True)
class _Prepared:
    """A request checked and screened, ready to be recorded: its operation, the parties whose compliance
    locks it takes, what it admits and what it reserves (in the transaction that records it)."""

    kind: str
    key: str
    request: dict[str, Any]
    payload: dict[str, Any]
    network: str
    parties: tuple[str, ...]
    admit: Callable[[Connection], None]
    reserve: _Reservation | None = None
    networks: tuple[str, ...] = ()  # the networks whose move controls it consumes (locked in one order first)


@dataclass(frozen=True)
class _Reservation:
    """What a request reserves in the transaction that records its operation: `amount_minor` from the account
    named `debit` to the one named `credit`. A batch reads the ids of all its items' accounts at once."""

    ledger: Ledger
    clients: Clients
    hold: Callable[[str], holds.Hold]
    debit: str
    credit: str
    amount_minor: int
    asset: str
    memo: str

    def __call__(self, op: Operation, conn: Connection, ids: Mapping[str, int] | None = None) -> None:
        """`ids`: account ids by name, read already (a name missing there is looked up)."""
        known = ids or {}

        def account(name: str) -> int:
            return known[name] if name in known else self.clients.account_id(name, conn)

        holds.reserve(
            self.ledger,
            self.hold(op.id),
            account(self.debit),
            account(self.credit),
            self.amount_minor,
            self.asset,
            memo=self.memo,
            conn=conn,
        )


def mint_hold(op_id: str) -> holds.Hold:
    return holds.Hold(f"mint:{op_id}", "mint")


def redeem_hold(op_id: str) -> holds.Hold:
    return holds.Hold(f"redeem:{op_id}", "redeem")


def move_hold(op_id: str) -> holds.Hold:
    return holds.Hold(f"move:{op_id}", "move")


def issue_hold(op_id: str) -> holds.Hold:
    return holds.Hold(f"issue:{op_id}", "issue_shares")


def _nothing(conn: Connection) -> None:
    """What a request admits that compliance admits elsewhere (a redemption that funds a trade)."""


def _spend(spent: dict[tuple[str, str], int] | None, network: str, holder: str, total: int) -> None:
    """Count what a batch's items take from a holder once prepared (an item refused later still counts:
    never too little)."""
    if spent is not None:
        spent[(network, holder)] = total


class _Reads:
    """What a request's checks read before its transaction, each thing read once. A batch's items share
    one, and `prefetch` reads their clients, their keys, their parties, their wallets and their balances
    in a statement each, not a few statements per item. These checks are as advisory as one request's
    reads before its transaction always were: the transaction itself reserves a mint's or a redemption's
    funds, admits the parties' limits and finds a key taken meanwhile (a twin request); a payment's
    funds are then the chain's to refuse."""

    def __init__(self, requests: Requests) -> None:
        self._r = requests
        self._clients: dict[str, Client] = {}  # by reference (an id or a name) and by id
        self._keys: set[str] | None = None  # the keys that name an operation, once prefetched
        self._holders: dict[tuple[str, str], str] = {}
        self._held: dict[tuple[str, str], int] = {}
        self._parties: dict[str, Party] = {}
        self._item_keys: list[Any] = []  # each item's key, in the batch's order, once prefetched

    def prefetch(self, network: str, refs: list[str], keys: list[Any], holders_of: list[str]) -> None:
        """Read at once: the clients `refs` name, which of `keys` name an operation, the clients' parties,
        and the wallets and balances on `network` of the clients `holders_of` names (its payers). A
        reference, a wallet or a balance not found here is read as one request reads it, with its error."""
        r = self._r
        for ref, client in r.clients.clients_named(refs).items():
            self._clients[ref] = self._clients[client.id] = client
        self._item_keys = keys
        self._keys = r.ops.keys_in_use([key for key in keys if isinstance(key, str)])
        ids = sorted({client.id for client in self._clients.values()})
        self._parties.update(r.clients.compliance.parties_of(ids))
        profile = r.settings.networks.get(network) if isinstance(network, str) else None
        if profile is None or profile.kind != "permissioned":
            return  # a public network's holders are the clients' registered addresses: read one by one
        payers = {self._clients[ref].id for ref in holders_of if isinstance(ref, str) and ref in self._clients}
        for client_id, wallet in r.clients.wallets_on(network, sorted(payers)).items():
            self._holders[(client_id, network)] = wallet.address
        names = {
            holder_account(network, DEPOSIT, address): (network, address)
            for (_, on), address in self._holders.items()
            if on == network
        }
        for name, account in r.ledger.accounts_named(sorted(names)).items():
            self._held[names[name]] = account.available

    def client(self, ref: str) -> Client:
        client = self._clients.get(ref) if isinstance(ref, str) else None
        if client is None:
            client = self._r.clients.client(ref)
            self._clients[ref] = self._clients[client.id] = client
        return client

    def active(self, ref: str) -> Client:
        return self._r.clients.ensure_active(self.client(ref))

    def appeared(self, item: int) -> bool:
        """Whether the key of the batch's `item`, unused when the batch read its keys, names an operation now:
        a twin request recorded it since (that item is then a replay, not a refusal)."""
        key = self._item_keys[item] if 0 <= item < len(self._item_keys) else None
        if self._keys is None or not isinstance(key, str) or key in self._keys:
            return False
        if self._r.ops.find_by_key(key) is None:
            return False
        self._keys.add(key)
        return True

    def known(self, key: str) -> bool:
        """Whether an operation has this idempotency key (a replay, or a conflict)."""
        if self._keys is not None and isinstance(key, str):
            return key in self._keys
        return self._r.ops.find_by_key(key) is not None

    def holder(self, client: Client, network: str) -> str:
        """`Clients.holder` of a client already read and found active."""
        holder = self._holders.get((client.id, network))
        if holder is None:
            holder = self._holders[(client.id, network)] = self._r.clients.holder_of(client, network)
        return holder

    def held(self, network: str, holder: str) -> int:
        """What the holder's mirror has available, as read before the batch's items take from it."""
        held = self._held.get((network, holder))
        if held is None:
            held = self._held[(network, holder)] = self._r.ledger.account(
                holder_account(network, DEPOSIT, holder)
            ).available
        return held

    def party(self, client_id: str) -> Party:
        party = self._parties.get(client_id)
        if party is None:
            party = self._parties[client_id] = self._r.clients.compliance.party(client_id)
        return party


class Requests:
    def __init__(
        self,
        engine: Engine,
        ops: Operations,
        ledger: Ledger,
        clients: Clients,
        setup: TokenSetup,
        controls: NetworkControls,
        chains: Callable[[str], ChainClient],
        settings: Settings,
    ) -> None:
        self.engine = engine
        self.ops = ops
        self.ledger = ledger
        self.clients = clients
        self.setup = setup
        self.controls = controls
        self.chains = chains
        self.settings = settings

    def _hold(
        self, hold: Callable[[str], holds.Hold], debit: str, credit: str, amount_minor: int, asset: str, memo: str
    ) -> _Reservation:
        """What a request reserves once its operation is recorded: `amount_minor` from debit to credit."""
        return _Reservation(self.ledger, self.clients, hold, debit, credit, amount_minor, asset, memo)

    def _admit(
        self,
        client_id: str,
        flow: str,
        amount_minor: int,
        key: str,
        *also: Callable[[Connection], None] | None,
        payee: str | None = None,
    ) -> _Admit:
        """What a request checks and records in its operation's transaction: the party's KYC, freeze and
        tier limits (compliance; and what arrives for the payee of a payment), then whatever else the
        caller runs there."""
        ref = f"{flow}:{key}"
        admissions = [Admission(client_id, flow, amount_minor, ref)]
        if payee is not None:
            admissions.append(Admission(payee, flow, amount_minor, ref, direction="in", limits=False))
        return _Admit(self.clients.compliance, tuple(admissions), tuple(step for step in also if step is not None))

    def _replay(self, kind: str, key: str, request: dict[str, Any]) -> Operation | None:
        return self.ops.replay(kind, key, request)

    def _record(
        self,
        kind: str,
        key: str,
        request: dict[str, Any],
        payload: dict[str, Any],
        network: str,
        reserve: Callable[[Operation, Connection], None] | None = None,
        before: Callable[[Connection], None] | None = None,
    ) -> Operation:
        """The operation and what it reserves, in one transaction (a concurrent twin request finds it)."""
        with write_transaction(self.engine) as conn:
            op, created = self.ops.create(
                kind, key, payload, request=request, network=network, conn=conn, state={"reserved": True}
            )
            if created:
                if before is not None:
                    before(conn)
                if reserve is not None:
                    reserve(op, conn)
        return op

    def _record_prepared(self, p: _Prepared) -> Operation:
        def before(conn: Connection) -> None:
            self.clients.compliance.lock(conn, list(p.parties))  # several parties: in one order
            p.admit(conn)

        return self._record(p.kind, p.key, p.request, p.payload, p.network, p.reserve, before)

    def _allowance_for_minter(self, network: str, holder: str, amount_minor: int) -> None:
        """On a public network the client signs itself: the bank's minter burns only what it was approved for."""
        if self.settings.network(network).kind != "public":
            return
        minter = self.setup.bank("minter")
        allowance = self.chains(network).read(self.setup.token_address(network), TOKEN_ABI, "allowance", holder, minter)
        if allowance < amount_minor:
            raise DomainError(
                f"{holder} must first approve the bank's minter {minter} for {amount_minor} on {network} "
                f"(allowance {allowance})",
                code="approval_required",
            )

    # ---------------------------------------------------------------- mint

    def mint(self, client_ref: str, network: str, amount_minor: int, key: str) -> Operation:
        """Mint deposit tokens to the client's holder on `network`: reserve the DDA now, mint, post when final."""
        prepared = self._prepare_mint(client_ref, network, amount_minor, key)
        if isinstance(prepared, Operation):
            return prepared
        return self._record_prepared(prepared)

    def mint_batch(self, items: list[tuple[str, str, int, str]]) -> list[Operation | DomainError]:
        """Many mints (client, network, amount, key) in one write transaction, each in a savepoint of its own:
        one refused (its funds, its limits) is that item's answer and records nothing, the others are
        recorded together. An item whose key names an operation already is answered with it (a replay)."""
        reads = self._prefetched(items, payer=0, payee=None, network=1, key=3)
        return self._record_batch("mints", [partial(self._prepare_mint, *item, reads=reads) for item in items], reads)

    def pay_batch(self, items: list[tuple[str, str, str, int, str, str]]) -> list[Operation | DomainError]:
        """Many payments (payer, payee, network, amount, memo, key) in one write transaction, as `mint_batch`:
        each checked, screened and admitted as a single payment is, refused or recorded on its own."""
        spent: dict[tuple[str, str], int] = {}  # what the batch's earlier items pay from each wallet
        reads = self._prefetched(items, payer=0, payee=1, network=2, key=5)
        return self._record_batch(
            "payments", [partial(self._prepare_pay, *item, spent=spent, reads=reads) for item in items], reads
        )

    def _prefetched(
        self, items: list[tuple[Any, ...]], *, payer: int, payee: int | None, network: int, key: int
    ) -> _Reads:
        """What a batch's items read before their transaction, read at once when they share a network (the
        fields of each item at these positions); a batch of bad shape is refused by `_record_batch`."""
        reads = _Reads(self)
        if 0 < len(items) <= BATCH_MAX and all(isinstance(item, tuple | list) and len(item) > key for item in items):
            on = items[0][network]
            if isinstance(on, str) and all(item[network] == on for item in items):
                refs = [item[payer] for item in items] + ([item[payee] for item in items] if payee is not None else [])
                reads.prefetch(on, refs, [item[key] for item in items], holders_of=[item[payer] for item in items])
        return reads

    @staticmethod
    def _prepare_item(
        make: Callable[[], Operation | _Prepared], item: int, reads: _Reads | None
    ) -> Operation | _Prepared:
        """One item prepared. One refused whose key a twin request recorded since the batch read its keys is
        prepared again: it is a replay of that operation."""
        try:
            return make()
        except DomainError as exc:
            if exc.transient or exc.try_again or reads is None or not reads.appeared(item):
                raise
        return make()

    def _record_batch(
        self, what: str, prepare: list[Callable[[], Operation | _Prepared]], reads: _Reads | None = None
    ) -> list[Operation | DomainError]:
        """Prepare every item (its checks and screening), then record those ready in one transaction, each in
        a savepoint: an item refused records nothing and is that item's answer. A transient refusal (a node,
        a busy database) says nothing of the item: the whole request fails, to be tried again. `reads`:
        what the items read once (an item refused whose key an operation took since is prepared again, and
        answered with that operation)."""
        if not 0 < len(prepare) <= BATCH_MAX:
            raise DomainError(f"a batch holds 1 to {BATCH_MAX} {what}, was {len(prepare)}", code="invalid_request")
        results: list[Operation | DomainError | None] = [None] * len(prepare)
        ready: list[tuple[int, _Prepared]] = []
        for i, make in enumerate(prepare):
            try:
                prepared = self._prepare_item(make, i, reads)
            except DomainError as exc:
                if exc.transient or exc.try_again:
                    raise
                results[i] = exc
                continue
            if isinstance(prepared, Operation):
                results[i] = prepared
            else:
                ready.append((i, prepared))
        if ready:
            # Every party's lock first, in one order; then the items that reserve ledger rows in the order of their
            # parties: two batches, or a batch and a single request, never wait on each other in a circle. Items
            # that reserve nothing (payments) keep the request's order (the day's limits count in that order).
            if any(p.reserve is not None for _, p in ready):  # rows to reserve (mints): in one order of clients
                ready.sort(key=lambda item: sorted(item[1].parties))
            for attempt in range(1, BATCH_ATTEMPTS + 1):
                try:
                    self._record_ready(ready, results)
                    break
                except DBAPIError as exc:
                    # The ledger rows of many clients are reserved one item after another: a worker's final
                    # step booking two of them (a payment) may take them in the other order, and PostgreSQL
                    # breaks the circle by refusing one transaction. Nothing of the batch was written: again.
                    if attempt == BATCH_ATTEMPTS or not lock_conflict(exc):
                        raise
                    log.info("batch of %s met a lock conflict, recorded again attempt=%d", what, attempt)
        return [r for r in results if r is not None]

    def _record_ready(self, ready: list[tuple[int, _Prepared]], results: list[Operation | DomainError | None]) -> None:
        """The ready items of a batch in one transaction, each in a savepoint; each item's answer in `results`."""
        with write_transaction(self.engine) as conn:
            self.clients.compliance.lock(conn, [party for _, p in ready for party in p.parties])
            self.controls.lock(conn, [network for _, p in ready for network in p.networks])
            if len(ready) > 1 and self._record_together(conn, ready, results):
                return
            for i, p in ready:
                try:
                    with conn.begin_nested():
                        op, created = self.ops.create(
                            p.kind, p.key, p.payload, request=p.request, network=p.network, conn=conn,
                            state={"reserved": True},
                        )  # fmt: skip
                        if created:
                            p.admit(conn)
                            if p.reserve is not None:
                                p.reserve(op, conn)
                    results[i] = op
                except DomainError as exc:
                    if exc.transient or exc.try_again:
                        raise  # says nothing of the item: the whole request is tried again
                    results[i] = exc

    def _record_together(
        self, conn: Connection, ready: list[tuple[int, _Prepared]], results: list[Operation | DomainError | None]
    ) -> bool:
        """The ready items of a batch at a constant number of ledger calls and statements: their operations in
        one statement (`create_many`), each admitted, their reservations in one ledger call. False, and
        nothing written (a savepoint), when any item names an operation already or is refused: the caller
        then records them one by one, which gives each item its own answer."""
        new = [NewOperation(p.kind, p.key, p.payload, p.request, p.network, {"reserved": True}) for _, p in ready]
        try:
            with conn.begin_nested():
                created = self.ops.create_many(conn, new)
                if created is None:
                    raise _OneByOne
                admits = [p.admit for _, p in ready]
                if all(isinstance(admit, _Admit) for admit in admits):  # the parties' movements together
                    _Admit.all(conn, [admit for admit in admits if isinstance(admit, _Admit)])
                else:
                    for admit in admits:
                        admit(conn)
                # The accounts every reservation names, read in one statement (an id never changes).
                names = sorted(
                    {n for _, p in ready if p.reserve is not None for n in (p.reserve.debit, p.reserve.credit)}
                )
                ids = {name: a.id for name, a in self.ledger.accounts_named(names, conn=conn).items()} if names else {}
                with holds.deferring() as reservations:
                    for (_, p), op in zip(ready, created, strict=True):
                        if p.reserve is not None:
                            p.reserve(op, conn, ids)
                holds.flush(conn, reservations)
        except _OneByOne:
            return False
        except DomainError as exc:
            if exc.transient or exc.try_again:
                raise  # says nothing of the items: the whole request is tried again
            return False
        for (i, _), op in zip(ready, created, strict=True):
            results[i] = op
        return True

    def _prepare_mint(
        self, client_ref: str, network: str, amount_minor: int, key: str, *, reads: _Reads | None = None
    ) -> Operation | _Prepared:
        """A mint's operation and what it records with it, checked and screened; or the operation its key
        already names. `reads`: what the batch's items read once."""
        reads = reads or _Reads(self)
        client = reads.client(client_ref)  # read once: its id names the request, its status is checked
        request = {"client": client.id, "network": network, "amount": amount_minor}
        if reads.known(key):
            replay = self._replay("mint", key, request)
            if replay is not None:
                return replay
        self.clients.ensure_active(client)
        check_amount(amount_minor)
        self.setup.token_address(network)
        holder = reads.holder(client, network)
        self.clients.compliance.screen(client.id, flow="mint", addresses=((network, holder),))
        self.clients.holder_accounts(network, holder)
        payload = {**request, "holder": holder}

        reserve = self._hold(
            mint_hold,
            dda_account(client.id),
            holder_account(network, DEPOSIT, holder),
            amount_minor,
            "USD",
            f"mint on {network}",
        )
        admit = self._admit(client.id, "mint", amount_minor, key)
        return _Prepared("mint", key, request, payload, network, (client.id,), admit, reserve)

    # ----------------------------------------------------------------- pay

    def pay(
        self,
        from_ref: str,
        to_ref: str,
        network: str,
        amount_minor: int,
        memo: str,
        key: str,
        *,
        before: Callable[[Connection], None] | None = None,
    ) -> Operation:
        """A client-to-client token payment with a memo, signed by the payer's bank-managed wallet.
        `before` runs in the transaction that records the operation (a rule claims its run there).

        Everything about the request and the payer is checked before the payee is looked up, and a
        payee that cannot be paid is refused with `field="payee"` in its details: a caller restricted
        to its own client learns nothing of another client from a request that moves nothing."""
        prepared = self._prepare_pay(from_ref, to_ref, network, amount_minor, memo, key, before)
        if isinstance(prepared, Operation):
            return prepared
        return self._record_prepared(prepared)

    def _prepare_pay(
        self,
        from_ref: str,
        to_ref: str,
        network: str,
        amount_minor: int,
        memo: str,
        key: str,
        before: Callable[[Connection], None] | None = None,
        *,
        spent: dict[tuple[str, str], int] | None = None,
        reads: _Reads | None = None,
    ) -> Operation | _Prepared:
        """A payment's operation and what it records with it, checked and screened; or the operation its
        key already names. `spent`: what earlier payments of the same batch take from each wallet; `reads`:
        what the batch's items read once."""
        reads = reads or _Reads(self)
        check_amount(amount_minor)
        if not isinstance(memo, str):
            raise DomainError("a memo is text", code="invalid_memo")
        encode_memo(memo, self.settings.network(network).memo_format)  # refuses a bad memo now, not at signing
        payer_ref = reads.client(from_ref)
        payer_id = payer_ref.id
        if isinstance(to_ref, str) and (to_ref.lower() == payer_id or to_ref == payer_ref.name):
            raise DomainError("payer and payee must be different clients", code="accounts_must_be_different")
        if reads.known(key):
            # A retry finds its payment even if the payee was suspended since.
            request = self._pay_request(
                payer_id, self.payee(to_ref, active=False, reads=reads), network, amount_minor, memo
            )
            replay = self._replay("pay", key, request)
            if replay is not None:
                return replay
        payer = self.clients.ensure_active(payer_ref)
        self.setup.token_address(network)
        source = reads.holder(payer, network)
        # On a permissioned network a client's holder is its bank-managed wallet; on a public one, it may
        # be its own address.
        if self.settings.network(network).kind != "permissioned" and not self.clients.bank_managed(network, source):
            raise DomainError(
                f"{payer.name} holds its tokens on {network} at its own address {source}: it pays from its own wallet",
                code="not_bank_managed",
            )
        earlier = self._held_enough(network, source, amount_minor, "pay", payer.name, spent, reads)
        payee = self.payee(to_ref, reads=reads)
        if payer.id == payee.id:
            raise DomainError("payer and payee must be different clients", code="accounts_must_be_different")
        request = self._pay_request(payer.id, payee, network, amount_minor, memo)
        target = reads.holder(payee, network)
        compliance = self.clients.compliance
        compliance.screen(payer.id, flow="payment", addresses=((network, source),))
        try:
            compliance.screen(payee.id, flow="payment", addresses=((network, target),))
            if reads.party(payee.id).frozen:
                raise DomainError("the payee is frozen on a lawful order: it cannot be paid", code="party_frozen")
        except DomainError as exc:
            exc.details["field"] = "payee"
            raise
        self.clients.holder_accounts(network, target)
        payload = {**request, "sender": source, "receiver": target}

        admit = self._admit(payer.id, "payment", amount_minor, key, before, payee=payee.id)
        _spend(spent, network, source, earlier + amount_minor)
        return _Prepared("pay", key, request, payload, network, (payer.id, payee.id), admit)

    def payee(self, ref: str, *, active: bool = True, reads: _Reads | None = None) -> Client:
        """The client a payment goes to (active); refused with `field="payee"` otherwise."""
        reads = reads or _Reads(self)
        try:
            return reads.active(ref) if active else reads.client(ref)
        except DomainError as exc:
            exc.details["field"] = "payee"
            raise

    @staticmethod
    def _pay_request(payer_id: str, payee: Client, network: str, amount_minor: int, memo: str) -> dict[str, Any]:
        return {"from": payer_id, "to": payee.id, "network": network, "amount": amount_minor, "memo": memo}

    # -------------------------------------------------------------- redeem

    def redeem(
        self,
        client_ref: str,
        network: str,
        amount_minor: int,
        key: str,
        *,
        before: Callable[[Connection], None] | None = None,
        admit: bool = True,
    ) -> Operation:
        """Redeem deposit tokens to the client's DDA: the bank's minter burns them from the client's holder
        on `network` (its managed wallet, or its registered address within the allowance it gave), and the
        DDA is credited from a hold posted when the burn is final."""
        prepared = self._prepare_redeem(client_ref, network, amount_minor, key, before, admit)
        if isinstance(prepared, Operation):
            return prepared
        return self._record_prepared(prepared)

    def redeem_batch(self, items: list[tuple[str, str, int, str]]) -> list[Operation | DomainError]:
        """Many redemptions (client, network, amount, key) in one write transaction, as `mint_batch`: each
        checked, screened and admitted as a single redemption is, refused or recorded on its own."""
        spent: dict[tuple[str, str], int] = {}  # what the batch's earlier items take from each holder
        reads = self._prefetched(items, payer=0, payee=None, network=1, key=3)
        return self._record_batch(
            "redemptions", [partial(self._prepare_redeem, *i, spent=spent, reads=reads) for i in items], reads
        )

    def _prepare_redeem(
        self,
        client_ref: str,
        network: str,
        amount_minor: int,
        key: str,
        before: Callable[[Connection], None] | None = None,
        admit: bool = True,
        *,
        spent: dict[tuple[str, str], int] | None = None,
        reads: _Reads | None = None,
    ) -> Operation | _Prepared:
        """A redemption's operation and what it records with it, checked and screened; or the operation its
        key already names. `spent`: what earlier items of the same batch take from each holder; `reads`:
        what the batch's items read once."""
        reads = reads or _Reads(self)
        client = reads.client(client_ref)
        request = {"client": client.id, "network": network, "amount": amount_minor}
        if reads.known(key):
            replay = self._replay("redeem", key, request)
            if replay is not None:
                return replay
        self.clients.ensure_active(client)
        check_amount(amount_minor)
        self.setup.token_address(network)
        holder = reads.holder(client, network)
        earlier = self._held_enough(network, holder, amount_minor, "redeem", client.name, spent, reads)
        self._allowance_for_minter(network, holder, earlier + amount_minor)
        self.clients.compliance.screen(client.id, flow="redemption", addresses=((network, holder),))
        payload = {**request, "holder": holder}

        reserve = self._hold(
            redeem_hold,
            holder_account(network, DEPOSIT, holder),
            dda_account(client.id),
            amount_minor,
            "USD",
            f"redeemed on {network}",
        )
        _spend(spent, network, holder, earlier + amount_minor)
        if not admit:  # a redemption that funds a trade is admitted by compliance as that trade
            return _Prepared("redeem", key, request, payload, network, (), before or _nothing, reserve)
        then = self._admit(client.id, "redemption", amount_minor, key, before)
        return _Prepared("redeem", key, request, payload, network, (client.id,), then, reserve)

    def _held_enough(
        self,
        network: str,
        holder: str,
        amount_minor: int,
        verb: str,
        name: str,
        spent: dict[tuple[str, str], int] | None,
        reads: _Reads | None = None,
    ) -> int:
        """What earlier items of the batch take from `holder` on `network`; refused unless its mirror holds
        that and `amount_minor` more."""
        held = (reads or _Reads(self)).held(network, holder)
        earlier = spent.get((network, holder), 0) if spent is not None else 0
        if held - earlier < amount_minor:
            raise DomainError(
                f"{name} holds {held} minor units of tokens on {network}"
                + (f" ({earlier} of them taken by earlier items of this batch)" if earlier else "")
                + f", cannot {verb} {amount_minor}",
                code="insufficient_funds",
            )
        return earlier

    # ---------------------------------------------------------- fund shares

    def issue_shares(self, client_ref: str, network: str, shares_minor: int, key: str) -> Operation:
        """Issue tokenized fund shares to a client (booked against the fund's issuance account)."""
        request = {"client": self.clients.client(client_ref).id, "network": network, "amount": shares_minor}
        replay = self._replay("issue_shares", key, request)
        if replay is not None:
            return replay
        client = self.clients.active(client_ref)
        check_amount(shares_minor, "shares")
        self.setup.token_address(network, FUND_SHARE)
        holder = self.clients.holder(client.id, network)
        self.clients.holder_accounts(network, holder)
        payload = {**request, "holder": holder}

        reserve = self._hold(
            issue_hold,
            MMF_ISSUANCE,
            holder_account(network, SHARES, holder),
            shares_minor,
            "MMF",
            f"shares issued on {network}",
        )
        return self._record("issue_shares", key, request, payload, network, reserve)

    def dvp(
        self,
        buyer_ref: str,
        seller_ref: str,
        network: str,
        cash_minor: int,
        shares_minor: int,
        key: str,
        *,
        ttl_s: int = 3600,
    ) -> Operation:
        """Deposit tokens against fund shares through DvPSettlement: both legs settle atomically or neither."""
        request = {
            "buyer": self.clients.client(buyer_ref).id,
            "seller": self.clients.client(seller_ref).id,
            "network": network,
            "cash": cash_minor,
            "shares": shares_minor,
            "ttl_s": ttl_s,
        }
        replay = self._replay("dvp", key, request)
        if replay is not None:
            return replay
        buyer, seller = self.clients.active(buyer_ref), self.clients.active(seller_ref)
        if buyer.id == seller.id:
            raise DomainError("buyer and seller must be different clients", code="accounts_must_be_different")
        check_amount(cash_minor, "cash")
        check_amount(shares_minor, "shares")
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 60 <= ttl_s <= DVP_TTL_MAX_S:
            raise DomainError(f"ttl_s must be within 60..{DVP_TTL_MAX_S}, was {ttl_s!r}", code="invalid_request")
        for deployment in (DEPOSIT_TOKEN, FUND_SHARE, DVP):
            self.setup.token_address(network, deployment)
        b, s = self.clients.holder(buyer.id, network), self.clients.holder(seller.id, network)
        for address, client in ((b, buyer), (s, seller)):
            if not self.clients.bank_managed(network, address):
                raise DomainError(
                    f"{client.name} signs for itself on {network}: a DvP there is its own to send",
                    code="not_bank_managed",
                )
        compliance = self.clients.compliance
        compliance.screen(buyer.id, flow="dvp", addresses=((network, b),))
        compliance.screen(seller.id, flow="dvp", addresses=((network, s),))
        payload = {**request, "buyer_address": b, "seller_address": s}

        def admit(conn: Connection) -> None:
            """The buyer pays the cash (its tier's limits); the seller delivers shares (recorded, no limit:
            their worth is the cash, counted once)."""
            compliance.lock(conn, [buyer.id, seller.id])
            compliance.admit(conn, buyer.id, "dvp", cash_minor, f"dvp:{key}")
            compliance.admit(conn, seller.id, "dvp", cash_minor, f"dvp:{key}", direction="in", limits=False)
            if compliance.ensure_party(conn, seller.id).frozen:
                raise DomainError("the seller cannot deliver now", code="party_frozen", field="seller")

        return self._record("dvp", key, request, payload, network, before=admit)

    # ---------------------------------------------------------------- move

    def move(self, client_ref: str, source: str, destination: str, amount_minor: int, key: str) -> Operation:
        """Burn on the source network, mint on the destination; the ledger moves the liability in two phases."""
        prepared = self._prepare_move(client_ref, source, destination, amount_minor, key)
        if isinstance(prepared, Operation):
            return prepared
        return self._record_prepared(prepared)

    def move_batch(self, items: list[tuple[str, str, str, int, str]]) -> list[Operation | DomainError]:
        """Many moves (client, source, destination, amount, key) in one write transaction, as `mint_batch`:
        each checked, screened, admitted and counted against the networks' rate limits as a single move is,
        refused or recorded on its own."""
        spent: dict[tuple[str, str], int] = {}  # what the batch's earlier items take from each holder
        return self._record_batch("moves", [partial(self._prepare_move, *item, spent=spent) for item in items])

    def _prepare_move(
        self,
        client_ref: str,
        source: str,
        destination: str,
        amount_minor: int,
        key: str,
        *,
        spent: dict[tuple[str, str], int] | None = None,
    ) -> Operation | _Prepared:
        """A move's operation and what it records with it, checked and screened; or the operation its key
        already names. `spent`: what earlier items of the same batch take from each holder."""
        client = self.clients.client(client_ref)
        request = {"client": client.id, "source": source, "destination": destination, "amount": amount_minor}
        replay = self._replay("move", key, request)
        if replay is not None:
            return replay
        self.clients.ensure_active(client)
        if source == destination:
            raise DomainError("source and destination networks must differ", code="same_network")
        check_amount(amount_minor)
        for network in (source, destination):
            self.setup.token_address(network)
        from_holder, to_holder = self.clients.holder(client.id, source), self.clients.holder(client.id, destination)
        payload = {**request, "from": from_holder, "to": to_holder}
        earlier = self._held_enough(source, from_holder, amount_minor, "move", client.name, spent)
        self._allowance_for_minter(source, from_holder, earlier + amount_minor)
        self.clients.compliance.screen(
            client.id, flow="move", addresses=((source, from_holder), (destination, to_holder))
        )
        self.clients.holder_accounts(destination, to_holder)

        reserve = self._hold(
            move_hold,
            holder_account(source, DEPOSIT, from_holder),
            holder_account(destination, DEPOSIT, to_holder),
            amount_minor,
            "USD",
            f"{source} -> {destination}",
        )
        admit = self._admit(
            client.id,
            "move",
            amount_minor,
            key,
            lambda conn: self.controls.consume(conn, source, destination, amount_minor),
        )
        _spend(spent, source, from_holder, earlier + amount_minor)
        return _Prepared("move", key, request, payload, source, (client.id,), admit, reserve, (source, destination))

    # --------------------------------------------------------- stray tokens

    def return_stray(
        self, network: str, receiver: str, amount_minor: int, key: str, *, deployment: str = DEPOSIT_TOKEN
    ) -> Operation:
        """Return tokens sent to the DvP contract outside any trade (a plain transfer by mistake)."""
        request = {"network": network, "receiver": receiver, "amount": amount_minor, "token": deployment}
        replay = self._replay("return_stray", key, request)
        if replay is not None:
            return replay
        check_amount(amount_minor)
        if deployment not in TOKENS:
            raise DomainError(f"unknown token {deployment!r}; known: {', '.join(TOKENS)}", code="invalid_request")
        self.setup.token_address(network, deployment)
        dvp = self.setup.token_address(network, DVP)
        if not isinstance(receiver, str) or not is_address(receiver):
            raise DomainError(f"not an address: {receiver!r}", code="invalid_address")
        receiver = to_checksum_address(receiver)
        mirror = self.ledger.list_accounts(prefix=holder_account(network, TOKENS[deployment], dvp), limit=1)
        escrow = mirror[0].available if mirror else 0  # nothing was ever sent to the contract
        if escrow < amount_minor:
            raise DomainError(
                f"the DvP contract's mirror holds {escrow} of {TOKENS[deployment].symbol} on {network}, "
                f"cannot return {amount_minor}",
                code="insufficient_funds",
            )
        self.clients.holder_accounts(network, receiver)
        payload = {**request, "receiver": receiver, "dvp": dvp}
        return self._record("return_stray", key, request, payload, network)
