"""Rewards to USDC on SQLite and PostgreSQL, against a custodian played in memory: card spend earns
points; a redemption holds them with the USDC withdrawal from the bank's treasury to the customer's
own verified address; the points are taken when the custodian completes it, untouched when it fails."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from andchain.config import Settings
from andchain.connect.cards import Cards, line_account, points_account
from andchain.connect.oauth import Access, ConnectService
from andchain.connect.rewards import Rewards
from andchain.context import Context
from andchain.custody.port import DESK, CustodyTransfer, Destination
from andchain.custody.service import CustodyHandler, CustodyService
from andchain.custody.states import CustodyState
from andchain.errors import DomainError
from andchain.ops.core import OpStatus
from andchain.tokens.moves import Moves
from andchain.tokens.service import TokenService
from tests.conftest import FakeClock
from tests.custody.test_bank_reports import Played

_ids = itertools.count(1)


class World:
    def __init__(self, engine, tmp_path: Path) -> None:
        url = engine.url.render_as_string(hide_password=False)
        settings = Settings(data_dir=tmp_path, database_url=url, keystore={"passphrase": "test", "scrypt_n": 1024},
                            connect={"rewards_custodian": "played"})  # fmt: skip
        self.clock = FakeClock()
        self.ctx = Context(settings, clock=self.clock)
        self.ctx.__dict__["engine"] = engine
        self.played = Played()
        self.tokens = TokenService(self.ctx)
        self.custody = CustodyService(self.ctx, custodians={"played": self.played}, tokens=self.tokens)
        self.rewards = Rewards(self.ctx, self.custody)
        self.cards = Cards(self.ctx)
        self.connect = ConnectService(engine, settings.connect, self.ctx.api_keys.digest, clock=self.clock)
        self.handler = CustodyHandler(self.custody)
        # The bank's USDC treasury: the desk's account at the custodian, funded with 1,000 USDC.
        desk = self.custody.open_account("played", DESK).account_id
        self.custody.ensure_positions("played", DESK, "USDC")
        deposit = CustodyTransfer("played", f"usdc-{next(_ids)}", None, CustodyState.COMPLETED, "completed", None,
                                  None, Destination(account_id=desk), "USDC", "base", 1_000 * 10**6,
                                  tx_hash="cd" * 32, incoming=True)  # fmt: skip
        self.played.held[(desk, "USDC")] = 1_000 * 10**6
        self.played._put(deposit)
        self.custody.poll("played")

    def customer(self, name: str, spend: str) -> str:
        client = self.tokens.onboard(name, "natural").id.lower()
        card = self.cards.issue(client, "5000.00")
        account = self.ctx.ledger.account(line_account(client, card.id)).id
        partner, _ = self.connect.register_partner("Shop", ["https://shop.example/cb"], ["payments:write"])
        consent = self.connect.grant(partner.client_id, client, ["payments:write"], [account])
        access = Access("t", partner.client_id, consent.id, client, ("payments:write",), (account,))
        auth = self.cards.authorize(access, str(account), spend, "5411", "Grocer", f"spend-{client}")
        self.cards.capture(auth.id)
        wallet = Account.create()
        nonce, message = Moves(self.tokens).challenge(client, "base")
        signature = Account.sign_message(encode_defunct(text=message), wallet.key).signature.hex()
        Moves(self.tokens).register(client, "base", nonce, wallet.address, signature)
        return client

    def points(self, client: str) -> tuple[int, int]:
        account = self.ctx.ledger.account(points_account(client))
        return account.balance_posted, account.available

    def drive(self, op_id: str, *, outcome: CustodyState = CustodyState.COMPLETED) -> None:
        for _ in range(5):
            op = self.custody.ops.get(op_id)
            if op.terminal:
                break
            self.handler.advance([op])
            for transfer in list(self.played.by_id.values()):
                if not transfer.incoming and transfer.state is CustodyState.CREATED:
                    if outcome is CustodyState.COMPLETED:
                        self.played.complete(transfer.id)
                    else:
                        self.played.end(transfer.id, outcome)
        self.rewards.follow()


@pytest.fixture
def world(engine, tmp_path) -> Iterator[World]:
    made = World(engine, tmp_path)
    yield made
    made.ctx.close()


def test_points_become_usdc_at_the_customers_own_address_and_are_taken_only_then(world):
    client = world.customer("Ada", "500.00")
    assert world.points(client) == (500, 500)
    redemption = world.rewards.redeem(client, 300, "base", "r-1")
    assert (redemption.status, redemption.usdc_minor) == ("pending", 3 * 10**6)  # 300 x 0.01 USD
    assert world.points(client) == (500, 200)  # held, not taken
    assert world.rewards.redeem(client, 300, "base", "r-1").id == redemption.id
    world.drive(redemption.withdrawal_id)
    assert world.custody.ops.get(redemption.withdrawal_id).status == OpStatus.SUCCEEDED
    assert world.rewards.get(redemption.id).status == "delivered"
    assert world.points(client) == (200, 200)
    sent = [t for t in world.played.by_id.values() if not t.incoming]
    assert sent[0].destination.address == redemption.address and sent[0].amount_minor == 3 * 10**6


def test_a_failed_delivery_leaves_the_points_untouched(world):
    client = world.customer("Bea", "250.00")
    redemption = world.rewards.redeem(client, 200, "base", "r-fail")
    world.drive(redemption.withdrawal_id, outcome=CustodyState.REJECTED)
    assert world.rewards.get(redemption.id).status == "failed"
    assert world.points(client) == (250, 250)
    with pytest.raises(DomainError) as short:
        world.rewards.redeem(client, 251, "base", "r-too-many")
    assert short.value.code == "insufficient_funds"
    with pytest.raises(DomainError) as nowhere:
        world.rewards.redeem(client, 10, "tempo", "r-nowhere")
    assert nowhere.value.code == "no_registered_address"
    assert [r.id for r in world.rewards.list(customer=client)] == [redemption.id]


def test_the_same_key_twice_at_once_redeems_once(world):
    import threading

    client = world.customer("Cy", "400.00")
    barrier = threading.Barrier(2)
    found: list[str] = []

    def redeem() -> None:
        barrier.wait()
        found.append(world.rewards.redeem(client, 100, "base", "same-key").id)

    threads = [threading.Thread(target=redeem) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 2 and found[0] == found[1]
    assert world.points(client) == (400, 300)  # held once
