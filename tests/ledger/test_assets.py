"""The book knows its assets: registered once, known to every process on the same database."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from andchain.api import create_app
from andchain.config import Settings
from andchain.context import Context
from andchain.ledger import AccountSpec, AssetConflict, BookAssets, Ledger, Result, TransferSpec
from andchain.money import DEFAULT_ASSETS, Asset, MoneyError

MMF = Asset("MMF", 6)


def fresh_context(engine: Engine, tmp_path, **settings) -> Context:
    """What a new process sees: a context with nothing in memory but the settings."""
    url = engine.url.render_as_string(hide_password=False)
    ctx = Context(Settings(data_dir=tmp_path, database_url=url, **settings))
    ctx.__dict__["engine"] = engine
    return ctx


def test_an_asset_registered_through_one_ledger_is_known_to_a_fresh_one(engine: Engine):
    first = Ledger(engine)
    assert first.register_assets([MMF]) == [MMF]
    assert first.register_assets([MMF, MMF]) == [MMF]  # idempotent
    other = Ledger(engine)
    assert other.assets.get("mmf") == MMF
    assert "MMF" in other.assets and MMF in list(other.assets)
    (opened,) = other.create_accounts([AccountSpec("bank:mmf:issuance", "MMF")])
    assert opened.result == Result.OK


def test_an_asset_registered_by_another_process_later_is_found_on_a_miss(engine: Engine):
    reader = Ledger(engine)
    assert reader.assets.get("USD").scale == 2  # the registry has loaded what was recorded then
    Ledger(engine).register_assets([MMF])
    assert reader.assets.get("MMF") == MMF
    with pytest.raises(MoneyError, match="unknown asset 'XYZ'"):
        reader.assets.get("XYZ")


def test_the_same_code_with_another_scale_is_refused_and_nothing_is_recorded(engine: Engine):
    ledger = Ledger(engine)
    ledger.register_assets([MMF])
    with pytest.raises(AssetConflict, match=r"MMF .* scale 6.* scale 2") as refused:
        Ledger(engine).register_assets([Asset("JPMD", 2), Asset("MMF", 2)])
    assert refused.value.code == "asset_scale_conflict"
    with pytest.raises(AssetConflict, match="USD"):
        ledger.register_assets([Asset("USD", 6)])
    with pytest.raises(AssetConflict, match="given twice"):
        ledger.register_assets([Asset("ABC", 2), Asset("ABC", 3)])
    fresh = Ledger(engine)
    assert "JPMD" not in fresh.assets and "ABC" not in fresh.assets
    assert fresh.assets.get("MMF") == MMF


def test_a_configured_scale_that_contradicts_the_book_is_refused_not_used(engine: Engine):
    Ledger(engine).register_assets([MMF])
    wrong = BookAssets(engine, [*DEFAULT_ASSETS, Asset("MMF", 2)])
    with pytest.raises(AssetConflict, match="MMF"):
        wrong.get("USD")


def test_opening_an_account_in_an_asset_known_only_in_memory_records_it(engine: Engine):
    # Today's token service adds its assets to the process's memory only, then opens
    # its accounts: the book records the asset of every account it holds.
    ledger = Ledger(engine)
    ledger.assets.add(MMF)
    ledger.create_accounts([AccountSpec("bank:mmf:issuance", "MMF"), AccountSpec("bank:mmf:treasury", "MMF")])
    assert Ledger(engine).assets.get("MMF") == MMF


def test_a_fresh_context_lists_shows_and_sums_a_registered_asset_at_its_scale(engine: Engine, tmp_path):
    setup = fresh_context(engine, tmp_path)
    setup.assets.add(MMF)  # what TokenService does today; ledger.register_assets is the durable way
    setup.ledger.register_assets([MMF])
    issuance, treasury = (
        r.account_id
        for r in setup.ledger.create_accounts(
            [AccountSpec("bank:mmf:issuance", "MMF"), AccountSpec("bank:mmf:treasury", "MMF")]
        )
    )
    assert setup.ledger.create_transfer(TransferSpec(issuance, treasury, 1_500_000, id="m1")).result == Result.OK

    later = fresh_context(engine, tmp_path)
    assert later.assets.get("MMF").scale == 6
    assert later.ledger.assets is later.assets
    with TestClient(create_app(later), base_url="http://localhost", raise_server_exceptions=False) as http:
        _, key = later.api_keys.create("auditor")
        http.headers["Authorization"] = f"Bearer {key}"
        listed = http.get("/v1/accounts")
        assert listed.status_code == 200, listed.text
        treasury_view = next(a for a in listed.json()["data"] if a["name"] == "bank:mmf:treasury")
        assert treasury_view["balances"]["posted"] == "1.500000"
        shown = http.get("/v1/accounts/bank:mmf:issuance")
        assert shown.status_code == 200 and shown.json()["balances"]["posted"] == "-1.500000"


def test_the_configured_assets_setting_keeps_working(engine: Engine, tmp_path):
    ctx = fresh_context(engine, tmp_path, assets={"jpmd": 2})
    assert ctx.assets.get("JPMD").scale == 2
    (opened,) = ctx.ledger.create_accounts([AccountSpec("clients:acme:jpmd", "JPMD")])
    assert opened.result == Result.OK
    assert Ledger(engine).assets.get("JPMD").scale == 2  # and the book now records it
