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
from tests.custody.worlds import USDC, ReferenceWorld


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


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["custody", *args])
    return result.exit_code, result.stdout + (result.stderr if result.stderr_bytes is not None else "")


def test_an_operator_opens_an_account_finds_its_addresses_and_sees_its_deposits(world):
    code, text = run("custodians", "--json")
    assert code == 0 and json.loads(text) == [{"name": "reference", "kind": "reference", "base_url": None}]
    code, text = run("accounts", "clients:acme", "--owner", "acme", "--json")
    assert code == 0, text
    account = json.loads(text)["id"]
    assert json.loads(run("accounts", "clients:acme", "--owner", "acme", "--json")[1])["id"] == account  # same key
    code, text = run("deposit-address", account, "--asset", "USDC", "--network", "base", "--json")
    usdc_address = json.loads(text)["address"]
    code, text = run("deposit-address", account, "--asset", "BTC", "--network", "bitcoin")
    assert code == 0 and "bcrt1q" in text
    world.mint(usdc_address, 5 * USDC)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        code, text = run("balances", account, "--json")
        held = {row["asset"]: row for row in json.loads(text)}
        if held["USDC"]["available"] == "5.000000" and '"incoming": true' in run("transfers", "--json")[1]:
            break
        time.sleep(0.3)
    assert held["USDC"] == {"asset": "USDC", "total": "5.000000", "available": "5.000000"}
    assert held["BTC"]["total"] == "0.00000000"
    code, text = run("transfers", "--json")
    page = json.loads(text)
    assert [(t["incoming"], t["amount"], t["destination"]) for t in page["transfers"]] == [(True, "5.000000", account)]
    assert run("transfers", "--cursor", page["cursor"], "--json")[1].count('"id"') == 0  # nothing since


def test_an_unknown_custodian_or_a_missing_secret_is_one_clear_line(world, monkeypatch):
    code, text = run("balances", "acct_x", "--custodian", "nope")
    assert code != 0 and "no custodian 'nope' is configured" in text
    monkeypatch.setenv("ANDCHAIN_CUSTODY__CUSTODIANS__FB__KIND", "fireblocks")
    code, text = run("balances", "acct_x", "--custodian", "fb")
    assert code != 0 and "custodian fb: api_key is not configured" in text
