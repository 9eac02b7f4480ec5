"""The custodians of the contract tests: the reference custodian as a process reached over HTTP,
and the bank's own custody (`self`) in this process; the same node and USDC stand-in for both."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx

from andchain.chains.client import Call
from andchain.chains.usdc import deploy_stand_in, usdc_abi
from andchain.custody.adapters.reference import ReferenceCustodianAdapter
from andchain.custody.adapters.self_custody import SelfCustodian
from andchain.custody.kept.service import KeptCustody, Token
from andchain.custody.port import Custodian, Destination, TransferRequest
from andchain.custody.states import CustodyState
from andchain.devtools.postgres import free_port
from andchain.money import DEFAULT_ASSETS, AssetRegistry
from tests.chains.conftest import make_context
from tests.events.conftest import Receiver
from tests.processes import Started, run_andchain, start_andchain
from tests.serving import wait_until_answering

OUT = "0x" + "5a" * 20  # the client's own wallet elsewhere
BLOCKED = "0x" + "bad0" * 10
USDC = 1_000_000  # one USDC in minor units
BTC = 100_000_000  # one bitcoin in satoshis
REGTEST_OUT = "bcrt1q0xcqpzrky6eff2g52qdye53xkk9jxkvrl4xfg5"  # the P2WPKH of key 0x01..01 on regtest
ABI = usdc_abi()


def request(key: str, source: str, amount: int, to: str = OUT) -> TransferRequest:
    return TransferRequest(key, source, Destination(address=to), "USDC", "base", amount)


def btc(key: str, source: str, amount: int, to: str = REGTEST_OUT) -> TransferRequest:
    return TransferRequest(key, source, Destination(address=to), "BTC", "bitcoin", amount)


class Service:
    """`andchain custodian serve` in its own process, started and killed like one."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.process: Started | None = None

    def start(self, failpoint: str | None = None) -> None:
        env = {**self.env, "ANDCHAIN_FAILPOINT": failpoint} if failpoint else self.env
        self.process = start_andchain(["custodian", "serve"], env, output=self.log)
        if not wait_until_answering(f"http://127.0.0.1:{self.port}/health", self.process):
            raise AssertionError("the custodian did not start: " + self.log.read_text()[-3000:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_andchain(["custodian", *args], self.env, timeout_s=60)


class World:
    """A node with the USDC stand-in, Circle's keys to mint it, and a custodian behind the port."""

    custodian: Custodian

    def __init__(self, tmp_path: Path, node, database_url: str | None = None) -> None:
        self.bank = make_context(tmp_path / "bank", node, database_url)
        self.chain = self.bank.chain("base")
        self.issuer = self.bank.keys.create("usdc:issuer")
        self.minter = self.bank.keys.create("usdc:minter")
        self.bank.fund_gas("base", [self.issuer, self.minter])
        self.usdc = deploy_stand_in(self.chain, self.issuer, [self.minter])

    def close(self) -> None:
        self.bank.close()

    def credit(self, account_id: str, amount: str, reference: str) -> None:
        raise NotImplementedError

    def mint(self, address: str, amount: int) -> None:
        self.chain.transact(self.minter, Call(self.usdc, ABI.encode_call("mint", address, amount)))

    def usdc_balance(self, account_id: str):
        return next(b for b in self.custodian.balances(account_id) if b.asset == "USDC")

    def held(self, address: str) -> int:
        return int(self.chain.read(self.usdc, ABI, "balanceOf", address))

    def until(self, transfer_id: str, states: set[CustodyState], seconds: float = 60):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            seen = self.custodian.get(transfer_id)
            if seen.state in states:
                return seen
            time.sleep(0.2)
        raise AssertionError(f"{transfer_id} is {seen.state}, not {states}")

    def funded_account(self, name: str, amount: int):
        account = self.custodian.create_account(name, owner=name, idempotency_key=f"acct-{name}")
        address = self.custodian.deposit_address(account.id, "USDC", "base").address
        self.mint(address, amount)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            balance = self.usdc_balance(account.id)
            deposits = [
                t
                for t in self.custodian.transfers().transfers
                if t.incoming
                and t.state is CustodyState.COMPLETED
                and t.destination == Destination(account_id=account.id)
            ]
            if balance.total_minor == amount and deposits:
                return account, deposits[0]
            time.sleep(0.2)
        raise AssertionError("the deposit was not recorded")


class ReferenceWorld(World):
    """The reference custodian as a process of its own, reached over HTTP."""

    def __init__(
        self,
        tmp_path: Path,
        node,
        database_url: str | None = None,
        *,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(tmp_path, node, database_url)
        self.receiver = Receiver().start()
        port = free_port()
        var = tmp_path / "var"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANDCHAIN_")}
        env.update(
            {
                "ANDCHAIN_DATA_DIR": str(var),
                "ANDCHAIN_NETWORKS__BASE__RPC_URL": node.network.rpc_url,
                "ANDCHAIN_KEYSTORE__SCRYPT_N": "1024",
                "ANDCHAIN_CUSTODIAN__PORT": str(port),
                "ANDCHAIN_CUSTODIAN__POLL_S": "0.1",
                "ANDCHAIN_CUSTODIAN__TOKENS": json.dumps({"USDC@base": self.usdc}),
                "ANDCHAIN_CUSTODIAN__NATIVE_NETWORKS": json.dumps(["base"]),
                "ANDCHAIN_CUSTODIAN__APPROVAL_ABOVE": json.dumps({"USDC": "100"}),
                "ANDCHAIN_CUSTODIAN__WEBHOOK_URL": self.receiver.url,
                "ANDCHAIN_CUSTODIAN__BLOCKED_ADDRESSES": json.dumps([BLOCKED]),
            }
        )
        self.service = Service(env, port, tmp_path / "custodian.log")
        self.service.start()
        directory = var / "custodian"
        api_key = (directory / "api-key").read_text().strip()
        self.webhook_secret = (directory / "webhook-secret").read_text().strip()
        self.service_key = f"Bearer {api_key}"
        self.custodian = ReferenceCustodianAdapter(
            base_url=f"http://127.0.0.1:{port}",
            api_key=api_key,
            webhook_secret=self.webhook_secret,
            assets=AssetRegistry(DEFAULT_ASSETS),
            timeout_s=timeout_s,
            transport=transport,
        )

    def sign(self, timestamp: str, body: bytes) -> str:
        # As the custodian signs, computed here from its documented recipe.
        return (
            "v1=" + hmac.new(self.webhook_secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        )

    def close(self) -> None:
        self.service.stop()
        self.receiver.stop()
        super().close()

    def credit(self, account_id: str, amount: str, reference: str) -> None:
        done = self.service.cli("credit", account_id, amount, "--reference", reference)
        assert done.returncode == 0, done.stderr


class SelfWorld(World):
    """The bank's own custody: the `self` adapter in this process, on the bank's database (SQLite or
    PostgreSQL), with a worker thread of its own as the bank's worker would run it."""

    def __init__(self, tmp_path: Path, node, database_url: str | None = None) -> None:
        super().__init__(tmp_path, node, database_url)
        self.worker_ctx = make_context(tmp_path / "bank", node, database_url)
        kept = KeptCustody(
            self.worker_ctx.engine,
            self.worker_ctx.keys,
            self.worker_ctx.chain,
            [Token("USDC", "base", self.usdc)],
            self.worker_ctx.settings.asset_registry,
            clock=self.worker_ctx.clock,
            blocked_addresses=frozenset([BLOCKED]),
            fund_gas=self.worker_ctx.fund_gas,
            bitcoin_network="regtest",
            native_networks=["base"],
        )
        self.kept = kept
        self.custodian = SelfCustodian(kept, AssetRegistry(DEFAULT_ASSETS))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while not self._stop.is_set():
            busy = self.custodian.process()
            self._stop.wait(0 if busy else 0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.worker_ctx.close()
        super().close()

    def credit(self, account_id: str, amount: str, reference: str) -> None:
        self.kept.credit(account_id, "BTC", "bitcoin", amount, reference)
