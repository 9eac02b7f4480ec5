"""`andchain custody` against the reference custodian running as its own process: the commands an
operator uses to see what a custodian holds for the bank. They move nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from andchain.cli import app
from tests.chains.conftest import start_public_node
from tests.custody.worlds import REGTEST_OUT, USDC, ReferenceWorld


@pytest.fixture(scope="module")
def base_node(tmp_path_factory):
    node = start_public_node(tmp_path_factory.mktemp("base"))
    yield node
    node.stop()


@pytest.fixture
def world(tmp_path, base_node, monkeypatch) -> Iterator[ReferenceWorld]:
    made = ReferenceWorld(tmp_path, base_node)
    for name, value in made.service.env.items():
        if name.startswith("ANDCHAIN_"):
            monkeypatch.setenv(name, value)
    yield made
    made.close()


def run(*args: str, group: str = "custody") -> tuple[int, str]:
    result = CliRunner().invoke(app, [group, *args] if group else list(args))
    if result.exit_code == 0:
        return 0, result.stdout
    return result.exit_code, result.stdout + (result.stderr if result.stderr_bytes is not None else "")


def test_an_operator_opens_accounts_finds_addresses_sees_deposits_and_asks_for_moves(world):
    code, text = run("custodians", "--json")
    assert code == 0 and json.loads(text) == [{"name": "reference", "kind": "reference", "base_url": None}]
    assert run("db", "upgrade", group="")[0] == 0
    code, text = run("clients", "onboard", "Acme Ltd", group="")
    assert code == 0, text
    code, text = run("open", "Acme Ltd", "--json")
    assert code == 0, text
    opened = json.loads(text)
    client, account = opened["owner"], opened["account_id"]
    assert json.loads(run("open", client, "--json")[1])["account_id"] == account  # once
    assert [r["account_id"] for r in json.loads(run("accounts", "--json")[1])] == [account]
    code, text = run("deposit-address", client, "--asset", "USDC", "--network", "base", "--json")
    assert code == 0, text
    usdc_address = json.loads(text)["address"]
    code, text = run("deposit-address", client, "--asset", "BTC", "--network", "bitcoin")
    assert code == 0 and "bcrt1q" in text
    world.mint(usdc_address, 5 * USDC)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        code, text = run("balances", client, "--json")
        held = {row["asset"]: row for row in json.loads(text)}
        if held.get("USDC", {}).get("available") == "5.000000" and '"incoming": true' in run("transfers", "--json")[1]:
            break
        time.sleep(0.3)
    # The custodian holds it; the ledger credits it when the worker takes in the custodian's report.
    assert held["USDC"]["total"] == "5.000000" and held["USDC"]["ledger"] == "0.000000"
    assert held["BTC"]["total"] == "0.00000000"
    code, text = run("transfers", "--json")
    page = json.loads(text)
    assert [(t["incoming"], t["amount"], t["destination"]) for t in page["transfers"]] == [(True, "5.000000", account)]
    assert run("transfers", "--cursor", page["cursor"], "--json")[1].count('"id"') == 0  # nothing since

    from andchain.context import Context
    from andchain.custody.service import CustodyService

    CustodyService(Context()).poll("reference")
    held = {row["asset"]: row for row in json.loads(run("balances", client, "--json")[1])}
    assert held["USDC"]["ledger"] == "5.000000"

    code, text = run("withdraw", client, "1", "--asset", "USDC", "--network", "base", "--to", "0x" + "12" * 20)
    assert code == 1 and "not an address client Acme Ltd registered on base" in text
    code, text = run("withdraw", client, "0.5", "--asset", "BTC", "--network", "bitcoin", "--to", REGTEST_OUT)
    assert code == 1 and "refused by the ledger" in text, text
    code, text = run(
        "convert", client, "2.50", "--from", "USDC", "--to", "USD", "--key", "k1", "--json", group="stablecoin"
    )
    assert code == 0, text
    op = json.loads(text)
    assert (op["kind"], op["status"], op["payload"]["usd_amount"]) == ("stablecoin_convert", "received", 250)
    code, text = run("convert", client, "2.50", "--from", "USDC", "--to", "EUR", group="stablecoin")
    assert code == 1 and "between USD and a stablecoin" in text
    held = {row["asset"]: row for row in json.loads(run("balances", client, "--json")[1])}
    assert held["USDC"]["ledger_available"] == "2.500000"


def test_an_unknown_custodian_or_a_missing_secret_is_one_clear_line(world, monkeypatch):
    code, text = run("transfers", "--custodian", "nope")
    assert code != 0 and "no custodian 'nope' is configured" in text
    monkeypatch.setenv("ANDCHAIN_CUSTODY__CUSTODIANS__FB__KIND", "fireblocks")
    code, text = run("transfers", "--custodian", "fb")
    assert code != 0 and "custodian fb: api_key is not configured" in text
