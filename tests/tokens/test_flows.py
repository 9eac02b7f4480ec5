"""Deposit tokens end to end on a real anvil node: mint, pay, redeem, DvP, reconcile."""

from __future__ import annotations

import pytest

from andchain.errors import Conflict, DomainError
from andchain.ops import OpStatus
from andchain.reconcile import reconcile
from andchain.tokens.model import DEPOSIT_TOKEN, FUND_SHARE, TOKENS, holder_account
from andchain.tokens.service import TOKEN_ABI, TokenService
from tests.tokens.conftest import settle


def onboard_funded(tokens: TokenService, name: str, cents: int) -> str:
    client = tokens.onboard(name)
    if cents:
        tokens.deposit(client.id, cents, reference=f"camt054-{name}")
    return client.id


def on_chain(tokens: TokenService, address: str, deployment: str = DEPOSIT_TOKEN) -> int:
    return tokens.chain("internal").read(tokens.token_address("internal", deployment), TOKEN_ABI, "balanceOf", address)


def mirror(tokens: TokenService, address: str, deployment: str = DEPOSIT_TOKEN) -> int:
    return tokens.ledger.account(holder_account("internal", TOKENS[deployment], address)).balance_posted


def test_mint_pay_and_redeem_keep_ledger_and_chain_equal(ctx, tokens: TokenService):
    acme = onboard_funded(tokens, "Acme Corp", 100_000)
    globex = onboard_funded(tokens, "Globex", 0)
    mint = tokens.mint(acme, "internal", 60_000, "mint-1")
    assert tokens.ledger.account(f"clients:{acme}:usd:dda").available == 40_000  # reserved at once
    assert tokens.mint(acme, "internal", 60_000, "mint-1").id == mint.id  # a replay is the same operation
    with pytest.raises(Conflict):
        tokens.mint(acme, "internal", 61_000, "mint-1")
    settle(ctx, tokens)
    done = tokens.ops.get(mint.id)
    assert done.status == OpStatus.SUCCEEDED and done.result["amount"] == 60_000
    wallet = tokens.wallet(acme, "internal")
    assert on_chain(tokens, wallet.address) == mirror(tokens, wallet.address) == 60_000
    assert tokens.dda_balance(acme) == 40_000

    pay = tokens.pay(acme, globex, "internal", 25_000, "INV-77", "pay-1")
    settle(ctx, tokens)
    assert tokens.ops.get(pay.id).status == OpStatus.SUCCEEDED
    receiver = tokens.wallet(globex, "internal")
    assert on_chain(tokens, receiver.address) == mirror(tokens, receiver.address) == 25_000

    redeem = tokens.redeem(globex, "internal", 10_000, "redeem-1")
    settle(ctx, tokens)
    assert tokens.ops.get(redeem.id).status == OpStatus.SUCCEEDED
    assert tokens.dda_balance(globex) == 10_000
    assert on_chain(tokens, receiver.address) == mirror(tokens, receiver.address) == 15_000
    report = reconcile(ctx)
    assert report.breaks == [], report.breaks
    history = [h.status for h in tokens.ops.history(mint.id)]
    assert history[0] == "received" and history[-1] == "succeeded" and "submitted" in history


def test_a_holder_redeeming_on_chain_by_itself_is_credited_by_the_listener(ctx, tokens: TokenService):
    acme = onboard_funded(tokens, "Acme Corp", 5_000)
    tokens.mint(acme, "internal", 5_000, "m")
    settle(ctx, tokens)
    wallet = tokens.wallet(acme, "internal")
    chain = tokens.chain("internal")
    from andchain.chains.client import Call
    from andchain.chains.contracts import memo32

    chain.transact(
        wallet.address,
        Call(tokens.token_address("internal"), TOKEN_ABI.encode_call("redeem", 1_200, memo32("self-service"))),
    )
    settle(ctx, tokens)
    assert tokens.dda_balance(acme) == 1_200
    assert reconcile(ctx).breaks == []


def test_a_mint_without_funds_is_refused_and_reserves_nothing(ctx, tokens: TokenService):
    acme = onboard_funded(tokens, "Acme Corp", 1_000)
    with pytest.raises(DomainError) as caught:
        tokens.mint(acme, "internal", 1_001, "too-much")
    assert caught.value.code == "insufficient_funds"
    assert tokens.ops.find_by_key("too-much") is None  # a refused request records nothing
    assert tokens.ledger.account(f"clients:{acme}:usd:dda").available == 1_000


def test_a_mint_the_chain_refuses_is_voided(ctx, tokens: TokenService):
    acme = onboard_funded(tokens, "Acme Corp", 10_000)
    chain = tokens.chain("internal")
    from andchain.chains.client import Call

    token = tokens.token_address("internal")
    chain.transact(tokens.bank("pauser"), Call(token, TOKEN_ABI.encode_call("pause")))
    try:
        op = tokens.mint(acme, "internal", 3_000, "paused-mint")
        settle(ctx, tokens)
    finally:
        chain.transact(tokens.bank("pauser"), Call(token, TOKEN_ABI.encode_call("unpause")))
    failed = tokens.ops.get(op.id)
    assert failed.status == OpStatus.FAILED and failed.error_code == "tx_reverted"
    assert "paused" in failed.error_message
    account = tokens.ledger.account(f"clients:{acme}:usd:dda")
    assert (account.available, account.debits_pending) == (10_000, 0)
    assert tokens.ledger.transfer(f"mint:{op.id}").pending_status == "voided"
    assert reconcile(ctx).breaks == []


def test_dvp_books_both_legs_or_neither(ctx, tokens: TokenService):
    buyer = onboard_funded(tokens, "Buyer Fund", 50_000)
    seller = onboard_funded(tokens, "Seller Bank", 0)
    tokens.mint(buyer, "internal", 50_000, "cash")
    tokens.issue_shares(seller, "internal", 3_000_000, "shares")
    settle(ctx, tokens)
    trade = tokens.dvp(buyer, seller, "internal", 20_000, 1_500_000, "trade-1")
    settle(ctx, tokens)
    assert tokens.ops.get(trade.id).status == OpStatus.SUCCEEDED, tokens.ops.get(trade.id)
    b, s = tokens.wallet(buyer, "internal").address, tokens.wallet(seller, "internal").address
    assert (mirror(tokens, b), mirror(tokens, s)) == (30_000, 20_000)
    assert (mirror(tokens, b, FUND_SHARE), mirror(tokens, s, FUND_SHARE)) == (1_500_000, 1_500_000)
    assert on_chain(tokens, b, FUND_SHARE) == 1_500_000 and on_chain(tokens, s) == 20_000
    # The seller's funding settles both legs in one transaction: its three transfers are booked in one
    # database transaction, by whichever of the operation and the listener comes first.
    settle_tx = tokens.ops.get(trade.id).result["tx_hash"].lower()
    settled = [t for t in tokens.ledger.list_transfers(limit=1000) if t.id.startswith(f"chain:770077:{settle_tx}:")]
    assert len(settled) == 3 and {t.asset for t in settled} == {"USD", "MMF"}
    assert reconcile(ctx).breaks == []


def test_a_batch_refused_for_a_lock_conflict_is_recorded_again_once(ctx, tokens: TokenService, monkeypatch):
    """PostgreSQL breaks a deadlock by refusing one transaction (SQLSTATE 40P01): a batch of requests it
    refuses wrote nothing, and is recorded again; each item ends as one operation and one hold."""
    from sqlalchemy.exc import OperationalError

    class Deadlock(Exception):
        sqlstate = "40P01"

    clients = [tokens.onboard(f"Conflict {n}").id for n in range(3)]
    for client in clients:
        tokens.deposit(client, 10_000, f"fund-{client}")
    requests = tokens.requests
    from andchain.ops import holds

    reserve, tries = holds.reserve, []

    def refused_once(*args, **kwargs):  # the third item's hold, the first time: the batch's transaction is refused
        tries.append(1)
        if len(tries) == 3:
            raise OperationalError("SELECT ... FOR UPDATE", {}, Deadlock("deadlock detected"))
        return reserve(*args, **kwargs)

    monkeypatch.setattr(holds, "reserve", refused_once)
    outcomes = requests.mint_batch([(c, "internal", 4_000, f"conflict-{c}") for c in clients])
    assert len(tries) == 6  # three holds refused with the transaction, three booked
    assert all(not isinstance(o, Exception) for o in outcomes)
    assert [tokens.ledger.account(f"clients:{c}:usd:dda").available for c in clients] == [6_000] * 3
    assert {tokens.ops.by_key(f"conflict-{c}").id for c in clients} == {o.id for o in outcomes}
    settle(ctx, tokens)
    assert [tokens.dda_balance(c) for c in clients] == [6_000] * 3
    assert reconcile(ctx).breaks == []


def test_a_batch_of_requests_is_recorded_together_and_one_refused_item_makes_it_recorded_one_by_one(
    ctx, tokens: TokenService, monkeypatch
):
    """The items of a batch go in together: their operations in one statement, their reservations in one
    ledger call. An item the ledger refuses rolls that back and the batch is recorded one by one: the
    refused item alone is refused, the others are recorded once."""
    from andchain.ledger import TransferFlags
    from tests.ledger.helpers import transfers_per_call

    clients = [tokens.onboard(f"Together {n}").id for n in range(4)]
    for client in clients[:3]:
        tokens.deposit(client, 10_000, f"fund-{client}")
    reservations = transfers_per_call(monkeypatch, lambda spec: spec.flags & TransferFlags.PENDING)
    first = tokens.requests.mint_batch([(c, "internal", 4_000, f"together-{c}") for c in clients[:3]])
    assert reservations == [3] and all(not isinstance(o, Exception) for o in first)
    reservations.clear()
    second = tokens.requests.mint_batch([(c, "internal", 4_000, f"again-{c}") for c in clients])
    assert reservations == [4, 1, 1, 1, 1]  # together, refused for the fourth; then one by one
    refused = second[3]
    assert isinstance(refused, DomainError) and refused.code == "insufficient_funds"
    assert tokens.ops.find_by_key(f"again-{clients[3]}") is None
    for outcome in [*first, *second[:3]]:
        assert [h.detail for h in tokens.ops.history(outcome.id)] == ["mint received"]
        assert outcome == tokens.ops.get(outcome.id)  # what the batch answered is what was recorded
    assert [tokens.ledger.account(f"clients:{c}:usd:dda").available for c in clients] == [2_000] * 3 + [0]
    settle(ctx, tokens)
    assert [tokens.dda_balance(c) for c in clients] == [2_000] * 3 + [0]
    assert reconcile(ctx).breaks == []


def statements_per_batch(ctx, tokens: TokenService, monkeypatch, send, sizes, *, before: bool, tables=()) -> dict:
    """For each size, the statements a batch request (`send(size)`) runs before its recording transaction
    (`before`) or in it; with `tables`, only those that read one of them. Every item must be accepted."""
    from sqlalchemy import event

    phase = ["idle"]
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if phase[0] == ("before" if before else "inside") and (
            not tables or any(f"FROM {table}" in statement for table in tables)
        ):
            statements.append(statement)

    record_ready = type(tokens.requests)._record_ready

    def recorded(self, ready, results):
        phase[0] = "inside"
        try:
            return record_ready(self, ready, results)
        finally:
            phase[0] = "after"

    monkeypatch.setattr(type(tokens.requests), "_record_ready", recorded)
    event.listen(ctx.engine, "before_cursor_execute", count)
    try:
        per_size = {}
        for size in sizes:
            statements.clear()
            phase[0] = "before"
            outcomes = send(size)
            assert all(not isinstance(o, Exception) for o in outcomes), outcomes
            per_size[size] = len(statements)
    finally:
        event.remove(ctx.engine, "before_cursor_execute", count)
        monkeypatch.setattr(type(tokens.requests), "_record_ready", record_ready)
    return per_size


def test_a_batch_of_mints_is_recorded_at_a_constant_number_of_statements(ctx, tokens: TokenService, monkeypatch):
    """The transaction that records a batch of mints runs as many statements for 8 items as for 2: the
    accounts their reservations name are read at once, not two statements an item."""
    clients = [onboard_funded(tokens, f"Constant {n}", 100_000) for n in range(8)]
    for client in clients:
        tokens.mint(client, "internal", 1_000, f"constant-warm-{client}")  # every holder mirror opened
    settle(ctx, tokens)

    def mints(size: int) -> list:
        return tokens.requests.mint_batch([(c, "internal", 100 + size, f"constant-{size}-{c}") for c in clients[:size]])

    per_size = statements_per_batch(ctx, tokens, monkeypatch, mints, (2, 8), before=False)
    assert per_size[2] == per_size[8], per_size
    settle(ctx, tokens)
    assert reconcile(ctx).breaks == []


def test_a_batch_of_payments_reads_at_a_constant_number_of_statements_and_goes_out_in_one_round(
    ctx, tokens: TokenService, monkeypatch
):
    """Payments from many payers: the checks before the batch's transaction read its clients, keys,
    parties, wallets and balances a statement each, whatever the batch's size; then the worker reserves
    every payer's nonce in one transaction and sends the payments in one JSON-RPC batch."""
    from andchain.chains.client import ChainClient
    from andchain.chains.nonces import NonceManager
    from andchain.compliance import schema as compliance_schema
    from andchain.ledger import schema as ledger_schema
    from andchain.ops import schema as ops_schema
    from andchain.tokens import schema as tokens_schema

    clients = [onboard_funded(tokens, f"Many {n}", 10_000) for n in range(8)]
    for client in clients:
        tokens.mint(client, "internal", 5_000, f"many-mint-{client}")
    settle(ctx, tokens)

    def payments(tag: str, count: int) -> list[tuple[str, str, str, int, str, str]]:
        return [(clients[i], clients[(i + 1) % 8], "internal", 100 + i, tag, f"{tag}-{i}") for i in range(count)]

    assert all(not isinstance(o, Exception) for o in tokens.requests.pay_batch(payments("warm", 8)))
    settle(ctx, tokens)
    tables = [t.name for t in (tokens_schema.clients, tokens_schema.wallets, ops_schema.operations)] + [
        compliance_schema.parties.name,
        ledger_schema.accounts.name,
    ]
    per_size = statements_per_batch(
        ctx,
        tokens,
        monkeypatch,
        lambda size: tokens.requests.pay_batch(payments(f"size{size}", size)),
        (2, 8),
        before=True,
        tables=tables,
    )
    assert per_size[2] == per_size[8] <= len(tables), per_size

    reserved: list[int] = []
    broadcasts: list[int] = []
    reserve_many, broadcast = NonceManager.reserve_many, ChainClient.broadcast

    def reserving(self, counts):
        reserved.append(len(counts))
        return reserve_many(self, counts)

    def sending(self, sent):
        broadcasts.append(len(sent))
        return broadcast(self, sent)

    monkeypatch.setattr(NonceManager, "reserve_many", reserving)
    monkeypatch.setattr(ChainClient, "broadcast", sending)
    settle(ctx, tokens)
    assert reserved == [8] and broadcasts == [10]  # the two batches' payments, from eight payers
    assert all(tokens.ops.by_key(f"size8-{i}").status == OpStatus.SUCCEEDED for i in range(8))
    assert reconcile(ctx).breaks == []


def test_a_batch_item_whose_key_a_twin_request_took_since_the_batch_read_its_keys_is_answered_with_it(
    ctx, tokens: TokenService, monkeypatch
):
    """A batch reads its keys once, before its items' checks. A twin request may record an item's key in
    between; that item, refused by a check that no longer holds (its client suspended since), is answered
    with the twin's operation, as a replay, never with a refusal that would make the client try again."""
    from andchain.ops.core import Operations

    client = onboard_funded(tokens, "Twin Requests", 10_000)
    twin = tokens.mint(client, "internal", 1_000, "twin-key")
    tokens.clients.set_status(client, "suspended")
    keys_in_use = Operations.keys_in_use
    monkeypatch.setattr(Operations, "keys_in_use", lambda self, keys: keys_in_use(self, keys) - {"twin-key"})
    other = onboard_funded(tokens, "Twin Bystander", 10_000)
    answers = tokens.requests.mint_batch(
        [
            (client, "internal", 1_000, "twin-key"),
            (other, "internal", 500, "bystander-key"),
            (client, "internal", 1, "new"),
        ]
    )
    assert answers[0] == tokens.ops.get(twin.id)
    assert not isinstance(answers[1], Exception)
    assert isinstance(answers[2], DomainError) and answers[2].code == "client_not_active"
