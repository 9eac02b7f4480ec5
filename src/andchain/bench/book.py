"""`andchain bench book`: orders/s through the client order book against the raw limit of the same run.

The workload is generated from a seed, so every run replays the same orders: around a mid price
that drifts by a random walk, 60% limit orders resting near the touch (0-20 ticks from it), 25%
cancels of a random resting order, 15% orders that take liquidity (half IOC limits through the
touch, half market orders), quantities of 1-100 lots, two hundred owners. The raw limit is a loop
that only appends the same orders to a list: what Python costs for touching each order once.
Both run in alternating slices on one core, so the ratio holds on a noisy machine.
"""

from __future__ import annotations

import random
import time
from typing import Any

from andchain.bench import machine
from andchain.trading.book import Book, Side, TimeInForce

# (kind, side, price, quantity, owner, target): kind 0 limit GTC, 1 cancel, 2 IOC limit, 3 market.
Op = tuple[int, int, int, int, str, int]


def workload(count: int, seed: int = 7) -> list[Op]:
    rng = random.Random(seed)
    owners = [f"c{i}" for i in range(200)]
    mid = 1_000_000
    ops: list[Op] = []
    next_id = 1
    live: list[int] = []
    for _ in range(count):
        mid += rng.randint(-3, 3)
        roll = rng.random()
        side = rng.randint(0, 1)
        quantity = rng.randint(1, 100)
        owner = owners[rng.randrange(len(owners))]
        if roll < 0.25 and live:
            target = live.pop(rng.randrange(len(live)))
            ops.append((1, side, 0, 0, owner, target))
            continue
        if roll < 0.85:
            offset = rng.randint(0, 20)
            price = mid - 1 - offset if side == 0 else mid + 1 + offset
            ops.append((0, side, price, quantity, owner, next_id))
            live.append(next_id)
        elif roll < 0.925:
            price = mid + 5 if side == 0 else mid - 5
            ops.append((2, side, price, quantity, owner, next_id))
        else:
            ops.append((3, side, 0, quantity, owner, next_id))
        next_id += 1
    return ops


def _through_book(ops: list[Op]) -> tuple[float, int]:
    book = Book("BENCH")
    submit, cancel = book.submit, book.cancel
    buy, sell, gtc, ioc = Side.BUY, Side.SELL, TimeInForce.GTC, TimeInForce.IOC
    fills = 0
    start = time.perf_counter()
    for kind, side, price, quantity, owner, target in ops:
        if kind == 1:
            cancel(target)
        elif kind == 0:
            fills += len(submit(target, owner, buy if side == 0 else sell, quantity, price, gtc).fills)
        elif kind == 2:
            fills += len(submit(target, owner, buy if side == 0 else sell, quantity, price, ioc).fills)
        else:
            fills += len(submit(target, owner, buy if side == 0 else sell, quantity, None, ioc).fills)
    return time.perf_counter() - start, fills


def _raw(ops: list[Op]) -> float:
    kept: list[Op] = []
    append = kept.append
    start = time.perf_counter()
    for op in ops:
        append(op)
    return time.perf_counter() - start


def run(count: int = 200_000, rounds: int = 5, seed: int = 7) -> dict[str, Any]:
    ops = workload(count, seed)
    book_s: list[float] = []
    raw_s: list[float] = []
    fills = 0
    for _ in range(rounds):
        elapsed, fills = _through_book(ops)
        book_s.append(elapsed)
        raw_s.append(_raw(ops))
    best_book, best_raw = min(book_s), min(raw_s)
    orders_per_s = count / best_book
    raw_per_s = count / best_raw
    return {
        "orders": count,
        "seed": seed,
        "rounds": rounds,
        "fills": fills,
        "orders_per_s": round(orders_per_s, 1),
        "median_orders_per_s": round(count / sorted(book_s)[len(book_s) // 2], 1),
        "raw_limit_per_s": round(raw_per_s, 1),
        "ratio": round(orders_per_s / raw_per_s, 4),
        "goal_orders_per_s": 200_000,
        "machine": machine(),
    }
