"""README's first example after `make run`: the ledger routes know every asset the book recorded."""

from __future__ import annotations

from andchain.config import Settings
from andchain.context import Context
from andchain.ledger import AccountKind, AccountSpec
from andchain.money import Asset


def test_accounts_of_an_asset_another_process_registered_are_listed_at_their_scale(engine, clock, tmp_path, client):
    # Another process (`andchain tokens setup`) registers the fund share and opens its issuance account.
    url = str(engine.url.render_as_string(hide_password=False))
    other = Context(Settings(data_dir=tmp_path / "other", database_url=url), clock=clock)
    other.__dict__["engine"] = engine
    other.ledger.register_assets([Asset("MMF", 6)])
    (opened,) = other.ledger.create_accounts([AccountSpec("bank:mmf:issuance", "MMF", kind=AccountKind.EQUITY)])
    assert opened.ok
    listed = client.get("/v1/accounts")
    assert listed.status_code == 200, listed.text
    mmf = [a for a in listed.json()["data"] if a["asset"] == "MMF"]
    assert [a["name"] for a in mmf] == ["bank:mmf:issuance"]
    assert mmf[0]["balances"]["posted"] == "0.000000"
    shown = client.get("/v1/accounts/bank:mmf:issuance")
    assert shown.status_code == 200 and shown.json()["balances"]["available"] == "0.000000"
