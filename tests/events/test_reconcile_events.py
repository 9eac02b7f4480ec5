"""Reconcile's breaks and alerts become events when they appear, change or end, never once per run."""

from __future__ import annotations

from andchain.events import EventLog
from andchain.reconcile import Check, Report, publish


def supply_break(block: int, found: str = "totalSupply 90.00 USDD") -> Check:
    return Check("supply", f"USDD on internal (block {block})", "ledger 100.00 USDD", found, False, network="internal")


def run(engine, clock, *checks: Check, alerts: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """One reconcile run's report published; the events it emitted, as (type, subject)."""
    log = EventLog(engine)
    before = log.head()
    publish(engine, Report(checks=list(checks), alerts=list(alerts)), clock)
    clock.advance(60)
    return [(e.type, e.subject) for e in log.read(after=before).events]


def test_a_standing_break_is_emitted_once_then_when_it_changes_then_when_it_ends(engine, clock):
    ok = Check("ledger", "debits == credits per asset", "no break", "no break", True)
    assert run(engine, clock, ok, supply_break(100)) == [("reconcile.break", "supply: USDD on internal")]
    # The same break, read at a later block: not new.
    assert run(engine, clock, ok, supply_break(101)) == []
    assert run(engine, clock, ok, supply_break(102)) == []
    # What it says changed: emitted again, with the new figures.
    assert run(engine, clock, ok, supply_break(103, "totalSupply 80.00 USDD")) == [
        ("reconcile.break", "supply: USDD on internal")
    ]
    changed = EventLog(engine).read(types=None).events[-1]
    assert changed.payload["found"] == "totalSupply 80.00 USDD" and changed.client_id is None
    # Gone: its end is an event, and it is forgotten (should it come back, it is new again).
    assert run(engine, clock, ok) == [("reconcile.resolved", "supply: USDD on internal")]
    assert run(engine, clock, ok) == []
    assert run(engine, clock, supply_break(200)) == [("reconcile.break", "supply: USDD on internal")]


def test_a_network_that_cannot_be_read_keeps_its_breaks_standing(engine, clock):
    assert run(engine, clock, supply_break(100)) == [("reconcile.break", "supply: USDD on internal")]
    down = Check("chain", "internal", "the node answers", "NodeUnreachable: refused", False, network="internal")
    # The supply was not checked this time: not seeing the break is not seeing it resolved.
    assert run(engine, clock, down) == [("reconcile.break", "chain: internal")]
    assert run(engine, clock, supply_break(150)) == [("reconcile.resolved", "chain: internal")]


def test_an_alert_is_emitted_when_it_appears_not_each_time_its_figures_move(engine, clock):
    def lag(blocks: int, block: int) -> str:
        return f"the ledger follows internal up to block {block}, {blocks} final blocks behind the chain"

    assert [t for t, _ in run(engine, clock, alerts=(lag(25, 1000),))] == ["alert"]
    assert run(engine, clock, alerts=(lag(40, 1001),)) == []
    alert = EventLog(engine).read().events[0]
    assert alert.payload == {"message": lag(25, 1000)}
    assert [t for t, _ in run(engine, clock)] == ["alert.cleared"]
