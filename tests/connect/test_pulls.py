"""A partner's pulls from a customer's consented account, on SQLite and PostgreSQL, with a clock the test
moves: held when they arrive, posted on their settlement date, settled when the return window closes;
returned (R01 at once when the account cannot cover it; R10 and others before settlement) released or
reversed; limits per customer; the Idempotency-Key; an account outside the consent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from andchain.config import Settings
from andchain.connect.oauth import Access, AccountNotInConsent, ConnectService
from andchain.connect.pulls import CLEARING, Pulls
from andchain.context import Context
from andchain.errors import Conflict, DomainError
from andchain.tokens.model import BANK_CASH, dda_account
from andchain.tokens.service import TokenService
from tests.conftest import FakeClock


class World:
    def __init__(self, engine, tmp_path: Path) -> None:
        url = engine.url.render_as_string(hide_password=False)
        settings = Settings(
            data_dir=tmp_path, database_url=url, keystore={"passphrase": "test", "scrypt_n": 1024},
            connect={"pull_post_after_s": 3600, "pull_return_window_s": 2 * 86_400, "pull_daily_max": "1000.00",
                     "pull_hourly_count_max": 3},
        )  # fmt: skip
        self.clock = FakeClock()
        self.ctx = Context(settings, clock=self.clock)
        self.ctx.__dict__["engine"] = engine
        self.tokens = TokenService(self.ctx)
        self.connect = ConnectService(engine, settings.connect, self.ctx.api_keys.digest, clock=self.clock)
        self.pulls = Pulls(self.ctx)
        self.partner, _ = self.connect.register_partner("Exchange", ["https://x.example/cb"], ["payments:write"])

    def customer(self, name: str, cents: int) -> tuple[str, Access]:
        client = self.tokens.onboard(name, "natural").id
        if cents:
            self.tokens.deposit(client, cents, f"wire-{name}")
        account = self.ctx.ledger.account(dda_account(client)).id
        consent = self.connect.grant(self.partner.client_id, client, ["payments:write"], [account])
        return client, Access("tok", self.partner.client_id, consent.id, client, ("payments:write",), (account,))

    def dda(self, client: str) -> tuple[int, int]:
        account = self.ctx.ledger.account(dda_account(client))
        return account.balance_posted, account.available

    def balance(self, name: str) -> int:
        return self.ctx.ledger.account(name).balance_posted


@pytest.fixture
def world(engine, tmp_path) -> Iterator[World]:
    made = World(engine, tmp_path)
    yield made
    made.ctx.close()


def test_a_pull_is_held_posted_on_its_date_and_settled_when_the_window_closes(world):
    client, access = world.customer("Ada", 800_00)
    account = str(access.accounts[0])
    cash = world.balance(BANK_CASH)
    pull = world.pulls.create(access, account, "250.00", "fund wallet", "k-1")
    assert (pull.status, pull.return_code) == ("pending", None)
    assert world.dda(client) == (800_00, 550_00)  # held, not yet taken
    assert world.pulls.advance() == 0  # its settlement date has not come
    world.clock.advance(3600)
    assert world.pulls.advance() == 1
    assert world.pulls.get(pull.id).status == "posted"
    assert world.dda(client) == (550_00, 550_00)
    world.clock.advance(2 * 86_400)
    assert world.pulls.advance() == 1
    assert world.pulls.get(pull.id).status == "settled"
    assert world.balance(CLEARING) == 0
    assert world.balance(BANK_CASH) - cash == 250_00  # the money left the bank (its cash credited)
    with pytest.raises(Conflict) as late:
        world.pulls.return_(pull.id, "R10")
    assert late.value.code == "return_window_closed"
    assert world.pulls.create(access, account, "250.00", "fund wallet", "k-1").id == pull.id  # the same key
    with pytest.raises(Conflict) as reused:
        world.pulls.create(access, account, "260.00", "fund wallet", "k-1")
    assert reused.value.code == "idempotency_key_reused"
    assert world.ctx.ledger.verify() == []


def test_returns_release_or_reverse_and_r01_comes_at_once(world):
    client, access = world.customer("Bea", 300_00)
    account = str(access.accounts[0])
    short = world.pulls.create(access, account, "500.00", "", "k-short")
    assert (short.status, short.return_code) == ("returned", "R01")
    assert world.dda(client) == (300_00, 300_00)  # nothing held
    pending = world.pulls.create(access, account, "100.00", "", "k-pending")
    returned = world.pulls.return_(pending.id, "R10")
    assert (returned.status, returned.return_code) == ("returned", "R10")
    assert world.dda(client) == (300_00, 300_00)
    posted = world.pulls.create(access, account, "120.00", "", "k-posted")
    world.clock.advance(3600)
    world.pulls.advance()
    assert world.dda(client) == (180_00, 180_00)
    world.pulls.return_(posted.id, "R10")
    assert world.dda(client) == (300_00, 300_00)  # reversed to the DDA
    assert world.balance(CLEARING) == 0
    with pytest.raises(Conflict) as twice:
        world.pulls.return_(posted.id, "R01")
    assert twice.value.code == "pull_returned"
    with pytest.raises(DomainError) as bad:
        world.pulls.return_(posted.id, "R99")
    assert bad.value.code == "invalid_return_code"
    world.clock.advance(3 * 86_400)
    world.pulls.advance()  # a returned pull never settles
    assert world.pulls.get(posted.id).status == "returned"
    assert world.ctx.ledger.verify() == []


def test_limits_per_customer_and_accounts_outside_the_consent(world):
    client, access = world.customer("Cy", 5_000_00)
    account = str(access.accounts[0])
    world.pulls.create(access, account, "600.00", "", "a")
    with pytest.raises(DomainError) as daily:
        world.pulls.create(access, account, "500.00", "", "b")
    assert daily.value.code == "pull_limit_exceeded"
    world.pulls.create(access, account, "100.00", "", "c")
    world.pulls.create(access, account, "100.00", "", "d")
    with pytest.raises(DomainError) as velocity:
        world.pulls.create(access, account, "10.00", "", "e")
    assert velocity.value.code == "pull_velocity_exceeded"
    other, _ = world.customer("Dee", 100_00)
    elsewhere = str(world.ctx.ledger.account(dda_account(other)).id)
    for bad in (elsewhere, "999999", "abc"):
        with pytest.raises(AccountNotInConsent):
            world.pulls.create(access, bad, "1.00", "", f"x-{bad}")
    for amount in ("0", "-1", "1.001", "abc"):
        with pytest.raises(DomainError):
            world.pulls.create(access, account, amount, "", f"amt-{amount}")
    assert len(world.pulls.list(customer=client)) == 3


def test_concurrent_pulls_never_pass_the_daily_limit_together_and_a_suspended_customer_is_refused(world):
    import threading

    client, access = world.customer("Eve", 10_000_00)
    account = str(access.accounts[0])
    outcomes: list[str] = []
    barrier = threading.Barrier(3)

    def pull(n: int) -> None:
        barrier.wait()
        try:
            world.pulls.create(access, account, "600.00", "", f"race-{n}")
            outcomes.append("ok")
        except DomainError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=pull, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok", "pull_limit_exceeded", "pull_limit_exceeded"]
    with pytest.raises(DomainError) as told:
        world.pulls.create(access, account, "1000.00", "", "probe")
    assert "600" not in told.value.message  # what was pulled today is not told
    world.tokens.clients.set_status(client, "suspended")
    with pytest.raises(DomainError) as suspended:
        world.pulls.create(access, account, "1.00", "", "after-suspension")
    assert suspended.value.code == "customer_not_active"


def test_a_return_after_the_window_is_refused_even_before_the_worker_settles(world):
    client, access = world.customer("Fay", 500_00)
    pull = world.pulls.create(access, str(access.accounts[0]), "100.00", "", "w-1")
    world.clock.advance(3600)
    world.pulls.advance()
    assert world.pulls.return_(pull.id, "R10").status == "returned"
    assert world.pulls.return_(pull.id, "R10").status == "returned"  # a retry of the same return
    late = world.pulls.create(access, str(access.accounts[0]), "100.00", "", "w-2")
    world.clock.advance(3600)
    world.pulls.advance()
    world.clock.advance(3 * 86_400)  # the window closed; the worker has not run yet
    with pytest.raises(Conflict) as closed:
        world.pulls.return_(late.id, "R10")
    assert closed.value.code == "return_window_closed"
    assert world.dda(client)[0] == 400_00
