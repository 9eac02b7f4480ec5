"""The reference custodian: accounts with their own keys, ERC-20 custody on EVM networks, an
approval policy, and every transfer carried from CREATED to a terminal state by its worker.

It is a third party to the bank: its own database, its own key store (under its own data
directory, with its own passphrase), its own API key. The bank reaches it only over HTTP
(`app.py`), through the `reference` adapter.

A withdrawal or an internal transfer moves through the normalised states:
CREATED -> SCREENING (destination checked, blocked addresses rejected) -> AWAITING_APPROVAL
(only above the asset's approval threshold; `andchain custodian approve|reject`) -> SIGNING
(the account gets gas from the custodian's gas station if it needs it; the transfer is signed
and the signed bytes stored) -> BROADCASTING (the stored bytes sent, again after a restart)
-> CONFIRMING (mined) -> COMPLETED once the network's confirmations are reached; FAILED on a
revert or too little balance; CANCELLED while nothing is signed yet. Every change is one
conditional write (on the version read) and queues a signed webhook.

Deposits: each round reads the configured tokens' Transfer logs to the accounts' addresses,
and the plain ETH transfers to them in final blocks where it holds native ETH, and records each
as an incoming transfer (COMPLETED once final). Native ETH and BTC are kept in its book.

Not here yet (see docs/custody.md): broadcasting BTC, sweeping, fee reporting.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils import is_hex_address, keccak, to_checksum_address
from sqlalchemy import Connection, Engine, RowMapping, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from andchain.chains.client import Call, ChainClient, TxReverted, already_known
from andchain.chains.contracts import ContractAbi
from andchain.chains.keys import KeyStore
from andchain.chains.rpc import NodeUnreachable, RpcError
from andchain.chains.usdc import usdc_abi
from andchain.custody.adapters.http import obj
from andchain.custody.kept import bitcoin
from andchain.custody.kept import schema as store
from andchain.custody.states import TERMINAL, CustodyState
from andchain.db import write_transaction
from andchain.errors import Conflict, DomainError, NotFound, is_transient
from andchain.money import AMOUNT_MAX_MINOR, AssetRegistry, format_minor, parse_minor
from andchain.ops import failpoints
from andchain.ops.core import request_digest
from andchain.ops.leases import Lease

log = logging.getLogger(__name__)

S = CustodyState
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
GAS_STATION = "custodian:gas"
# Blocks read with their transactions per round and per request, where it holds native ETH.
NATIVE_BLOCKS_MAX = 500
NATIVE_BATCH = 25
# The native asset of the EVM networks it holds (the chain's own coin).
NATIVE = "ETH"
# An account signs its own token transfers: it needs this much ether for gas, and gets the
# larger amount from the gas station when it has less.
FUEL_MIN_WEI = 10**15
FUEL_AMOUNT_WEI = 10**16
ROUND_MAX = 100  # transfers read per page
IDEMPOTENCY_KEY_LENGTH_MAX = 128
ROUNDS_PAGES_MAX = 100  # pages per round at most: 10,000 unfinished transfers
DEPOSIT_BLOCKS_MAX = 2_000  # blocks of logs read per network and round at most


@dataclass(frozen=True)
class Token:
    asset: str
    network: str
    address: str


def _waits(exc: BaseException) -> bool:
    return is_transient(exc) or isinstance(exc, RpcError)


class Refused(DomainError):
    code = "custodian_refused"


class KeptCustody:
    def __init__(
        self,
        engine: Engine,
        keys: KeyStore,
        chains: Callable[[str], ChainClient],
        tokens: list[Token],
        assets: AssetRegistry,
        *,
        clock: Callable[[], int],
        approval_above: Mapping[str, int] | None = None,
        blocked_addresses: frozenset[str] = frozenset(),
        fund_gas: Callable[[str, list[str]], None] | None = None,
        webhook_url: str | None = None,
        bitcoin_network: str | None = None,
        lease: Lease | None = None,
        native_networks: Iterable[str] = (),
    ) -> None:
        self.engine = engine
        self.keys = keys
        self.chains = chains
        self.tokens = {(t.asset, t.network): t for t in tokens}
        # Assets kept in the custodian's own book rather than on a node it runs (BTC: see bitcoin.py).
        self.bitcoin_network = bitcoin_network
        self.booked: set[tuple[str, str]] = {("BTC", bitcoin.BITCOIN)} if bitcoin_network else set()
        # Native ETH on these EVM networks: held at each account's address, and kept in the book
        # (the address's balance also carries the gas the gas station gives it, which is not the
        # client's): credited when a deposit is final, debited when a withdrawal is signed.
        self.native: set[tuple[str, str]] = {(NATIVE, n) for n in native_networks}
        if self.native & set(self.tokens):
            raise DomainError("a network's native ETH and a token named ETH on it cannot both be held")
        self.assets = assets
        self.clock = clock
        self.approval_above = dict(approval_above or {})
        self.blocked = frozenset(a.lower() for a in blocked_addresses)
        self.fund_gas = fund_gas
        self.webhook_url = webhook_url
        self.abi: ContractAbi = usdc_abi()  # the ERC-20 functions every token shares
        # Several workers on one database (PostgreSQL): one advances kept custody at a time, so that
        # funds checks, the one-transaction-per-account rule and nonce repairs see no other writer.
        self.lease = lease

    # -- accounts ---------------------------------------------------------------------------

    def create_account(self, name: str, owner: str, idempotency_key: str) -> dict[str, Any]:
        if not name or len(name) > 200 or not owner or len(owner) > 200:
            raise Refused("an account has a name and an owner of 1-200 characters")
        if not 0 < len(idempotency_key) <= IDEMPOTENCY_KEY_LENGTH_MAX:
            raise Refused(f"an idempotency key has 1-{IDEMPOTENCY_KEY_LENGTH_MAX} characters")
        account_id = "acct_" + secrets.token_hex(8)
        label = f"account:{account_id}"
        # The key is made before the write transaction: its scrypt never holds the database's lock.
        # (An account a concurrent request made first leaves this key unused.)
        address = self.keys.create(label)
        try:
            return self._insert_account(name, owner, idempotency_key, account_id, label, address)
        except IntegrityError:
            return self._insert_account(name, owner, idempotency_key, account_id, label, address)

    def _insert_account(
        self, name: str, owner: str, idempotency_key: str, account_id: str, label: str, address: str
    ) -> dict[str, Any]:
        with write_transaction(self.engine) as conn:
            found = (
                conn.execute(select(store.accounts).where(store.accounts.c.idempotency_key == idempotency_key))
                .mappings()
                .first()
            )
            if found is not None:
                if (found["name"], found["owner"]) != (name, owner):
                    raise Conflict("the idempotency key was used for another account", code="idempotency_key_reused")
                return self._account_view(found)
            conn.execute(
                store.accounts.insert().values(
                    id=account_id,
                    name=name,
                    owner=owner,
                    idempotency_key=idempotency_key,
                    key_label=label,
                    address=address,
                    created_at_us=self.clock(),
                )
            )
            row = conn.execute(select(store.accounts).where(store.accounts.c.id == account_id)).mappings().one()
        log.info("account created id=%s owner=%s", account_id, owner)
        return self._account_view(row)

    def account(self, account_id: str) -> dict[str, Any]:
        return self._account_view(self._account(account_id))

    def _account(self, account_id: str, conn: Connection | None = None) -> RowMapping:
        query = select(store.accounts).where(store.accounts.c.id == account_id)
        if conn is not None:
            row = conn.execute(query).mappings().first()
        else:
            with self.engine.connect() as c:
                row = c.execute(query).mappings().first()
        if row is None:
            raise NotFound(f"no account {account_id}", code="account_not_found")
        return row

    @staticmethod
    def _account_view(row: RowMapping) -> dict[str, Any]:
        return {"id": row["id"], "name": row["name"], "owner": row["owner"]}

    def _supported(self, asset: str, network: str) -> Token | None:
        """The token of an asset it holds on a chain, None for one it books (BTC, native ETH); refused
        otherwise."""
        if (asset, network) in self.booked or (asset, network) in self.native:
            return None
        return self._token(asset, network)

    def _token(self, asset: str, network: str) -> Token:
        token = self.tokens.get((asset, network))
        if token is None:
            supported = ", ".join(f"{a}@{n}" for a, n in sorted([*self.tokens, *self.booked, *self.native]))
            raise Refused(
                f"this custodian holds no {asset} on {network}; it holds {supported or 'nothing yet'}",
                code="asset_not_supported",
            )
        return token

    def deposit_address(self, account_id: str, asset: str, network: str) -> dict[str, Any]:
        token = self._supported(asset, network)
        row = self._account(account_id)
        native = (asset, network) in self.native
        address = row["address"] if token is not None or native else self._bitcoin_address(row)
        return {"account": account_id, "asset": asset, "network": network, "address": address, "tag": None}

    def _bitcoin_address(self, account: RowMapping) -> str:
        assert self.bitcoin_network is not None
        public = self.keys.signer(account["address"]).public_key_compressed
        return bitcoin.deposit_address(public, self.bitcoin_network)

    def _book_total(self, conn: Connection, account_id: str, asset: str, network: str) -> int:
        entries: list[str] = list(
            conn.execute(
                select(store.book.c.amount_minor).where(
                    store.book.c.account_id == account_id, store.book.c.asset == asset, store.book.c.network == network
                )
            ).scalars()
        )
        return sum(int(e) for e in entries)

    def _amount(self, given: object, asset: str) -> int:
        if not isinstance(given, str):
            raise Refused(f'amount is a decimal string such as "12.5", was {given!r}', code="invalid_amount")
        try:
            amount = parse_minor(given, self.assets.get(asset).scale)
        except DomainError as exc:
            raise Refused(f"amount: {exc.message}", code="invalid_amount") from None
        if not 0 < amount <= AMOUNT_MAX_MINOR:
            raise Refused(
                f"amount must be positive and at most 2^128 - 1 minor units, was {given!r}", code="invalid_amount"
            )
        return amount

    def credit(self, account_id: str, asset: str, network: str, amount: str, reference: str) -> dict[str, Any]:
        """A deposit of a booked asset, as the custodian's own node would report it (the operator
        records it: `andchain custodian credit`). Once per reference."""
        if (asset, network) not in self.booked:
            raise Refused(f"{asset} on {network} is not booked by this custodian", code="asset_not_supported")
        txid, sep, vout = reference.strip().lower().partition(":")
        if not (sep and len(txid) == 64 and all(c in "0123456789abcdef" for c in txid) and vout.isdigit()):
            raise Refused(
                f"a deposit's reference is its output, <txid>:<vout> (64 hex digits, a number), was {reference!r}"
            )
        reference = f"{txid}:{int(vout)}"
        minor = self._amount(amount, asset)
        transfer_id = "dep_" + hashlib.sha256(f"{network}:{reference}".encode()).hexdigest()[:20]
        address = self._bitcoin_address(self._account(account_id))  # before the transaction: no scrypt in it
        with write_transaction(self.engine) as conn:
            known = conn.execute(select(store.transfers).where(store.transfers.c.id == transfer_id)).mappings().first()
            if known is not None:
                same = (known["destination_account"], known["amount_minor"], known["asset"]) == (
                    account_id,
                    str(minor),
                    asset,
                )
                if not same:
                    raise Conflict(
                        f"the deposit {reference} was recorded already, differently", code="deposit_conflict"
                    )
                return self._view(known)
            now = self.clock()
            conn.execute(
                store.transfers.insert().values(
                    id=transfer_id,
                    kind="deposit",
                    destination_account=account_id,
                    destination_address=address,
                    asset=asset,
                    network=network,
                    amount_minor=str(minor),
                    note="",
                    state=S.COMPLETED.value,
                    tx_hash=reference,
                    block_number=0,
                    version=1,
                    created_at_us=now,
                    updated_at_us=now,
                )
            )
            conn.execute(
                store.book.insert().values(
                    transfer_id=transfer_id,
                    account_id=account_id,
                    asset=asset,
                    network=network,
                    amount_minor=str(minor),
                    created_at_us=now,
                )
            )
            row = self._row(conn, transfer_id)
            self._notify(conn, row)
        return self._view(row)

    def balances(self, account_id: str) -> list[dict[str, Any]]:
        """On-chain balances of the account's address, less what its unfinished withdrawals hold."""
        row = self._account(account_id)
        held: dict[tuple[str, str], int] = {}
        with self.engine.connect() as conn:
            for t in conn.execute(
                select(store.transfers.c.asset, store.transfers.c.network, store.transfers.c.amount_minor).where(
                    store.transfers.c.source_account == account_id,
                    # Held until the chain's balance shows it: every state before mined.
                    or_(
                        store.transfers.c.state.in_(
                            [s.value for s in (S.CREATED, S.SCREENING, S.AWAITING_APPROVAL, S.SIGNING, S.BROADCASTING)]
                        ),
                        and_(
                            store.transfers.c.state == S.CONFIRMING.value,
                            store.transfers.c.block_number.is_(None),
                        ),
                    ),
                )
            ):
                held[(t.asset, t.network)] = held.get((t.asset, t.network), 0) + int(t.amount_minor)
            booked_totals = {key: self._book_total(conn, account_id, *key) for key in [*self.booked, *self.native]}
            # Native ETH leaves the book when signed: from then on the book shows it, not `held`.
            unsigned: dict[tuple[str, str], int] = {}
            for t in conn.execute(
                select(store.transfers.c.asset, store.transfers.c.network, store.transfers.c.amount_minor).where(
                    store.transfers.c.source_account == account_id,
                    store.transfers.c.asset == NATIVE,
                    store.transfers.c.state.in_(
                        [s.value for s in (S.CREATED, S.SCREENING, S.AWAITING_APPROVAL, S.SIGNING)]
                    ),
                )
            ):
                unsigned[(t.asset, t.network)] = unsigned.get((t.asset, t.network), 0) + int(t.amount_minor)
            for key in self.native:
                held[key] = unsigned.get(key, 0)
        out = []
        holdings: list[tuple[tuple[str, str], Token | None]] = [
            *sorted(self.tokens.items()),
            *((key, None) for key in sorted(self.booked)),
            *((key, None) for key in sorted(self.native)),
        ]
        for (asset, network), token in holdings:
            if token is None:
                total = settled = booked_totals[(asset, network)]
            else:
                chain = self.chains(network)
                total = int(chain.read(token.address, self.abi, "balanceOf", row["address"]))
                # A deposit counts in the total from its first block and is available once final:
                # the lower of the newest and the final balance (a withdrawal mined but not final
                # is already out of the newest one).
                final = max(0, chain.block_number() - max(chain.network.confirmations, 1) + 1)
                settled = min(total, int(chain.read(token.address, self.abi, "balanceOf", row["address"], block=final)))
            scale = self.assets.get(asset).scale
            available = max(0, settled - held.get((asset, network), 0))
            out.append(
                {
                    "account": account_id,
                    "asset": asset,
                    "network": network,
                    "total": format_minor(total, scale),
                    "available": format_minor(available, scale),
                }
            )
        return out

    # -- transfers --------------------------------------------------------------------------

    def submit(self, body: Mapping[str, Any], idempotency_key: str) -> tuple[dict[str, Any], bool]:
        """A withdrawal or an internal transfer; (its view, whether it was made now). The same key
        with the same body is the same transfer; with another body it is a conflict."""
        if not 0 < len(idempotency_key) <= IDEMPOTENCY_KEY_LENGTH_MAX:
            raise Refused(f"an idempotency key has 1-{IDEMPOTENCY_KEY_LENGTH_MAX} characters")
        digest = request_digest(body)
        # The key first: a transfer it already made is answered as it is, whatever changed since
        # in this custodian's configuration (a token no longer held must not turn a replay into a
        # refusal while the transfer goes on).
        known = self.find_row(idempotency_key)
        if known is not None:
            return self._replay(known, digest)
        source = str(body.get("source_account") or "")
        asset, network = str(body.get("asset") or ""), str(body.get("network") or "")
        token = self._supported(asset, network)
        amount = self._amount(body.get("amount"), asset)
        destination = obj(body.get("destination"))
        dest_account = destination.get("account")
        dest_address = destination.get("address")
        if (dest_account is None) == (dest_address is None):
            raise Refused('destination is {"address": ...} or {"account": ...}, exactly one')
        if dest_account is not None and str(dest_account) == source:
            raise Refused("an internal transfer goes to another account", code="same_account")
        if isinstance(dest_address, str) and self._account_of_address(dest_address) is not None:
            raise Refused(
                "that address is an account at this custodian: move value there with an internal transfer",
                code="address_is_an_account",
            )
        travel_rule = body.get("travel_rule")
        # A booked asset's internal transfer goes to the other account's address, derived from its key
        # before the transaction (no scrypt while holding the database's lock).
        internal_address = (
            self._bitcoin_address(self._account(str(dest_account)))
            if dest_account is not None and token is None and (asset, network) not in self.native
            else None
        )
        try:
            return self._insert_transfer(
                body,
                idempotency_key,
                digest,
                source,
                asset,
                network,
                token,
                amount,
                dest_account,
                dest_address,
                travel_rule,
                internal_address,
            )
        except IntegrityError:
            # A request with the same key committed first: answer with what it made.
            known = self.find_row(idempotency_key)
            if known is None:
                raise
            return self._replay(known, digest)

    def _replay(self, known: RowMapping, digest: str) -> tuple[dict[str, Any], bool]:
        """The transfer a key already made: answered again for the same request, a conflict for another."""
        if known["request_sha256"] != digest:
            raise Conflict("the idempotency key was used for another transfer", code="idempotency_key_reused")
        return self._view(known), False

    def _insert_transfer(
        self,
        body: Mapping[str, Any],
        idempotency_key: str,
        digest: str,
        source: str,
        asset: str,
        network: str,
        token: Token | None,
        amount: int,
        dest_account: Any,
        dest_address: Any,
        travel_rule: Any,
        internal_address: str | None,
    ) -> tuple[dict[str, Any], bool]:
        with write_transaction(self.engine) as conn:
            known = self.find_row(idempotency_key, conn)
            if known is not None:  # made meanwhile by a request with the same key
                return self._replay(known, digest)
            self._account(source, conn)
            evm = token is not None or (asset, network) in self.native
            if dest_account is not None:
                target = self._account(str(dest_account), conn)
                address = target["address"] if evm else str(internal_address)
                kind = "internal"
            elif not evm:
                assert self.bitcoin_network is not None
                checked = bitcoin.checked_address(dest_address, self.bitcoin_network)
                if checked is None:
                    raise Refused(
                        f"not a valid Bitcoin {self.bitcoin_network} address (checksum, kind and network are "
                        f"checked): {dest_address!r}",
                        code="invalid_address",
                    )
                address = checked
                kind = "withdrawal"
            else:
                if not isinstance(dest_address, str) or not is_hex_address(dest_address):
                    raise Refused(
                        f"{network} is an EVM network: an address is 0x and 40 hex digits, was {dest_address!r}",
                        code="invalid_address",
                    )
                address = to_checksum_address(dest_address)
                kind = "withdrawal"
            now = self.clock()
            transfer_id = "tr_" + secrets.token_hex(10)
            conn.execute(
                store.transfers.insert().values(
                    id=transfer_id,
                    idempotency_key=idempotency_key,
                    request_sha256=digest,
                    kind=kind,
                    source_account=source,
                    destination_account=dest_account,
                    destination_address=address,
                    asset=asset,
                    network=network,
                    amount_minor=str(amount),
                    note=str(body.get("note") or ""),
                    travel_rule=json.dumps(travel_rule) if travel_rule is not None else None,
                    state=S.CREATED.value,
                    version=1,
                    created_at_us=now,
                    updated_at_us=now,
                )
            )
            row = self._row(conn, transfer_id)
            self._notify(conn, row)
        log.info("transfer created id=%s kind=%s asset=%s network=%s", transfer_id, kind, asset, network)
        return self._view(row), True

    def get(self, transfer_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return self._view(self._row(conn, transfer_id))

    def find(self, idempotency_key: str) -> dict[str, Any] | None:
        row = self.find_row(idempotency_key)
        return self._view(row) if row is not None else None

    def find_row(self, idempotency_key: str, conn: Connection | None = None) -> RowMapping | None:
        query = select(store.transfers).where(store.transfers.c.idempotency_key == idempotency_key)
        if conn is not None:
            return conn.execute(query).mappings().first()
        with self.engine.connect() as c:
            return c.execute(query).mappings().first()

    def list(self, after: int = 0, limit: int = 100) -> tuple[list[dict[str, Any]], int]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(store.transfers)
                    .where(store.transfers.c.seq > after)
                    .order_by(store.transfers.c.seq)
                    .limit(max(1, min(limit, 500)))
                )
                .mappings()
                .all()
            )
        return [self._view(r) for r in rows], (rows[-1]["seq"] if rows else after)

    def cancel(self, transfer_id: str) -> dict[str, Any]:
        return self._decide(transfer_id, {S.CREATED, S.SCREENING, S.AWAITING_APPROVAL}, S.CANCELLED, "cancelled")

    def approve(self, transfer_id: str) -> dict[str, Any]:
        return self._decide(transfer_id, {S.AWAITING_APPROVAL}, S.SIGNING, None)

    def reject(self, transfer_id: str, reason: str = "rejected by the custodian's approver") -> dict[str, Any]:
        return self._decide(transfer_id, {S.AWAITING_APPROVAL}, S.REJECTED, reason)

    def _decide(self, transfer_id: str, allowed: set[S], to: S, reason: str | None) -> dict[str, Any]:
        with write_transaction(self.engine) as conn:
            row = self._row(conn, transfer_id)
            state = S(row["state"])
            if state not in allowed:
                raise Conflict(
                    f"transfer {transfer_id} is {state.value}: it cannot become {to.value} now",
                    code="transfer_state_conflict",
                )
            row = self._move(conn, row, to, reason=reason)
        return self._view(row)

    # -- the worker -------------------------------------------------------------------------

    def process(self) -> int:
        """One round: advance every unfinished transfer by the steps it can take now, record new
        deposits. Returns how many transfers changed.

        Each transfer is on its own: a node that does not answer leaves it where it is for the
        next round; a refusal before anything is signed (a revert in the gas estimate: the token
        paused, the destination blacklisted) ends it FAILED with the reason; a surprise is
        logged with its transfer and the others go on. All unfinished transfers are read, a
        page at a time, so that those that wait never keep newer ones from their turn."""
        if self.lease is not None and not self.lease.acquire():
            return 0  # another worker advances kept custody now
        changed = 0
        after = 0
        for _ in range(ROUNDS_PAGES_MAX):
            with self.engine.connect() as conn:
                rows = (
                    conn.execute(
                        select(store.transfers)
                        .where(
                            store.transfers.c.seq > after,
                            store.transfers.c.state.notin_([s.value for s in TERMINAL]),
                            store.transfers.c.state != S.AWAITING_APPROVAL.value,
                        )
                        .order_by(store.transfers.c.seq)
                        .limit(ROUND_MAX)
                    )
                    .mappings()
                    .all()
                )
            for row in rows:
                changed += self._advance_one(row)
            if len(rows) < ROUND_MAX:
                break
            after = rows[-1]["seq"]
        for network in sorted({n for _, n in self.tokens} | {n for _, n in self.native}):
            try:
                changed += self._deposits(network)
            except Exception as exc:
                if not _waits(exc):
                    log.exception("deposits on %s: unexpected error; trying again next round", network)
                else:
                    log.warning("deposits on %s wait: %s", network, exc)
        return changed

    def _advance_one(self, row: RowMapping) -> int:
        try:
            return self._advance(row)
        except Conflict:
            return 0  # changed meanwhile (a cancel, an approval): read again next round
        except TxReverted as exc:
            if S(row["state"]) is S.SIGNING:
                # Refused in the gas estimate, before anything was signed: nothing can move.
                return self._write(row, S.FAILED, reason=f"the network refused the transfer: {exc.reason}")
            log.warning("transfer %s: %s", row["id"], exc)
            return 0
        except Exception as exc:
            if _waits(exc):
                log.warning("transfer %s waits: %s", row["id"], exc)
            else:
                log.exception("transfer %s: unexpected error; it is tried again next round", row["id"])
            return 0

    def _advance(self, row: RowMapping) -> int:
        state = S(row["state"])
        amount = int(row["amount_minor"])
        if state is S.CREATED:
            return self._write(row, S.SCREENING)
        if state is S.SCREENING:
            if str(row["destination_address"]).lower() in self.blocked:
                return self._write(row, S.REJECTED, reason="the destination is on the custodian's blocked list")
            threshold = self.approval_above.get(row["asset"])
            if row["kind"] == "withdrawal" and threshold is not None and amount > threshold:
                return self._write(row, S.AWAITING_APPROVAL)
            return self._write(row, S.SIGNING)
        if (row["asset"], row["network"]) in self.booked:
            return self._advance_booked(row, state, amount)
        chain = self.chains(row["network"])
        if state is S.SIGNING:
            if (row["asset"], row["network"]) in self.native:
                return self._sign_native(row, chain, amount)
            return self._sign(row, chain, amount)
        if state is S.BROADCASTING:
            self._send(chain, row["raw_tx"])
            failpoints.hit("custodian:after_broadcast")
            return self._write(row, S.CONFIRMING)
        if state is S.CONFIRMING:
            receipt = chain.receipts([row["tx_hash"]]).get(row["tx_hash"])
            if receipt is None:
                if not row["raw_tx"]:
                    return 0  # a deposit the node does not show yet
                # The node may have dropped it: the same bytes again. If its nonce was taken by
                # another transaction and the node does not know ours, ours can never be mined.
                replaced = (
                    self._send(chain, row["raw_tx"]) == "nonce_used"
                    and not chain.known([row["tx_hash"]])
                    and chain.receipts([row["tx_hash"]]).get(row["tx_hash"]) is None  # not mined meanwhile
                )
                if replaced:
                    return self._write(row, S.FAILED, reason="its nonce was used by another transaction: nothing moved")
                return 0
            if row["block_number"] != receipt.block_number:
                # Mined (or moved by a reorg): from here the chain's balance shows it.
                return self._write(row, S.CONFIRMING, block=receipt.block_number)
            if not receipt.status:
                return self._write(
                    row, S.FAILED, reason="the transaction reverted on chain", block=receipt.block_number
                )
            if chain.block_number() - receipt.block_number + 1 >= chain.network.confirmations:
                return self._write(row, S.COMPLETED, block=receipt.block_number)
            return 0
        return 0

    def _advance_booked(self, row: RowMapping, state: S, amount: int) -> int:
        """A booked asset's transfer after screening: funds checked, "sent" (booked out of the
        source, into the destination account for an internal transfer) in one transaction, then
        completed."""
        if state is S.SIGNING:
            with write_transaction(self.engine) as conn:
                # The source account's row locked for the check and the booking (PostgreSQL: another
                # writer's booking from the same account waits; SQLite has one writer anyway).
                conn.execute(
                    select(store.accounts.c.id).where(store.accounts.c.id == row["source_account"]).with_for_update()
                ).first()
                total = self._book_total(conn, row["source_account"], row["asset"], row["network"])
                if total < amount:
                    self._move(
                        conn,
                        row,
                        S.FAILED,
                        reason=f"insufficient funds: the account holds {total}, the transfer needs {amount}",
                    )
                    return 1
                now = self.clock()
                entries = [(row["source_account"], -amount)]
                if row["kind"] == "internal":
                    entries.append((row["destination_account"], amount))
                for account_id, delta in entries:
                    conn.execute(
                        store.book.insert().values(
                            transfer_id=row["id"],
                            account_id=account_id,
                            asset=row["asset"],
                            network=row["network"],
                            amount_minor=str(delta),
                            created_at_us=now,
                        )
                    )
                self._move(conn, row, S.CONFIRMING, tx_hash=bitcoin.booked_txid(row["id"]), block=0)
            return 1
        if state in (S.BROADCASTING, S.CONFIRMING):
            return self._write(row, S.COMPLETED)
        return 0

    def _sign(self, row: RowMapping, chain: ChainClient, amount: int) -> int:
        account = self._account(row["source_account"])
        token = self._token(row["asset"], row["network"])
        balance = int(chain.read(token.address, self.abi, "balanceOf", account["address"]))
        if balance < amount:
            return self._write(
                row, S.FAILED, reason=f"insufficient funds: the account holds {balance}, the transfer needs {amount}"
            )
        fuelled = self._fuel(row, chain, account["address"], self._native_held(row) + FUEL_MIN_WEI)
        if fuelled is not None:
            return fuelled
        if self._in_flight(row):
            return 0
        # A nonce reserved by a signing that died before its bytes were stored would hold every
        # later transaction of the account: it gets a no-op first.
        chain.repair_nonce_gaps(account["address"])
        call = Call(token.address, self.abi.encode_call("transfer", row["destination_address"], amount))
        (signed,) = chain.sign_calls(account["address"], [call])
        # The signed bytes are stored before anything is sent: whatever happens next, only these
        # bytes ever go out for this transfer.
        self._write(row, S.BROADCASTING, tx_hash=signed.hash, raw_tx=signed.raw.hex())
        failpoints.hit("custodian:after_sign")
        return 1

    def _fuel(self, row: RowMapping, chain: ChainClient, address: str, needed_wei: int) -> int | None:
        """Gas for the account from the gas station when its address holds less than `needed_wei` (on a
        network that charges for gas): the number of changes made (the transfer waits), or None when
        it has enough."""
        if chain.network.gas_policy == "zero" or chain.balance(address) >= needed_wei:
            return None
        if row["fuel_tx_hash"]:
            fuel = chain.receipts([row["fuel_tx_hash"]]).get(row["fuel_tx_hash"])
            if fuel is None and chain.known([row["fuel_tx_hash"]]):
                return 0  # the gas is on its way
            # Dropped by the node, or mined and spent already: another top-up next round.
            return self._write(row, S.SIGNING, fuel_tx_hash=None)
        station = self.keys.create(GAS_STATION)
        if self.fund_gas is not None:
            self.fund_gas(row["network"], [station])
        # A top-up reserved but never sent by a process that died would hold every later one.
        chain.repair_nonce_gaps(station)
        sent = chain.submit(station, [Call(address, b"", value=FUEL_AMOUNT_WEI)])
        return self._write(row, S.SIGNING, fuel_tx_hash=sent[0].hash)

    def _account_of_address(self, address: str) -> str | None:
        with self.engine.connect() as conn:
            found = conn.execute(
                select(store.accounts.c.id).where(func.lower(store.accounts.c.address) == address.lower())
            ).scalar()
        return None if found is None else str(found)

    def _native_held(self, row: RowMapping) -> int:
        """The native ETH the source account holds on the transfer's network (0 where it holds none)."""
        if (NATIVE, row["network"]) not in self.native:
            return 0
        with self.engine.connect() as conn:
            return self._book_total(conn, row["source_account"], NATIVE, row["network"])

    def _in_flight(self, row: RowMapping) -> bool:
        """Whether the account has a transaction on this network signed and not yet mined."""
        with self.engine.connect() as conn:
            unsent = conn.execute(
                select(func.count()).where(
                    store.transfers.c.source_account == row["source_account"],
                    store.transfers.c.network == row["network"],
                    store.transfers.c.state.in_([S.BROADCASTING.value, S.CONFIRMING.value]),
                )
            ).scalar()
        # One transaction of an account in flight at a time: a signed one not sent or not mined yet
        # keeps its nonce (and is sent again from its bytes if a node dropped it), so a gap repair
        # never fills a nonce a transfer owns.
        return bool(unsent)

    def _sign_native(self, row: RowMapping, chain: ChainClient, amount: int) -> int:
        """Native ETH: the book checked and debited, and the value transfer signed, in one transaction
        (the signed bytes stored with the debit); gas from the gas station beyond what is held."""
        account = self._account(row["source_account"])
        with self.engine.connect() as conn:
            total = self._book_total(conn, row["source_account"], row["asset"], row["network"])
        if total < amount:
            return self._write(
                row, S.FAILED, reason=f"insufficient funds: the account holds {total}, the transfer needs {amount}"
            )
        on_chain = chain.balance(account["address"])
        if on_chain < total:
            # The address holds less than the book says (a deposit taken back by a reorg, an
            # internal transfer not arrived): the gas station never pays for that. It waits, loudly.
            log.error(
                "account %s holds %d wei on %s, its book %d: native transfers wait",
                row["source_account"],
                on_chain,
                row["network"],
                total,
            )
            return 0
        # Gas never comes out of what the account holds: the station tops the address up beyond it.
        fuelled = self._fuel(row, chain, account["address"], total + FUEL_MIN_WEI)
        if fuelled is not None:
            return fuelled
        if self._in_flight(row):
            return 0
        chain.repair_nonce_gaps(account["address"])
        destination = row["destination_address"]
        if row["kind"] == "internal":
            destination = self._account(row["destination_account"])["address"]
        # Gas estimated by the node: a contract wallet at the destination may need more than 21,000.
        (signed,) = chain.sign_calls(account["address"], [Call(destination, b"", value=amount)])
        with write_transaction(self.engine) as conn:
            conn.execute(
                select(store.accounts.c.id).where(store.accounts.c.id == row["source_account"]).with_for_update()
            ).first()
            total = self._book_total(conn, row["source_account"], row["asset"], row["network"])
            if total < amount:  # another transfer took it meanwhile: these bytes are never sent
                self._move(conn, row, S.FAILED, reason=f"insufficient funds: the account holds {total}")
                return 1
            # The destination of an internal transfer is credited when the ether arrives (completed).
            self._book(conn, row, [(row["source_account"], -amount)])
            self._move(conn, row, S.BROADCASTING, tx_hash=signed.hash, raw_tx=signed.raw.hex())
        failpoints.hit("custodian:after_sign")
        return 1

    def _book(self, conn: Connection, row: RowMapping, entries: Sequence[tuple[str, int]], suffix: str = "") -> None:
        now = self.clock()
        for account_id, delta in entries:
            conn.execute(
                store.book.insert().values(
                    transfer_id=row["id"] + suffix,
                    account_id=account_id,
                    asset=row["asset"],
                    network=row["network"],
                    amount_minor=str(delta),
                    created_at_us=now,
                )
            )

    @staticmethod
    def _send(chain: ChainClient, raw_hex: str) -> str:
        """Send stored bytes: "sent", "known" (the node has them), or "nonce_used" (a transaction
        with that nonce is mined: ours, or another one; the receipt tells which)."""
        try:
            chain.rpc.call("eth_sendRawTransaction", ["0x" + raw_hex])
        except RpcError as exc:
            message = exc.rpc_message.lower()
            if already_known(message):
                return "known"
            if "nonce too low" in message:
                return "nonce_used"
            raise
        return "sent"

    def _deposits(self, network: str) -> int:
        chain = self.chains(network)
        tokens = {t.address.lower(): t for t in self.tokens.values() if t.network == network}
        head = chain.block_number()
        with self.engine.connect() as conn:
            start = conn.execute(
                select(store.checkpoints.c.block_number).where(store.checkpoints.c.network == network)
            ).scalar()
            addresses = {
                r.address.lower(): r.id for r in conn.execute(select(store.accounts.c.address, store.accounts.c.id))
            }
        # Only blocks at the network's confirmations are read: a deposit is recorded once, from a
        # block no reorg within the confirmations can take back.
        final = head - max(chain.network.confirmations, 1) + 1
        if start is None:
            start = final  # a new custodian counts deposits from now on
        cap = NATIVE_BLOCKS_MAX if (NATIVE, network) in self.native else DEPOSIT_BLOCKS_MAX
        end = min(final, start + cap)
        found = 0
        logs = chain.get_logs(list(tokens), start + 1, end) if end > start and addresses and tokens else []
        native = self._native_deposits(chain, network, start, end, addresses) if end > start and addresses else []
        with write_transaction(self.engine) as conn:
            for deposit_id, owner_account, to_address, value, tx_hash, block in native:
                found += self._record_deposit(
                    conn, deposit_id, owner_account, to_address, NATIVE, network, value, tx_hash, block, None
                )
            for entry in logs:
                topics = entry.get("topics") or []
                if len(topics) != 3 or topics[0].lower() != TRANSFER_TOPIC:
                    continue
                sender = "0x" + topics[1][-40:].lower()
                receiver = "0x" + topics[2][-40:].lower()
                account_id = addresses.get(receiver)
                if account_id is None or sender in addresses:
                    # Not to one of its accounts, or from one of them: an internal transfer (or a
                    # withdrawal to another account here) is already the transfer that made it.
                    continue
                amount = int(entry["data"], 16) if entry.get("data") not in (None, "0x") else 0
                if amount == 0:
                    continue  # a zero transfer (anyone can send one) moves nothing: nothing to record
                token = tokens[entry["address"].lower()]
                transfer_id = (
                    "dep_"
                    + hashlib.sha256(
                        f"{network}:{entry['transactionHash']}:{int(entry['logIndex'], 16)}".encode()
                    ).hexdigest()[:20]
                )
                found += self._record_deposit(
                    conn,
                    transfer_id,
                    account_id,
                    receiver,
                    token.asset,
                    network,
                    amount,
                    entry["transactionHash"],
                    int(entry["blockNumber"], 16),
                    int(entry["logIndex"], 16),
                )
            values = {"network": network, "block_number": end}
            if (
                conn.execute(
                    update(store.checkpoints).where(store.checkpoints.c.network == network).values(block_number=end)
                ).rowcount
                == 0
            ):
                conn.execute(store.checkpoints.insert().values(**values))
        return found

    def _record_deposit(
        self,
        conn: Connection,
        transfer_id: str,
        account_id: str,
        receiver: str,
        asset: str,
        network: str,
        amount: int,
        tx_hash: str,
        block: int,
        log_index: int | None,
    ) -> int:
        """A deposit seen in a final block, recorded once (confirming until its confirmations pass)."""
        if conn.execute(select(store.transfers.c.id).where(store.transfers.c.id == transfer_id)).first():
            return 0
        now = self.clock()
        conn.execute(
            store.transfers.insert().values(
                id=transfer_id,
                kind="deposit",
                destination_account=account_id,
                destination_address=to_checksum_address(receiver),
                asset=asset,
                network=network,
                amount_minor=str(amount),
                note="",
                state=S.CONFIRMING.value,
                tx_hash=tx_hash,
                block_number=block,
                log_index=log_index,
                version=1,
                created_at_us=now,
                updated_at_us=now,
            )
        )
        self._notify(conn, self._row(conn, transfer_id))
        return 1

    def _native_deposits(
        self, chain: ChainClient, network: str, start: int, end: int, addresses: Mapping[str, str]
    ) -> builtins.list[tuple[str, str, str, int, str, int]]:
        """Plain ETH transfers to the accounts' addresses in blocks start+1..end, from anyone but its own
        accounts and its gas station: (id, account, receiver, amount, tx hash, block). (Ether sent by a
        contract's internal call is not seen: that needs a tracing node.)"""
        if (NATIVE, network) not in self.native:
            return []
        try:
            station = self.keys.address(GAS_STATION).lower()
        except NotFound:
            station = ""
        found = []
        for first in range(start + 1, end + 1, NATIVE_BATCH):
            numbers = range(first, min(end, first + NATIVE_BATCH - 1) + 1)
            blocks = chain.rpc.batch([("eth_getBlockByNumber", [hex(n), True]) for n in numbers])
            for number, block in zip(numbers, blocks, strict=True):
                if isinstance(block, BaseException):
                    raise block
                if not block or int(block.get("number", "0x0"), 16) != number:
                    raise NodeUnreachable(f"block {number} on {network} was not read whole")
                for tx in block.get("transactions") or []:
                    if not isinstance(tx, dict):
                        raise NodeUnreachable(f"block {number} on {network} came without its transactions")
                    receiver = (tx.get("to") or "").lower()
                    sender = (tx.get("from") or "").lower()
                    value = int(tx.get("value") or "0x0", 16)
                    account_id = addresses.get(receiver)
                    if account_id is None or value == 0 or sender in addresses or sender == station:
                        continue
                    transfer_id = "dep_" + hashlib.sha256(f"{network}:{tx['hash']}:native".encode()).hexdigest()[:20]
                    found.append((transfer_id, account_id, receiver, value, tx["hash"], int(block["number"], 16)))
        return found

    # -- writes -----------------------------------------------------------------------------

    def _write(self, row: RowMapping, to: S, **changes: Any) -> int:
        with write_transaction(self.engine) as conn:
            self._move(conn, row, to, **changes)
            if (row["asset"], row["network"]) in self.native:
                amount = int(row["amount_minor"])
                if row["kind"] in ("deposit", "internal") and to is S.COMPLETED:
                    self._book(conn, row, [(row["destination_account"], amount)])
                elif to is S.FAILED and row["raw_tx"]:
                    # Signed and debited, then failed on chain: nothing moved, the book takes it back.
                    self._book(conn, row, [(row["source_account"], amount)], suffix=":reversed")
        return 1

    def _move(
        self,
        conn: Connection,
        row: RowMapping,
        to: S,
        *,
        reason: str | None = None,
        block: int | None = None,
        **changes: Any,
    ) -> RowMapping:
        """One conditional write: from the version read, never from a terminal state."""
        before = S(row["state"])
        if before in TERMINAL:
            raise Conflict(f"transfer {row['id']} is already {before.value}", code="transfer_state_conflict")
        values: dict[str, Any] = {
            "state": to.value,
            "version": row["version"] + 1,
            "updated_at_us": self.clock(),
            **changes,
        }
        if reason is not None:
            values["reason"] = reason
        if block is not None:
            values["block_number"] = block
        done = conn.execute(
            update(store.transfers)
            .where(store.transfers.c.id == row["id"], store.transfers.c.version == row["version"])
            .values(**values)
        ).rowcount
        if done != 1:
            raise Conflict(f"transfer {row['id']} changed meanwhile: read it again", code="transfer_changed")
        moved = self._row(conn, row["id"])
        if to is not before:
            self._notify(conn, moved)
            log.info("transfer %s %s -> %s", row["id"], before.value, to.value)
        return moved

    def _notify(self, conn: Connection, row: RowMapping) -> None:
        if not self.webhook_url:
            return
        event_id = f"{row['id']}:{row['version']}"
        body = json.dumps(
            {"id": event_id, "type": "transfer.updated", "transfer": self._view(row)}, separators=(",", ":")
        )
        conn.execute(
            store.deliveries.insert().values(
                transfer_id=row["id"], body=body, attempts=0, next_attempt_at_us=self.clock()
            )
        )

    @staticmethod
    def _row(conn: Connection, transfer_id: str) -> RowMapping:
        row = conn.execute(select(store.transfers).where(store.transfers.c.id == transfer_id)).mappings().first()
        if row is None:
            raise NotFound(f"no transfer {transfer_id}", code="transfer_not_found")
        return row

    def _view(self, row: RowMapping) -> dict[str, Any]:
        scale = self.assets.get(row["asset"]).scale
        destination: dict[str, Any]
        if row["kind"] == "deposit":
            destination = {"account": row["destination_account"], "address": row["destination_address"]}
        elif row["destination_account"]:
            destination = {"account": row["destination_account"]}
        else:
            destination = {"address": row["destination_address"], "tag": row["destination_tag"]}
        return {
            "id": row["id"],
            "idempotency_key": row["idempotency_key"],
            "kind": row["kind"],
            "state": row["state"],
            "status": row["state"].upper(),
            "reason": row["reason"],
            "source_account": row["source_account"],
            "destination": destination,
            "asset": row["asset"],
            "network": row["network"],
            "amount": format_minor(int(row["amount_minor"]), scale),
            "tx_hash": row["tx_hash"],
            "block_number": row["block_number"],
            "sequence": row["seq"],
            "updated_at_us": row["updated_at_us"],
            "travel_rule": json.loads(row["travel_rule"]) if row["travel_rule"] else None,
        }

    def unfinished(self) -> int:
        """Transfers the worker still has to carry (those waiting for an approver excepted)."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(
                        store.transfers.c.state.notin_([s.value for s in TERMINAL]),
                        store.transfers.c.state != S.AWAITING_APPROVAL.value,
                    )
                ).scalar()
                or 0
            )

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                r[0]: r[1]
                for r in conn.execute(select(store.transfers.c.state, func.count()).group_by(store.transfers.c.state))
            }
