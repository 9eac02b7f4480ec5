"""Reconcile the ledger's custody positions with what every custodian reports.

For each custodian where the bank has opened an account, each account's reported total per asset
is compared with the owner's position in the ledger. What is in flight explains a difference and
is shown, never hidden: a withdrawal or internal transfer out whose hold is not posted yet (the
custodian may already have moved it), a transfer in not posted yet, a deposit the custodian
completed that the bank has not credited yet. So the check is

    posted - pending out  <=  reported total  <=  posted + pending in + deposits arriving

and exact when nothing is in flight. A custodian that does not answer is a break: nothing can be
proven about it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from andchain.custody.port import DESK, CustodianUnavailable
from andchain.custody.service import CustodyService
from andchain.errors import DomainError
from andchain.money import format_minor


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
            arriving: dict[tuple[str, str], int] = defaultdict(int)
            for deposit in service.unbooked_deposits(name):
                if deposit.destination is not None and deposit.destination.account_id:
                    arriving[(deposit.destination.account_id, deposit.asset)] += deposit.amount_minor
                    entry["arriving"].append(
                        {"transfer_id": deposit.id, "asset": deposit.asset, "amount_minor": str(deposit.amount_minor)}
                    )
            positions = {(p.owner, p.asset): p for p in service.positions(custodian=name)}
            for record in records:
                reported = {b.asset: b for b in port.balances(record.account_id)}
                assets = sorted(set(reported) | {asset for owner, asset in positions if owner == record.owner})
                for asset in assets:
                    scale = service.scale(asset)
                    position = positions.get((record.owner, asset))
                    posted = position.balance_minor if position else 0
                    out = position.pending_out_minor if position else 0
                    into = (position.pending_in_minor if position else 0) + arriving[(record.account_id, asset)]
                    total = reported[asset].total_minor if asset in reported else 0
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
        except (CustodianUnavailable, DomainError) as exc:
            entry["ok"] = False
            entry["error"] = exc.message
            findings.append(Finding(f"{name}", "the custodian's balances", f"not read: {exc.message}", False))
    return section, findings
