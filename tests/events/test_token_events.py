"""Deposit-token flows on a real anvil node: their events, scoped per client, delivered by the worker's part."""

from __future__ import annotations

from standardwebhooks import Webhook

from andchain.events import EventLog, type_filter
from andchain.events.webhooks import Webhooks
from andchain.tokens.service import TokenService
from tests.chains.conftest import anvil, ctx  # noqa: F401 - fixtures shared with the chain tests
from tests.events.conftest import local
from tests.tokens.conftest import sent_and_mined, settle, tokens  # noqa: F401


def test_a_payment_is_received_once_by_the_payee_and_the_worker_delivers_it(ctx, tokens: TokenService, receiver):  # noqa: F811
    ctx.settings.events = local()  # the receiver is on 127.0.0.1, over http
    hooks = Webhooks(ctx.engine, ctx.settings.events, clock=ctx.clock)
    acme = tokens.onboard("Acme Corp").id
    globex = tokens.onboard("Globex").id
    globex_hook, secret = hooks.create(receiver.url, subscriber=globex, types=["payment.received"])
    tokens.deposit(acme, 100_000, reference="camt054-acme")
    mint = tokens.mint(acme, "internal", 60_000, "mint-1")
    settle(ctx, tokens)
    pay = tokens.pay(acme, globex, "internal", 25_000, "INV-77", "pay-1")
    settle(ctx, tokens)  # the pay operation and the listener both book its Transfer: booked, and announced, once

    log = EventLog(ctx.engine)
    mine = [(e.type, e.subject) for e in log.read(client_id=acme, limit=1000).events]
    assert ("mint.succeeded", mint.id) in mine and ("operation.succeeded", pay.id) in mine
    assert not [t for t, _ in mine if t == "payment.received"]  # a mint is no payment; acme paid, it received none
    received = log.read(client_id=globex, types=type_filter(["payment.received"])).events
    assert len(received) == 1
    wallet = tokens.wallet(globex, "internal")
    assert received[0].payload["amount"] == "250.00" and received[0].payload["to"] == wallet.address
    assert received[0].payload["token"] == "USDD" and received[0].client_id == globex
    # Globex sees the payment operation too (it concerns both parties), never acme's mint.
    theirs = {e.subject for e in log.read(client_id=globex, limit=1000).events}
    assert pay.id in theirs and mint.id not in theirs

    # The worker's webhook part delivered it while the operations settled.
    (request,) = receiver.delivered()
    assert Webhook(secret).verify(request.body, request.headers)["id"] == received[0].id
    assert [d.status for d in hooks.deliveries(globex_hook.id)] == ["succeeded"]


def test_payments_final_in_one_round_are_each_received_once_after_their_operations_book_them(
    ctx,  # noqa: F811
    tokens: TokenService,  # noqa: F811
    monkeypatch,
):
    """Several payments whose receipts the worker finds final together: their transfers are booked in one
    ledger call with the operations' completions, and each payee receives its payment once."""
    from tests.ledger.helpers import transfers_per_call

    payer = tokens.onboard("Payroll Co").id
    payees = [tokens.onboard(f"Employee {n}").id for n in range(4)]
    tokens.deposit(payer, 100_000, reference="camt054-payroll")
    tokens.mint(payer, "internal", 50_000, "payroll-mint")
    settle(ctx, tokens)
    for n, payee in enumerate(payees):  # every wallet allow-listed first: the payments then need one step each
        tokens.pay(payer, payee, "internal", 1, f"first {n}", f"first-{n}")
    settle(ctx, tokens)
    booked = transfers_per_call(monkeypatch, lambda spec: spec.code == "token_transfer")
    from andchain.tokens.booking import Booking

    read_ahead: list[int] = []  # receipts whose mirrors a batch of finals read at once
    looked_up_alone: list[str] = []  # receipts that looked their mirrors up by themselves
    decoded_alone: list[str] = []  # receipts whose logs were decoded again as they were booked
    read_mirrors, mirrors, book_receipt = Booking.read_mirrors, Booking._mirrors, Booking.book_receipt
    events_of = Booking._events_of
    inside: list[bool] = [False]

    def reading_ahead(self, conn, receipts):
        read_ahead.append(len(receipts))
        return read_mirrors(self, conn, receipts)

    def booking_receipt(self, network, receipt, conn):
        inside[0] = True
        try:
            return book_receipt(self, network, receipt, conn)
        finally:
            inside[0] = False

    def looking_up(self, events, conn):
        if inside[0]:
            looked_up_alone.append(events[0].tx_hash)
        return mirrors(self, events, conn)

    def decoding(self, network, receipt):
        if inside[0]:
            decoded_alone.append(receipt.tx_hash)
        return events_of(self, network, receipt)

    monkeypatch.setattr(Booking, "_events_of", decoding)
    monkeypatch.setattr(Booking, "read_mirrors", reading_ahead)
    monkeypatch.setattr(Booking, "book_receipt", booking_receipt)
    monkeypatch.setattr(Booking, "_mirrors", looking_up)
    batch = tokens.requests.pay_batch(
        [(payer, payee, "internal", 1_000 + n, f"salary {n}", f"salary-{n}") for n, payee in enumerate(payees)]
    )
    sent_and_mined(ctx, tokens, batch)
    settle(ctx, tokens)
    assert [tokens.ops.get(op.id).status.value for op in batch] == ["succeeded"] * 4
    # The four payments' transfers in one call by the worker's finals, and in one by the listener's block
    # range when it read them first (the second finds them booked: `exists`).
    assert booked in ([4], [4, 4])
    assert read_ahead == [4] and looked_up_alone == []  # the finals' mirrors read in one statement
    assert decoded_alone == []  # and each receipt's logs decoded once, as they were read ahead

    # The payer's wallet pays by itself on chain, outside any operation: the listener books what it reads of a
    # block range in one ledger call, and announces each payment once.
    from andchain.chains.client import Call
    from andchain.tokens.service import TOKEN_ABI

    booked.clear()
    from andchain.ledger import Ledger

    opened: list[int] = []  # mirrors that exist are read with the range, never opened again one by one
    create_accounts = Ledger.create_accounts

    def opening(self, specs, **kwargs):
        opened.append(len(specs))
        return create_accounts(self, specs, **kwargs)

    monkeypatch.setattr(Ledger, "create_accounts", opening)
    chain, token = tokens.chain("internal"), tokens.token_address("internal")
    source = tokens.wallet(payer, "internal").address
    targets = [tokens.wallet(payee, "internal").address for payee in payees]
    chain.transact_many(
        source, [Call(token, TOKEN_ABI.encode_call("transfer", t, 7 + n)) for n, t in enumerate(targets)]
    )
    settle(ctx, tokens)
    assert booked == [4] and opened == []
    log = EventLog(ctx.engine)
    for n, payee in enumerate(payees):
        received = log.read(client_id=payee, types=type_filter(["payment.received"])).events
        assert sorted(int(e.payload["amount_minor"]) for e in received) == [1, 7 + n, 1_000 + n]
