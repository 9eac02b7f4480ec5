"""A real anvil node for the chain tests, started by the suite, and a deployed token per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from andchain.chains.client import Call, ChainClient, Receipt, TxReverted
from andchain.chains.contracts import ContractAbi, artifact
from andchain.chains.nodes import LocalNode
from andchain.config import NetworkSettings, Settings
from andchain.context import Context
from andchain.devtools.postgres import free_port
from tests.conftest import migrated_sqlite

CHAIN_ID = 770077


def network_settings(port: int, **overrides: Any) -> NetworkSettings:
    base = dict(
        display_name="test internal",
        chain_id=CHAIN_ID,
        rpc_url=f"http://127.0.0.1:{port}",
        kind="permissioned",
        confirmations=1,
        gas_policy="zero",
        gas_limit=1_000_000_000,
    )
    return NetworkSettings(**{**base, **overrides})


def start_node(directory: Path, name: str = "internal", **overrides: Any) -> LocalNode:
    node = LocalNode(name, network_settings(free_port(), **overrides), directory)
    node.start()
    return node


def start_public_node(directory: Path, name: str = "base", **overrides: Any) -> LocalNode:
    """A local node with a public network's profile: Base's chain id, paid gas, blocks mined at an interval
    (not one per transaction), 2 confirmations. The interval is a quarter of a second: what the tests show
    holds at any interval, and the suite waits a quarter as long for each block."""
    profile: dict[str, Any] = dict(
        chain_id=8453, kind="public", gas_policy="eip1559", confirmations=2, block_time_s=0.25
    )
    return start_node(directory, name=name, **{**profile, **overrides})


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNode]:
    node = start_node(tmp_path_factory.mktemp("anvil"))
    yield node
    node.stop()


def make_context(data_dir: Path, node: LocalNode, database_url: str | None = None) -> Context:
    """A context on `node`, with its book on `database_url`, else on the SQLite database in `data_dir`
    (a fresh one when there is none yet); migrated to the newest revision."""
    network = node.network.model_dump()
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url or migrated_sqlite(data_dir / "andchain.db"),
        networks={node.name: network},
        keystore={"passphrase": "test-only-passphrase", "scrypt_n": 1024},
    )
    ctx = Context(settings)
    if database_url is not None:
        ctx.upgrade_database()
    return ctx


@pytest.fixture
def ctx(tmp_path: Path, anvil: LocalNode) -> Iterator[Context]:
    context = make_context(tmp_path, anvil)
    yield context
    context.close()


@pytest.fixture
def chain(ctx: Context) -> ChainClient:
    return ctx.chain("internal")


@dataclass
class TokenWorld:
    """A deployed PermissionedToken with its role holders and two allow-listed clients."""

    chain: ChainClient
    address: str
    abi: ContractAbi
    admin: str
    master_minter: str
    minter: str
    pauser: str
    compliance: str
    alice: str
    bob: str
    outsider: str

    def tx(self, sender: str, fn: str, *args: Any) -> Receipt:
        return self.chain.transact(sender, Call(self.address, self.abi.encode_call(fn, *args)))

    def refused(self, sender: str, fn: str, *args: Any) -> str:
        with pytest.raises(TxReverted) as caught:
            self.tx(sender, fn, *args)
        return caught.value.reason

    def read(self, fn: str, *args: Any) -> Any:
        return self.chain.read(self.address, self.abi, fn, *args)

    def events(self, receipt: Receipt) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for log in receipt.logs:
            decoded = self.abi.decode_log([bytes.fromhex(t[2:]) for t in log["topics"]], bytes.fromhex(log["data"][2:]))
            if decoded:
                out.append((decoded.name, decoded.args))
        return out


ROLE = {name: __import__("eth_utils").keccak(text=name) for name in ("MASTER_MINTER", "PAUSER", "COMPLIANCE")}


def deploy_token(ctx: Context, *, cap: int = 10**30, decimals: int = 2, name: str = "deposit_token") -> TokenWorld:
    chain = ctx.chain("internal")
    keys = {
        role: ctx.keys.create(f"{name}:{role}")
        for role in ("admin", "master_minter", "minter", "pauser", "compliance", "alice", "bob", "outsider")
    }
    address = chain.deploy(
        name, "PermissionedToken", ["Bank USD Deposit Token", "USDD", decimals, cap, keys["admin"]], keys["admin"]
    )
    world = TokenWorld(chain, address, artifact("PermissionedToken").abi, **keys)
    world.tx(world.admin, "setRole", ROLE["MASTER_MINTER"], world.master_minter)
    world.tx(world.admin, "setRole", ROLE["PAUSER"], world.pauser)
    world.tx(world.admin, "setRole", ROLE["COMPLIANCE"], world.compliance)
    world.tx(world.master_minter, "configureMinter", world.minter, 10**12)
    world.tx(world.compliance, "batchSetAllowlisted", [world.minter, world.alice, world.bob], True)
    return world


@pytest.fixture
def token(ctx: Context) -> TokenWorld:
    return deploy_token(ctx)
