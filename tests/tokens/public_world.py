"""A public network (a local anvil node with Base's chain id) where anyone may write, as the tests of what
strangers and holders outside andchain do there see it.

The world is configured through the environment, exactly as an operator's processes are, so that the
command line (typer's CliRunner) and a worker run as a subprocess share its database and keys.
Strangers sign and send their own transactions with their own keys (eth-account over raw JSON-RPC),
never through andchain's key store or nonce manager: nothing of theirs is known to the bank.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from sqlalchemy import select

from andchain.chains import schema as chain_schema
from andchain.chains.client import Call, ChainClient
from andchain.chains.contracts import permit_digest
from andchain.chains.rpc import Rpc
from andchain.context import Context
from andchain.reconcile import reconcile
from andchain.tokens.model import DEPOSIT_TOKEN, DVP, TOKENS, holder_account
from andchain.tokens.moves import Moves
from andchain.tokens.runtime import run_until_idle, token_worker
from andchain.tokens.service import DVP_ABI, TOKEN_ABI, TokenService
from tests.chains.conftest import start_public_node
from tests.processes import run_andchain

MINE_CHUNK = 200  # blocks an `anvil_mine` call mines at most

DEPOSIT = TOKENS[DEPOSIT_TOKEN]
OTHER_NETWORKS = ("INTERNAL", "ETHEREUM", "TEMPO", "SWIFT")


@pytest.fixture(scope="module")
def base_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    node = start_public_node(tmp_path_factory.mktemp("base"))
    yield node
    node.stop()


def public_env(data_dir: Path, rpc_url: str) -> dict[str, str]:
    return {
        "ANDCHAIN_DATA_DIR": str(data_dir),
        "ANDCHAIN_NETWORKS__BASE__RPC_URL": rpc_url,
        "ANDCHAIN_KEYSTORE__PASSPHRASE": "public-test-only",
        "ANDCHAIN_KEYSTORE__SCRYPT_N": "1024",
        **{f"ANDCHAIN_NETWORKS__{n}__ENABLED": "false" for n in OTHER_NETWORKS},
    }


@dataclass
class Outsider:
    """A wallet outside andchain: its own key, its own nonces, its own gas."""

    chain: ChainClient
    account: Any

    @property
    def address(self) -> str:
        return str(self.account.address)

    def send(self, to: str, data: bytes) -> dict[str, Any]:
        """Sign and send one transaction; returns its receipt (a revert raises with the node's reason)."""
        rpc = self.chain.rpc
        tx = {"from": self.address, "to": to, "data": "0x" + data.hex()}
        gas = int(rpc.call("eth_estimateGas", [tx]), 16)
        fee = int(rpc.call("eth_gasPrice"), 16)
        signed = Account.sign_transaction(
            {
                "chainId": self.chain.chain_id,
                "nonce": int(rpc.call("eth_getTransactionCount", [self.address, "pending"]), 16),
                "to": to,
                "data": data,
                "value": 0,
                "gas": gas * 2,
                "maxFeePerGas": fee * 2 + 1,
                "maxPriorityFeePerGas": 1,
            },
            self.account.key,
        )
        tx_hash = rpc.call("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()])
        for _ in range(600):
            receipt = rpc.call("eth_getTransactionReceipt", [tx_hash])
            if receipt is not None:
                assert int(receipt["status"], 16) == 1, receipt
                return dict(receipt)
            time.sleep(0.05)
        raise AssertionError(f"{tx_hash} not mined within 30s")

    def token(self, service: TokenService, fn: str, *args: Any, deployment: str = DEPOSIT_TOKEN) -> dict[str, Any]:
        return self.send(service.token_address("base", deployment), TOKEN_ABI.encode_call(fn, *args))

    def dvp(self, service: TokenService, fn: str, *args: Any) -> dict[str, Any]:
        return self.send(service.token_address("base", DVP), DVP_ABI.encode_call(fn, *args))

    def sign_permit(self, service: TokenService, spender: str, value: int, deadline: int) -> tuple[int, bytes, bytes]:
        token = service.token_address("base")
        nonce = service.chain("base").read(token, TOKEN_ABI, "nonces", self.address)
        digest = permit_digest(DEPOSIT.name, self.chain.chain_id, token, self.address, spender, value, nonce, deadline)
        signed = Account.unsafe_sign_hash(digest, self.account.key)
        return signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")


@dataclass
class PublicWorld:
    ctx: Context
    service: TokenService
    moves: Moves
    env: dict[str, str]

    @property
    def chain(self) -> ChainClient:
        return self.service.chain("base")

    def outsider(self, *, allowlisted: bool = True) -> Outsider:
        """A fresh address with gas; allow-listed on the deposit token by the bank's compliance role."""
        account = Account.create()
        self.chain.rpc.call("anvil_setBalance", [account.address, hex(10**19)])
        if allowlisted:
            self.allowlist(account.address)
        return Outsider(self.chain, account)

    def allowlist(self, address: str, deployment: str = DEPOSIT_TOKEN) -> None:
        token = self.service.token_address("base", deployment)
        self.chain.transact(
            self.service.bank("compliance"), Call(token, TOKEN_ABI.encode_call("setAllowlisted", address, True))
        )

    def client_with_tokens(self, name: str, tokens: int) -> tuple[str, Outsider]:
        """A client with its own registered address on base, holding `tokens` minted by the bank."""
        client = self.service.onboard(name).id
        account = Account.create()
        nonce, message = self.moves.challenge(client, "base")
        signature = Account.sign_message(encode_defunct(text=message), account.key).signature.hex()
        self.moves.register(client, "base", nonce, account.address, signature)
        self.chain.rpc.call("anvil_setBalance", [account.address, hex(10**19)])
        if tokens:
            self.service.deposit(client, tokens, f"fund-{name}")
            self.service.mint(client, "base", tokens, f"mint-{name}")
        return client, Outsider(self.chain, account)

    def mine(self, blocks: int) -> None:
        """Mine `blocks` empty blocks in bounded calls. Mining slows as the chain grows (seconds for a thousand
        on a busy machine), and a retried `anvil_mine` would mine twice: so no retries, a long timeout."""
        rpc = Rpc(self.chain.rpc.url, name="mine", timeout_s=120.0, retries_max=0)
        try:
            for start in range(0, blocks, MINE_CHUNK):
                rpc.call("anvil_mine", [hex(min(MINE_CHUNK, blocks - start))])
        finally:
            rpc.close()

    def settle(self) -> None:
        """Make every block so far final, then run the worker until it is idle; it must not fail anywhere."""
        self.chain.rpc.call("anvil_mine", [hex(self.chain.network.confirmations)])
        worker = token_worker(self.ctx, self.service)
        assert run_until_idle(worker, seconds=60), self.service.ops.counts()
        assert worker.failing_parts() == {}

    def read(self, fn: str, *args: Any, deployment: str = DEPOSIT_TOKEN) -> Any:
        return self.chain.read(self.service.token_address("base", deployment), TOKEN_ABI, fn, *args)

    def balance(self, address: str, deployment: str = DEPOSIT_TOKEN) -> int:
        return int(self.read("balanceOf", address, deployment=deployment))

    def mirror(self, address: str, deployment: str = DEPOSIT_TOKEN) -> int:
        name = holder_account("base", TOKENS[deployment], address)
        found = self.ctx.ledger.list_accounts(prefix=name, limit=1)
        return found[0].balance_posted if found else 0

    def ledger_pending(self, address: str, deployment: str = DEPOSIT_TOKEN) -> tuple[int, int]:
        """What is reserved on a holder's mirror: (debits pending, credits pending)."""
        account = self.ctx.ledger.account(holder_account("base", TOKENS[deployment], address))
        return account.debits_pending, account.credits_pending

    def seen(self, tx_hash: str) -> list[str]:
        """The events of a transaction the listener delivered (what it saw, whether it booked anything)."""
        d = chain_schema.deliveries
        with self.ctx.engine.connect() as conn:
            rows = conn.execute(
                select(d.c.event).where(d.c.tx_hash == tx_hash, d.c.status == "delivered").order_by(d.c.log_index)
            ).all()
        return [r.event for r in rows]

    def booked(self, tx_hash: str) -> list[Any]:
        """Ledger transfers booked from a transaction's events."""
        ids = [f"chain:{self.chain.chain_id}:{tx_hash.lower()}:{i}" for i in range(8)]
        return self.ctx.ledger.lookup_transfers(ids)

    def clean(self) -> Any:
        report = reconcile(self.ctx)
        assert report.breaks == [], report.breaks
        return report


class CappedProvider:
    """A public RPC provider in front of the node: like Infura's or Alchemy's, it refuses an `eth_getLogs`
    whose answer would hold more than `logs_max` logs (error -32005), and passes everything else on."""

    def __init__(self, upstream: str, logs_max: int) -> None:
        import http.server
        import threading

        import httpx

        client = httpx.Client(timeout=30)
        refused: list[int] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                replies = client.post(upstream, content=body, headers={"Content-Type": "application/json"}).json()
                requests = json.loads(body)
                pairs = zip(requests, replies, strict=True) if isinstance(requests, list) else [(requests, replies)]
                for request, reply in pairs:
                    if request.get("method") == "eth_getLogs" and len(reply.get("result") or []) > logs_max:
                        refused.append(len(reply["result"]))
                        reply.pop("result")
                        reply["error"] = {"code": -32005, "message": f"query returned more than {logs_max} results"}
                out = json.dumps(replies).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                return None

        self.refused = refused
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_public(tmp_path: Path, rpc_url: str, monkeypatch: pytest.MonkeyPatch) -> PublicWorld:
    env = public_env(tmp_path / "var", rpc_url)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ANDCHAIN_DATABASE_URL", raising=False)
    monkeypatch.delenv("ANDCHAIN_FAILPOINT", raising=False)
    monkeypatch.chdir(tmp_path)
    ctx = Context()
    ctx.upgrade_database()
    service = TokenService(ctx)
    service.setup("base")
    return PublicWorld(ctx, service, Moves(service), env)


@pytest.fixture
def public(tmp_path: Path, base_node: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[PublicWorld]:
    world = make_public(tmp_path, base_node.network.rpc_url, monkeypatch)
    yield world
    world.ctx.close()


def run_cli_worker(
    env: dict[str, str], *args: str, failpoint: str | None = None, timeout_s: float = 600
) -> subprocess.CompletedProcess[str]:
    """`andchain worker --until-idle` in its own process, with the world's environment."""
    child_env = {**os.environ, **env}
    child_env.pop("ANDCHAIN_FAILPOINT", None)
    if failpoint:
        child_env["ANDCHAIN_FAILPOINT"] = failpoint
    return run_andchain(["worker", "--until-idle", *args], child_env, timeout_s=timeout_s)
