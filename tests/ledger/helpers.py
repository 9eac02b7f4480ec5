from __future__ import annotations

from collections.abc import Callable

from andchain.ledger import AccountFlags, AccountSpec, Ledger, Result, TransferSpec


def open_accounts(ledger: Ledger, *specs: tuple[str, str, int]) -> list[int]:
    results = ledger.create_accounts([AccountSpec(name, asset, flags=flags) for name, asset, flags in specs])
    assert all(r.result == Result.OK for r in results), results
    return [r.account_id for r in results]  # type: ignore[misc]


def funded_client(ledger: Ledger, amount: int, asset: str = "USD") -> tuple[int, int]:
    """A bank cash account and a client account (no overdraft) holding `amount`."""
    bank, client = open_accounts(
        ledger,
        (f"bank:{asset.lower()}:cash", asset, 0),
        (f"clients:acme:{asset.lower()}:dda", asset, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
    )
    if amount:
        assert ledger.create_transfer(TransferSpec(bank, client, amount, id="funding")).result == Result.OK
    return bank, client


def balances(ledger: Ledger, *ids: int) -> list[tuple[int, int, int, int]]:
    out = []
    for account_id in ids:
        a = ledger.account(account_id)
        out.append((a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted))
    return out


def transfers_per_call(monkeypatch, counted: Callable[[TransferSpec], object]) -> list[int]:
    """How many transfers that `counted` picks each ledger call made from now on creates, for the calls with any."""
    calls: list[int] = []
    create = Ledger.create_transfers

    def counting(self, specs, *, conn=None):
        picked = sum(1 for spec in specs if counted(spec))
        if picked:
            calls.append(picked)
        return create(self, specs, conn=conn)

    monkeypatch.setattr(Ledger, "create_transfers", counting)
    return calls
