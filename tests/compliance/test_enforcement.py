"""Compliance on real chains: a freeze across three networks, a seizure, a sanctioned address in a move,
camt.054 credit notices funding deposit accounts, and redemptions paid out in pacs.008 / pain.001."""

from __future__ import annotations

import uuid

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from andchain.chains.client import Call, TxReverted
from andchain.compliance import audit
from andchain.compliance.enforcement import Enforcement
from andchain.compliance.iso20022 import parse_payment_ids
from andchain.compliance.payments import Payments
from andchain.errors import Conflict, DomainError
from andchain.ledger import TransferSpec
from andchain.ops import OpStatus
from andchain.reconcile import reconcile
from andchain.tokens.model import BANK_SEIZED, BANK_SUSPENSE, DEPOSIT_TOKEN, TOKENS, dda_account, holder_account
from andchain.tokens.moves import Moves
from andchain.tokens.runtime import run_until_idle, token_worker
from andchain.tokens.service import TOKEN_ABI, TokenService
from tests.chains.conftest import anvil, make_context, start_public_node  # noqa: F401 - the shared node
from tests.compliance.camt import Credit, camt054
from tests.compliance.sdn import Listed, write_list

DEPOSIT = TOKENS[DEPOSIT_TOKEN]
NETWORKS = ("internal", "base", "ethereum")


@pytest.fixture(scope="module")
def public_nodes(tmp_path_factory):
    base = start_public_node(tmp_path_factory.mktemp("base"), block_time_s=0.25)
    ethereum = start_public_node(tmp_path_factory.mktemp("ethereum"), name="ethereum", chain_id=1, block_time_s=0.25)
    yield {"base": base, "ethereum": ethereum}
    base.stop()
    ethereum.stop()


@pytest.fixture
def world(tmp_path, anvil, public_nodes):  # noqa: F811
    ctx = make_context(tmp_path, anvil)
    for name, node in public_nodes.items():
        ctx.settings.networks[name] = node.network
    service = TokenService(ctx)
    for network in NETWORKS:
        service.setup(network)
    yield ctx, service
    ctx.close()


def settle(ctx, service):
    assert run_until_idle(token_worker(ctx, service), seconds=60, rounds_max=2), service.ops.counts()


def own_address(ctx, moves: Moves, client: str, network: str) -> Account:
    account = Account.create()
    nonce, message = moves.challenge(client, network)
    signature = Account.sign_message(encode_defunct(text=message), account.key).signature.hex()
    moves.register(client, network, nonce, account.address, signature)
    ctx.keys.import_key(f"test:{account.address.lower()}", bytes(account.key))
    ctx.chain(network).rpc.call("anvil_setBalance", [account.address, hex(10**19)])
    return account


def on_chain(service, network, fn, *args):
    return service.chain(network).read(service.token_address(network), TOKEN_ABI, fn, *args)


def balance(service, name: str) -> int:
    return service.ledger.account(name).balance_posted


def funded_on_two_networks(ctx, service) -> tuple[str, str, Account, Account]:
    """A client with deposits, tokens on the bank's chain and on Base, and its own address on Ethereum."""
    moves = Moves(service)
    client = service.onboard("Target Holdings").id
    service.deposit(client, 1_000_000, "fund-target")
    service.mint(client, "internal", 300_000, "mint-target")
    base = own_address(ctx, moves, client, "base")
    ethereum = own_address(ctx, moves, client, "ethereum")
    settle(ctx, service)
    moves.move(client, "internal", "base", 100_000, "move-target")
    settle(ctx, service)
    wallet = service.wallet(client, "internal").address
    return client, wallet, base, ethereum


def test_a_freeze_blocks_the_party_in_the_ledger_and_on_three_networks_and_an_unfreeze_lifts_it(world):
    ctx, service = world
    client, wallet, base, ethereum = funded_on_two_networks(ctx, service)
    other = service.onboard("Counterparty").id
    service.deposit(other, 10_000, "fund-other")
    service.mint(other, "internal", 10_000, "mint-other")
    settle(ctx, service)
    enforcement = Enforcement(service)
    order = enforcement.freeze(client, reference="SDNY 26-cv-0042", authority="S.D.N.Y.", by="compliance:ann")
    assert enforcement.freeze(client, reference="SDNY 26-cv-0042", authority="S.D.N.Y.", by="x").id == order.id
    assert {tuple(a) for a in order.details["addresses"]} == {
        ("internal", wallet), ("base", base.address), ("ethereum", ethereum.address)
    }  # fmt: skip
    # The ledger and compliance refuse at once, before the chain has done anything.
    assert service.ledger.account(dda_account(client)).frozen
    for attempt in (
        lambda: service.mint(client, "internal", 100, "after-freeze"),
        lambda: service.redeem(client, "internal", 100, "redeem-after-freeze"),
        lambda: service.pay(client, other, "internal", 100, "", "pay-after-freeze"),
    ):
        with pytest.raises(DomainError) as caught:
            attempt()
        assert caught.value.code == "party_frozen"
    with pytest.raises(DomainError) as caught:
        service.pay(other, client, "internal", 100, "", "pay-to-frozen")
    assert (caught.value.code, caught.value.details.get("field")) == ("party_frozen", "payee"), caught.value.message
    (refused,) = service.ledger.create_transfers(
        [
            TransferSpec(
                service.ledger.account(dda_account(client)).id,
                service.ledger.account(dda_account(other)).id,
                1,
                id="sneaky",
                asset="USD",
            )
        ]
    )
    assert refused.result.value == "debit_account_frozen"
    settle(ctx, service)
    done = service.ops.get(order.operation_id)
    assert done.status == OpStatus.SUCCEEDED, done.error_message
    for network, address in (("internal", wallet), ("base", base.address), ("ethereum", ethereum.address)):
        assert on_chain(service, network, "frozen", address) is True
    # On chain, the client's own key cannot move its tokens any more.
    transfer = TOKEN_ABI.encode_call("transfer", wallet, 1)
    with pytest.raises(TxReverted):
        service.chain("base").transact(base.address, Call(service.token_address("base"), transfer))
    assert reconcile(ctx).breaks == []
    assert [e.action for e in audit.entries(ctx.engine)][-1] == "order.freeze"
    lifted = enforcement.unfreeze(client, reference="SDNY 26-cv-0042/lift", authority="S.D.N.Y.", by="ann")
    settle(ctx, service)
    assert service.ops.get(lifted.operation_id).status == OpStatus.SUCCEEDED
    assert not any(on_chain(service, n, "frozen", a) for n, a in (("internal", wallet), ("base", base.address)))
    assert not service.ledger.account(dda_account(client)).frozen
    service.mint(client, "internal", 100, "after-unfreeze")
    settle(ctx, service)
    assert reconcile(ctx).breaks == []


def test_a_seizure_burns_every_address_and_takes_the_deposits_to_the_seizure_account(world):
    ctx, service = world
    client, wallet, base, _ = funded_on_two_networks(ctx, service)
    enforcement = Enforcement(service)
    with pytest.raises(Conflict) as caught:
        enforcement.seize(client, reference="FORFEIT-7", authority="DOJ", by="ann")
    assert caught.value.code == "not_frozen"
    enforcement.freeze(client, reference="FORFEIT-7", authority="DOJ", by="ann")
    with pytest.raises(Conflict) as caught:  # one order at a time on chain
        enforcement.seize(client, reference="FORFEIT-7", authority="DOJ", by="ann")
    assert caught.value.code == "order_in_progress"
    settle(ctx, service)
    supply_before = {n: on_chain(service, n, "totalSupply") for n in ("internal", "base")}
    order = enforcement.seize(client, reference="FORFEIT-7", authority="DOJ", by="ann")
    assert enforcement.seize(client, reference="FORFEIT-7", authority="DOJ", by="ann").id == order.id
    assert order.details["deposit_seized_minor"] == 700_000
    assert balance(service, dda_account(client)) == 0
    settle(ctx, service)
    assert service.ops.get(order.operation_id).status == OpStatus.SUCCEEDED
    assert (
        on_chain(service, "internal", "balanceOf", wallet),
        on_chain(service, "base", "balanceOf", base.address),
    ) == (0, 0)
    assert on_chain(service, "internal", "totalSupply") == supply_before["internal"] - 200_000
    assert on_chain(service, "base", "totalSupply") == supply_before["base"] - 100_000
    assert balance(service, holder_account("internal", DEPOSIT, wallet)) == 0
    assert balance(service, holder_account("base", DEPOSIT, base.address)) == 0
    assert balance(service, BANK_SEIZED) == 1_000_000  # 7,000.00 of deposits and 3,000.00 of tokens
    assert reconcile(ctx).breaks == []
    assert [e.action for e in audit.entries(ctx.engine)][-2:] == ["order.freeze", "order.seize"]


def test_a_sanctioned_address_is_refused_in_a_move_with_an_alert_and_nothing_moved(world):
    ctx, service = world
    moves = Moves(service)
    client = service.onboard("Mover").id
    service.deposit(client, 50_000, "fund-mover")
    service.mint(client, "internal", 50_000, "mint-mover")
    base = own_address(ctx, moves, client, "base")
    settle(ctx, service)
    listed = [Listed("9001", "SOMEONE ELSE ENTIRELY", addresses=(("USDT", base.address),))]
    summary = service.clients.compliance.load_list(write_list(ctx.settings.data_dir / "sdn", listed), by="test")
    assert summary["rescreen_hits"] == 1  # the registered address is on the new list
    with pytest.raises(DomainError) as caught:
        moves.move(client, "internal", "base", 10_000, "move-to-listed")
    assert caught.value.code == "sanctions_hit"
    assert service.ops.find_by_key("move-to-listed") is None
    wallet = service.wallet(client, "internal").address
    assert balance(service, holder_account("internal", DEPOSIT, wallet)) == 50_000
    rules = {a.rule for a in service.clients.compliance.alerts(client_id=client)}
    assert rules == {"sanctions_address"}


def test_a_camt054_booked_credit_funds_a_deposit_account_that_can_then_be_minted(world):
    ctx, service = world
    payments = Payments(service)
    client = service.onboard("Acme Treasury").id
    service.clients.compliance.load_list(
        write_list(ctx.settings.data_dir / "sdn", [Listed("1", "HELIX MIXER SERVICE")]), by="test"
    )
    uetr = str(uuid.uuid4())
    notice = camt054(
        "MSG-1",
        [
            Credit("BK-1", "2500.00", client, end_to_end_id="E2E-1", uetr=uetr),
            Credit("BK-2", "900.00", client, status="PDNG"),
            Credit("BK-3", "75.00", "nobody-at-all"),
            Credit("BK-4", "60.00", client, debtor="Helix Mixer Service"),
            Credit("BK-5", "10.00", client, credit=False),
        ],
    )
    result = payments.credit_notice(notice, by="ops:bob")
    assert [c["status"] for c in result["credits"]] == ["booked", "not_booked", "suspense", "suspense", "ignored"]
    assert balance(service, dda_account(client)) == 250_000
    assert balance(service, BANK_SUSPENSE) == 13_500
    again = payments.credit_notice(notice, by="ops:bob")  # the same notice again: booked once
    assert again["replayed"] is True and balance(service, dda_account(client)) == 250_000
    with pytest.raises(Conflict) as caught:
        payments.credit_notice(camt054("MSG-1", [Credit("BK-9", "1.00", client)]), by="ops:bob")
    assert caught.value.code == "message_id_reused"
    with pytest.raises(DomainError) as caught:
        payments.credit_notice(b"<Document>not camt</Document>", by="ops:bob")
    assert caught.value.code == "invalid_message"
    (found,) = payments.lookup(uetr=uetr)
    assert (found["end_to_end_id"], found["status"], found["client_id"]) == ("E2E-1", "booked", client)
    assert {a.rule for a in service.clients.compliance.alerts()} == {"sanctions_name"}
    op = service.mint(client, "internal", 250_000, "mint-from-credit")
    settle(ctx, service)
    assert service.ops.get(op.id).status == OpStatus.SUCCEEDED
    with pytest.raises(DomainError) as caught:
        service.mint(client, "internal", 1, "mint-beyond-credit")  # the pending credit funds nothing
    assert caught.value.code == "insufficient_funds"


def test_a_redemption_is_paid_out_in_pacs008_and_pain001_with_its_ids_kept_against_the_burn(world):
    ctx, service = world
    payments = Payments(service)
    client = service.onboard("Redeemer").id
    service.deposit(client, 80_000, "fund-redeemer")
    service.mint(client, "internal", 80_000, "mint-redeemer")
    settle(ctx, service)
    redemption = service.redeem(client, "internal", 30_000, "redeem-1")
    with pytest.raises(DomainError) as caught:
        payments.payout(redemption.id, creditor_name="Redeemer Inc", creditor_account="DE89370400440532013000",
                        creditor_agent_bic="DEUTDEFFXXX", by="ops")  # fmt: skip
    assert caught.value.code == "redemption_not_done"
    settle(ctx, service)
    burn = service.ops.get(redemption.id).result["tx_hash"]
    done = payments.payout(redemption.id, creditor_name="Redeemer Inc", creditor_account="DE89370400440532013000",
                           creditor_agent_bic="DEUTDEFFXXX", by="ops")  # fmt: skip
    again = payments.payout(redemption.id, creditor_name="Redeemer Inc", creditor_account="DE89370400440532013000",
                            creditor_agent_bic="DEUTDEFFXXX", by="ops")  # fmt: skip
    assert again == done
    assert balance(service, dda_account(client)) == 0  # 80,000 minted, 30,000 redeemed back, then paid out
    for document in (done["pain001"], done["pacs008"]):
        assert parse_payment_ids(document.encode()) == [(done["end_to_end_id"], done["uetr"])]
    assert done["tx_hash"] == burn.lower()
    (by_hash,) = payments.lookup(tx_hash=burn)
    assert (by_hash["end_to_end_id"], by_hash["uetr"]) == (done["end_to_end_id"], done["uetr"])
    assert reconcile(ctx).breaks == []
