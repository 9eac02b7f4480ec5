"""A DvP asked again with the same idempotency key after its first attempt was killed is the same
operation: its request carries a time to live, never a deadline derived from the clock (the deadline
is set on chain when the trade is proposed, and read from the trade there)."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils import keccak
from typer.testing import CliRunner

from andchain.cli import app
from andchain.context import Context
from andchain.errors import Conflict
from andchain.ops import OpStatus
from andchain.reconcile import reconcile
from andchain.tokens.model import DVP, FUND_SHARE
from andchain.tokens.runtime import run_until_idle, token_worker
from andchain.tokens.service import DVP_ABI, TOKEN_ABI, TokenService
from tests.chains.conftest import anvil  # noqa: F401 - the internal chain's node
from tests.tokens.public_world import run_cli_worker

runner = CliRunner()


@pytest.fixture
def internal(tmp_path: Path, anvil, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TokenService, dict[str, str]]]:  # noqa: F811
    env = {
        "ANDCHAIN_DATA_DIR": str(tmp_path / "var"),
        "ANDCHAIN_NETWORKS__INTERNAL__RPC_URL": anvil.network.rpc_url,
        "ANDCHAIN_KEYSTORE__PASSPHRASE": "dvp-test-only",
        "ANDCHAIN_KEYSTORE__SCRYPT_N": "1024",
        **{f"ANDCHAIN_NETWORKS__{n}__ENABLED": "false" for n in ("ETHEREUM", "BASE", "TEMPO", "SWIFT")},
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ANDCHAIN_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    ctx = Context()
    ctx.upgrade_database()
    service = TokenService(ctx)
    service.setup("internal")
    yield service, env
    ctx.close()


def test_a_dvp_retried_with_its_key_after_its_first_attempt_was_killed_is_the_same_operation(internal):
    service, env = internal
    buyer, seller = service.onboard("DvP Buyer").id, service.onboard("DvP Seller").id
    service.deposit(buyer, 10_000, "fund-dvp-buyer")
    service.mint(buyer, "internal", 10_000, "mint-dvp-buyer")
    service.issue_shares(seller, "internal", 2_000_000, "issue-dvp-seller")
    assert run_until_idle(token_worker(service.ctx, service), seconds=60)

    first = service.dvp(buyer, seller, "internal", 2_500, 1_000_000, "dvp-retried")
    killed = run_cli_worker(env, "--seconds", "60", failpoint="dvp:fund_cash:after_submit")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not service.ops.get(first.id).terminal

    time.sleep(1.1)  # a deadline derived from the clock would now differ
    assert service.dvp(buyer, seller, "internal", 2_500, 1_000_000, "dvp-retried").id == first.id
    by_cli = runner.invoke(
        app, ["tokens", "dvp", buyer, seller, "--cash", "25.00", "--shares", "1", "--key", "dvp-retried", "--json"]
    )
    assert by_cli.exit_code == 0, by_cli.output
    assert json.loads(by_cli.stdout)["id"] == first.id
    with pytest.raises(Conflict):
        service.dvp(buyer, seller, "internal", 2_600, 1_000_000, "dvp-retried")

    restarted = run_cli_worker(env, "--seconds", "120")
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    done = service.ops.get(first.id)
    assert done.status == OpStatus.SUCCEEDED, (done.status, done.error_message)
    chain = service.chain("internal")
    trade = chain.read(service.token_address("internal", DVP), DVP_ABI, "trades", keccak(text=first.id))
    assert trade[9] == 2  # settled, once
    buyer_at, seller_at = service.holder(buyer, "internal"), service.holder(seller, "internal")
    shares = service.token_address("internal", FUND_SHARE)
    assert chain.read(service.token_address("internal"), TOKEN_ABI, "balanceOf", seller_at) == 2_500
    assert chain.read(shares, TOKEN_ABI, "balanceOf", buyer_at) == 1_000_000
    report = reconcile(service.ctx)
    assert report.breaks == [], report.breaks
