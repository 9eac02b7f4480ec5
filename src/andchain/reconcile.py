"""`andchain reconcile`: prove that the ledger, every chain (and later every custodian) agree.

Checks, each reported with what was expected and what was found:
- ledger: debits == credits per asset; every cached balance equals the one derived
  from the transfers; every flagged account within its bound;
- for every network with a bank token: on-chain totalSupply == the ledger's mirror of
  all holders, give or take what operations have moved on chain but not yet booked
  (shown as in flight, not as a break);
- every holder's on-chain balance == its ledger mirror (same allowance for in-flight ops);
- no operation unfinished beyond its bound.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from andchain.chains.rpc import NodeUnreachable
from andchain.context import Context
from andchain.money import format_minor
from andchain.ops import OpStatus
from andchain.tokens.model import TOKENS, holders_prefix
from andchain.tokens.service import TOKEN_ABI, TokenService

STUCK_AFTER_S = 600.0


@dataclass
class Check:
    check: str
    subject: str
    expected: str
    found: str
    ok: bool


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    in_flight: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)  # worth an operator's look, not a break

    @property
    def breaks(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.breaks,
            "breaks": [asdict(c) for c in self.breaks],
            "checks": [asdict(c) for c in self.checks],
            "in_flight": self.in_flight,
        }


def _in_flight(service: TokenService) -> tuple[dict[tuple[str, str], int], list[dict[str, Any]]]:
    """What unfinished operations changed on chain but not yet in the ledger, per (network, holder).

    A mint mined but not yet posted has raised supply ahead of the ledger; a move's burn
    has lowered the source ahead of it, its mint raised the destination, and a
    compensating mint restored the source.
    """
    effect: dict[tuple[str, str], int] = {}
    listed = []

    def add(network: str, holder: str, amount: int) -> None:
        key = (network, holder.lower())
        effect[key] = effect.get(key, 0) + amount

    for status in (OpStatus.RECEIVED, OpStatus.SUBMITTED, OpStatus.CONFIRMING):
        for op in service.ops.list(status=status.value, limit=100_000):
            p = op.payload
            listed.append(
                {
                    "operation": op.id,
                    "kind": op.kind,
                    "status": op.status.value,
                    "network": op.network,
                    "amount": p.get("amount"),
                    **({"from": p["source"], "to": p["destination"]} if op.kind == "move" else {}),
                }
            )
            done = {d.get("step") for d in op.state.get("done", [])}
            if op.kind == "mint" and "mint" in done:
                add(p["network"], p["holder"], p["amount"])
            elif op.kind == "move":
                if "burn" in done:
                    add(p["source"], p["from"], -p["amount"])
                if "remint" in done:
                    add(p["source"], p["from"], p["amount"])
                if "mint" in done:
                    add(p["destination"], p["to"], p["amount"])
    return effect, listed


def _gas_alerts(ctx: Context, service: TokenService) -> list[str]:
    """Bank signers on paid networks whose gas balance is below the network's alert threshold."""
    alerts = []
    for name, network in ctx.settings.networks.items():
        if network.gas_policy == "zero" or not ctx.chain(name).deployment("deposit_token", required=False):
            continue
        for role in ("minter", "compliance", "admin"):
            address = service.bank(role)
            try:
                balance = ctx.chain(name).balance(address)
            except NodeUnreachable:
                continue
            if balance < network.gas_alert_below_wei:
                alerts.append(
                    f"gas wallet low on {name}: bank {role} {address} holds {balance} wei, "
                    f"below {network.gas_alert_below_wei}"
                )
    return alerts


def reconcile(ctx: Context, *, stuck_after_s: float = STUCK_AFTER_S) -> Report:
    report = Report()
    breaks = ctx.ledger.verify()
    report.checks.append(
        Check(
            "ledger",
            "debits == credits per asset; balances derive from transfers",
            "no break",
            "; ".join(breaks) or "no break",
            not breaks,
        )
    )
    service = TokenService(ctx)
    effects, listed = _in_flight(service)
    report.in_flight.extend(listed)
    total_supply = total_booked = 0
    for name in ctx.settings.networks:
        chain = ctx.chain(name)
        for token in TOKENS.values():
            address = chain.deployment(token.deployment, required=False)
            if not address:
                continue
            mirrors = ctx.ledger.list_accounts(prefix=holders_prefix(name, token), limit=100_000)
            try:
                supply = chain.read(address, TOKEN_ABI, "totalSupply")
                balances = (
                    chain.read_many(address, TOKEN_ABI, [("balanceOf", (m.name.rsplit(":", 1)[1],)) for m in mirrors])
                    if mirrors
                    else []
                )
            except NodeUnreachable as exc:
                report.checks.append(Check("chain", f"{name}", "node answers", exc.message, False))
                continue
            deposit = token.deployment == "deposit_token"
            effect = {h: v for (n, h), v in effects.items() if n == name} if deposit else {}
            booked = sum(m.balance_posted for m in mirrors)
            in_flight = sum(effect.values())
            if deposit:
                total_supply += supply
                total_booked += booked + in_flight
            scale = token.decimals

            def fmt(value: int, symbol: str = token.symbol, decimals: int = scale) -> str:
                return f"{format_minor(value, decimals)} {symbol}"

            report.checks.append(
                Check(
                    "supply",
                    f"{token.symbol} on {name}",
                    f"ledger {fmt(booked)}" + (f" + in flight {fmt(in_flight)}" if in_flight else ""),
                    f"totalSupply {fmt(supply)}",
                    supply == booked + in_flight,
                )
            )
            for mirror, on_chain in zip(mirrors, balances, strict=True):
                holder = mirror.name.rsplit(":", 1)[1]
                want = mirror.balance_posted + effect.get(holder, 0)
                if on_chain != want or mirror.balance_posted:
                    report.checks.append(
                        Check(
                            "holder",
                            f"{token.symbol} {holder} on {name}",
                            f"ledger {fmt(want)}",
                            f"chain {fmt(on_chain)}",
                            on_chain == want,
                        )
                    )
    report.alerts.extend(_gas_alerts(ctx, service))
    if total_supply or total_booked:
        report.checks.append(
            Check(
                "total",
                "USDD over every network",
                f"ledger {format_minor(total_booked, 2)} USDD",
                f"sum of supplies {format_minor(total_supply, 2)} USDD",
                total_supply == total_booked,
            )
        )
    for op in service.ops.stuck(stuck_after_s):
        report.checks.append(
            Check(
                "operation",
                f"{op.kind} {op.id}",
                f"finished within {stuck_after_s:g}s",
                f"{op.status.value} since {op.created_at_us}",
                False,
            )
        )
    return report
