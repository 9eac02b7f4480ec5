"""Deposit tokens on the bank's networks: clients, wallets, mint, pay, redeem, DvP.

The ledger is the book of record. A client's dollars sit in its deposit account
(DDA); minting moves them, in two phases, to the mirror of the client's token
balance on that network (pending until the mint is final on chain, voided if the
chain refuses it). Every other movement of tokens is booked from the chain's own
events, under a transfer id made from the event (chain id, tx hash, log index), so
whether the operation that caused it or the listener books it first, it is booked
once.
"""

from __future__ import annotations

import logging
from typing import Any

from eth_utils import keccak, to_checksum_address
from sqlalchemy import Connection, select, update

from andchain.chains.client import Call, ChainClient, Receipt
from andchain.chains.contracts import artifact, encode_memo
from andchain.context import Context
from andchain.db import write_transaction
from andchain.errors import Conflict, DomainError, NotFound
from andchain.ledger import AccountFlags, AccountKind, AccountSpec, Result, TransferFlags, TransferSpec
from andchain.ops import Operation, Operations, OpStatus
from andchain.tokens import schema
from andchain.tokens.model import (
    BANK_CASH,
    BANK_ROLES,
    BANK_SEIZED,
    BANK_SUSPENSE,
    DEPOSIT_TOKEN,
    DVP,
    TOKENS,
    Client,
    ClientKind,
    ClientStatus,
    TokenDef,
    Wallet,
    dda_account,
    holder_account,
)

log = logging.getLogger(__name__)

TOKEN_ABI = artifact("PermissionedToken").abi
DVP_ABI = artifact("DvPSettlement").abi
MINTER_ALLOWANCE = 10**30
SUPPLY_CAP = 10**32


def event_transfer_id(chain_id: int, tx_hash: str, log_index: int) -> str:
    return f"chain:{chain_id}:{tx_hash.lower()}:{log_index}"


class TokenService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.ledger = ctx.ledger
        for token in TOKENS.values():
            ctx.assets.add(token.asset)
        self.ops = Operations(ctx.engine, clock=ctx.clock)
        # Wallets never change owner or address; only their allow-listed flag turns true.
        self._wallets: dict[tuple[str, str], Wallet] = {}
        self._owners: dict[tuple[str, str], str] = {}

    # ------------------------------------------------------------- set-up

    def bank(self, role: str) -> str:
        if role not in BANK_ROLES:
            raise DomainError(f"unknown bank role {role!r}")
        return self.ctx.keys.create(f"bank:{role}")

    def chain(self, network: str) -> ChainClient:
        return self.ctx.chain(network)

    def token_address(self, network: str, deployment: str = DEPOSIT_TOKEN) -> str:
        address = self.chain(network).deployment(deployment)
        assert address is not None
        return address

    def setup(self, network: str) -> dict[str, str]:
        """Deploy (or adopt) the deposit token, the fund share and DvP on `network`; set the bank's roles."""
        chain = self.chain(network)
        admin = self.bank("admin")
        self._bank_accounts()
        settings = self.ctx.settings.network(network)
        if settings.local and settings.gas_policy != "zero":
            # Development only: a local node's bank signers get gas from the node itself.
            # On a real network the bank funds its gas wallets, and reconcile alerts when low.
            for role in BANK_ROLES:
                address = self.bank(role)
                if chain.balance(address) < 10**18:
                    chain.rpc.call("anvil_setBalance", [address, hex(100 * 10**18)])
        addresses = {}
        dvp = chain.deploy(DVP, "DvPSettlement", [], admin)
        for token in TOKENS.values():
            address = chain.deploy(
                token.deployment,
                "PermissionedToken",
                [token.name, token.symbol, token.decimals, SUPPLY_CAP, admin],
                admin,
            )
            addresses[token.deployment] = address
            self._roles(chain, address, dvp)
        addresses[DVP] = dvp
        return addresses

    def _roles(self, chain: ChainClient, token: str, dvp: str) -> None:
        admin = self.bank("admin")
        for role, getter in (("MASTER_MINTER", "masterMinter"), ("PAUSER", "pauser"), ("COMPLIANCE", "compliance")):
            holder = self.bank(role.lower())
            if chain.read(token, TOKEN_ABI, getter) != holder:
                chain.transact(admin, Call(token, TOKEN_ABI.encode_call("setRole", keccak(text=role), holder)))
        minter = self.bank("minter")
        if chain.read(token, TOKEN_ABI, "minterAllowance", minter) < MINTER_ALLOWANCE // 2:
            chain.transact(
                self.bank("master_minter"),
                Call(token, TOKEN_ABI.encode_call("configureMinter", minter, MINTER_ALLOWANCE)),
            )
        wanted = [a for a in (self.bank("treasury"), dvp) if not chain.read(token, TOKEN_ABI, "allowlisted", a)]
        if wanted:
            chain.transact(
                self.bank("compliance"), Call(token, TOKEN_ABI.encode_call("batchSetAllowlisted", wanted, True))
            )

    def _bank_accounts(self) -> None:
        self.ledger.create_accounts(
            [
                AccountSpec(BANK_CASH, "USD", kind=AccountKind.ASSET),
                AccountSpec(BANK_SUSPENSE, "USD", kind=AccountKind.LIABILITY),
                AccountSpec(BANK_SEIZED, "USD", kind=AccountKind.LIABILITY),
                AccountSpec("bank:mmf:issuance", "MMF", kind=AccountKind.EQUITY),
            ]
        )

    # ------------------------------------------------------------ clients

    def onboard(self, name: str, kind: str = ClientKind.LEGAL) -> Client:
        """A client record and its USD deposit account (idempotent by name)."""
        if not name.strip() or len(name) > 200:
            raise DomainError("client name must be 1-200 characters", code="invalid_request")
        try:
            kind = ClientKind(kind).value
        except ValueError:
            raise DomainError(f"client kind must be legal or natural, was {kind!r}", code="invalid_request") from None
        self._bank_accounts()
        t = schema.clients
        with write_transaction(self.ctx.engine) as conn:
            row = conn.execute(select(t).where(t.c.name == name)).first()
            if row is None:
                client_id = self.ledger.ids.new_id().lower()
                conn.execute(
                    t.insert().values(
                        id=client_id,
                        name=name,
                        kind=kind,
                        status=ClientStatus.ACTIVE.value,
                        created_at_us=self.ctx.clock(),
                    )
                )
            elif row.kind != kind:
                raise Conflict(f"client {name!r} exists as a {row.kind} person", code="client_exists")
            else:
                client_id = row.id
            self.ledger.create_accounts(
                [
                    AccountSpec(
                        dda_account(client_id),
                        "USD",
                        kind=AccountKind.LIABILITY,
                        flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
                    )
                ],
                conn=conn,
            )
        return self.client(client_id)

    def client(self, ref: str) -> Client:
        t = schema.clients
        with self.ctx.engine.connect() as conn:
            row = conn.execute(select(t).where((t.c.id == ref.lower()) | (t.c.name == ref))).first()
        if row is None:
            raise NotFound(f"no client {ref!r}", code="client_not_found")
        return Client(row.id, row.name, row.kind, row.status, int(row.created_at_us))

    def clients(self) -> list[Client]:
        t = schema.clients
        with self.ctx.engine.connect() as conn:
            return [
                Client(r.id, r.name, r.kind, r.status, int(r.created_at_us))
                for r in conn.execute(select(t).order_by(t.c.created_at_us))
            ]

    def _active(self, ref: str) -> Client:
        client = self.client(ref)
        if client.status != ClientStatus.ACTIVE:
            raise DomainError(f"client {client.name} is {client.status}", code="client_not_active")
        return client

    def deposit(self, client_ref: str, amount_minor: int, reference: str, memo: str = "") -> str:
        """Credit a client's deposit account: an operator deposit or a booked camt.054 credit notice.

        The reference (the notice's id) is the idempotency key: the same notice books once.
        """
        client = self._active(client_ref)
        if amount_minor <= 0:
            raise DomainError(f"amount must be positive, was {amount_minor}", code="amount_must_be_positive")
        ids = self._ids(BANK_CASH, dda_account(client.id))
        result = self.ledger.create_transfer(
            TransferSpec(
                ids[0],
                ids[1],
                amount_minor,
                id=f"deposit:{reference}",
                code="deposit",
                memo=memo or reference,
                asset="USD",
            )
        )
        if not result.ok:
            raise DomainError(f"deposit {reference} refused: {result.result.value}", code=result.result.value)
        return result.id

    def dda_balance(self, client_ref: str) -> int:
        return self.ledger.account(dda_account(self.client(client_ref).id)).balance_posted

    def _ids(self, *names: str) -> list[int]:
        return [self.ledger.account(n).id for n in names]

    # ------------------------------------------------------------ wallets

    def wallet(self, client_ref: str, network: str) -> Wallet:
        """The client's bank-managed address on `network` (created on first use; allow-listed by its first op)."""
        client = self._active(client_ref)
        cached = self._wallets.get((client.id, network))
        if cached is not None:
            return cached
        self.ctx.settings.network(network)
        t = schema.wallets
        with self.ctx.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.client_id == client.id, t.c.network == network)).first()
        if row is None:
            label = f"client:{client.id}"
            address = self.ctx.keys.create(label)
            with write_transaction(self.ctx.engine) as conn:
                if (
                    conn.execute(select(t.c.address).where(t.c.client_id == client.id, t.c.network == network)).first()
                    is None
                ):
                    conn.execute(
                        t.insert().values(
                            network=network,
                            address=address,
                            client_id=client.id,
                            key_label=label,
                            allowlisted=False,
                            created_at_us=self.ctx.clock(),
                        )
                    )
                self._holder_accounts(conn, network, address)
            return self.wallet(client_ref, network)
        wallet = Wallet(row.client_id, row.network, row.address, bool(row.allowlisted))
        self._wallets[(client.id, network)] = wallet
        return wallet

    def holder(self, client_id: str, network: str) -> str:
        """Where the client's tokens live on a network: a bank-managed wallet on a permissioned one,
        the client's own verified address on a public one."""
        if self.ctx.settings.network(network).kind == "permissioned":
            return self.wallet(client_id, network).address
        a = schema.client_addresses
        with self.ctx.engine.connect() as conn:
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

    def wallet_owner(self, network: str, address: str) -> str | None:
        """The client an address on a network belongs to: its bank-managed wallet or its registered address."""
        key = (network, address.lower())
        if key in self._owners:
            return self._owners[key]
        t, a = schema.wallets, schema.client_addresses
        checksum = to_checksum_address(address)
        with self.ctx.engine.connect() as conn:
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
        return owner is not None and self.wallet(owner, network).allowlisted

    def mark_allowlisted(self, network: str, address: str, conn: Connection | None = None) -> None:
        for key, wallet in list(self._wallets.items()):
            if wallet.network == network and wallet.address.lower() == address.lower():
                self._wallets[key] = Wallet(wallet.client_id, network, wallet.address, True)
        t = schema.wallets
        stmt = update(t).where(t.c.network == network, t.c.address == address).values(allowlisted=True)
        if conn is not None:
            conn.execute(stmt)
        else:
            with write_transaction(self.ctx.engine) as own:
                own.execute(stmt)

    def _holder_accounts(self, conn: Connection | None, network: str, address: str) -> None:
        specs = [
            AccountSpec(holder_account(network, token, address), token.asset.code, kind=AccountKind.LIABILITY)
            for token in TOKENS.values()
        ]
        results = self.ledger.create_accounts(specs, conn=conn)
        assert all(r.ok for r in results), results

    def holder_id(self, network: str, token: TokenDef, address: str, conn: Connection | None = None) -> int:
        name = holder_account(network, token, address)
        results = self.ledger.create_accounts(
            [AccountSpec(name, token.asset.code, kind=AccountKind.LIABILITY)], conn=conn
        )
        assert results[0].account_id is not None
        return results[0].account_id

    # ------------------------------------------------------------- requests

    def _deployed(self, network: str) -> str:
        self.ctx.settings.network(network)
        address = self.chain(network).deployment(DEPOSIT_TOKEN, required=False)
        if address is None:
            raise DomainError(
                f"the deposit token is not deployed on {network}; run `andchain tokens setup --network {network}`",
                code="token_not_deployed",
            )
        return address

    def mint(self, client_ref: str, network: str, amount_minor: int, idempotency_key: str) -> Operation:
        """Mint deposit tokens to the client's wallet: reserve the DDA now, mint on chain, post when final."""
        client = self._active(client_ref)
        self._deployed(network)
        if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
            raise DomainError(
                f"amount must be a positive integer of cents, was {amount_minor!r}", code="amount_must_be_positive"
            )
        holder = self.holder(client.id, network)
        self._holder_accounts(None, network, holder)
        payload = {"client": client.id, "network": network, "amount": amount_minor, "holder": holder}
        op, created = self.ops.create("mint", idempotency_key, payload, network=network)
        if created:
            refusal = self.reserve_mint(op)
            if refusal is not None:
                failed = self.ops.update(op, status=OpStatus.FAILED, error=refusal, detail=f"refused: {refusal[1]}")
                raise DomainError(refusal[1], code=refusal[0], operation=failed.id)
            op = self.ops.update(op, state={**op.state, "reserved": True})
        return op

    def reserve_mint(self, op: Operation) -> tuple[str, str] | None:
        p = op.payload
        dda, holder = self._ids(
            dda_account(p["client"]), holder_account(p["network"], TOKENS[DEPOSIT_TOKEN], p["holder"])
        )
        result = self.ledger.create_transfer(
            TransferSpec(
                dda,
                holder,
                p["amount"],
                id=f"mint:{op.id}",
                asset="USD",
                flags=TransferFlags.PENDING,
                code="mint",
                memo=f"mint on {p['network']}",
            )
        )
        if result.result in (Result.OK, Result.EXISTS):
            return None
        return result.result.value, f"mint of {p['amount']} cents refused: {result.result.value}"

    def pay(
        self, from_ref: str, to_ref: str, network: str, amount_minor: int, memo: str, idempotency_key: str
    ) -> Operation:
        """A client-to-client token payment with a memo, signed by the payer's bank-managed wallet."""
        payer, payee = self._active(from_ref), self._active(to_ref)
        if payer.id == payee.id:
            raise DomainError("payer and payee must be different clients", code="accounts_must_be_different")
        self._deployed(network)
        if amount_minor <= 0:
            raise DomainError(f"amount must be positive, was {amount_minor}", code="amount_must_be_positive")
        encode_memo(memo, self.ctx.settings.network(network).memo_format)  # refuses a bad memo now, not at signing
        source, target = self.wallet(payer.id, network), self.wallet(payee.id, network)
        mirror = self.ledger.account(holder_account(network, TOKENS[DEPOSIT_TOKEN], source.address))
        if mirror.balance_posted < amount_minor:
            raise DomainError(
                f"{payer.name} holds {mirror.balance_posted} cents of tokens on {network}, cannot pay {amount_minor}",
                code="insufficient_funds",
            )
        payload = {
            "from": payer.id,
            "to": payee.id,
            "network": network,
            "amount": amount_minor,
            "memo": memo,
            "sender": source.address,
            "receiver": target.address,
        }
        return self.ops.create("pay", idempotency_key, payload, network=network)[0]

    def redeem(self, client_ref: str, network: str, amount_minor: int, idempotency_key: str) -> Operation:
        """Bank-initiated redemption: burn the client's tokens on chain, credit its DDA when final."""
        client = self._active(client_ref)
        self._deployed(network)
        if amount_minor <= 0:
            raise DomainError(f"amount must be positive, was {amount_minor}", code="amount_must_be_positive")
        wallet = self.wallet(client.id, network)
        payload = {"client": client.id, "network": network, "amount": amount_minor, "holder": wallet.address}
        return self.ops.create("redeem", idempotency_key, payload, network=network)[0]

    def issue_shares(self, client_ref: str, network: str, shares_minor: int, idempotency_key: str) -> Operation:
        """Issue tokenized fund shares to a client (booked against the fund's issuance account)."""
        client = self._active(client_ref)
        wallet = self.wallet(client.id, network)
        payload = {"client": client.id, "network": network, "amount": shares_minor, "holder": wallet.address}
        return self.ops.create("issue_shares", idempotency_key, payload, network=network)[0]

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
        """Deposit tokens against fund shares through DvPSettlement: both legs settle atomically or neither."""
        buyer, seller = self._active(buyer_ref), self._active(seller_ref)
        if buyer.id == seller.id:
            raise DomainError("buyer and seller must be different clients", code="accounts_must_be_different")
        if cash_minor <= 0 or shares_minor <= 0:
            raise DomainError("both legs must be positive", code="amount_must_be_positive")
        self._deployed(network)
        b, s = self.wallet(buyer.id, network), self.wallet(seller.id, network)
        payload = {
            "buyer": buyer.id,
            "seller": seller.id,
            "network": network,
            "cash": cash_minor,
            "shares": shares_minor,
            "buyer_address": b.address,
            "seller_address": s.address,
            "deadline": self.ctx.clock() // 1_000_000 + ttl_s,
        }
        return self.ops.create("dvp", idempotency_key, payload, network=network)[0]

    # --------------------------------------------------------- event booking

    def book_event(
        self,
        network: str,
        chain_id: int,
        name: str,
        args: dict[str, Any],
        address: str,
        tx_hash: str,
        log_index: int,
        conn: Connection | None = None,
    ) -> None:
        """Book one token or DvP event in the ledger, once (the id comes from the event)."""
        tid = event_transfer_id(chain_id, tx_hash, log_index)
        chain = self.chain(network)
        token = self._token_at(network, address)
        specs: list[TransferSpec] = []
        if token is not None and name == "Transfer":
            sender, receiver = args["sender"], args["receiver"]
            zero = "0x" + "00" * 20
            dvp = chain.deployment(DVP, required=False) or ""
            # Mints and burns are booked by their own events; DvP escrow by the DvP events.
            if zero in (sender.lower(), receiver.lower()) or dvp.lower() in (sender.lower(), receiver.lower()):
                return
            specs.append(
                TransferSpec(
                    self.holder_id(network, token, sender, conn),
                    self.holder_id(network, token, receiver, conn),
                    args["value"],
                    id=tid,
                    code="token_transfer",
                    memo=f"{tx_hash[:18]}:{log_index}",
                )
            )
        elif token is not None and name == "TransferWithMemo":
            return  # its Transfer twin carries the movement; the memo stays on chain and in the op
        elif token is not None and name == "Redeemed":
            owner = self.wallet_owner(network, args["holder"])
            target = dda_account(owner) if owner else BANK_SUSPENSE
            if token.deployment != DEPOSIT_TOKEN:
                target = "bank:mmf:issuance"
            specs.append(
                TransferSpec(
                    self.holder_id(network, token, args["holder"], conn),
                    self.ledger.account(target).id,
                    args["value"],
                    id=tid,
                    code="redeem",
                    memo=f"redeemed on {network}",
                )
            )
        elif token is not None and name == "Seized" and args["burned"]:
            target = BANK_SEIZED if token.deployment == DEPOSIT_TOKEN else "bank:mmf:issuance"
            specs.append(
                TransferSpec(
                    self.holder_id(network, token, args["holder"], conn),
                    self.ledger.account(target).id,
                    args["value"],
                    id=tid,
                    code="seize",
                    memo="seized and burned",
                )
            )
        elif address.lower() == (chain.deployment(DVP, required=False) or "").lower():
            specs = self._dvp_specs(network, name, args, tid, conn)
        if specs:
            results = self.ledger.create_transfers(specs, conn=conn)
            bad = [r for r in results if not r.ok]
            if bad:
                raise DomainError(
                    f"booking {name} {tx_hash}:{log_index} refused: {bad[0].result.value}", code=bad[0].result.value
                )

    def _token_at(self, network: str, address: str) -> TokenDef | None:
        chain = self.chain(network)
        for token in TOKENS.values():
            deployed = chain.deployment(token.deployment, required=False)
            if deployed and deployed.lower() == address.lower():
                return token
        return None

    def _dvp_specs(
        self, network: str, name: str, args: dict[str, Any], tid: str, conn: Connection | None
    ) -> list[TransferSpec]:
        if name not in ("TradeFunded", "TradeSettled", "TradeRefunded"):
            return []
        chain = self.chain(network)
        dvp = chain.deployment(DVP)
        assert dvp is not None
        trade = chain.read(dvp, DVP_ABI, "trades", args["trade_id"])
        party_a, party_b, token_a, amount_a, token_b, amount_b = trade[:6]
        funded_a, funded_b = trade[7], trade[8]
        leg_a, leg_b = self._token_at(network, token_a), self._token_at(network, token_b)
        if leg_a is None or leg_b is None:
            return []
        escrow_a, escrow_b = (self.holder_id(network, leg_a, dvp, conn), self.holder_id(network, leg_b, dvp, conn))
        a_a, b_b = self.holder_id(network, leg_a, party_a, conn), self.holder_id(network, leg_b, party_b, conn)
        if name == "TradeFunded":
            if args["party"].lower() == party_a.lower():
                return [TransferSpec(a_a, escrow_a, amount_a, id=tid, code="dvp_fund")]
            return [TransferSpec(b_b, escrow_b, amount_b, id=tid, code="dvp_fund")]
        if name == "TradeSettled":
            # Both legs, linked: the ledger books the delivery and the payment together or not at all.
            return [
                TransferSpec(
                    escrow_a,
                    self.holder_id(network, leg_a, party_b, conn),
                    amount_a,
                    id=f"{tid}:a",
                    code="dvp_settle",
                    flags=TransferFlags.LINKED,
                ),
                TransferSpec(
                    escrow_b, self.holder_id(network, leg_b, party_a, conn), amount_b, id=f"{tid}:b", code="dvp_settle"
                ),
            ]
        refunds = []
        if funded_a:
            refunds.append(TransferSpec(escrow_a, a_a, amount_a, id=f"{tid}:a", code="dvp_refund"))
        if funded_b:
            refunds.append(TransferSpec(escrow_b, b_b, amount_b, id=f"{tid}:b", code="dvp_refund"))
        return refunds

    def book_receipt(self, network: str, receipt: Receipt, conn: Connection | None = None) -> None:
        """Book every token/DvP event of a final receipt (the listener books the same ids)."""
        chain = self.chain(network)
        for raw in receipt.logs:
            address = raw["address"]
            abi = DVP_ABI if address.lower() == (chain.deployment(DVP, required=False) or "").lower() else TOKEN_ABI
            if abi is TOKEN_ABI and self._token_at(network, address) is None:
                continue
            event = abi.decode_log([bytes.fromhex(t[2:]) for t in raw["topics"]], bytes.fromhex(raw["data"][2:]))
            if event is not None:
                self.book_event(
                    network,
                    chain.chain_id,
                    event.name,
                    event.args,
                    address,
                    raw["transactionHash"],
                    int(raw["logIndex"], 16),
                    conn,
                )
