"""`andchain bench rfq`: quote-to-settled latency of the desk's RFQ, against the raw limit of the same run.

The bench starts the reference custodian as its own process on a temporary directory (SQLite by
default, or the PostgreSQL given), funds the desk's account there with BTC (as the custodian's own
node would report it), and gives each of its clients USD and an account at the custodian. Then, one
after another, each RFQ: a quote for 0.001 BTC priced from the replay venue's book, its acceptance
(the trade recorded with its hold on the client's DDA), and the platform's worker (running beside
it, as `andchain worker` does) executing and settling it: the internal transfer desk -> client at
the custodian, sent, followed until the custodian completes it, and the cash posted. Timed from the
request for the quote to the trade's end (a first RFQ, not counted, generates the venue's data).

The raw limit of the same run is the settlement's own floor: an internal transfer sent straight to
the custodian over its API and followed until it reports it completed, with no bank around it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from andchain.bench import machine, stopped_cleanly_on_sigterm

CLIENTS = 10
SIZE = "0.001"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run(count: int, database_url: str | None = None) -> dict[str, Any]:
    from andchain.config import Settings
    from andchain.context import Context
    from andchain.custody.reference.local import LocalCustodian
    from andchain.devtools.postgres import free_port

    with stopped_cleanly_on_sigterm(), tempfile.TemporaryDirectory(prefix="andchain-bench-rfq-") as tmp:
        env = {
            "ANDCHAIN_DATA_DIR": tmp,
            "ANDCHAIN_CUSTODIAN__PORT": str(free_port()),
            "ANDCHAIN_CUSTODIAN__POLL_S": "0.05",
            "ANDCHAIN_KEYSTORE__SCRYPT_N": "1024",
            # No chain is needed: BTC is booked by the custodian; the public networks stay off.
            **{f"ANDCHAIN_NETWORKS__{n}__ENABLED": "false" for n in ("ETHEREUM", "BASE", "TEMPO")},
        }
        if database_url:
            env["ANDCHAIN_DATABASE_URL"] = database_url
        with _environment(env):
            ctx = Context(Settings())
            ctx.upgrade_database()
            custodian = LocalCustodian(ctx)
            try:
                custodian.start()  # inside: a SIGTERM while it starts still stops it
                return _measure(ctx, count)
            finally:
                custodian.stop()
                ctx.close()


def _measure(ctx: Any, count: int) -> dict[str, Any]:
    from andchain.custody.port import DESK, Destination, TransferRequest
    from andchain.custody.reference.runtime import build
    from andchain.custody.service import CustodyService, position_account
    from andchain.custody.states import TERMINAL
    from andchain.ops import OpStatus
    from andchain.tokens.service import TokenService
    from andchain.trading.desk import DeskService
    from andchain.trading.runtime import platform_worker

    tokens = TokenService(ctx)
    custody = CustodyService(ctx, tokens=tokens)
    desk = DeskService(ctx, custody=custody)
    desk_account = custody.open_account("reference", DESK).account_id
    custody.ensure_positions("reference", DESK, "BTC")
    running = build(ctx.settings)
    try:
        running.custodian.credit(desk_account, "BTC", "bitcoin", "10", hashlib.sha256(b"bench-rfq").hexdigest() + ":0")
    finally:
        running.close()
    deadline = time.monotonic() + 60
    while ctx.ledger.account(position_account("reference", DESK, "BTC")).balance_posted < 10**9:
        if time.monotonic() > deadline:
            raise RuntimeError("the custodian's BTC for the desk was not credited within 60s")
        custody.poll("reference")
        time.sleep(0.05)
    clients = []
    for i in range(CLIENTS):
        client = tokens.onboard(f"bench rfq client {i}").id
        tokens.deposit(client, 10**9, f"bench-rfq-{client}")
        custody.open_account("reference", client)
        custody.ensure_positions("reference", client, "BTC")
        clients.append(client)

    # The raw limit: internal transfers straight to the custodian, followed until completed.
    adapter = custody.custodian("reference")
    source = custody.account("reference", DESK)
    target = custody.account("reference", clients[0])
    assert source is not None and target is not None
    raw = []
    for i in range(max(5, count // 5)):
        t0 = time.perf_counter()
        sent = adapter.transfer(
            TransferRequest(
                f"bench-raw-{i}",
                source.account_id,
                Destination(account_id=target.account_id),
                "BTC",
                "bitcoin",
                1000,
                note="bench raw",
            )
        )
        while sent.state not in TERMINAL:
            time.sleep(0.002)
            sent = adapter.get(sent.id)
        raw.append((time.perf_counter() - t0) * 1000)
    custody.poll("reference")

    worker = platform_worker(ctx, tokens, desk=desk)
    stop = threading.Event()
    thread = threading.Thread(
        target=lambda: worker.run(seconds=24 * 3600, idle_sleep_s=0.005, until=stop.is_set), daemon=True
    )
    thread.start()
    quote_ms, accept_ms, settled_ms = [], [], []
    failed = 0
    try:
        # One RFQ first, not counted: the venue's data are generated on the first quote.
        for i in range(-1, count):
            client = clients[i % CLIENTS]
            t0 = time.perf_counter()
            quote = desk.quote(client, "BTC-USD", "buy", quantity=SIZE)
            t1 = time.perf_counter()
            trade = desk.accept(quote.id)
            t2 = time.perf_counter()
            while True:
                op = tokens.ops.get(trade.id)
                if op.terminal or op.status == OpStatus.NEEDS_ATTENTION:
                    break
                time.sleep(0.002)
            t3 = time.perf_counter()
            if i < 0:
                continue
            if op.status != OpStatus.SUCCEEDED:
                failed += 1
            quote_ms.append((t1 - t0) * 1000)
            accept_ms.append((t2 - t1) * 1000)
            settled_ms.append((t3 - t0) * 1000)
    finally:
        stop.set()
        thread.join(timeout=30)
    p50 = statistics.median(settled_ms)
    raw_p50 = statistics.median(raw)
    return {
        "rfqs": count,
        "failed": failed,
        "database": ctx.engine.dialect.name,
        "quote_ms_p50": round(statistics.median(quote_ms), 2),
        "accept_ms_p50": round(statistics.median(accept_ms), 2),
        "quote_to_settled_ms_p50": round(p50, 1),
        "quote_to_settled_ms_p99": round(_percentile(settled_ms, 0.99), 1),
        "raw_custody_transfer_ms_p50": round(raw_p50, 1),
        "ratio": round(p50 / raw_p50, 2) if raw_p50 else None,
        "machine": machine(),
    }
