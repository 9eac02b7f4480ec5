"""`andchain reconcile`: prove that the ledger, every chain and every custodian agree.

Checks, each reported with what was expected and what was found:
- ledger: debits == credits per asset; every cached balance equals the one derived
  from the transfers; every flagged account within its bound;
- for every network with a bank token, and every token there: on-chain totalSupply ==
  the ledger's mirror of all its holders, and each holder's balance == its mirror,
  give or take what operations did on chain that the ledger does not hold yet (or
  holds already while the chain does not), shown as in flight, not as a break;
- per token, the sum of supplies over every network == what the ledger owes;
- per custodian where the bank has accounts, each account's reported balances == the owners'
  positions, give or take what is in flight (andchain.custody.reconcile);
- no operation active beyond its bound, none waiting for an operator (needs_attention).

The chain is read at one block per network: the last block both final and delivered
by the network's listener, so that events not yet delivered are not mistaken for
breaks. Nothing is capped: holders and operations are read page by page. A node that
does not answer is a break (nothing can be proven about it), never skipped.

Each run emits its findings as events (`reconcile.break`, `alert`), but only those that
are new or changed since the last run, and their end (`reconcile.resolved`,
`alert.cleared`) when they are no longer reported: see andchain.events.standing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from andchain.chains import schema as chain_schema
from andchain.chains.client import ChainClient, TxReverted
from andchain.chains.rpc import NodeUnreachable, RpcError
from andchain.context import Context
from andchain.db import write_transaction
from andchain.errors import DomainError
from andchain.events import standing
from andchain.ledger.model import Clock
from andchain.money import DEFAULT_ASSETS, AssetRegistry, format_minor
from andchain.ops import OpStatus, journal
from andchain.ops.journal import TxRecord
from andchain.ops.worker import worker_status
from andchain.tokens.booking import TOKEN_ABI, event_transfer_id
from andchain.tokens.model import DEPOSIT_TOKEN, FUND_SHARE, TOKENS, TokenDef, holders_prefix
from andchain.tokens.service import TokenService

log = logging.getLogger(__name__)

PAGE = 1000
READ_BATCH = 500
EVENT_ORDINALS_MAX = 8
LAG_ALERT_BLOCKS = 20


@dataclass
class Check:
    check: str
    subject: str
    expected: str
    found: str
    ok: bool
    network: str | None = None  # the network it concerns, if any


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    in_flight: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)  # worth an operator's look, not a break
    custodians: dict[str, Any] = field(default_factory=dict)  # per custodian: its accounts compared

    @property
    def breaks(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.breaks,
            "breaks": [asdict(c) for c in self.breaks],
            "checks": [asdict(c) for c in self.checks],
            "in_flight": self.in_flight,
            "alerts": self.alerts,
            "custodians": self.custodians,
        }


def _fmt(value: int, token: TokenDef) -> str:
    return f"{format_minor(value, token.decimals)} {token.symbol}"


_BUILT_IN = AssetRegistry(DEFAULT_ASSETS)


def operation_amounts(kind: str, payload: dict[str, Any]) -> dict[str, str]:
    """What an operation moves, per token, in the token's own units (fund shares have 6 decimals, not 2)."""
    if kind in ("custody_withdrawal", "custody_transfer", "stablecoin_convert"):
        asset = str(payload.get("coin") or payload.get("asset") or "")
        amount = payload.get("coin_amount", payload.get("amount"))
        try:
            scale = _BUILT_IN.get(asset).scale
        except DomainError:
            return {}
        return {asset: format_minor(amount, scale)} if isinstance(amount, int) else {}
    if kind == "dvp":
        legs = [(TOKENS[DEPOSIT_TOKEN], payload.get("cash")), (TOKENS[FUND_SHARE], payload.get("shares"))]
    else:
        default = FUND_SHARE if kind == "issue_shares" else DEPOSIT_TOKEN
        legs = [(TOKENS.get(str(payload.get("token", default)), TOKENS[default]), payload.get("amount"))]
    return {token.symbol: format_minor(value, token.decimals) for token, value in legs if isinstance(value, int)}


class _Reconciler:
    def __init__(self, ctx: Context, service: TokenService) -> None:
        self.ctx = ctx
        self.service = service
        self.ops = service.ops
        self.actions = {kind: action for action in service.actions() for kind in action.kinds}
        self.unfinished = {op.id: op for op in self.ops.unfinished()}
        self._ops: dict[str, Any] = dict(self.unfinished)
        self.report = Report()
        self.totals: dict[str, list[int]] = {}  # symbol -> [sum of supplies, ledger + in flight]

    def op(self, op_id: str) -> Any:
        if op_id not in self._ops:
            self._ops[op_id] = self.ops.get(op_id)
        return self._ops[op_id]

    # ------------------------------------------------------------- in flight

    def _booked_from_events(self, chain_id: int, tx_hash: str) -> bool:
        ids = [event_transfer_id(chain_id, tx_hash, i) for i in range(EVENT_ORDINALS_MAX)]
        return bool(self.ctx.ledger.lookup_transfers(ids))

    def effects(self, chain: ChainClient, at_block: int) -> dict[tuple[str, str], int]:
        """Per (token deployment, holder): what the chain at `at_block` holds that the ledger does not."""
        rows = self._journal_rows(chain.name, at_block)
        signed = [r for r in rows if r.status == TxRecord.SIGNED]
        mined = chain.receipts([r.hash for r in signed]) if signed else {}
        out: dict[tuple[str, str], int] = {}
        for row in rows:
            op = self.op(row.op_id)
            action = self.actions.get(op.kind)
            if action is None:
                continue
            changes = [e for e in action.effects(op, row.step) if e[0] == chain.name]
            if not changes:
                continue
            if row.status == TxRecord.SIGNED:
                receipt = mined.get(row.hash)
                on_chain = receipt is not None and receipt.status and receipt.block_number <= at_block
            else:
                on_chain = row.status == TxRecord.FINAL and (row.block_number or 0) <= at_block
            if action.event_booked:
                in_ledger = self._booked_from_events(chain.chain_id, row.hash)
            else:
                in_ledger = action.booked(op, row.step)
            factor = int(bool(on_chain)) - int(bool(in_ledger))
            if not factor:
                continue
            for _, deployment, holder, delta in changes:
                key = (deployment, holder.lower())
                out[key] = out.get(key, 0) + factor * delta
        return out

    def _journal_rows(self, network: str, at_block: int) -> list[journal.JournalEntry]:
        t = journal.T
        wanted = (t.c.status == TxRecord.DROPPED.value) | (
            (t.c.status == TxRecord.FINAL.value) & (t.c.block_number > at_block)
        )
        with self.ctx.engine.connect() as conn:
            rows = [journal.entry_of(r) for r in conn.execute(select(t).where(t.c.network == network, wanted))]
            ids = sorted(self.unfinished)
            for start in range(0, len(ids), PAGE):
                chunk = ids[start : start + PAGE]
                rows += [
                    journal.entry_of(r)
                    for r in conn.execute(
                        select(t).where(
                            t.c.network == network,
                            t.c.op_id.in_(chunk),
                            t.c.status.in_([TxRecord.SIGNED.value, TxRecord.FINAL.value]),
                        )
                    )
                ]
        unique = {r.hash: r for r in rows}
        return list(unique.values())

    # ---------------------------------------------------------------- chains

    def read_block(self, chain: ChainClient) -> int:
        """The last block that is final and delivered by the network's listener."""
        final = chain.block_number() - chain.network.confirmations + 1
        c = chain_schema.checkpoints
        with self.ctx.engine.connect() as conn:
            delivered = conn.execute(
                select(c.c.block_number).where(c.c.listener == f"tokens:{chain.name}", c.c.chain_id == chain.chain_id)
            ).scalar()
        if delivered is not None and final - int(delivered) > LAG_ALERT_BLOCKS:
            self.report.alerts.append(
                f"the ledger follows {chain.name} up to block {delivered}, {final - int(delivered)} final blocks "
                "behind the chain: is a worker running? (checked at the ledger's block)"
            )
        return max(0, final if delivered is None else min(final, int(delivered)))

    def mirrors(self, network: str, token: TokenDef) -> Iterable[Any]:
        after = 0
        while True:
            page = self.ctx.ledger.list_accounts(prefix=holders_prefix(network, token), after_id=after, limit=PAGE)
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1].id

    def _read(
        self, chain: ChainClient, name: str, deployed: dict[str, str | None], at: int
    ) -> list[tuple[TokenDef, list[Any], int, list[int]]]:
        readings = []
        for token in TOKENS.values():
            address = deployed[token.deployment]
            if not address:
                continue
            mirrors = list(self.mirrors(name, token))
            supply = chain.read(address, TOKEN_ABI, "totalSupply", block=at)
            balances: list[int] = []
            for start in range(0, len(mirrors), READ_BATCH):
                chunk = mirrors[start : start + READ_BATCH]
                balances += chain.read_many(
                    address, TOKEN_ABI, [("balanceOf", (m.name.rsplit(":", 1)[1],)) for m in chunk], block=at
                )
            readings.append((token, mirrors, supply, balances))
        return readings

    def network(self, name: str) -> None:
        chain = self.ctx.chain(name)
        deployed = {token.deployment: chain.deployment(token.deployment, required=False) for token in TOKENS.values()}
        if not any(deployed.values()):
            return
        try:
            at = self.read_block(chain)
            head = chain.block_number()
            final = head - chain.network.confirmations + 1
            # A node that keeps no state that old (a pruned node, a development node restarted from its
            # dump) is read at the newest state it has; events the listener has not delivered yet would
            # then show as breaks until it has.
            tried = []
            for block in dict.fromkeys([at, max(at, final), max(at, head)]):
                try:
                    readings = self._read(chain, name, deployed, block)
                except (TxReverted, RpcError) as exc:
                    tried.append(f"{block}: {getattr(exc, 'message', exc)}")
                    continue
                if block != at:
                    self.report.alerts.append(f"{name}: no state at block {at}; read at block {block}")
                at = block
                break
            else:
                raise DomainError(f"no state readable at blocks {'; '.join(tried)}", code="state_unavailable")
            effects = self.effects(chain, at)
        except (NodeUnreachable, RpcError, DomainError) as exc:
            self.report.checks.append(
                Check(
                    "chain",
                    name,
                    "the node answers",
                    f"{type(exc).__name__}: {getattr(exc, 'message', exc)}",
                    False,
                    network=name,
                )
            )
            return
        for token, mirrors, supply, balances in readings:
            effect = {h: v for (d, h), v in effects.items() if d == token.deployment}
            booked = sum(m.balance_posted for m in mirrors)
            in_flight = sum(effect.values())
            total = self.totals.setdefault(token.symbol, [0, 0])
            total[0] += supply
            total[1] += booked + in_flight
            self.report.checks.append(
                Check(
                    "supply",
                    f"{token.symbol} on {name} (block {at})",
                    f"ledger {_fmt(booked, token)}" + (f" + in flight {_fmt(in_flight, token)}" if in_flight else ""),
                    f"totalSupply {_fmt(supply, token)}",
                    supply == booked + in_flight,
                    network=name,
                )
            )
            for mirror, on_chain in zip(mirrors, balances, strict=True):
                holder = mirror.name.rsplit(":", 1)[1]
                want = mirror.balance_posted + effect.get(holder, 0)
                if on_chain != want or mirror.balance_posted or on_chain:
                    self.report.checks.append(
                        Check(
                            "holder",
                            f"{token.symbol} {holder} on {name}",
                            f"ledger {_fmt(want, token)}",
                            f"chain {_fmt(on_chain, token)}",
                            on_chain == want,
                            network=name,
                        )
                    )

    # ------------------------------------------------------------ operations

    def operations(self) -> None:
        stuck_after_s = self.ctx.settings.ops.stuck_after_s
        for op in self.unfinished.values():
            p = op.payload
            self.report.in_flight.append(
                {
                    "operation": op.id,
                    "kind": op.kind,
                    "status": op.status.value,
                    "network": op.network,
                    "amount": p.get("amount", p.get("cash")),
                    "amounts": operation_amounts(op.kind, p),
                    **({"from": p["source"], "to": p["destination"]} if op.kind == "move" else {}),
                    **({"error": op.error_code, "reason": op.error_message} if op.error_code else {}),
                }
            )
            if op.status == OpStatus.NEEDS_ATTENTION:
                self.report.checks.append(
                    Check(
                        "operation",
                        f"{op.kind} {op.id}",
                        "finished, or on its way",
                        f"needs attention ({op.error_code}): {op.error_message}; "
                        f"`andchain ops retry {op.id}` resumes it",
                        False,
                    )
                )
        for op in self.ops.stuck(stuck_after_s):
            self.report.checks.append(
                Check(
                    "operation",
                    f"{op.kind} {op.id}",
                    f"finished within {stuck_after_s:g}s",
                    f"{op.status.value} since {op.created_at_us}",
                    False,
                )
            )
        for row in journal.dropped(self.ctx.engine):
            op = self.op(row.op_id)
            self.report.alerts.append(
                f"finality violation on {row.network}: {op.kind} {op.id} step {row.step} ({row.hash}) left the chain "
                "after it was final; its same bytes are being sent again"
            )
            self.report.in_flight.append(
                {"operation": op.id, "kind": op.kind, "status": "resending", "network": row.network, "tx": row.hash}
            )

    def custodians(self) -> None:
        """Every custodian where the bank has accounts: its reported balances against the ledger."""
        from andchain.custody.reconcile import reconcile_custodians
        from andchain.custody.service import CustodyService

        section, found = reconcile_custodians(CustodyService(self.ctx, tokens=self.service))
        self.report.custodians = section
        for f in found:
            self.report.checks.append(Check("custodian", f.subject, f.expected, f.found, f.ok))

    def gas_alerts(self) -> None:
        """Bank signers on paid networks whose gas balance is below the network's alert threshold."""
        for name, network in self.ctx.settings.networks.items():
            if network.gas_policy == "zero" or not self.ctx.chain(name).deployment("deposit_token", required=False):
                continue
            for role in ("minter", "compliance", "admin"):
                address = self.service.bank(role)
                try:
                    balance = self.ctx.chain(name).balance(address)
                except (NodeUnreachable, RpcError) as exc:
                    self.report.alerts.append(f"gas wallet of bank {role} on {name} not read: {exc.message}")
                    continue
                if balance < network.gas_alert_below_wei:
                    self.report.alerts.append(
                        f"gas wallet low on {name}: bank {role} {address} holds {balance} wei, "
                        f"below {network.gas_alert_below_wei}"
                    )

    def worker_alerts(self) -> None:
        workers = worker_status(self.ops, self.ctx.settings.ops.worker_stale_after_s)
        if workers and not any(w["alive"] for w in workers) and self.unfinished:
            last = min(w["last_beat_s_ago"] for w in workers)
            self.report.alerts.append(
                f"no worker is running (the last one was seen {last:.0f}s ago) while "
                f"{len(self.unfinished)} operation(s) are unfinished: start `andchain worker`"
            )
        for worker in workers:
            if not worker["alive"]:
                continue
            for part, state in (worker.get("parts") or {}).items():
                if not state.get("ok", True):
                    self.report.alerts.append(f"worker {worker['owner']}: {part} failing: {state.get('last_error')}")


def reconcile(ctx: Context) -> Report:
    service = TokenService(ctx)
    r = _Reconciler(ctx, service)
    breaks = ctx.ledger.verify()
    r.report.checks.append(
        Check(
            "ledger",
            "debits == credits per asset; balances derive from transfers",
            "no break",
            "; ".join(breaks) or "no break",
            not breaks,
        )
    )
    for name, network in ctx.settings.networks.items():
        if network.enabled or ctx.chain(name).deployment("deposit_token", required=False):
            r.network(name)
    for symbol, (supply, owed) in r.totals.items():
        token = next(t for t in TOKENS.values() if t.symbol == symbol)
        r.report.checks.append(
            Check(
                "total",
                f"{symbol} over every network",
                f"ledger {_fmt(owed, token)}",
                f"sum of supplies {_fmt(supply, token)}",
                supply == owed,
            )
        )
    r.custodians()
    r.operations()
    r.gas_alerts()
    r.worker_alerts()
    publish(ctx.engine, r.report, ctx.clock)
    return r.report


# A check's subject names the block it was read at; the same break at the next block is the same break.
_AT_BLOCK = re.compile(r"\s*\(block \d+\)")
# Standalone figures in an alert (blocks behind, seconds ago, a balance) change from run to run.
_FIGURE = re.compile(r"\b\d+(\.\d+)?\b")


def findings(report: Report) -> list[standing.Finding]:
    """The report's breaks and alerts as standing findings (see andchain.events.standing)."""
    found = []
    for check in report.breaks:
        subject = _AT_BLOCK.sub("", check.subject)
        found.append(
            standing.Finding(
                "reconcile.break",
                identity=f"{check.check}\x00{subject}",
                content=f"{check.expected}\x00{check.found}",
                subject=f"{check.check}: {subject}",
                payload={
                    "check": check.check,
                    "subject": check.subject,
                    "expected": check.expected,
                    "found": check.found,
                    "network": check.network,
                },
                scope=check.network or "",
            )
        )
    for alert in dict.fromkeys(report.alerts):
        general = _FIGURE.sub("#", alert)
        found.append(
            standing.Finding(
                "alert", identity=general, content=general, subject=general[:300], payload={"message": alert}
            )
        )
    return found


def publish(engine: Engine, report: Report, clock: Clock) -> int:
    """Emit the report's new, changed and resolved findings as events; how many.

    A network whose node did not answer keeps its standing breaks (they were not checked).
    Two runs at once on PostgreSQL may both see a finding as new: the second to commit meets
    the first's record and runs again, and then sees nothing new.
    """
    unread = {c.network for c in report.checks if c.check == "chain" and not c.ok and c.network}
    items = findings(report)
    for attempt in range(2):
        try:
            with write_transaction(engine) as conn:
                return standing.sync(conn, items, clock(), unread=unread)
        except IntegrityError:
            if attempt:
                raise
            log.info("reconcile findings recorded concurrently; comparing again")
    return 0
