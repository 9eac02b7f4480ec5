"""A worker that was away comes back to a long backlog: `andchain worker --until-idle` reads it all, in
bounded ranges, and stops by itself once it has caught up (no `--seconds` needed)."""

from __future__ import annotations

from sqlalchemy import select

from andchain.chains import schema as chain_schema
from andchain.chains.listener import RANGE_MAX
from andchain.ops import leases
from andchain.tokens.runtime import run_until_idle, token_worker
from tests.tokens.public_world import PublicWorld, base_node, public, run_cli_worker  # noqa: F401 - fixtures

BACKLOG_BLOCKS = 2_500


def checkpoint(world: PublicWorld) -> int:
    c = chain_schema.checkpoints
    with world.ctx.engine.connect() as conn:
        block = conn.execute(
            select(c.c.block_number).where(c.c.listener == "tokens:base", c.c.chain_id == world.chain.chain_id)
        ).scalar()
    assert block is not None
    return int(block)


def test_the_worker_until_idle_reads_a_backlog_longer_than_one_log_range_and_stops_by_itself(
    public: PublicWorld,  # noqa: F811
):
    assert BACKLOG_BLOCKS > RANGE_MAX
    service, chain = public.service, public.chain
    _client, holder = public.client_with_tokens("Backlog Holder", 10_000)
    public.settle()
    start = checkpoint(public)
    stranger = public.outsider()

    # No worker runs while 2,500 blocks go by, a few token events among them.
    public.mine(1_000)
    holder.token(service, "transfer", stranger.address, 1_000)
    public.mine(1_200)
    stranger.token(service, "transfer", holder.address, 250)
    public.mine(BACKLOG_BLOCKS - 2_200)
    head = chain.block_number()
    assert head - start > RANGE_MAX
    assert (public.mirror(holder.address), public.mirror(stranger.address)) == (10_000, 0)

    done = run_cli_worker(public.env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert checkpoint(public) >= head - chain.network.confirmations + 1  # every block final at the start is read
    assert public.mirror(holder.address) == public.balance(holder.address) == 10_000 - 1_000 + 250
    assert public.mirror(stranger.address) == public.balance(stranger.address) == 750
    public.clean()


def test_a_listener_lease_left_by_a_dead_worker_does_not_pass_for_caught_up(public: PublicWorld):  # noqa: F811
    service, chain = public.service, public.chain
    _client, holder = public.client_with_tokens("Lease Holder", 10_000)
    public.settle()
    stranger = public.outsider()
    holder.token(service, "transfer", stranger.address, 400)
    public.mine(50)
    # A worker died while it held the listener's lease: nobody reads until the lease runs out.
    assert leases.acquire(public.ctx.engine, f"listener:tokens:base:{chain.chain_id}", "gone:1", 3.0, public.ctx.clock)
    head = chain.block_number()

    assert run_until_idle(token_worker(public.ctx, service), seconds=60)
    assert checkpoint(public) >= head - chain.network.confirmations + 1
    assert public.mirror(stranger.address) == 400
    public.clean()
