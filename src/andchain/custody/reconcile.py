"""Reconcile the ledger's custody positions with what every custodian reports.

For each custodian where the bank has opened an account, each account's reported total per asset
is compared with the owner's position in the ledger. What is in flight explains a difference and
is shown, never hidden: a withdrawal or internal transfer out whose hold is not posted yet (the
custodian may already have moved it), a transfer in not posted yet, a deposit the custodian
shows that the bank has not credited yet (confirming, or complete and not yet taken in). So the
check is

    posted - pending out  <=  reported total  <=  posted + pending in + deposits arriving

and exact when nothing is in flight. A custodian that does not answer is a break: nothing can be
proven about it. So is a transfer the custodian sent or completed for an operation that ended
failed (its holds released while value left).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from andchain.custody.port import DESK
from andchain.custody.service import CustodyService
from andchain.money import format_minor
from andchain.ops.worker import database_away

log = logging.getLogger(__name__)


@dataclass
class Finding:
    subject: str
    expected: str
    found: str
    ok: bool


def reconcile_custodians(service: CustodyService) -> tuple[dict[str, Any], list[Finding]]:
    """One entry per custodian (`reconcile --json`'s `custodians`) and the checks behind them."""
    section: dict[str, Any] = {}
    findings: list[Finding] = []
    for name in service.names():
        records = service.accounts(name)
        if not records:
            continue
        entry: dict[str, Any] = {"ok": True, "accounts": [], "arriving": []}
        section[name] = entry
        try:
            port = service.custodian(name)
            # The ledger first, then what is arriving: a deposit credited in between shows as a
            # passing difference, never as one counted twice (which could hide a real one).
            positions = {(p.owner, p.asset): p for p in service.positions(custodian=name)}
            arriving: dict[tuple[str, str], int] = defaultdict(int)
            for deposit in service.arriving(name):
                if deposit.destination is not None and deposit.destination.account_id:
                    arriving[(deposit.destination.account_id, deposit.asset)] += deposit.amount_minor
                    entry["arriving"].append(
                        {
                            "transfer_id": deposit.id,
                            "asset": deposit.asset,
                            "state": deposit.state.value,
                            "amount_minor": str(deposit.amount_minor),
                        }
                    )
            for record in records:
                reported: dict[str, int] = defaultdict(int)
                for balance in port.balances(record.account_id):
                    reported[balance.asset] += balance.total_minor  # one row per network: summed
                assets = sorted(set(reported) | {asset for owner, asset in positions if owner == record.owner})
                for asset in assets:
                    scale = service.scale(asset)
                    position = positions.get((record.owner, asset))
                    posted = position.balance_minor if position else 0
                    out = position.pending_out_minor if position else 0
                    into = (position.pending_in_minor if position else 0) + arriving[(record.account_id, asset)]
                    total = reported.get(asset, 0)
                    ok = posted - out <= total <= posted + into
                    entry["accounts"].append(
                        {
                            "owner": record.owner,
                            "account_id": record.account_id,
                            "asset": asset,
                            "custodian_total": format_minor(total, scale),
                            "ledger": format_minor(posted, scale),
                            "in_flight_out": format_minor(out, scale),
                            "in_flight_in": format_minor(into, scale),
                            "ok": ok,
                        }
                    )
                    who = "desk" if record.owner == DESK else f"client {record.owner}"
                    flight = (
                        f" (in flight: -{format_minor(out, scale)} +{format_minor(into, scale)})" if out or into else ""
                    )
                    findings.append(
                        Finding(
                            f"{name} {who} {asset} (account {record.account_id})",
                            f"ledger {format_minor(posted, scale)} {asset}{flight}",
                            f"custodian {format_minor(total, scale)} {asset}",
                            ok,
                        )
                    )
                    entry["ok"] = entry["ok"] and ok
            for transfer_id, op_id in service.completed_for_failed(name):
                entry["ok"] = False
                findings.append(
                    Finding(
                        f"{name} transfer {transfer_id} of operation {op_id}",
                        "no transfer out for an operation that failed (its holds were released)",
                        "the custodian reports it sent or completed",
                        False,
                    )
                )
        except Exception as exc:  # a custodian that does not answer, or answers nonsense: nothing proven
            if database_away(exc):
                raise
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            log.warning("custodian not reconciled custodian=%s: %s", name, message)
            entry["ok"] = False
            entry["error"] = message
            findings.append(Finding(f"{name}", "the custodian's balances", f"not read: {message}", False))
    return section, findings
