"""`andchain ledger`, run as a user would, on a fresh data directory."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from andchain.cli import app
from andchain.context import Context
from andchain.ledger import AccountSpec, TransferSpec
from andchain.money import Asset

runner = CliRunner()


@pytest.fixture(autouse=True)
def fresh_data_dir(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANDCHAIN_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("ANDCHAIN_DATABASE_URL", raising=False)


def run(*args: str):
    return runner.invoke(app, list(args))


def run_json(*args: str):
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_accounts_are_given_by_name_or_by_id_written_id_colon_n():
    assert run("db", "upgrade").exit_code == 0
    assert run_json("ledger", "accounts", "create", "bank:usd:cash", "--asset", "USD")["account"]["id"] == 1
    assert run_json("ledger", "accounts", "create", "clients:2", "--asset", "USD")["account"]["id"] == 2
    moved = run_json("ledger", "transfer", "--from", "id:1", "--to", "clients:2", "--amount", "5.00 USD", "--id", "t1")
    assert moved == {"id": "t1", "result": "ok"}
    shown = run_json("ledger", "accounts", "show", "id:2")
    assert shown["account"]["name"] == "clients:2" and shown["account"]["posted"] == "5.00"
    assert run_json("ledger", "accounts", "show", "clients:2")["account"]["id"] == 2


@pytest.mark.parametrize("ref", ["2", "²", "id:99999999999999999999", "id:x"])
def test_a_bare_number_or_an_impossible_id_is_not_found_with_a_clear_message(ref):
    run("db", "upgrade")
    run("ledger", "accounts", "create", "bank:usd:cash", "--asset", "USD")
    run("ledger", "accounts", "create", "clients:acme:usd", "--asset", "USD")
    shown = run("ledger", "accounts", "show", ref)
    assert shown.exit_code == 1 and "account_not_found" in shown.stderr
    moved = run("ledger", "transfer", "--from", ref, "--to", "clients:acme:usd", "--amount", "1.00 USD")
    assert moved.exit_code == 1 and "account_not_found" in moved.stderr
    assert "Traceback" not in shown.output + moved.output
    if ref == "2":
        assert "id:2" in shown.stderr


@pytest.mark.parametrize("name", ["2", "id:7", "clients:²", "clients:café"])
def test_a_name_that_could_be_read_as_an_id_or_is_not_ascii_is_refused(name):
    run("db", "upgrade")
    created = run("ledger", "accounts", "create", name, "--asset", "USD")
    assert created.exit_code == 1 and "name_invalid" in created.stderr


def test_the_help_says_how_an_id_is_written():
    assert "id:42" in run("ledger", "accounts", "show", "--help").stdout
    assert "id:42" in run("ledger", "transfer", "--help").stdout


@pytest.mark.parametrize("how", ["register_assets", "in memory only, as tokens setup does today"])
def test_every_command_prints_a_token_asset_at_its_scale_in_a_later_process(how):
    assert run("db", "upgrade").exit_code == 0
    setup = Context()  # the process that ran `andchain tokens setup`
    mmf = Asset("MMF", 6)
    if how == "register_assets":
        setup.ledger.register_assets([mmf])
    else:
        setup.assets.add(mmf)
    issuance, treasury = (
        r.account_id
        for r in setup.ledger.create_accounts(
            [AccountSpec("bank:mmf:issuance", "MMF"), AccountSpec("bank:mmf:treasury", "MMF")]
        )
    )
    setup.ledger.create_transfer(TransferSpec(issuance, treasury, 1_500_000, id="m1"))
    setup.close()

    listed = {a["name"]: a for a in run_json("ledger", "accounts", "list")}
    assert listed["bank:mmf:treasury"]["posted"] == "1.500000"
    shown = run_json("ledger", "accounts", "show", "bank:mmf:issuance")
    assert shown["account"]["posted"] == "-1.500000" and shown["history"][0]["amount"] == "1.500000"
    assert run_json("ledger", "balances") == [
        {
            "asset": "MMF",
            "debits_pending": "0.000000",
            "debits_posted": "1.500000",
            "credits_pending": "0.000000",
            "credits_posted": "1.500000",
            "balanced": True,
        }
    ]
    moved = run_json(
        "ledger", "transfer", "--from", "bank:mmf:treasury", "--to", "bank:mmf:issuance", "--amount", "0.000001 MMF"
    )
    assert moved["result"] == "ok"
    table = run("ledger", "accounts", "list")
    assert table.exit_code == 0 and "1.499999" in table.stdout
