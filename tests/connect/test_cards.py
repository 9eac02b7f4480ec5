"""Card funding on SQLite and PostgreSQL, the clock moved by the test: a partner's charge on a
customer's consented card is an authorization held on the available credit, captured (points earned),
voided, or expired by the ledger after 7 days; a crypto purchase (MCC 6051) is a cash advance with its
fee and no points; the limit declines what it cannot cover; the Idempotency-Key answers the same charge."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from andchain.config import Settings
from andchain.connect.cards import FEES, Cards, line_account, points_account
from andchain.connect.oauth import Access, AccountNotInConsent, ConnectService
from andchain.context import Context
from andchain.errors import Conflict, DomainError
from andchain.tokens.service import TokenService
from tests.conftest import FakeClock


class World:
    def __init__(self, engine, tmp_path: Path) -> None:
        url = engine.url.render_as_string(hide_password=False)
        settings = Settings(data_dir=tmp_path, database_url=url, keystore={"passphrase": "test", "scrypt_n": 1024})
        self.clock = FakeClock()
        self.ctx = Context(settings, clock=self.clock)
        self.ctx.__dict__["engine"] = engine
        self.ctx.ledger.clock = self.clock
        self.tokens = TokenService(self.ctx)
        self.connect = ConnectService(engine, settings.connect, self.ctx.api_keys.digest, clock=self.clock)
        self.cards = Cards(self.ctx)
        self.partner, _ = self.connect.register_partner("Exchange", ["https://x.example/cb"], ["payments:write"])

    def customer(self, name: str, limit: str) -> tuple[str, str, Access]:
        client = self.tokens.onboard(name, "natural").id.lower()
        card = self.cards.issue(client, limit)
        account = self.ctx.ledger.account(line_account(client, card.id)).id
        consent = self.connect.grant(self.partner.client_id, client, ["payments:write"], [account])
        access = Access("tok", self.partner.client_id, consent.id, client, ("payments:write",), (account,))
        return client, str(account), access

    def available(self, client: str, account: str) -> int:
        return self.ctx.ledger.account(int(account)).available

    def points(self, client: str) -> int:
        return self.ctx.ledger.account(points_account(client)).balance_posted


@pytest.fixture
def world(engine, tmp_path) -> Iterator[World]:
    made = World(engine, tmp_path)
    yield made
    made.ctx.close()


def test_authorize_capture_void_and_points(world):
    client, account, access = world.customer("Ada", "1000.00")
    assert world.available(client, account) == 1000_00
    auth = world.cards.authorize(access, account, "120.50", "5999", "Exchange One", "c-1")
    assert (auth.status, auth.fee_minor, auth.cash_advance) == ("authorized", 0, False)
    assert world.available(client, account) == 879_50  # held on the credit
    assert world.cards.authorize(access, account, "120.50", "5999", "Exchange One", "c-1").id == auth.id
    with pytest.raises(Conflict):
        world.cards.authorize(access, account, "99.00", "5999", "Exchange One", "c-1")
    captured = world.cards.capture(auth.id)
    assert captured.status == "captured"
    assert world.cards.owed(world.cards.card(auth.card_id)) == 120_50
    assert world.points(client) == 120  # 1 point per USD, rounded down
    assert world.cards.capture(auth.id).status == "captured"  # again: the same
    with pytest.raises(Conflict):
        world.cards.void(auth.id)
    second = world.cards.authorize(access, account, "50.00", "5999", "Exchange One", "c-2")
    assert world.cards.void(second.id).status == "voided"
    assert world.available(client, account) == 879_50
    with pytest.raises(Conflict):
        world.cards.capture(second.id)
    assert world.ctx.ledger.verify() == []


def test_a_crypto_purchase_is_a_cash_advance_with_its_fee_and_no_points(world):
    client, account, access = world.customer("Bea", "1000.00")
    small = world.cards.authorize(access, account, "100.00", "6051", "Exchange One", "ca-1")
    assert (small.cash_advance, small.fee_minor) == (True, 10_00)  # 5% is 5.00: the minimum 10.00
    big = world.cards.authorize(access, account, "400.00", "6051", "Exchange One", "ca-2")
    assert big.fee_minor == 20_00
    assert world.available(client, account) == 1000_00 - 110_00 - 420_00
    fees = world.ctx.ledger.account(FEES).balance_posted
    world.cards.capture(big.id)
    assert world.ctx.ledger.account(FEES).balance_posted - fees == 20_00
    assert world.points(client) == 0
    with pytest.raises(DomainError) as declined:
        world.cards.authorize(access, account, "500.00", "6051", "Exchange One", "ca-3")  # 525 > 470 left
    assert declined.value.code == "insufficient_credit"


def test_an_authorization_not_captured_expires_after_seven_days(world):
    client, account, access = world.customer("Cy", "300.00")
    auth = world.cards.authorize(access, account, "200.00", "5999", "Exchange One", "e-1")
    world.clock.advance(7 * 86_400 - 1)
    assert world.ctx.ledger.expire_pending() == 0
    world.clock.advance(2)
    assert world.ctx.ledger.expire_pending() >= 1
    assert world.cards.get(auth.id).status == "expired"
    assert world.available(client, account) == 300_00
    with pytest.raises(Conflict) as late:
        world.cards.capture(auth.id)
    assert late.value.code == "authorization_not_open"


def test_bad_charges_and_cards_outside_the_consent(world):
    client, account, access = world.customer("Dee", "100.00")
    _, other_account, _ = world.customer("Eve", "100.00")
    for bad in (other_account, "999999", "x"):
        with pytest.raises(AccountNotInConsent):
            world.cards.authorize(access, bad, "1.00", "5999", "Exchange One", f"b-{bad}")
    for amount, mcc, merchant in (("0", "5999", "m"), ("-1", "5999", "m"), ("1.001", "5999", "m"),
                                  ("1.00", "59", "m"), ("1.00", "5999", "")):  # fmt: skip
        with pytest.raises(DomainError):
            world.cards.authorize(access, account, amount, mcc, merchant, f"x-{amount}-{mcc}-{merchant}")
    assert world.available(client, account) == 100_00
