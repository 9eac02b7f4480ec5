"""The worker supervises what it runs: an operation or a part that fails is isolated, retried within
its bound and reported; a worker loop that dies is built again; /health tells whether it lives."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, select

from andchain.api import create_app
from andchain.chains.rpc import NodeUnreachable
from andchain.cli.serve import start_worker
from andchain.config import OpsSettings, Settings
from andchain.context import Context
from andchain.ops import Operation, Operations, OpStatus, leases, schema
from andchain.ops.worker import PART_BACKOFF, Worker, supervise
from tests.conftest import FakeClock

L = schema.leases

OPS = OpsSettings(attempts_max=3, backoff_base_s=1.0, backoff_max_s=4.0)


class FakeHandler:
    """Succeeds each operation in one step, except that processing the ones named in `bugs` raises,
    and every call raises `outage` while it is set (a node that never answers)."""

    kinds = ("noop",)

    def __init__(self, ops: Operations, bugs: set[int] = frozenset(), outage: Exception | None = None) -> None:
        self.ops = ops
        self.bugs = bugs
        self.outage = outage
        self.calls = 0

    def advance(self, batch: list[Operation]) -> None:
        self.calls += 1
        if self.outage is not None:
            raise self.outage
        for op in batch:  # in order: the ones before a bug are done when it raises
            if op.payload["i"] in self.bugs:
                raise KeyError(f"no rate for {op.payload['i']}")
            self.ops.update(op, status=OpStatus.SUCCEEDED, result={"done": op.payload["i"]})

    def recover(self) -> None:
        pass

    def release(self, op: Operation, conn: Connection) -> None:
        pass

    def quarantine(self, op: Operation, exc: BaseException) -> None:
        self.ops.attention(self.ops.get(op.id), "internal_error", f"{type(exc).__name__}: {exc}")


class Monotonic:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


class BrokenPart:
    name = "listener:ethereum"
    network = "ethereum"

    def __init__(self, clock: Monotonic) -> None:
        self.clock = clock
        self.runs: list[float] = []

    def run(self) -> None:
        self.runs.append(self.clock())
        raise RuntimeError("the booking of a Transfer failed")

    def idle(self) -> bool:
        return False


class HealthyPart:
    name = "listener:internal"
    network = "internal"

    def __init__(self, lag_blocks: int = 0) -> None:
        self.runs = 0
        self.lag_blocks = lag_blocks

    def run(self) -> None:
        self.runs += 1

    def idle(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {"lag_blocks": self.lag_blocks, "standby": False}


def heartbeat_of(engine: Engine, owner: str) -> dict[str, Any]:
    with engine.connect() as conn:
        detail = conn.execute(select(schema.workers.c.detail).where(schema.workers.c.owner == owner)).scalar_one()
    return json.loads(detail)


def test_an_operation_whose_processing_raises_stops_in_needs_attention_while_its_batch_completes(engine, clock):
    ops = Operations(engine, clock=clock, settings=OPS)
    created = [ops.create("noop", f"k{i}", {"i": i}, network="internal")[0] for i in range(5)]
    worker = Worker(ops, [FakeHandler(ops, bugs={2})], owner="w1")
    assert worker.run_once() == 5
    states = [ops.get(op.id) for op in created]
    assert [s.status for s in states] == [OpStatus.SUCCEEDED] * 2 + [OpStatus.NEEDS_ATTENTION] + [
        OpStatus.SUCCEEDED
    ] * 2
    assert states[2].error_code == "internal_error" and "no rate for 2" in (states[2].error_message or "")
    assert ops.claim("w1", kinds=["noop"]) == []  # nothing left that loops
    assert not ops.any_active()  # one stopped where an operator sees it: it waits for them, not the worker


def test_any_active_is_true_while_one_operation_has_not_ended(engine, clock):
    ops = Operations(engine, clock=clock, settings=OPS)
    assert not ops.any_active()
    first, _ = ops.create("noop", "k1", {"i": 1}, network="internal")
    second, _ = ops.create("noop", "k2", {"i": 2}, network="internal")
    assert ops.any_active()
    ops.update(first, status=OpStatus.SUCCEEDED)
    assert ops.any_active()  # the second one still has to end
    ops.update(ops.get(second.id), status=OpStatus.SUBMITTED)
    assert ops.any_active()
    ops.cancel(second.id, "test")
    assert not ops.any_active()


def test_the_worker_bounds_the_attempts_of_an_operation_whose_node_never_answers(engine, clock):
    ops = Operations(engine, clock=clock, settings=OPS)
    op, _ = ops.create("noop", "k1", {"i": 1}, network="internal")
    handler = FakeHandler(ops, outage=NodeUnreachable("node internal did not answer"))
    worker = Worker(ops, [handler], owner="w1")
    for _ in range(50):
        worker.run_once()
        clock.advance(OPS.backoff_max_s)
    stopped = ops.get(op.id)
    assert stopped.status == OpStatus.NEEDS_ATTENTION  # neither failed nor looping
    assert stopped.error_code == "node_unreachable" and "retry budget spent" in (stopped.error_message or "")
    assert handler.calls == OPS.attempts_max


def test_a_failing_part_backs_off_more_each_time_while_operations_complete(engine, clock):
    ops = Operations(engine, clock=clock, settings=OPS)
    monotonic = Monotonic()
    broken, healthy = BrokenPart(monotonic), HealthyPart(lag_blocks=3)
    worker = Worker(ops, [FakeHandler(ops)], owner="w1", parts=[broken, healthy], monotonic=monotonic)
    done = []
    for i in range(200):  # 20 s of rounds, 0.1 s apart
        op, _ = ops.create("noop", f"k{i}", {"i": i}, network="internal")
        worker.run_once()
        done.append(ops.get(op.id).status)
        monotonic.now_s += 0.1
    assert done == [OpStatus.SUCCEEDED] * 200
    assert healthy.runs == 200
    gaps = [round(b - a, 1) for a, b in zip(broken.runs, broken.runs[1:], strict=False)]
    assert gaps == [PART_BACKOFF.delay_s(n) for n in range(1, len(broken.runs))] == [0.5, 1.0, 2.0, 4.0, 8.0]
    beat = heartbeat_of(engine, "w1")
    assert beat["parts"]["listener:ethereum"]["ok"] is False
    assert beat["parts"]["listener:ethereum"]["failures"] == 6
    assert "the booking of a Transfer failed" in beat["parts"]["listener:ethereum"]["last_error"]
    assert beat["parts"]["listener:internal"]["ok"] is True
    assert beat["lag_blocks"] == {"internal": 3}
    assert worker.parts_idle()  # a failing part, reported, does not keep run_until_idle waiting


def test_the_worker_gives_its_leases_back_when_it_stops(engine, clock):
    class LeasedPart(HealthyPart):
        def run(self) -> None:
            assert leases.acquire(engine, "listener:tokens:internal:1", "w1", 30, clock)

        def release(self) -> None:
            leases.release(engine, "listener:tokens:internal:1", "w1")

    ops = Operations(engine, clock=clock, settings=OPS)
    worker = Worker(ops, [FakeHandler(ops)], owner="w1", parts=[LeasedPart()])
    worker.run(seconds=10, until=lambda: worker.rounds > 0)
    assert leases.acquire(engine, "listener:tokens:internal:1", "w2", 30, clock)  # at once, not in 30 s


def test_a_lease_whose_work_checks_it_as_it_commits_is_renewed_once_half_of_it_has_run_and_asked_again_once_lost(
    engine, clock
):
    def written() -> tuple[str, int] | None:
        with engine.connect() as conn:
            row = conn.execute(select(L.c.owner, L.c.until_us).where(L.c.name == "rules")).first()
        return None if row is None else (str(row.owner), int(row.until_us))

    mine = leases.Lease(engine, "rules", "w1", 30, clock, renew_at_half=True)
    other = leases.Lease(engine, "rules", "w2", 30, clock, renew_at_half=True)
    assert mine.acquire()
    taken = written()
    assert taken == ("w1", clock() + 30_000_000)
    clock.advance(14.9)
    assert mine.acquire() and written() == taken  # no write: nobody else can have it yet
    clock.advance(0.2)
    assert mine.acquire() and written() == ("w1", clock() + 30_000_000)  # renewed
    assert not other.acquire()
    # The lease runs out while its holder stalls: the other owner takes it, and the first one finds out
    # on its next ask (and in the transaction of any work it commits under it).
    clock.advance(31)
    assert other.acquire()
    with engine.begin() as conn:
        assert not mine.held(conn)
    assert not mine.acquire()
    other.release()
    assert mine.acquire() and written() == ("w1", clock() + 30_000_000)  # given back: at once
    mine.forget()
    clock.advance(1)
    assert mine.acquire() and written() == ("w1", clock() + 30_000_000)  # forgotten: asked again
    # Without renew_at_half (work that does not check the lease as it commits), every ask renews it.
    every = leases.Lease(engine, "rules", "w1", 30, clock)
    clock.advance(1)
    assert every.acquire() and written() == ("w1", clock() + 30_000_000)


def test_supervise_builds_a_new_worker_when_the_loop_dies(engine, clock):
    ops = Operations(engine, clock=clock, settings=OPS)
    op, _ = ops.create("noop", "k1", {"i": 1}, network="internal")
    stop = threading.Event()
    built: list[Worker] = []

    class DyingWorker(Worker):
        def _loop(self, *args: Any) -> None:
            raise MemoryError("the loop itself broke")

    def make() -> Worker:
        worker_class = DyingWorker if not built else Worker
        built.append(worker_class(ops, [FakeHandler(ops)], owner="w1"))
        return built[-1]

    thread = threading.Thread(target=supervise, args=(make, stop), daemon=True)
    thread.start()
    for _ in range(200):
        if ops.get(op.id).status == OpStatus.SUCCEEDED:
            break
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert [type(w) for w in built] == [DyingWorker, Worker]
    assert ops.get(op.id).status == OpStatus.SUCCEEDED and built[1].rounds > 0


@pytest.fixture
def api_ctx(tmp_path: Path) -> Context:
    clock = FakeClock()
    ctx = Context(Settings(data_dir=tmp_path, networks={}), clock=clock)
    ctx.upgrade_database()
    return ctx


def wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_health_shows_the_in_process_worker_and_its_lag_and_degraded_once_its_heartbeat_is_stale(api_ctx):
    ops = Operations(api_ctx.engine, clock=api_ctx.clock, settings=api_ctx.settings.ops)
    app = create_app(api_ctx)
    stop = threading.Event()
    worker = Worker(ops, [FakeHandler(ops)], owner="api-host:1", parts=[HealthyPart(lag_blocks=7)])
    start_worker(app, lambda: worker, "api-host:1", stop)
    try:
        client = TestClient(app, base_url="http://localhost")
        wait_for(lambda: worker.rounds > 0 and client.get("/health").json()["worker"]["in_process"]["heartbeat_fresh"])
        health = client.get("/health").json()
        assert health["status"] == "ok"
        assert health["worker"]["in_process"]["thread_alive"] is True
        assert health["worker"]["lag_blocks"] == {"internal": 7}
        assert [w["owner"] for w in health["worker"]["workers"]] == ["api-host:1"]
        api_ctx.clock.advance(api_ctx.settings.ops.worker_stale_after_s + 60)  # the heartbeat goes stale
        stale = client.get("/health").json()
        assert stale["status"] == "degraded"
        assert stale["worker"]["in_process"]["heartbeat_fresh"] is False
    finally:
        stop.set()


def test_health_is_degraded_when_the_in_process_worker_thread_is_dead(api_ctx):
    ops = Operations(api_ctx.engine, clock=api_ctx.clock, settings=api_ctx.settings.ops)
    app = create_app(api_ctx)
    stop = threading.Event()
    worker = Worker(ops, [FakeHandler(ops)], owner="api-host:1")
    thread = start_worker(app, lambda: worker, "api-host:1", stop)
    client = TestClient(app, base_url="http://localhost")
    wait_for(lambda: worker.rounds > 0)
    stop.set()
    thread.join(timeout=10)
    health = client.get("/health").json()  # its last heartbeat is still fresh: the thread is what is dead
    assert health["worker"]["in_process"] == {
        "owner": "api-host:1",
        "thread_alive": False,
        "heartbeat_fresh": True,
        "last_beat_s_ago": health["worker"]["in_process"]["last_beat_s_ago"],
    }
    assert health["status"] == "degraded"
