"""Requests arriving while workers run (the way `make run` works): nothing is minted or burned twice.

Hundreds of mints, payments, redemptions and moves (single requests, and batches of moves and
redemptions) are requested from one process while one worker (SQLite, a thread, as
`andchain serve --worker` runs it) or two worker processes (PostgreSQL) advance them. At the
end every on-chain Mint and Burn is counted once per operation (by the operation id each
carries as its memo), and reconcile is clean.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from andchain.chains.contracts import memo32
from andchain.context import Context
from andchain.errors import DomainError
from andchain.ops import OpStatus
from andchain.reconcile import reconcile
from andchain.tokens.moves import Moves
from andchain.tokens.runtime import run_until_idle, token_worker
from andchain.tokens.service import TOKEN_ABI, TokenService
from tests.chains.conftest import make_context, start_public_node
from tests.processes import start_andchain

_databases = itertools.count()
MINTS, PAYS, REDEEMS, MOVES = 200, 100, 50, 10
CLIENTS = 8


@pytest.fixture(scope="module")
def base_node(tmp_path_factory):
    node = start_public_node(tmp_path_factory.mktemp("base-load"))
    yield node
    node.stop()


def _context(tmp_path, anvil, base_node, database_url=None) -> Context:
    ctx = make_context(tmp_path, anvil, database_url=database_url)
    ctx.settings.networks["base"] = base_node.network
    for name in ("ethereum", "tempo"):
        ctx.settings.networks[name] = ctx.settings.networks[name].model_copy(update={"enabled": False})
    return ctx


def _events_by_memo(service: TokenService, network: str, event: str) -> dict[bytes, int]:
    chain = service.chain(network)
    token = service.token_address(network)
    topic = "0x" + TOKEN_ABI.topic(event).hex()
    counts: dict[bytes, int] = {}
    head = chain.block_number()
    for start in range(0, head + 1, 2000):
        for log in chain.get_logs([token], start, min(head, start + 1999)):
            if log["topics"][0] != topic:
                continue
            decoded = TOKEN_ABI.decode_log(
                [bytes.fromhex(t[2:]) for t in log["topics"]], bytes.fromhex(log["data"][2:])
            )
            counts[decoded.args["memo"]] = counts.get(decoded.args["memo"], 0) + 1
    return counts


def _request_everything(service: TokenService, moves: Moves, clients: list[str], tag: str) -> list:
    rng = random.Random(7)
    made = []
    refused = 0
    plan = ["mint"] * MINTS + ["pay"] * PAYS + ["redeem"] * REDEEMS + ["move"] * MOVES
    rng.shuffle(plan)
    # A first mint for every client, finished, so that payments and redemptions find tokens to spend.
    first = [service.mint(c, "internal", 10_000, f"{tag}-first-{n}") for n, c in enumerate(clients)]
    made += first
    _wait_until_done(service)
    for i, kind in enumerate(plan):
        a, b = rng.sample(clients, 2)
        key = f"{tag}-{kind}-{i}"
        try:
            if kind == "mint":
                made.append(service.mint(a, "internal", 100 + i, key))
            elif kind == "pay":
                made.append(service.pay(a, b, "internal", 1 + i % 7, f"load {i}", key))
            elif kind == "redeem":
                made.append(service.redeem(a, "internal", 1 + i % 5, key))
            else:
                made.append(moves.move(a, "internal", "base", 10 + i % 3, key))
        except DomainError as exc:
            assert exc.code == "insufficient_funds", exc  # tokens not minted yet: refused, recorded nothing
            refused += 1
        if i % 60 == 30:  # batches too: moves and redemptions of several clients, recorded together
            requests = service.requests
            outcomes = requests.move_batch(
                [(c, "internal", "base", 10 + n, f"{key}-moves-{n}") for n, c in enumerate(rng.sample(clients, 4))]
            ) + requests.redeem_batch([(c, "internal", 2 + n, f"{key}-redeems-{n}") for n, c in enumerate(clients)])
            for outcome in outcomes:
                if isinstance(outcome, DomainError):
                    assert outcome.code == "insufficient_funds", outcome
                    refused += 1
                else:
                    made.append(outcome)
        if i % 50 == 0:
            time.sleep(0.05)  # let the worker interleave its writes with the requests
    assert refused < len(plan) // 10
    return made


def _prepare(ctx: Context, tag: str) -> tuple[TokenService, Moves, list[str]]:
    service = TokenService(ctx)
    service.setup("internal")
    service.setup("base")
    moves = Moves(service)
    clients = []
    for n in range(CLIENTS):
        client = service.onboard(f"Load {tag} {n}").id
        service.deposit(client, 10**9, f"fund-{tag}-{n}")
        account = Account.create()
        nonce, message = moves.challenge(client, "base")
        signature = Account.sign_message(encode_defunct(text=message), account.key).signature.hex()
        moves.register(client, "base", nonce, account.address, signature)
        clients.append(client)
    return service, moves, clients


def _wait_until_done(service: TokenService, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while service.ops.any_active() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not service.ops.any_active(), service.ops.counts()


def _check(service: TokenService, ctx: Context, made: list) -> None:
    final = [service.ops.get(op.id) for op in made]
    assert all(op.status == OpStatus.SUCCEEDED for op in final), [
        (op.kind, op.status, op.error_code, op.error_message) for op in final if op.status != OpStatus.SUCCEEDED
    ][:5]
    mints = _events_by_memo(service, "internal", "Mint")
    burns = _events_by_memo(service, "internal", "Burn")
    base_mints = _events_by_memo(service, "base", "Mint")
    for op in final:
        memo = memo32(op.id)
        if op.kind == "mint":
            assert mints.get(memo) == 1, (op.id, mints.get(memo))
        elif op.kind == "redeem":
            assert burns.get(memo) == 1, (op.id, burns.get(memo))
        elif op.kind == "move":
            assert (burns.get(memo), base_mints.get(memo)) == (1, 1), op.id
    report = reconcile(ctx)
    assert report.breaks == [], report.breaks


@pytest.mark.slow
def test_requests_while_one_worker_runs_on_sqlite_mint_and_burn_once_each(tmp_path, anvil, base_node):
    ctx = _context(tmp_path, anvil, base_node)
    service, moves, clients = _prepare(ctx, "sqlite")
    worker_ctx = _context(tmp_path, anvil, base_node)
    worker = token_worker(worker_ctx)
    thread = threading.Thread(target=worker.run, kwargs={"seconds": 600}, daemon=True)
    thread.start()
    try:
        made = _request_everything(service, moves, clients, "sqlite")
        _wait_until_done(service)
    finally:
        worker.stop()
        thread.join(timeout=60)
    assert run_until_idle(token_worker(ctx, service), seconds=120)  # the listener's last blocks
    _check(service, ctx, made)
    ctx.close()
    worker_ctx.close()


@pytest.mark.slow
@pytest.mark.postgresql
def test_requests_while_two_worker_processes_run_on_postgresql_mint_and_burn_once_each(
    tmp_path, anvil, base_node, postgres_server
):
    from andchain.devtools.postgres import create_database

    url = create_database(postgres_server, f"load_{next(_databases)}")
    ctx = _context(tmp_path, anvil, base_node, database_url=url)
    service, moves, clients = _prepare(ctx, "pg")
    env = {
        **os.environ,
        "ANDCHAIN_DATA_DIR": str(tmp_path),
        "ANDCHAIN_DATABASE_URL": url,
        "ANDCHAIN_KEYSTORE__PASSPHRASE": "test-only-passphrase",
        "ANDCHAIN_KEYSTORE__SCRYPT_N": "1024",
        "ANDCHAIN_NETWORKS__INTERNAL__RPC_URL": anvil.network.rpc_url,
        "ANDCHAIN_NETWORKS__INTERNAL__CHAIN_ID": str(anvil.network.chain_id),
        "ANDCHAIN_NETWORKS__BASE__RPC_URL": base_node.network.rpc_url,
        **{f"ANDCHAIN_NETWORKS__{n}__ENABLED": "false" for n in ("ETHEREUM", "TEMPO", "SWIFT")},
    }
    env.pop("ANDCHAIN_FAILPOINT", None)
    command = ["worker", "--seconds", "600"]
    logs = [tmp_path / f"worker-{n}.log" for n in range(2)]
    workers = [start_andchain(command, env, output=log) for log in logs]
    try:
        made = _request_everything(service, moves, clients, "pg")
        _wait_until_done(service)
    finally:
        for process in workers:
            process.terminate()
        for process in workers:
            process.wait(timeout=60)
    for process, log in zip(workers, logs, strict=True):
        assert process.returncode in (0, -15), log.read_text()[-2000:]
    assert run_until_idle(token_worker(ctx, service), seconds=120)  # the listener's last blocks
    _check(service, ctx, made)
    ctx.close()
