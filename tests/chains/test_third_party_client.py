"""ERC-20 and EIP-2612 compliance, proven by a standard third-party client (ethers.js)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from andchain.chains.contracts import memo32
from tests.chains.conftest import CHAIN_ID, TokenWorld

SCRIPT = Path(__file__).parent / "js" / "erc20_compliance.mjs"
ROOT = Path(__file__).resolve().parents[2]


def test_ethers_transfers_approves_and_permits_on_the_deployed_token(ctx, token: TokenWorld):
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "ethers").exists():
        pytest.fail("node and the npm package ethers are needed: run `make setup`")
    holder_key, spender_key = bytes([7]) * 32, bytes([8]) * 32
    holder = ctx.keys.import_key("compliance:holder", holder_key)
    spender = ctx.keys.import_key("compliance:spender", spender_key)
    token.tx(token.compliance, "batchSetAllowlisted", [holder, spender], True)
    token.tx(token.minter, "mint", holder, 1_000, memo32("compliance"))
    config = {
        "rpc": token.chain.network.rpc_url,
        "chainId": CHAIN_ID,
        "token": token.address,
        "holderKey": "0x" + holder_key.hex(),
        "spenderKey": "0x" + spender_key.hex(),
        "recipient": token.bob,
    }
    result = subprocess.run(
        [node, str(SCRIPT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ANDCHAIN_COMPLIANCE": json.dumps(config)},
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["name"] == "Bank USD Deposit Token" and seen["symbol"] == "USDD" and seen["decimals"] == 2
    assert seen["transferEvent"] == [holder, token.bob, "10"]
    assert seen["transferReturns"] is True
    assert seen["allowanceAfterApprove"] == "20"
    assert seen["allowanceAfterTransferFrom"] == "15"
    assert seen["domainSeparatorMatches"] is True
    assert (seen["allowanceAfterPermit"], seen["nonceAfterPermit"]) == ("30", "1")
    assert (seen["holderBalance"], seen["recipientBalance"]) == ("985", "15")
    assert token.read("balanceOf", token.bob) == 15  # and andchain reads the same state
