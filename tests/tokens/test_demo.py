"""`andchain demo` tells the whole story and ends with a clean reconciliation."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from andchain.cli import app


def test_the_demo_runs_end_to_end_and_reconciles(monkeypatch, tmp_path, anvil):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANDCHAIN_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("ANDCHAIN_NETWORKS__INTERNAL__RPC_URL", anvil.network.rpc_url)
    monkeypatch.setenv("ANDCHAIN_KEYSTORE__SCRYPT_N", "1024")
    monkeypatch.delenv("ANDCHAIN_DATABASE_URL", raising=False)
    from andchain.devtools.postgres import free_port

    for name in ("ETHEREUM", "BASE", "TEMPO"):
        monkeypatch.setenv(f"ANDCHAIN_NETWORKS__{name}__RPC_URL", f"http://127.0.0.1:{free_port()}")
        # Blocks every quarter of a second instead of every second: the story is the same, told sooner.
        monkeypatch.setenv(f"ANDCHAIN_NETWORKS__{name}__BLOCK_TIME_S", "0.25")
    monkeypatch.setenv("ANDCHAIN_NETWORKS__ETHEREUM__ENABLED", "false")
    monkeypatch.setenv("ANDCHAIN_CUSTODIAN__PORT", str(free_port()))
    try:
        result = CliRunner().invoke(app, ["demo"])
        # The demo stopped the nodes and the custodian it started; one that does not answer is a break.
        away = CliRunner().invoke(app, ["reconcile", "--json"])
        # Started again, they come back with their state, and the reconcile command agrees, as JSON.
        assert CliRunner().invoke(app, ["networks", "up", "base", "tempo"]).exit_code == 0
        assert CliRunner().invoke(app, ["custodian", "start"]).exit_code == 0
        report = CliRunner().invoke(app, ["reconcile", "--json"])
    finally:
        CliRunner().invoke(app, ["custodian", "stop"])
        CliRunner().invoke(app, ["networks", "down", "base", "tempo"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    for chapter in (
        "Onboard two clients",
        "Mint deposit tokens",
        "Pay 24/7",
        "DvP",
        "sweep rule",
        "redeems",
        "USDC at a third-party custodian",
        "The trading desk: Acme buys BTC by RFQ",
        "Bank-to-wallet: a retail customer links an exchange",
        "Reconcile",
    ):
        assert chapter in text
    assert "no breaks" in text and "BREAK" not in text
    assert "Globex holds $50,000.00 in tokens" in text
    assert "Acme on base     $0.00" in text and "Acme on internal $200,000.00" in text
    assert "tempo -> internal: burned in" in text
    assert "stopped the nodes the demo started (base, tempo)" in text
    assert away.exit_code == 1 and '"subject": "base"' in away.stdout and '"subject": "tempo"' in away.stdout
    assert "DDA $" in text and "minted $2,000.00 of deposit tokens from it" in text
    assert "reference custodian stopped" in text
    assert '"check": "custodian"' in away.stdout
    assert report.exit_code == 0 and '"breaks": []' in report.stdout
    custodians = json.loads(report.stdout)["custodians"]
    rows = {(r["owner"], r["asset"]): r for r in custodians["reference"]["accounts"]}
    # 2,000 USDC converted in; 5 delivered to Ada for her 500 points.
    assert rows[("desk", "USDC")]["custodian_total"] == "1995.000000" == rows[("desk", "USDC")]["ledger"]
    # The desk sold 0.05 BTC to Acme, delivered at the custodian; its books and the custodian's agree.
    assert "Acme's account at the custodian holds 0.05000000 BTC" in text
    assert rows[("desk", "BTC")]["custodian_total"] == "1.95000000" == rows[("desk", "BTC")]["ledger"]
    bought = [r for (owner, asset), r in rows.items() if asset == "BTC" and owner != "desk"]
    assert [(r["custodian_total"], r["ledger"]) for r in bought] == [("0.05000000", "0.05000000")]
    # Bank-to-wallet: the pull held, the card's cash advance, the points delivered as USDC.
    flat = " ".join(text.split())  # (the console wraps long lines)
    assert "the exchange pulled $500.00 from checking" in flat
    assert "with a 15.00 USD fee and no points" in flat
    assert "500 points -> 5.000000 USDC" in flat and ": delivered; 300 points left" in flat
