"""`andchain desk` as an operator types it, on a fresh data directory: a client's tier, a quote and the
list of quotes, orders resting and matching on the book, its depth, a refusal's code, the desk's
state and positions. (Accepting a quote and settling it run with a custodian: test_rfq_reference.)"""

from __future__ import annotations

import json

from typer.testing import CliRunner

from andchain.cli import app


def run(*args: str) -> tuple[int, str]:
    """The exit code, and what the command printed: stdout when it succeeded (JSON is parsed from it),
    stdout and stderr when it failed (its error is on stderr)."""
    result = CliRunner().invoke(app, list(args))
    if result.exit_code == 0:
        return 0, result.stdout
    return result.exit_code, result.stdout + (result.stderr if result.stderr_bytes is not None else "")


def test_an_operator_quotes_places_orders_and_reads_the_desk(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANDCHAIN_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("ANDCHAIN_KEYSTORE__SCRYPT_N", "1024")
    monkeypatch.setenv("ANDCHAIN_TRADING__RISK__PRICE_BAND_BPS", "2000")
    monkeypatch.delenv("ANDCHAIN_DATABASE_URL", raising=False)
    assert run("db", "upgrade")[0] == 0
    for name in ("Acme", "Globex"):
        assert run("clients", "onboard", name)[0] == 0
        code, text = run("deposit", name, "100000.00", "--reference", f"wire-{name}")
        assert code == 0, text
    code, text = run("desk", "tier", "Acme", "professional")
    assert code == 0 and "professional" in text, text
    code, text = run("desk", "tier", "Globex")
    assert code == 0 and "standard" in text

    code, text = run("desk", "quote", "Acme", "buy", "BTC-USD", "--quantity", "0.1", "--json")
    assert code == 0, text
    quote = json.loads(text)
    assert (quote["status"], quote["quantity"], quote["side"]) == ("open", "0.1", "buy")
    code, text = run("desk", "quotes", "--client", "Acme", "--json")
    assert [q["id"] for q in json.loads(text)] == [quote["id"]]

    code, text = run("desk", "order", "Acme", "buy", "BTC-USD", "0.2", "--price", "60000", "--id", "a-1", "--json")
    assert code == 0, text
    bid = json.loads(text)
    assert (bid["status"], bid["remaining"]) == ("open", "0.2")
    code, text = run("desk", "book", "BTC-USD", "--json")
    assert json.loads(text)["bids"] == [["60000.00", "0.2"]]
    code, text = run("desk", "order", "Globex", "sell", "BTC-USD", "0.1", "--price", "60000")
    assert code == 1 and "insufficient_funds" in text  # Globex holds no BTC at the custodian
    code, text = run("desk", "amend", bid["id"], "--quantity", "0.15", "--json")
    assert code == 0 and json.loads(text)["remaining"] == "0.15", text
    code, text = run("desk", "cancel", bid["id"])
    assert code == 0 and "cancelled" in text
    code, text = run("desk", "orders", "--client", "Acme", "--json")
    assert [o["status"] for o in json.loads(text)] == ["cancelled"]

    assert run("desk", "halt", "--reason", "end of day")[0] == 0
    code, text = run("desk", "quote", "Acme", "buy", "BTC-USD", "--quantity", "0.1")
    assert code == 1 and "trading_halted" in text and "end of day" in text
    code, text = run("desk", "status", "--json")
    assert json.loads(text)[0] == {"scope": "desk", "state": "halted", "reason": "end of day"}
    code, text = run("desk", "positions", "--json")
    assert code == 0 and json.loads(text)["net"] == {}
