"""`andchain networks up|down|status` with real anvil nodes."""

from __future__ import annotations

import json
import socket

import pytest
from typer.testing import CliRunner

from andchain.cli import app
from andchain.devtools.postgres import free_port

runner = CliRunner()


@pytest.fixture
def two_networks(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANDCHAIN_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("ANDCHAIN_DATABASE_URL", raising=False)
    ports = {}
    for name in ("internal", "ethereum", "base", "tempo", "swift"):
        ports[name] = free_port()
        monkeypatch.setenv(f"ANDCHAIN_NETWORKS__{name.upper()}__RPC_URL", f"http://127.0.0.1:{ports[name]}")
    for name in ("base", "tempo"):
        monkeypatch.setenv(f"ANDCHAIN_NETWORKS__{name.upper()}__ENABLED", "false")
    yield ports
    runner.invoke(app, ["networks", "down"])


def test_networks_up_status_and_down(two_networks, tmp_path):
    up = runner.invoke(app, ["networks", "up"])
    assert up.exit_code == 0, up.output
    assert "internal: started (chain id 770077" in up.stdout and "ethereum: started (chain id 1," in up.stdout
    assert (tmp_path / "var" / "networks" / "internal" / "anvil.log").exists()
    again = runner.invoke(app, ["networks", "up", "internal"])
    assert "already running" in again.stdout
    status = runner.invoke(app, ["networks", "status", "--json"])
    rows = {r["network"]: r for r in json.loads(status.stdout)}
    assert rows["internal"]["healthy"] and rows["internal"]["chain_id"] == 770077 and rows["internal"]["block"] == 0
    assert rows["ethereum"]["healthy"] and rows["ethereum"]["chain_id"] == 1
    assert not rows["swift"]["healthy"] and rows["swift"]["detail"] == "down"
    assert status.exit_code == 0  # disabled networks being down is no failure
    down = runner.invoke(app, ["networks", "down"])
    assert "internal: stopped" in down.stdout
    after = runner.invoke(app, ["networks", "status", "internal", "--json"])
    assert after.exit_code == 1 and json.loads(after.stdout)[0]["healthy"] is False


def test_networks_up_refuses_a_port_that_is_taken(two_networks):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", two_networks["internal"]))
        holder.listen()
        result = runner.invoke(app, ["networks", "up", "internal"])
    assert result.exit_code == 1
    assert f"port {two_networks['internal']} for network internal is already in use" in result.stderr


def test_an_unknown_network_is_a_clear_error(two_networks):
    result = runner.invoke(app, ["networks", "up", "mars"])
    assert result.exit_code == 1 and "unknown network 'mars'" in result.stderr
