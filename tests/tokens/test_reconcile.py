"""`reconcile` tells the whole truth: every token in its own units, what is in flight for every token,
its alerts, a node that does not answer, and every holder however many there are."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from andchain import reconcile as reconcile_module
from andchain.cli import app
from andchain.context import Context
from andchain.devtools.postgres import free_port
from andchain.ledger import TransferSpec
from andchain.ops import OpStatus, failpoints
from andchain.reconcile import reconcile
from andchain.tokens.booking import token_listener
from andchain.tokens.model import DEPOSIT_TOKEN, FUND_SHARE, TOKENS, holder_account
from andchain.tokens.runtime import run_until_idle, token_worker
from tests.tokens.public_world import PublicWorld, base_node, public  # noqa: F401 - fixtures

runner = CliRunner()


class Killed(BaseException):
    """The worker process dies on the spot (a failpoint), without unwinding through its own handlers."""


def check(report, kind: str, starts: str):
    found = [c for c in report.checks if c.check == kind and c.subject.startswith(starts)]
    assert len(found) == 1, (kind, starts, report.checks)
    return found[0]


def catch_up(world: PublicWorld) -> None:
    """The listener alone reads every final block (the worker that would finish the operation is dead)."""
    world.chain.rpc.call("anvil_mine", [hex(world.chain.network.confirmations)])
    listener = token_listener(world.service.booking, "base")
    assert listener is not None
    for _ in range(10):
        listener.poll()
        if listener.caught_up:
            return
    raise AssertionError("the listener did not catch up")


def test_fund_shares_are_checked_in_their_own_units_and_in_flight_while_their_issue_is_unfinished(
    public: PublicWorld,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    service = public.service
    client, holder = public.client_with_tokens("Fund Holder", 0)
    op = service.issue_shares(client, "base", 1_500_000, "issue-in-flight")

    def die(name: str) -> None:
        if name == "issue_shares:issue:after_receipt":
            raise Killed(name)

    monkeypatch.setattr(failpoints, "hit", die)
    public.chain.rpc.call("anvil_mine", [hex(public.chain.network.confirmations)])
    with pytest.raises(Killed):
        run_until_idle(token_worker(public.ctx, service), seconds=60)
    monkeypatch.undo()
    catch_up(public)
    assert public.balance(holder.address, FUND_SHARE) == 1_500_000  # minted, and final
    assert service.ops.get(op.id).status != OpStatus.SUCCEEDED  # but its operation has not finished

    report = reconcile(public.ctx)
    assert report.breaks == [], report.breaks
    shares = check(report, "supply", "MMF on base")
    assert shares.found == "totalSupply 1.500000 MMF"
    assert shares.expected == "ledger 0.000000 MMF + in flight 1.500000 MMF"
    assert check(report, "holder", f"MMF {holder.address.lower()} on base").expected == "ledger 1.500000 MMF"
    assert check(report, "supply", "USDD on base").found == "totalSupply 0.00 USDD"
    assert check(report, "total", "MMF").ok
    (flight,) = [f for f in report.in_flight if f["operation"] == op.id]
    assert flight["kind"] == "issue_shares" and flight["amount"] == 1_500_000
    assert flight["amounts"] == {"MMF": "1.500000"}  # in its own units, not as cents of USDD

    public.settle()  # a worker finishes the operation: the shares are booked, nothing is in flight
    assert service.ops.get(op.id).status == OpStatus.SUCCEEDED
    report = public.clean()
    assert check(report, "supply", "MMF on base").expected == "ledger 1.500000 MMF"
    assert report.in_flight == []


def test_alerts_are_part_of_the_report_and_of_its_json(public: PublicWorld):  # noqa: F811
    _client, _holder = public.client_with_tokens("Alerted", 1_000)
    public.settle()
    public.mine(reconcile_module.LAG_ALERT_BLOCKS + 10)  # no worker runs
    public.ctx.settings.networks["base"].gas_alert_below_wei = 10**30

    report = reconcile(public.ctx)
    assert report.breaks == [], report.breaks
    alerts = report.as_dict()["alerts"]
    assert any(a.startswith("the ledger follows base up to block") for a in alerts), alerts
    assert sum(a.startswith("gas wallet low on base") for a in alerts) == 3, alerts
    assert json.loads(json.dumps(report.as_dict()))["alerts"] == alerts

    by_cli = runner.invoke(app, ["reconcile", "--json"])
    assert by_cli.exit_code == 0, by_cli.output
    assert any("follows base" in a for a in json.loads(by_cli.stdout)["alerts"])


def test_a_network_whose_node_does_not_answer_is_a_break_that_names_it(
    public: PublicWorld,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    public.client_with_tokens("Unreachable", 1_000)
    public.settle()
    monkeypatch.setenv("ANDCHAIN_NETWORKS__BASE__RPC_URL", f"http://127.0.0.1:{free_port()}")
    silent = Context()
    try:
        report = reconcile(silent)
    finally:
        silent.close()
    (broken,) = report.breaks
    assert (broken.check, broken.subject) == ("chain", "base")
    assert "NodeUnreachable" in broken.found and "base" in broken.found
    assert not [c for c in report.checks if c.subject.startswith(("USDD on base", "MMF on base"))]

    by_cli = runner.invoke(app, ["reconcile", "--json"])
    assert by_cli.exit_code == 1
    assert [b["subject"] for b in json.loads(by_cli.stdout)["breaks"]] == ["base"]


def test_holders_beyond_one_page_are_all_checked(public: PublicWorld, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    monkeypatch.setattr(reconcile_module, "PAGE", 2)
    monkeypatch.setattr(reconcile_module, "READ_BATCH", 2)
    service = public.service
    _client, holder = public.client_with_tokens("Many Payees", 10_000)
    public.settle()
    others = [public.outsider() for _ in range(5)]
    for i, other in enumerate(others):
        holder.token(service, "transfer", other.address, 100 * (i + 1))
    public.settle()

    report = public.clean()
    checked = {c.subject.split()[1] for c in report.checks if c.check == "holder"}
    assert checked == {a.lower() for a in [holder.address, *(o.address for o in others)]}

    # The ledger alone moves value between the last two holders: both, far beyond the first page, break.
    deposit = TOKENS[DEPOSIT_TOKEN]
    ids = [service.ledger.account(holder_account("base", deposit, o.address)).id for o in others[-2:]]
    (result,) = service.ledger.create_transfers([TransferSpec(ids[0], ids[1], 7, id="wrong-booking", code="test")])
    assert result.ok
    broken = reconcile(public.ctx).breaks
    assert sorted(b.subject for b in broken) == sorted(f"USDD {o.address.lower()} on base" for o in others[-2:])
