"""The monthly reserve attestation of the deposit token (the GENIUS Act's monthly report of reserves).

`reserve_report(ctx, "2026-01")` reads, and changes nothing:

- the tokens outstanding per network: the ledger's liability to every holder of the deposit
  token on that network (the mirror accounts `tokens:<network>:usdd:*`) at the end of the month,
  derived from the ledger's transfers up to that instant, and now; beside it the chain's own
  evidence now: the token's `totalSupply()` and the block it was read at;
- what backs them: the bank's reserve account (`bank:usd:cash`), the client deposit accounts
  (`clients:*:usd:dda`), and the coverage (reserves / tokens outstanding), at the month's end and now;
- the reconcile runs recorded in the month (andchain.reconcile_store) and their breaks;
- the redemptions requested in the month (operations of kind "redeem") and how fast they were
  paid: durations, and how many were paid within two business days;
- the seizures of the month (transfers coded "seize" into `bank:usd:seized`).

Amounts are exact: integers of minor units, shown as decimal strings (andchain.money.format_minor).
Every query is one aggregate, or pages through a bounded number of rows. A node that does not answer
is reported as such for its network (`"available": false`), never raised.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, select, tuple_

from andchain import reconcile_store
from andchain.chains import schema as chain_schema
from andchain.chains.client import ChainClient
from andchain.chains.rpc import NodeUnreachable
from andchain.context import Context
from andchain.db import decode_amount, exact_sum
from andchain.errors import DomainError, InvariantBroken
from andchain.events.store import iso
from andchain.ledger import schema as ledger_schema
from andchain.ledger.model import TransferFlags
from andchain.ledger.rules import SEIZE_CODE
from andchain.money import format_minor
from andchain.ops import OpStatus
from andchain.ops import schema as ops_schema
from andchain.ops.core import UNFINISHED
from andchain.tokens.booking import TOKEN_ABI
from andchain.tokens.model import BANK_CASH, BANK_SEIZED, DEPOSIT_TOKEN, TOKENS, holders_prefix
from andchain.tokens.service import TokenService

TOKEN = TOKENS[DEPOSIT_TOKEN]
SCALE = TOKEN.asset.scale
DAY_US = 86_400 * 1_000_000
BUSINESS_DAYS_MAX = 2  # the redemption timeliness the GENIUS Act's rules propose
COVERAGE_DECIMALS = 6
PAGE = 1000
REDEMPTIONS_MAX = 5_000_000  # a month with more is refused rather than reported in part
BREAK_SUBJECTS_MAX = 20
REDEEM_CODE = "redeem"  # the code of a redemption's posted transfer (ops.holds and the listener alike)
MINT_CODE = "mint"
DDA_PATTERN = "clients:%:usd:dda"
_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])", re.ASCII)
_NOT_POSTED = int(TransferFlags.PENDING) | int(TransferFlags.VOID_PENDING)

BASIS = (
    "A client's dollars are booked as a deposit: the bank's reserve account bank:usd:cash (an asset) is "
    "debited and the client's deposit account clients:<id>:usd:dda (a liability) credited. A mint moves "
    "that liability, not the cash: the client's deposit account is debited and the mirror of the holder's "
    "token balance tokens:<network>:usdd:<address> (a liability) credited, reserved when the mint is "
    "requested and posted when it is final on chain (a mint the chain refuses is voided). A redemption "
    "moves it back when the burn is final, and a seizure moves it to bank:usd:seized. So every token "
    "outstanding is a deposit liability of the bank, one US dollar for each USDD, and the cash "
    "that came in with the deposit stays in bank:usd:cash. That account backs all of the bank's USD "
    "liabilities together (client deposits, tokens, suspense, seized funds): 'coverage' compares all of it "
    "with the tokens alone; 'coverage_after_client_deposits' first sets aside what the client deposit "
    "accounts are owed, the stricter view. The figures are the ledger's: that bank:usd:cash matches the "
    "bank's actual reserve holdings (central bank balances, Treasury bills) is attested outside the ledger."
)
NOTES = (
    "Balances at the month's end are the sums of the transfers posted before that instant: a transfer "
    "counts from the moment it is posted; a pending reservation (a mint not yet final on chain, a "
    "redemption not yet burned) is not counted, so the ledger's figure is what the chain holds as final.",
    "Now, the chain's totalSupply is read at the last block both final and delivered to the ledger by the "
    "network's listener (as andchain reconcile does); an operation in flight may differ from the ledger for "
    "a moment, which reconcile shows as in flight, not as a break.",
    "Coverage is rounded down (never overstated) to 6 decimal places, and null when no token is outstanding.",
    "Business days are Monday to Friday in UTC, weekends excluded; public holidays are not known to andchain "
    "and count as business days. A redemption's duration runs from its request to its operation's success.",
    "Percentiles are nearest-rank over the redemptions that succeeded, without interpolation.",
)


@dataclass(frozen=True)
class Period:
    month: str
    start_us: int
    end_us: int  # exclusive: the first instant of the next month
    now_us: int

    @property
    def as_of_us(self) -> int:
        """The instant the month-end figures are read at: the month's end, or now for the current month."""
        return min(self.end_us, self.now_us)


def _us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def period_of(month: object, now_us: int) -> Period:
    """The month `YYYY-MM` as a half-open UTC interval; a bad string or a month not begun yet is refused."""
    found = _MONTH.fullmatch(month) if isinstance(month, str) else None
    if found is None:
        raise DomainError(f"month must be written YYYY-MM (e.g. 2026-01), was {month!r}", code="invalid_request")
    year, number = int(found.group(1)), int(found.group(2))
    if year < 1970:
        raise DomainError(f"month must be 1970-01 or later, was {month!r}", code="invalid_request")
    start = _us(datetime(year, number, 1, tzinfo=UTC))
    end = _us(datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC))
    if start > now_us:
        raise DomainError(
            f"month {month} has not begun yet (now is {iso(now_us)[:7]}): nothing can be attested for it",
            code="invalid_request",
        )
    return Period(str(month), start, end, now_us)


# ----------------------------------------------------------------------------- arithmetic


def business_us(start_us: int, end_us: int) -> int:
    """The time between two instants that falls on Monday to Friday (UTC), exactly, in microseconds."""
    return _business_since_a_monday(end_us) - _business_since_a_monday(start_us)


def _business_since_a_monday(at_us: int) -> int:
    days, into_day_us = divmod(at_us, DAY_US)
    # 1970-01-01 was a Thursday: day 0 is 3 days after the Monday that began its week.
    weeks, weekday = divmod(days + 3, 7)
    return weeks * 5 * DAY_US + min(weekday, 5) * DAY_US + (into_day_us if weekday < 5 else 0)


def nearest_rank(sorted_values: list[int], percent: int) -> int:
    """The nearest-rank percentile of sorted values (one of the values, never an interpolation)."""
    if not sorted_values or not 0 < percent <= 100:
        raise ValueError(f"a percentile needs values and 0 < percent <= 100, was {len(sorted_values)}, {percent}")
    rank = -(-percent * len(sorted_values) // 100)
    return sorted_values[rank - 1]


def coverage(reserves_minor: int, outstanding_minor: int) -> str | None:
    """reserves / outstanding, rounded down to COVERAGE_DECIMALS places; None when nothing is outstanding."""
    if outstanding_minor <= 0:
        return None
    return format_minor(reserves_minor * 10**COVERAGE_DECIMALS // outstanding_minor, COVERAGE_DECIMALS)


def _money(minor: int) -> str:
    return format_minor(minor, SCALE)


def _sum(row: Any) -> int:
    return decode_amount(row)


# ----------------------------------------------------------------------------- ledger reads

_a = ledger_schema.accounts
_t = ledger_schema.transfers


def _mirrors(network: str | None) -> ColumnElement[bool]:
    """The mirror accounts of the deposit token on one network, or on every network."""
    if network is None:
        return and_(_a.c.name.like(f"tokens:%:{TOKEN.symbol.lower()}:%"), _a.c.asset == TOKEN.asset.code)
    return and_(_a.c.name.startswith(holders_prefix(network, TOKEN), autoescape=True), _a.c.asset == TOKEN.asset.code)


def _ddas() -> ColumnElement[bool]:
    return and_(_a.c.name.like(DDA_PATTERN), _a.c.asset == TOKEN.asset.code)


def _cash() -> ColumnElement[bool]:
    return _a.c.name == BANK_CASH


def _posted() -> ColumnElement[bool]:
    return _t.c.flags.op("&")(_NOT_POSTED) == 0


def credit_balance_at(conn: Connection, accounts: ColumnElement[bool], before_us: int) -> int:
    """Credits minus debits posted to the matching accounts by transfers created before `before_us`."""
    sides = []
    for column in (_t.c.credit_account_id, _t.c.debit_account_id):
        query = (
            select(exact_sum(_t.c.amount))
            .select_from(_t.join(_a, _a.c.id == column))
            .where(accounts, _posted(), _t.c.created_at_us < before_us)
        )
        sides.append(_sum(conn.execute(query).scalar()))
    return sides[0] - sides[1]


@dataclass(frozen=True)
class Balances:
    credits_posted: int
    debits_posted: int
    credits_pending: int
    debits_pending: int
    accounts: int

    @property
    def credit_balance(self) -> int:
        return self.credits_posted - self.debits_posted


def balances_now(conn: Connection, accounts: ColumnElement[bool]) -> Balances:
    """The matching accounts' cached balances, summed (the ledger keeps them equal to their transfers)."""
    row = conn.execute(
        select(
            exact_sum(_a.c.credits_posted),
            exact_sum(_a.c.debits_posted),
            exact_sum(_a.c.credits_pending),
            exact_sum(_a.c.debits_pending),
            func.count(),
        ).where(accounts)
    ).one()
    return Balances(_sum(row[0]), _sum(row[1]), _sum(row[2]), _sum(row[3]), int(row[4]))


def _flow(conn: Connection, period: Period, code: str, *, into: ColumnElement[bool], credit: bool) -> dict[str, Any]:
    """Count and amount of posted transfers coded `code` in the period whose credit (or debit) account matches."""
    column = _t.c.credit_account_id if credit else _t.c.debit_account_id
    row = conn.execute(
        select(func.count(), exact_sum(_t.c.amount))
        .select_from(_t.join(_a, _a.c.id == column))
        .where(
            into,
            _posted(),
            _t.c.code == code,
            _t.c.created_at_us >= period.start_us,
            _t.c.created_at_us < period.as_of_us,
        )
    ).one()
    return {"count": int(row[0]), "amount": _money(_sum(row[1]))}


def _seizures(conn: Connection, period: Period) -> dict[str, Any]:
    """Seizures into bank:usd:seized in the period: burned on chain (from a token mirror) or from deposits."""
    seized = conn.execute(select(_a.c.id).where(_a.c.name == BANK_SEIZED)).scalar()
    found: dict[str, tuple[int, int]] = {}
    for part, debited in (("total", None), ("burned", _mirrors(None))):
        query = (
            select(func.count(), exact_sum(_t.c.amount))
            .select_from(_t.join(_a, _a.c.id == _t.c.debit_account_id))
            .where(
                _t.c.credit_account_id == (seized if seized is not None else -1),
                _t.c.code == SEIZE_CODE,
                _posted(),
                _t.c.created_at_us >= period.start_us,
                _t.c.created_at_us < period.as_of_us,
            )
        )
        if debited is not None:
            query = query.where(debited)
        row = conn.execute(query).one()
        found[part] = (int(row[0]), _sum(row[1]))
    total, burned = found["total"], found["burned"]
    other = (total[0] - burned[0], total[1] - burned[1])
    return {
        "account": BANK_SEIZED,
        "burned": {"count": burned[0], "amount": _money(burned[1])},
        "from_deposits": {"count": other[0], "amount": _money(other[1])},
        "total": {"count": total[0], "amount": _money(total[1])},
    }


# ----------------------------------------------------------------------------- chains


def read_block(ctx: Context, chain: ChainClient) -> tuple[int, int]:
    """(the last block both final and delivered to the ledger by the network's listener, the head)."""
    head = chain.block_number()
    final = head - chain.network.confirmations + 1
    c = chain_schema.checkpoints
    with ctx.engine.connect() as conn:
        delivered = conn.execute(
            select(c.c.block_number).where(c.c.listener == f"tokens:{chain.name}", c.c.chain_id == chain.chain_id)
        ).scalar()
    return max(0, final if delivered is None else min(final, int(delivered))), head


def chain_evidence(ctx: Context, service: TokenService, network: str) -> dict[str, Any]:
    """The token's totalSupply on `network` now, with the block read; never raises for a node's silence."""
    chain = service.chain(network)
    if chain.deployment(DEPOSIT_TOKEN, required=False) is None:
        return {"available": False, "error": f"the deposit token is not deployed on {network}"}
    try:
        address = service.token_address(network)
        at, head = read_block(ctx, chain)
        tried: list[str] = []
        # A node that keeps no state that old (pruned, or a development node restarted) is read at its head.
        for block in dict.fromkeys([at, head]):
            try:
                supply = int(chain.read(address, TOKEN_ABI, "totalSupply", block=block))
            except NodeUnreachable:
                raise
            except DomainError as exc:  # TxReverted, RpcError: no state at that block
                tried.append(f"block {block}: {getattr(exc, 'message', exc)}")
                continue
            return {
                "available": True,
                "token_address": address,
                "total_supply": _money(supply),
                "block": block,
                "block_time": iso(chain.block_timestamp(block) * 1_000_000),
                "head_block": head,
                "total_supply_minor": supply,
            }
        return {"available": False, "error": "no state readable at " + "; ".join(tried)}
    except (DomainError, OSError, ValueError) as exc:  # NodeUnreachable, RpcError, a reply that is not JSON
        return {"available": False, "error": f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"}


# ----------------------------------------------------------------------------- reconcile runs


def _reconcile_section(ctx: Context, period: Period) -> dict[str, Any]:
    runs = reconcile_store.runs
    in_month = and_(runs.c.finished_at_us >= period.start_us, runs.c.finished_at_us < period.end_us)
    with ctx.engine.connect() as conn:
        held: Any = conn.execute(select(func.count(), func.min(runs.c.finished_at_us))).one()
        kept, oldest = int(held[0]), held[1]
        rows = conn.execute(
            select(runs.c.id, runs.c.started_at_us, runs.c.finished_at_us, runs.c.ok, runs.c.breaks, runs.c.alerts)
            .where(in_month)
            .order_by(runs.c.finished_at_us.desc(), runs.c.id.desc())
            .limit(reconcile_store.RUNS_KEPT)
        ).all()
        broken = conn.execute(
            select(runs.c.report)
            .where(in_month, runs.c.breaks > 0)
            .order_by(runs.c.finished_at_us.desc(), runs.c.id.desc())
            .limit(reconcile_store.RUNS_KEPT)
        ).all()
    subjects: dict[str, None] = {}
    for (report,) in broken:
        for found in json.loads(str(report)).get("breaks", []):
            subjects.setdefault(f"{found.get('check')}: {found.get('subject')}", None)
    last = rows[0] if rows else None
    # Only the newest RUNS_KEPT runs are kept: the month's record is whole when fewer were ever kept,
    # or when a kept run is older than the month.
    complete = kept < reconcile_store.RUNS_KEPT or (oldest is not None and int(oldest) < period.start_us)
    return {
        "runs": len(rows),
        "runs_with_breaks": sum(1 for r in rows if int(r.breaks)),
        "breaks_total": sum(int(r.breaks) for r in rows),
        "break_subjects": list(subjects)[:BREAK_SUBJECTS_MAX],
        "last_run": None
        if last is None
        else {
            "id": last.id,
            "started_at": iso(int(last.started_at_us)),
            "finished_at": iso(int(last.finished_at_us)),
            "ok": bool(last.ok),
            "breaks": int(last.breaks),
            "alerts": int(last.alerts),
        },
        "record_complete": complete,
        "runs_kept_max": reconcile_store.RUNS_KEPT,
    }


# ----------------------------------------------------------------------------- redemptions


@dataclass(frozen=True)
class Redemption:
    id: str
    status: OpStatus
    amount_minor: int
    created_at_us: int
    updated_at_us: int


def redemptions(ctx: Context, period: Period) -> Iterator[Redemption]:
    """Every redemption requested in the period, page by page (at most REDEMPTIONS_MAX)."""
    t = ops_schema.operations
    after: tuple[int, str] = (period.start_us - 1, "")
    seen = 0
    for _ in range(REDEMPTIONS_MAX // PAGE + 2):
        with ctx.engine.connect() as conn:
            page = conn.execute(
                select(t.c.id, t.c.status, t.c.payload, t.c.created_at_us, t.c.updated_at_us)
                .where(
                    t.c.kind == "redeem",
                    t.c.created_at_us >= period.start_us,
                    t.c.created_at_us < period.end_us,
                    tuple_(t.c.created_at_us, t.c.id) > tuple_(*after),
                )
                .order_by(t.c.created_at_us, t.c.id)
                .limit(PAGE)
            ).all()
        for row in page:
            amount = json.loads(row.payload).get("amount")
            if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
                raise InvariantBroken(f"redemption {row.id} has no positive integer amount: {amount!r}")
            yield Redemption(row.id, OpStatus(row.status), amount, int(row.created_at_us), int(row.updated_at_us))
        seen += len(page)
        if seen > REDEMPTIONS_MAX:
            raise DomainError(
                f"more than {REDEMPTIONS_MAX} redemptions in {period.month}: too many for one report",
                code="report_too_large",
            )
        if len(page) < PAGE:
            return
        after = (int(page[-1].created_at_us), str(page[-1].id))
    raise InvariantBroken("the redemption pages did not end within their bound")


def _redemption_section(ctx: Context, period: Period) -> dict[str, Any]:
    counts = {"succeeded": [0, 0], "failed": [0, 0], "in_flight": [0, 0]}  # [count, amount_minor]
    durations_us: list[int] = []
    within = needs_attention = overdue = 0
    bound_us = BUSINESS_DAYS_MAX * DAY_US
    for r in redemptions(ctx, period):
        if r.status == OpStatus.SUCCEEDED:
            part = "succeeded"
            # A terminal operation never changes again: its last update is when it succeeded.
            durations_us.append(r.updated_at_us - r.created_at_us)
            within += business_us(r.created_at_us, r.updated_at_us) <= bound_us
        elif r.status in UNFINISHED:
            part = "in_flight"
            needs_attention += r.status == OpStatus.NEEDS_ATTENTION
            overdue += business_us(r.created_at_us, period.now_us) > bound_us
        else:
            part = "failed"  # failed or cancelled: nothing was paid out, the tokens stay with the holder
        counts[part][0] += 1
        counts[part][1] += r.amount_minor
    durations_us.sort()

    def seconds(percent: int) -> float | None:
        return nearest_rank(durations_us, percent) / 1_000_000 if durations_us else None

    return {
        "count": sum(n for n, _ in counts.values()),
        "amount": _money(sum(a for _, a in counts.values())),
        "succeeded": {"count": counts["succeeded"][0], "amount": _money(counts["succeeded"][1])},
        "failed": {"count": counts["failed"][0], "amount": _money(counts["failed"][1])},
        "in_flight": {
            "count": counts["in_flight"][0],
            "amount": _money(counts["in_flight"][1]),
            "needs_attention": needs_attention,
            "overdue": overdue,
        },
        "duration_s": {"p50": seconds(50), "p95": seconds(95), "max": seconds(100)},
        "timeliness": {
            "business_days": BUSINESS_DAYS_MAX,
            "succeeded_within": within,
            "succeeded_late": len(durations_us) - within,
            "in_flight_overdue": overdue,
        },
    }


# ----------------------------------------------------------------------------- the report


def _networks(ctx: Context, service: TokenService, conn: Connection) -> list[str]:
    """Configured networks where the deposit token is deployed or the ledger mirrors holders."""
    listed = []
    for name in ctx.settings.networks:
        deployed = service.chain(name).deployment(DEPOSIT_TOKEN, required=False)
        if deployed or conn.execute(select(func.count()).where(_mirrors(name))).scalar():
            listed.append(name)
    return listed


def _backing(reserves: int, deposits: int, outstanding: int) -> dict[str, Any]:
    return {
        "reserves": _money(reserves),
        "client_deposits": _money(deposits),
        "tokens_outstanding": _money(outstanding),
        "coverage": coverage(reserves, outstanding),
        "reserves_cover_tokens": reserves >= outstanding,
        "coverage_after_client_deposits": coverage(reserves - deposits, outstanding),
    }


def reserve_report(ctx: Context, month: str, *, tokens: TokenService | None = None) -> dict[str, Any]:
    """The reserve attestation of `month` (YYYY-MM) as a JSON-ready dict; reads only."""
    period = period_of(month, ctx.clock())
    service = tokens or TokenService(ctx)
    with ctx.engine.connect() as conn:
        names = _networks(ctx, service, conn)
    # The chain is read first, then the ledger: an operation that ends between the two reads shows as a
    # difference on its network (reconcile counts it as in flight).
    evidence = {name: chain_evidence(ctx, service, name) for name in names}
    networks: list[dict[str, Any]] = []
    listed_end = listed_now = 0
    with ctx.engine.connect() as conn:
        for name in names:
            at_end = credit_balance_at(conn, _mirrors(name), period.as_of_us)
            now = balances_now(conn, _mirrors(name))
            chain = dict(evidence[name])
            if chain["available"]:
                supply = chain.pop("total_supply_minor")
                chain["difference"] = _money(supply - now.credit_balance)
                chain["matches_ledger_now"] = supply == now.credit_balance
            listed_end += at_end
            listed_now += now.credit_balance
            networks.append(
                {
                    "network": name,
                    "month_end": _money(at_end),
                    "now": _money(now.credit_balance),
                    "mirror_accounts": now.accounts,
                    "now_minting": _money(now.credits_pending),
                    "now_redeeming_or_moving": _money(now.debits_pending),
                    "chain": chain,
                }
            )
        outstanding_end = credit_balance_at(conn, _mirrors(None), period.as_of_us)
        outstanding_now = balances_now(conn, _mirrors(None)).credit_balance
        # The reserve account is an asset: its balance is its debits less its credits.
        reserves_end = -credit_balance_at(conn, _cash(), period.as_of_us)
        reserves_now = -balances_now(conn, _cash()).credit_balance
        deposits_end = credit_balance_at(conn, _ddas(), period.as_of_us)
        deposits_now = balances_now(conn, _ddas()).credit_balance
        flows = {
            "minted": _flow(conn, period, MINT_CODE, into=_mirrors(None), credit=True),
            "redeemed": _flow(conn, period, REDEEM_CODE, into=_mirrors(None), credit=False),
            "seized_and_burned": _flow(conn, period, SEIZE_CODE, into=_mirrors(None), credit=False),
        }
        seizures = _seizures(conn, period)
    return {
        "report": "reserves",
        "token": {"symbol": TOKEN.symbol, "name": TOKEN.name, "asset": TOKEN.asset.code, "decimals": TOKEN.decimals},
        "month": period.month,
        "period": {
            "start": iso(period.start_us),
            "end": iso(period.end_us),
            "end_exclusive": True,
            "as_of": iso(period.as_of_us),
            "closed": period.end_us <= period.now_us,
        },
        "generated_at": iso(period.now_us),
        "tokens_outstanding": {
            "networks": networks,
            "total": {"month_end": _money(outstanding_end), "now": _money(outstanding_now)},
            # Mirrors of networks no longer configured: counted in the total, listed here.
            "other_networks": {
                "month_end": _money(outstanding_end - listed_end),
                "now": _money(outstanding_now - listed_now),
            },
            "flows_in_month": flows,
        },
        "backing": {
            "reserve_account": BANK_CASH,
            "client_deposit_accounts": DDA_PATTERN.replace("%", "*"),
            "month_end": _backing(reserves_end, deposits_end, outstanding_end),
            "now": _backing(reserves_now, deposits_now, outstanding_now),
            "basis": BASIS,
        },
        "reconciliation": _reconcile_section(ctx, period),
        "redemptions": _redemption_section(ctx, period),
        "seizures": seizures,
        "notes": list(NOTES),
    }


# ----------------------------------------------------------------------------- text


def render_text(report: dict[str, Any]) -> str:
    """The report for people: one screen, amounts in USD."""
    out: list[str] = []
    period = report["period"]
    token = report["token"]
    state = "closed" if period["closed"] else f"open: month-end figures as of {period['as_of']}"
    out.append(f"{token['symbol']} reserve attestation for {report['month']} ({state})")
    out.append(f"period {period['start']} .. {period['end']} (end exclusive); generated {report['generated_at']}")
    out.append("")
    out.append(f"Tokens outstanding ({token['asset']})")
    rows: list[tuple[str, ...]] = [("network", "month end", "now", "on chain now")]
    for n in report["tokens_outstanding"]["networks"]:
        chain = n["chain"]
        if chain["available"]:
            mark = "matches" if chain["matches_ledger_now"] else f"differs by {chain['difference']}"
            seen = f"{chain['total_supply']} at block {chain['block']} ({mark})"
        else:
            seen = f"unavailable: {chain['error']}"
        rows.append((n["network"], n["month_end"], n["now"], seen))
    total = report["tokens_outstanding"]["total"]
    rows.append(("total", total["month_end"], total["now"], ""))
    out += _table(rows, left_last=True)
    flows = report["tokens_outstanding"]["flows_in_month"]
    out.append(
        "in the month: "
        + ", ".join(f"{name.replace('_', ' ')} {f['amount']} ({f['count']})" for name, f in flows.items())
    )
    out.append("")
    backing = report["backing"]
    out.append(f"Backing (reserves: {backing['reserve_account']}; deposits: {backing['client_deposit_accounts']})")
    rows = [("", "month end", "now")]
    for key in ("reserves", "client_deposits", "tokens_outstanding", "coverage", "coverage_after_client_deposits"):
        rows.append((key.replace("_", " "), str(backing["month_end"][key] or "n/a"), str(backing["now"][key] or "n/a")))
    out += _table(rows)
    out.append("")
    rec = report["reconciliation"]
    last = rec["last_run"]
    out.append(
        f"Reconciliation: {rec['runs']} run(s) in the month, {rec['runs_with_breaks']} with breaks"
        + ("" if rec["record_complete"] else f" (only the newest {rec['runs_kept_max']} runs are kept)")
    )
    if last is not None:
        outcome = "ok" if last["ok"] else f"{last['breaks']} break(s)"
        out.append(f"  last run {last['finished_at']}: {outcome}, {last['alerts']} alert(s)")
    out += [f"  break: {subject}" for subject in rec["break_subjects"]]
    out.append("")
    red = report["redemptions"]
    d, timely, flight = red["duration_s"], red["timeliness"], red["in_flight"]
    out.append(f"Redemptions requested: {red['count']} for {red['amount']}")
    out.append(
        f"  succeeded {red['succeeded']['count']} ({red['succeeded']['amount']}), failed {red['failed']['count']}, "
        f"in flight {flight['count']} ({flight['needs_attention']} need attention, {flight['overdue']} overdue)"
    )
    if d["max"] is not None:
        out.append(f"  request to payment: p50 {d['p50']:.3f}s, p95 {d['p95']:.3f}s, max {d['max']:.3f}s")
    out.append(
        f"  paid within {timely['business_days']} business days: {timely['succeeded_within']}, "
        f"late: {timely['succeeded_late']}"
    )
    out.append("")
    seized = report["seizures"]
    out.append(
        f"Seized into {seized['account']}: {seized['total']['amount']} ({seized['total']['count']}); "
        f"burned on chain {seized['burned']['amount']}, from deposits {seized['from_deposits']['amount']}"
    )
    out.append("")
    out += textwrap.wrap("Basis: " + backing["basis"], width=100)
    return "\n".join(out) + "\n"


def _table(rows: list[tuple[str, ...]], *, left_last: bool = False) -> list[str]:
    """Rows as aligned columns: the first (names) to the left, amounts to the right, and the last to the
    left too when it is free text."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = []
        for i, (cell, width) in enumerate(zip(row, widths, strict=True)):
            left = i == 0 or (left_last and i == len(row) - 1)
            cells.append(cell.ljust(width) if left else cell.rjust(width))
        lines.append(("  " + "  ".join(cells)).rstrip())
    return lines
