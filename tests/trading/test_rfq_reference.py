"""The RFQ end to end with the reference custodian running as its own process, reached over HTTP, on
SQLite and PostgreSQL: the desk's BTC credited by the custodian, a client buys by RFQ and the
custodian itself reports the BTC in the client's account; the client sells part back and is paid;
the bank's books and the custodian's agree throughout."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from andchain.custody.port import DESK
from andchain.custody.reconcile import reconcile_custodians
from andchain.custody.service import CustodyHandler, CustodyService, position_account
from andchain.ops.core import OpStatus
from andchain.ops.worker import Worker
from andchain.tokens.service import TokenService
from andchain.trading.desk import DeskHandler, DeskService
from tests.chains.conftest import start_public_node
from tests.custody.worlds import ReferenceWorld

BTC = 100_000_000


@pytest.fixture(scope="module")
def base_node(tmp_path_factory):
    node = start_public_node(tmp_path_factory.mktemp("base"))
    yield node
    node.stop()


class Bank:
    def __init__(self, world: ReferenceWorld) -> None:
        self.world = world
        self.ctx = world.bank
        self.tokens = TokenService(self.ctx)
        self.custody = CustodyService(self.ctx, custodians={"reference": world.custodian}, tokens=self.tokens)
        self.desk = DeskService(self.ctx, custody=self.custody)
        self.worker = Worker(self.tokens.ops, [CustodyHandler(self.custody), DeskHandler(self.desk)])

    def run(self, op_id: str, seconds: float = 90) -> object:
        def done() -> bool:
            current = self.tokens.ops.get(op_id)
            return current.terminal or current.status == OpStatus.NEEDS_ATTENTION

        self.worker.run(seconds=seconds, idle_sleep_s=0.05, until=done)
        return self.tokens.ops.get(op_id)

    def held(self, owner: str) -> int:
        return self.ctx.ledger.account(position_account("reference", owner, "BTC")).balance_posted

    def at_custodian(self, owner: str) -> int:
        account = self.custody.account("reference", owner)
        assert account is not None
        found = [b for b in self.world.custodian.balances(account.account_id) if b.asset == "BTC"]
        return found[0].total_minor if found else 0

    def clean(self) -> None:
        _, findings = reconcile_custodians(self.custody)
        assert [f for f in findings if not f.ok] == []


@pytest.fixture(params=["sqlite", "postgresql"])
def bank(request, tmp_path, base_node) -> Iterator[Bank]:
    url = None
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres_server")
        from tests.conftest import _truncate

        _truncate(request.getfixturevalue("_postgres_engine"))
        url = server.url
    world = ReferenceWorld(tmp_path, base_node, url)
    yield Bank(world)
    world.close()


def test_a_client_buys_btc_by_rfq_and_its_custodian_holds_it(bank):
    desk_account = bank.custody.open_account("reference", DESK).account_id
    bank.custody.ensure_positions("reference", DESK, "BTC")
    bank.world.credit(desk_account, "2", "ab" * 32 + ":0")
    for _ in range(100):
        bank.custody.poll("reference")
        if bank.held(DESK) == 2 * BTC:
            break
    assert bank.held(DESK) == 2 * BTC
    client = bank.tokens.onboard("Ada Capital").id
    bank.tokens.deposit(client, 100_000_00, "wire-ada")
    bank.custody.open_account("reference", client)

    quote = bank.desk.quote(client, "BTC-USD", "buy", quantity="0.25")
    trade = bank.desk.accept(quote.id)
    done = bank.run(trade.id)
    assert done.status == OpStatus.SUCCEEDED, (done.error_code, done.error_message)
    assert bank.at_custodian(client) == 25_000_000 == bank.held(client)  # the custodian's own answer
    assert bank.at_custodian(DESK) == 175_000_000 == bank.held(DESK)
    assert bank.tokens.dda_balance(client) == 100_000_00 - quote.notional_minor
    bank.clean()

    back = bank.desk.quote(client, "BTC-USD", "sell", quantity="0.1")
    assert back.price < quote.price  # the spread, both ways
    sold = bank.run(bank.desk.accept(back.id).id)
    assert sold.status == OpStatus.SUCCEEDED, (sold.error_code, sold.error_message)
    assert bank.at_custodian(client) == 15_000_000
    assert bank.tokens.dda_balance(client) == 100_000_00 - quote.notional_minor + back.notional_minor
    # Within its appetite (trading.internalise_max: 1 BTC) the desk kept both trades: short what it sold.
    assert bank.desk.positions().net()["BTC"] == Decimal("-0.15")
    bank.clean()
