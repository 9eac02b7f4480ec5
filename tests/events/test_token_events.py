"""Deposit-token flows on a real anvil node: their events, scoped per client, delivered by the worker's part."""

from __future__ import annotations

from standardwebhooks import Webhook

from andchain.events import EventLog, type_filter
from andchain.events.webhooks import Webhooks
from andchain.tokens.service import TokenService
from tests.chains.conftest import anvil, ctx  # noqa: F401 - fixtures shared with the chain tests
from tests.events.conftest import local
from tests.tokens.conftest import settle, tokens  # noqa: F401


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
