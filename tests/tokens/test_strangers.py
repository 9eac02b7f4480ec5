"""Whatever strangers and holders outside andchain do on a public chain, the worker keeps running and
the ledger keeps agreeing with the chain.

Each test acts as people the bank does not control would (their own keys, their own transactions),
runs the worker until it is idle between actions, and ends with `reconcile` finding no break.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from andchain.chains.contracts import memo32
from andchain.cli import app
from andchain.errors import DomainError
from andchain.ops import OpStatus
from andchain.tokens.model import BANK_SUSPENSE, DVP, dda_account
from andchain.tokens.service import DVP_ABI
from tests.tokens.public_world import CappedProvider, PublicWorld, base_node, make_public, public  # noqa: F401

runner = CliRunner()


def chain_now(world: PublicWorld) -> int:
    return int(world.chain.block()["timestamp"], 16)


def test_zero_amounts_and_a_transfer_to_oneself_are_seen_and_book_nothing(public: PublicWorld):  # noqa: F811
    service = public.service
    _client, holder = public.client_with_tokens("Zero Holder", 10_000)
    public.settle()
    stranger = public.outsider()

    nothing = holder.token(service, "transfer", stranger.address, 0)
    # A stranger with no allowance at all pulls nothing from the holder: the token lets it, and says so.
    pulled = stranger.token(service, "transferFrom", holder.address, stranger.address, 0)
    to_self = holder.token(service, "transfer", holder.address, 2_500)
    memo = holder.token(service, "transferWithMemo", stranger.address, 0, memo32("nothing at all"))
    # Anyone at all, allow-listed or not, may emit a zero transfer between two allow-listed holders.
    anyone = public.outsider(allowlisted=False).token(service, "transferFrom", holder.address, holder.address, 0)
    public.settle()

    for receipt in (nothing, pulled, to_self, anyone):
        assert public.seen(receipt["transactionHash"]) == ["Transfer"]
        assert public.booked(receipt["transactionHash"]) == []
    assert public.seen(memo["transactionHash"]) == ["Transfer", "TransferWithMemo"]
    assert public.booked(memo["transactionHash"]) == []
    assert public.balance(holder.address) == public.mirror(holder.address) == 10_000
    assert public.balance(stranger.address) == public.mirror(stranger.address) == 0
    assert public.read("allowance", holder.address, stranger.address) == 0
    public.clean()


def test_tokens_sent_to_the_dvp_contract_are_its_own_and_are_returned_without_touching_escrow(
    public: PublicWorld,  # noqa: F811
):
    service = public.service
    usdd, dvp = service.token_address("base"), service.token_address("base", DVP)
    _client, holder = public.client_with_tokens("Stray Sender", 10_000)
    public.settle()

    # By mistake, a plain transfer to the DvP contract: booked to the contract's own mirror.
    holder.token(service, "transfer", dvp, 1_500)
    public.settle()
    assert public.mirror(dvp) == public.balance(dvp) == 1_500
    assert public.mirror(holder.address) == 8_500
    public.clean()

    # A trade in progress: the holder proposes one to a stranger and escrows its leg.
    stranger = public.outsider()
    trade = memo32("a trade in progress")
    holder.dvp(
        service, "propose", trade, holder.address, stranger.address, usdd, 2_000, usdd, 1, chain_now(public) + 3600
    )
    holder.token(service, "approve", dvp, 2_000)
    holder.dvp(service, "fund", trade)
    public.settle()
    assert public.mirror(dvp) == public.balance(dvp) == 3_500
    assert public.chain.read(dvp, DVP_ABI, "escrowed", usdd) == 2_000
    public.clean()

    # More than is stray: the ledger's mirror holds enough (escrow included), the contract refuses.
    greedy = service.return_stray("base", holder.address, 1_501, "stray-too-much")
    public.settle()
    failed = service.ops.get(greedy.id)
    assert failed.status == OpStatus.FAILED
    assert failed.error_code == "tx_reverted" and "not stray" in (failed.error_message or ""), failed.error_message
    assert public.mirror(dvp) == public.balance(dvp) == 3_500
    assert public.ledger_pending(dvp) == (0, 0)
    public.clean()

    # The operator returns the stray tokens: part through the service, the rest through the command line.
    returned = service.return_stray("base", holder.address, 1_000, "stray-1")
    assert service.return_stray("base", holder.address, 1_000, "stray-1").id == returned.id
    public.settle()
    assert service.ops.get(returned.id).status == OpStatus.SUCCEEDED
    result = runner.invoke(
        app,
        ["tokens", "return-stray", holder.address, "5.00", "--network", "base", "--key", "stray-2", "--json"],
    )
    assert result.exit_code == 0, result.output
    by_cli = json.loads(result.stdout)
    public.settle()
    assert service.ops.get(by_cli["id"]).status == OpStatus.SUCCEEDED

    # What was stray is back with its sender; the escrow of the open trade is exactly as it was.
    assert public.mirror(holder.address) == public.balance(holder.address) == 10_000 - 2_000
    assert public.mirror(dvp) == public.balance(dvp) == 2_000
    assert public.chain.read(dvp, DVP_ABI, "escrowed", usdd) == 2_000
    state = public.chain.read(dvp, DVP_ABI, "trades", trade)
    assert (state[7], state[8], state[9]) == (True, False, 1)  # funded by the holder, still open
    public.clean()


def test_unknown_holders_approvals_permits_and_a_stranger_redeeming_keep_the_books_agreeing(
    public: PublicWorld,  # noqa: F811
):
    service = public.service
    client, holder = public.client_with_tokens("Known Holder", 10_000)
    public.settle()
    first, second = public.outsider(), public.outsider()

    holder.token(service, "transfer", first.address, 3_000)  # to an address the bank does not know
    first.token(service, "transfer", second.address, 1_000)  # and on, between two of them
    first.token(service, "approve", holder.address, 100)
    holder.token(service, "approve", second.address, 50)
    deadline = chain_now(public) + 3600
    v, r, s = first.sign_permit(service, second.address, 200, deadline)
    second.token(service, "permit", first.address, second.address, 200, deadline, v, r, s)  # sent by the spender
    second.token(service, "transferFrom", first.address, second.address, 200)
    public.settle()
    assert (public.mirror(first.address), public.mirror(second.address)) == (1_800, 1_200)

    # The stranger redeems by itself: the bank owes the dollars to someone it does not know yet.
    suspense_before = service.ledger.account(BANK_SUSPENSE).balance_posted
    redeemed = second.token(service, "redeem", 300, memo32("who am I"))
    # And a known holder that redeems on chain by itself is credited to its deposit account.
    dda_before = service.dda_balance(client)
    holder.token(service, "redeem", 400, memo32("mine"))
    public.settle()
    assert public.seen(redeemed["transactionHash"]) == ["Transfer", "Redeemed"]
    assert service.ledger.account(BANK_SUSPENSE).balance_posted == suspense_before + 300
    assert service.ledger.account(dda_account(client)).balance_posted == dda_before + 400
    assert public.mirror(second.address) == public.balance(second.address) == 900
    assert public.mirror(holder.address) == public.balance(holder.address) == 10_000 - 3_000 - 400
    assert public.read("totalSupply") == 10_000 - 300 - 400
    public.clean()


def test_a_stranger_using_the_dvp_contract_for_its_own_hash_locked_deal_is_booked_in_and_out(
    public: PublicWorld,  # noqa: F811
):
    service = public.service
    usdd, dvp = service.token_address("base"), service.token_address("base", DVP)
    _client, holder = public.client_with_tokens("Lock Counterparty", 1_000)
    public.settle()
    stranger = public.outsider()
    holder.token(service, "transfer", stranger.address, 700)
    secret = memo32("a stranger's secret")
    stranger.token(service, "approve", dvp, 700)
    stranger.dvp(
        service,
        "lock",
        memo32("lock-1"),
        holder.address,
        usdd,
        700,
        hashlib.sha256(secret).digest(),
        chain_now(public) + 3600,
    )
    public.settle()
    assert public.mirror(dvp) == public.balance(dvp) == 700
    public.clean()
    holder.dvp(service, "claim", memo32("lock-1"), secret)
    public.settle()
    assert public.mirror(dvp) == public.balance(dvp) == 0
    assert public.mirror(holder.address) == public.balance(holder.address) == 1_000
    assert public.mirror(stranger.address) == 0
    public.clean()


def test_the_bank_returns_no_more_than_the_contracts_mirror_holds(public: PublicWorld):  # noqa: F811
    with pytest.raises(DomainError) as caught:
        public.service.return_stray("base", public.outsider(allowlisted=False).address, 1, "nothing-stray")
    assert caught.value.code == "insufficient_funds"
    assert public.service.ops.find_by_key("nothing-stray") is None


def test_a_flood_of_events_does_not_stop_the_listener_behind_a_provider_that_caps_its_log_queries(
    tmp_path,
    base_node,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    provider = CappedProvider(base_node.network.rpc_url, logs_max=25)
    world = make_public(tmp_path, provider.url, monkeypatch)
    try:
        service = world.service
        _client, holder = world.client_with_tokens("Flooded", 10_000)
        world.settle()
        spammer = world.outsider()
        # Cheap to send, free of value: 45 events in three blocks, more than the provider answers at once.
        for _ in range(3):
            spammer.token(service, "batchTransfer", [holder.address] * 15, [0] * 15)
        holder.token(service, "transfer", spammer.address, 500)
        world.settle()
        assert provider.refused, "the provider never refused a query: the test proves nothing"
        assert world.mirror(spammer.address) == world.balance(spammer.address) == 500
        assert world.mirror(holder.address) == world.balance(holder.address) == 9_500
        world.clean()
    finally:
        world.ctx.close()
        provider.close()
