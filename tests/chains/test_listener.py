"""The listener against a real anvil node: once, only when final, retracted on a deep reorg."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, select

from andchain.chains.contracts import memo32
from andchain.chains.listener import ChainEvent, Listener
from andchain.chains.rpc import NodeUnreachable
from tests.chains.conftest import TokenWorld, deploy_token, make_context, start_node

effects_metadata = MetaData()
effects = Table(
    "test_effects",
    effects_metadata,
    Column("uid", String(200), primary_key=True),
    Column("value", Integer),
    Column("name", String(64)),
)


class RecordingHandler:
    """Writes each delivered event through the listener's own transaction, and remembers the calls."""

    def __init__(self, fail_on: set[str] | None = None) -> None:
        self.delivered: list[ChainEvent] = []
        self.retracted: list[ChainEvent] = []
        self.fail_on = fail_on or set()

    def deliver(self, event: ChainEvent, conn: Connection) -> None:
        conn.execute(effects.insert().values(uid=event.uid, value=int(event.args.get("value", 0)), name=event.name))
        if event.name in self.fail_on:
            self.fail_on.discard(event.name)
            raise RuntimeError("handler crashed after writing")
        self.delivered.append(event)

    def retract(self, event: ChainEvent, conn: Connection) -> None:
        conn.execute(effects.delete().where(effects.c.uid == event.uid))
        self.retracted.append(event)


def stored_effects(engine) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        return sorted((r.name, r.value) for r in conn.execute(select(effects)))


@pytest.fixture
def world(ctx):
    effects_metadata.create_all(ctx.engine)
    token = deploy_token(ctx)
    start = token.chain.block_number() + 1
    return token, start


def listener_for(token: TokenWorld, handler, start: int, name: str = "test") -> Listener:
    return Listener(name, token.chain, {token.address: token.abi}, handler, start_block=start)


def test_each_event_is_delivered_once_even_across_restarts(world, ctx):
    token, start = world
    handler = RecordingHandler()
    token.tx(token.minter, "mint", token.alice, 500, memo32("m1"))
    token.tx(token.alice, "transferWithMemo", token.bob, 200, memo32("invoice 9"))
    listener = listener_for(token, handler, start)
    listener.poll()
    names = [e.name for e in handler.delivered]
    assert names == ["Transfer", "Mint", "Transfer", "TransferWithMemo"]
    memo_event = handler.delivered[-1]
    assert memo_event.args["memo"] == memo32("invoice 9") and memo_event.args["value"] == 200
    assert listener.poll().delivered == 0
    again = RecordingHandler()
    restarted = listener_for(token, again, start)
    token.tx(token.alice, "transfer", token.bob, 1)
    restarted.poll()
    assert [e.name for e in again.delivered] == ["Transfer"]
    assert len(stored_effects(ctx.engine)) == 5


def test_a_lost_checkpoint_does_not_deliver_twice(world, ctx):
    token, start = world
    token.tx(token.minter, "mint", token.alice, 5, memo32("m"))
    handler = RecordingHandler()
    listener_for(token, handler, start).poll()
    from andchain.chains import schema

    with ctx.engine.begin() as conn:
        conn.execute(schema.checkpoints.delete())
    replay = RecordingHandler()
    result = listener_for(token, replay, start).poll()
    assert replay.delivered == [] and result.skipped == 2


def test_a_handler_that_crashes_rolls_back_and_the_event_comes_again(world, ctx):
    token, start = world
    token.tx(token.minter, "mint", token.alice, 70, memo32("m"))
    handler = RecordingHandler(fail_on={"Mint"})
    listener = listener_for(token, handler, start)
    with pytest.raises(RuntimeError):
        listener.poll()
    assert stored_effects(ctx.engine) == []  # the batch's writes were rolled back with the failed delivery
    listener.poll()
    assert stored_effects(ctx.engine) == [("Mint", 70), ("Transfer", 70)]


def test_events_wait_for_the_networks_confirmations(tmp_path):
    node = start_node(tmp_path / "node", confirmations=3)
    try:
        ctx = make_context(tmp_path, node)
        effects_metadata.create_all(ctx.engine)
        token = deploy_token(ctx)
        start = token.chain.block_number() + 1
        handler = RecordingHandler()
        listener = listener_for(token, handler, start)
        token.tx(token.minter, "mint", token.alice, 9, memo32("m"))
        listener.poll()
        assert handler.delivered == []
        token.chain.rpc.call("anvil_mine", ["0x1"])
        listener.poll()
        assert handler.delivered == []
        token.chain.rpc.call("anvil_mine", ["0x1"])
        listener.poll()
        assert [e.name for e in handler.delivered] == ["Transfer", "Mint"]
        ctx.close()
    finally:
        node.stop()


def test_a_reorg_deeper_than_the_confirmations_retracts_the_events_it_removed(world, ctx):
    token, start = world
    chain = token.chain
    handler = RecordingHandler()
    listener = listener_for(token, handler, start)
    token.tx(token.minter, "mint", token.alice, 1_000, memo32("kept"))
    listener.poll()
    token.tx(token.alice, "transfer", token.bob, 300)
    token.tx(token.alice, "transfer", token.bob, 200)
    listener.poll()
    assert len(handler.delivered) == 4
    # anvil replaces the last two blocks with empty ones: both transfers are gone.
    chain.rpc.call("anvil_reorg", [2, []])
    result = listener.poll()
    assert result.retracted == 2
    assert [e.args["value"] for e in handler.retracted] == [200, 300]  # newest first
    assert stored_effects(ctx.engine) == [("Mint", 1_000), ("Transfer", 1_000)]
    assert token.read("balanceOf", token.bob) == 0


def test_snapshot_and_revert_replays_a_different_history(world, ctx):
    token, start = world
    chain = token.chain
    handler = RecordingHandler()
    listener = listener_for(token, handler, start)
    token.tx(token.minter, "mint", token.alice, 50, memo32("m"))
    listener.poll()
    snapshot = chain.rpc.call("evm_snapshot")
    token.tx(token.alice, "transfer", token.bob, 10)
    listener.poll()
    chain.rpc.call("evm_revert", [snapshot])
    # The revert dropped alice's transaction, so her nonce has a gap: repair it, then write
    # the new history, another transfer in a block at the same height with another hash.
    assert chain.repair_nonce_gaps(token.alice) == [0]
    token.tx(token.alice, "transfer", token.bob, 7)
    listener.poll()
    assert [e.args["value"] for e in handler.retracted] == [10]
    assert stored_effects(ctx.engine) == [("Mint", 50), ("Transfer", 7), ("Transfer", 50)]


def test_the_listener_rides_out_a_node_restart(tmp_path):
    node = start_node(tmp_path / "node")
    try:
        ctx = make_context(tmp_path, node)
        effects_metadata.create_all(ctx.engine)
        token = deploy_token(ctx)
        start = token.chain.block_number() + 1
        handler = RecordingHandler()
        listener = listener_for(token, handler, start)
        token.tx(token.minter, "mint", token.alice, 40, memo32("before"))
        listener.poll()
        node.stop()
        token.chain.rpc.retries_max = 1
        with pytest.raises(NodeUnreachable, match="did not answer"):
            listener.poll()
        assert listener.run(seconds=0.5, poll_interval_s=0.05) == 0  # keeps waiting, does not crash
        node.start()  # the node comes back with its blocks (state dumped on stop)
        token.tx(token.minter, "mint", token.alice, 2, memo32("after"))
        listener.run(seconds=1.0, poll_interval_s=0.05)
        assert [e.args.get("value") for e in handler.delivered] == [40, 40, 2, 2]
        assert handler.retracted == []
        ctx.close()
    finally:
        node.stop()
