"""Compliance at every edge: parties and their KYC, sanctions screening, tier limits, monitoring, alerts.

Two calls plug it into every flow (docs/compliance.md):

- `screen_*` runs before a flow records anything, in a transaction of its own: a hit opens an alert
  (which must outlive the refused request) and raises `SanctionsHit`; nothing of the flow is written.
- `admit` runs inside the transaction that records the flow: the party's KYC status and freeze, its
  tier's limits per transfer and per UTC day (summed again under a lock of the party's on
  PostgreSQL; SQLite writes one at a time), the activity recorded, and the monitoring rules, whose
  alerts commit with the flow. Two requests at once can never both pass on the same room.

A hit closed as a false positive clears that party or address for that version of that list entry;
a changed entry screens again.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, func, select, text, update
from sqlalchemy.exc import IntegrityError

from andchain.compliance import audit
from andchain.compliance import schema as t
from andchain.config import Settings
from andchain.db import decode_amount, exact_sum, in_chunks, write_transaction
from andchain.errors import Conflict, DomainError, NotFound
from andchain.events import NewEvent
from andchain.events import append as append_events
from andchain.ledger.model import Clock, IdSource
from andchain.money import parse_minor

log = logging.getLogger(__name__)

DAY_US = 86_400_000_000
VERSION_TTL_S = 1.0
# The newest list version seen, per database, shared by every Compliance of the process (monotonic time).
_VERSIONS_SEEN: dict[str, tuple[float, int]] = {}
NAMES_CACHED_MAX = 100_000
ALERTS_PAGE_MAX = 500
REASON_MAX = 2000
BITCOIN_NETWORKS = frozenset({"bitcoin", "bitcoin-testnet", "bitcoin-signet", "bitcoin-regtest"})


class KycStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    SUSPENDED = "suspended"


class AlertStatus(enum.StrEnum):
    OPEN = "open"
    ASSIGNED = "assigned"
    CLOSED = "closed"


class Resolution(enum.StrEnum):
    FALSE_POSITIVE = "false_positive"
    REPORTED = "reported"  # a suspicious activity report was filed
    NO_ACTION = "no_action"
    ESCALATED = "escalated"


class SanctionsHit(DomainError):
    """A name or an address matched the sanctions list: the action is blocked and an alert opened."""

    code = "sanctions_hit"
    http_status = 422


class ComplianceRefused(DomainError):
    http_status = 422


@dataclass(frozen=True)
class Party:
    client_id: str
    kyc_status: str
    tier: str
    country: str | None
    frozen_order: str | None
    updated_at_us: int

    @property
    def frozen(self) -> bool:
        return self.frozen_order is not None


@dataclass(frozen=True)
class Alert:
    id: str
    rule: str
    client_id: str | None
    subject: str
    details: dict[str, Any]
    status: str
    assignee: str | None
    reason: str | None
    resolution: str | None
    opened_at_us: int
    updated_at_us: int
    history: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class _Window:
    out_today: int
    cash_today: int
    in_window: int
    day_recorded: bool = False  # the party has a totals row for the day


@dataclass(frozen=True)
class Admission:
    """One movement to admit (`ComplianceService.admit`'s arguments)."""

    client_id: str
    flow: str
    amount_usd_minor: int | None
    ref: str
    direction: str = "out"
    cash: bool = False
    limits: bool = True


@dataclass(frozen=True)
class AlertDue:
    """An alert a rule asks for: opened once per `dedupe` (`Compliance.open_alerts`)."""

    rule: str
    client_id: str | None
    subject: str
    details: dict[str, Any]
    dedupe: str


@dataclass(frozen=True)
class Activity:
    flow: str
    direction: str
    cash: bool
    amount_usd_minor: int
    at_us: int


def _lock(conn: Connection, key: str) -> None:
    """A transaction-scoped lock of one party's on PostgreSQL (SQLite writes one transaction at a time)."""
    if conn.dialect.name == "postgresql":
        digest = hashlib.sha256(key.encode()).digest()
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int.from_bytes(digest[:8], "big", signed=True)})


def _party_of(row: Any) -> Party:
    return Party(row.client_id, row.kyc_status, row.tier, row.country, row.frozen_order, int(row.updated_at_us))


def _alert_of(row: Any, history: tuple[dict[str, Any], ...] = ()) -> Alert:
    return Alert(
        row.id,
        row.rule,
        row.client_id,
        row.subject,
        json.loads(row.details),
        row.status,
        row.assignee,
        row.reason,
        row.resolution,
        int(row.opened_at_us),
        int(row.updated_at_us),
        history,
    )


def chain_family(network: str, evm_networks: Callable[[str], bool]) -> str:
    """Which sanctions addresses apply on a network: every EVM network shares the EVM addresses."""
    if network in BITCOIN_NETWORKS or network.startswith("bitcoin"):
        return "bitcoin"
    if evm_networks(network):
        return "evm"
    return network.lower()


class _Index:
    """The matchers built from one version of the list (rebuilt when a newer version is loaded)."""

    def __init__(self, version: int, entries: list[Any]) -> None:
        from andchain.compliance.sanctions_list import AddressIndex, NameMatcher

        self.version = version
        self.names = NameMatcher.build(entries)
        self.addresses = AddressIndex.build(entries)
        self.by_uid = {e.uid: e for e in entries}


class Compliance:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        clock: Clock,
        ids: IdSource | None = None,
        *,
        usd_price: Callable[[str], Decimal | None] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.cs = settings.compliance
        self.clock = clock
        self.ids = ids or IdSource(clock)
        # The USD price of one unit of a crypto asset, for limits and thresholds on crypto movements
        # (the trading desk's venue, wired by the composition root); None: not known.
        self.usd_price = usd_price
        self._index: _Index | None = None
        self._index_lock = threading.Lock()
        self._name_cache: dict[str, str] = {}  # client id -> name (a client's name never changes)

    # ------------------------------------------------------------------ parties

    def ensure_party(self, conn: Connection, client_id: str) -> Party:
        """The party of a client, created with the onboarding KYC status and the default tier."""
        row = conn.execute(select(t.parties).where(t.parties.c.client_id == client_id)).first()
        if row is not None:
            return _party_of(row)
        values = {
            "client_id": client_id,
            "kyc_status": self.cs.onboarding_kyc_status,
            "tier": self.cs.default_kyc_tier,
            "country": None,
            "frozen_order": None,
            "screened_version": None,
            "updated_at_us": self.clock(),
        }
        if conn.dialect.name == "postgresql":
            try:
                with conn.begin_nested():
                    conn.execute(t.parties.insert().values(**values))
            except IntegrityError:
                pass  # another transaction created it since we looked
        else:
            conn.execute(t.parties.insert().values(**values))
        row = conn.execute(select(t.parties).where(t.parties.c.client_id == client_id)).first()
        return _party_of(row)

    def party(self, client_id: str) -> Party:
        """The party of a client, read (a read takes no writer's turn: a payment's checks read its payee's at
        each request); created, in a write transaction, only when missing."""
        with self.engine.connect() as conn:
            row = conn.execute(select(t.parties).where(t.parties.c.client_id == client_id)).first()
        if row is not None:
            return _party_of(row)
        with write_transaction(self.engine) as conn:
            return self.ensure_party(conn, client_id)

    def parties(self, *, status: str | None = None, frozen: bool | None = None, limit: int = 100) -> list[Party]:
        query = select(t.parties).order_by(t.parties.c.client_id).limit(max(1, min(limit, 1000)))
        if status is not None:
            query = query.where(t.parties.c.kyc_status == status)
        if frozen is not None:
            query = query.where(t.parties.c.frozen_order.is_not(None) if frozen else t.parties.c.frozen_order.is_(None))
        with self.engine.connect() as conn:
            return [_party_of(r) for r in conn.execute(query)]

    def set_kyc(
        self,
        client_id: str,
        *,
        status: str | None = None,
        tier: str | None = None,
        country: str | None = None,
        reason: str = "",
        by: str,
    ) -> Party:
        """Record the bank's KYC decision on a party (status, tier, country of residence or registration)."""
        if status is None and tier is None and country is None:
            raise DomainError("say what changes: status, tier or country", code="invalid_request")
        if status is not None and status not in KycStatus.__members__.values():
            raise DomainError(
                f"KYC status must be one of {', '.join(s.value for s in KycStatus)}, was {status!r}",
                code="invalid_kyc_status",
            )
        if tier is not None and tier not in self.cs.kyc_tiers:
            raise DomainError(
                f"KYC tier must be one of {', '.join(self.cs.kyc_tiers)}, was {tier!r}", code="unknown_tier"
            )
        if country is not None and (len(country) != 2 or not country.isalpha() or not country.isupper()):
            raise DomainError(f"country is an ISO 3166 alpha-2 code, was {country!r}", code="invalid_request")
        with write_transaction(self.engine) as conn:
            before = self.ensure_party(conn, client_id)
            changes = {
                k: v
                for k, v in (("kyc_status", status), ("tier", tier), ("country", country))
                if v is not None and getattr(before, k) != v
            }
            if changes:
                conn.execute(
                    update(t.parties)
                    .where(t.parties.c.client_id == client_id)
                    .values(**changes, updated_at_us=self.clock())
                )
                details = {"changes": changes, "before": {k: getattr(before, k) for k in changes}, "reason": reason}
                audit.append(conn, self.clock, by, "kyc.changed", f"client:{client_id}", details)
                # Bank-wide (its reason is the bank's own), never on the client's feed.
                append_events(
                    conn,
                    [NewEvent("compliance.kyc_changed", f"client:{client_id}", {**details, "client": client_id})],
                    self.clock(),
                )
            row = conn.execute(select(t.parties).where(t.parties.c.client_id == client_id)).first()
        return _party_of(row)

    # ------------------------------------------------------------- the list

    def list_version(self, conn: Connection | None = None) -> int:
        query = select(func.max(t.sanctions_lists.c.version))
        if conn is not None:
            return int(conn.execute(query).scalar() or 0)
        with self.engine.connect() as c:
            return int(c.execute(query).scalar() or 0)

    def _current(self) -> _Index | None:
        """The matchers of the newest list version, that version checked at most every `VERSION_TTL_S`
        (a list another process loads takes effect here within that; one this process loads, at once)."""
        now = time.monotonic()
        url = str(self.engine.url)
        seen = _VERSIONS_SEEN.get(url)
        if seen is not None and now - seen[0] < VERSION_TTL_S:
            version = seen[1]
        else:
            version = self.list_version()
            _VERSIONS_SEEN[url] = (now, version)
        if version == 0:
            return None
        index = self._index
        if index is not None and index.version == version:
            return index
        with self._index_lock:
            if self._index is None or self._index.version != version:
                self._index = _Index(version, self._stored_entries())
            return self._index

    def _stored_entries(self) -> list[Any]:
        from andchain.compliance.sanctions_list import DigitalAddress, SdnEntry

        with self.engine.connect() as conn:
            rows = conn.execute(select(t.sanctions_entries)).all()
        return [
            SdnEntry(
                uid=r.uid,
                name=r.name,
                kind=r.kind,
                programs=tuple(json.loads(r.programs)),
                aliases=tuple(json.loads(r.aliases)),
                addresses=tuple(DigitalAddress(c, a) for c, a in json.loads(r.addresses)),
            )
            for r in rows
        ]

    def load_list(self, path: Path | None = None, *, by: str) -> dict[str, Any]:
        """Load the SDN list (CSV set or advanced XML), diff it by content against the stored one, store
        it as a new version when it changed, and screen every party and address again."""
        from andchain.compliance.sanctions_list import SanctionsListError, diff
        from andchain.compliance.sanctions_list import load_list as parse_list

        source = path or self.cs.sanctions_list_path
        if source is None:
            raise DomainError(
                "no sanctions list configured: set compliance.sanctions_list_path or give a path",
                code="sanctions_list_missing",
            )
        try:
            parsed = parse_list(Path(source))
        except SanctionsListError as exc:
            raise DomainError(str(exc), code="invalid_sanctions_list") from None
        with write_transaction(self.engine) as conn:
            _lock(conn, "sanctions-list")
            stored = {
                r.uid: r.content_hash
                for r in conn.execute(select(t.sanctions_entries.c.uid, t.sanctions_entries.c.content_hash))
            }
            changes = diff(stored, parsed)
            version = self.list_version(conn)
            last = conn.execute(
                select(t.sanctions_lists.c.digest).where(t.sanctions_lists.c.version == version)
            ).scalar()
            summary = {
                "version": version,
                "source_format": parsed.source_format,
                "digest": parsed.digest,
                "entries": len(parsed.entries),
                "added": len(changes.added),
                "removed": len(changes.removed),
                "changed": len(changes.changed),
                "unchanged": last == parsed.digest,
            }
            if last == parsed.digest:
                return summary
            version += 1
            summary["version"] = version
            if changes.removed:
                conn.execute(t.sanctions_entries.delete().where(t.sanctions_entries.c.uid.in_(changes.removed)))
            touched = [*changes.added, *changes.changed]
            if changes.changed:
                conn.execute(t.sanctions_entries.delete().where(t.sanctions_entries.c.uid.in_(changes.changed)))
            by_uid = parsed.by_uid
            rows = [
                {
                    "uid": uid,
                    "name": by_uid[uid].name,
                    "kind": by_uid[uid].kind,
                    "programs": json.dumps(list(by_uid[uid].programs)),
                    "aliases": json.dumps(list(by_uid[uid].aliases)),
                    "addresses": json.dumps([[a.currency, a.address] for a in by_uid[uid].addresses]),
                    "content_hash": by_uid[uid].content_hash,
                    "version": version,
                }
                for uid in touched
            ]
            for start in range(0, len(rows), 500):
                conn.execute(t.sanctions_entries.insert(), rows[start : start + 500])
            conn.execute(
                t.sanctions_lists.insert().values(
                    version=version,
                    source=str(source),
                    source_format=parsed.source_format,
                    digest=parsed.digest,
                    entries=len(parsed.entries),
                    added=len(changes.added),
                    removed=len(changes.removed),
                    changed=len(changes.changed),
                    loaded_at_us=self.clock(),
                    loaded_by=by[:120],
                )
            )
            details = {k: v for k, v in summary.items() if k != "unchanged"}
            audit.append(conn, self.clock, by, "sanctions.list_loaded", f"sanctions:{version}", details)
            append_events(conn, [NewEvent("compliance.list_loaded", f"sanctions:{version}", details)], self.clock())
        _VERSIONS_SEEN.pop(str(self.engine.url), None)  # every Compliance of this process uses it at once
        summary["rescreen_hits"] = self.rescreen(touched)
        return summary

    def lists(self, limit: int = 20) -> list[dict[str, Any]]:
        query = select(t.sanctions_lists).order_by(t.sanctions_lists.c.version.desc()).limit(max(1, min(limit, 100)))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def rescreen(self, uids: list[str] | None = None) -> int:
        """Screen every party's name and every known address against the list (or only against the
        entries `uids` that a load added or changed): a new hit opens an alert (no action is blocked
        here; the party's next movement is screened and blocked)."""
        index = self._current()
        if index is None:
            return 0
        wanted = set(uids) if uids is not None else None
        hits = 0
        for client_id, name in self._names():
            for match in index.names.match(name, self.cs.name_match_threshold):
                if wanted is not None and match.uid not in wanted:
                    continue
                if self._open_hit(
                    "sanctions_name", client_id, name, index, match.uid, score=match.score, flow="rescreen"
                ):
                    hits += 1
        for client_id, network, address in self._addresses():
            family = chain_family(network, self._evm)
            for uid in index.addresses.lookup(family, address):
                if wanted is not None and uid not in wanted:
                    continue
                subject = f"{network}:{address}"
                if self._open_hit("sanctions_address", client_id, subject, index, uid, flow="rescreen"):
                    hits += 1
        return hits

    def _names(self) -> list[tuple[str, str]]:
        from andchain.tokens.schema import clients as clients_table

        with self.engine.connect() as conn:
            return [(r.id, r.name) for r in conn.execute(select(clients_table.c.id, clients_table.c.name))]

    def _addresses(self) -> list[tuple[str, str, str]]:
        from andchain.tokens.schema import client_addresses, wallets

        with self.engine.connect() as conn:
            found = [(r.client_id, r.network, r.address) for r in conn.execute(select(wallets))]
            found += [(r.client_id, r.network, r.address) for r in conn.execute(select(client_addresses))]
        return found

    def _evm(self, network: str) -> bool:
        n = self.settings.networks.get(network)
        return n is not None and getattr(n, "kind", "") != "gcul"

    # ------------------------------------------------------------ screening

    def _cleared(self, conn: Connection, dedupe: str) -> bool:
        row = conn.execute(select(t.alerts.c.status, t.alerts.c.resolution).where(t.alerts.c.dedupe == dedupe)).first()
        return row is not None and row.status == AlertStatus.CLOSED and row.resolution == Resolution.FALSE_POSITIVE

    def _open_hit(
        self,
        rule: str,
        client_id: str | None,
        subject: str,
        index: _Index,
        uid: str,
        *,
        flow: str,
        score: int | None = None,
    ) -> bool:
        """Open (once) the alert of a hit; False when that hit was cleared as a false positive."""
        from andchain.compliance.sanctions_list import normalize_name

        entry = index.by_uid[uid]
        # One alert per (what matched, entry version), whoever or whichever flow met it: a hit cleared as a
        # false positive is cleared for every flow.
        matched = normalize_name(subject) if rule == "sanctions_name" else subject.lower()
        dedupe = f"{rule}:{matched}:{uid}:{entry.content_hash[:16]}"[:200]
        details = {
            "uid": uid,
            "listed_name": entry.name,
            "programs": list(entry.programs),
            "list_version": index.version,
            "flow": flow,
            **({"score": score} if score is not None else {}),
        }
        with write_transaction(self.engine) as conn:
            if self._cleared(conn, dedupe):
                return False
            self.open_alert(conn, rule, client_id, subject, details, dedupe)
        return True

    def screen_name(self, name: str, *, flow: str, client_id: str | None = None) -> None:
        """Screen a person's or an entity's name (onboarding, a debtor in a credit notice, a travel-rule
        party): a hit at or above the threshold blocks the action and opens an alert."""
        index = self._current()
        if index is None or not name:
            return
        for match in index.names.match(name, self.cs.name_match_threshold):
            if self._open_hit("sanctions_name", client_id, name, index, match.uid, flow=flow, score=match.score):
                raise SanctionsHit(
                    f"{name!r} matches a sanctioned party on the list ({index.by_uid[match.uid].name!r}, "
                    f"score {match.score}); the {flow} is blocked and an alert opened",
                    flow=flow,
                )

    def screen_address(self, network: str, address: str, *, flow: str, client_id: str | None = None) -> None:
        """Screen an address exactly, per chain (an EVM address on every EVM network, a Bitcoin address
        on Bitcoin): a hit blocks the action and opens an alert."""
        index = self._current()
        if index is None or not address:
            return
        family = chain_family(network, self._evm)
        for uid in index.addresses.lookup(family, address):
            if self._open_hit("sanctions_address", client_id, f"{network}:{address}", index, uid, flow=flow):
                raise SanctionsHit(
                    f"{address} on {network} is a sanctioned address ({index.by_uid[uid].name!r}); the {flow} is "
                    "blocked and an alert opened",
                    flow=flow,
                    field="address",
                )

    def screen_party(self, client_id: str, *, flow: str) -> None:
        """Screen a client's own name against the current list before it moves value."""
        from andchain.tokens.schema import clients as clients_table

        index = self._current()
        if index is None:
            return
        name = self._name_cache.get(client_id)
        if name is None:
            with self.engine.connect() as conn:
                name = conn.execute(select(clients_table.c.name).where(clients_table.c.id == client_id)).scalar()
            if name and len(self._name_cache) < NAMES_CACHED_MAX:
                self._name_cache[client_id] = name
        if name:
            self.screen_name(name, flow=flow, client_id=client_id)

    def screen(
        self,
        client_id: str | None,
        *,
        flow: str,
        addresses: tuple[tuple[str, str], ...] = (),
        names: tuple[str, ...] = (),
    ) -> None:
        """Everything a flow screens before it records anything: the party, the addresses it touches
        (network, address), and other names (a counterparty, travel-rule persons)."""
        if client_id is not None:
            self.screen_party(client_id, flow=flow)
        for network, address in addresses:
            self.screen_address(network, address, flow=flow, client_id=client_id)
        for name in names:
            self.screen_name(name, flow=flow, client_id=client_id)

    # ----------------------------------------------------------- travel rule

    def travel_rule_threshold(self) -> int:
        """From which amount (USD cents) the bank's jurisdiction asks for originator and beneficiary data."""
        return parse_minor(self.cs.travel_rule_usd[self.cs.jurisdiction], 2)

    def travel_rule(
        self,
        *,
        flow: str,
        amount_usd_minor: int | None,
        supplied: object | None,
        default: Callable[[], dict[str, Any]] | None = None,
        required: bool | None = None,
        client_id: str | None = None,
    ) -> dict[str, Any] | None:
        """The IVMS101 payload a movement carries: the one supplied (validated), or the default one (a
        transfer between a client's own accounts), when the amount reaches the threshold; refused when it
        is needed and none is given. Its persons' names are screened."""
        from andchain.compliance.ivms101 import beneficiary_names, canonical_json, originator_names, parse_payload

        if required is None:
            required = amount_usd_minor is not None and amount_usd_minor >= self.travel_rule_threshold()
        if supplied is None and not required:
            return None
        data = supplied if supplied is not None else (default() if default is not None else None)
        if data is None:
            raise ComplianceRefused(
                f"a {flow} of this amount needs the travel rule's originator and beneficiary data (IVMS101) from "
                f"{_usd(self.travel_rule_threshold())} USD ({self.cs.jurisdiction})",
                code="travel_rule_required",
            )
        payload = parse_payload(data)
        names = dict.fromkeys([*originator_names(payload), *beneficiary_names(payload)])
        for name in names:  # the client itself is screened by its flow
            self.screen_name(name, flow=flow, client_id=client_id)
        return dict(json.loads(canonical_json(payload)))

    def record_travel_rule(
        self, conn: Connection, ref: str, flow: str, amount_usd_minor: int | None, payload: dict[str, Any]
    ) -> None:
        body = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        conn.execute(
            t.travel_rule.insert().values(
                ref=ref[:200],
                flow=flow,
                amount_usd_minor=str(amount_usd_minor or 0),
                payload=body,
                sha256=hashlib.sha256(body.encode()).hexdigest(),
                created_at_us=self.clock(),
            )
        )

    def travel_rule_of(self, ref: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.travel_rule).where(t.travel_rule.c.ref == ref)).first()
        if row is None:
            return None
        return {"ref": row.ref, "flow": row.flow, "payload": json.loads(row.payload), "sha256": row.sha256}

    # ----------------------------------------------------------------- admit

    def usd_minor(self, asset: str, amount_minor: int, scale: int) -> int | None:
        """The USD cents an amount is worth, rounded up (limits err on the bank's side); None: unknown."""
        code = asset.upper()
        if code in ("USD", "USDC", "USDD", "PYUSD", "USDT"):
            value = Decimal(amount_minor) / (Decimal(10) ** scale)
        elif self.usd_price is not None:
            price = self.usd_price(code)
            if price is None:
                return None
            value = Decimal(amount_minor) / (Decimal(10) ** scale) * price
        else:
            return None
        cents = value * 100
        whole = int(cents)
        return whole if whole == cents else whole + 1

    def tier_limits(self, tier: str) -> tuple[int, int]:
        spec = self.cs.kyc_tiers[tier]
        return parse_minor(spec.per_transfer_usd, 2), parse_minor(spec.per_day_usd, 2)

    def check_party(self, party: Party, flow: str) -> None:
        if party.frozen:
            raise ComplianceRefused(f"the party is frozen: no {flow} is possible", code="party_frozen")
        if party.kyc_status != KycStatus.APPROVED:
            raise ComplianceRefused(
                f"the party's KYC is {party.kyc_status}; a {flow} needs it approved", code=f"kyc_{party.kyc_status}"
            )

    def require(self, client_id: str, *, flow: str) -> Party:
        """Before a client asks for something that will move value (a quote, an order): screened, KYC
        approved, not frozen. The movement itself is admitted when it is recorded."""
        self.screen_party(client_id, flow=flow)
        party = self.party(client_id)
        self.check_party(party, flow)
        return party

    def lock(self, conn: Connection, client_ids: list[str]) -> None:
        """Take the locks of several parties in one order (a payment admits its payer and its payee: two
        payments between the same two clients in opposite directions must not wait on each other)."""
        for client_id in sorted(set(client_ids)):
            _lock(conn, f"compliance-party:{client_id}")

    def admit(
        self,
        conn: Connection,
        client_id: str,
        flow: str,
        amount_usd_minor: int | None,
        ref: str,
        *,
        direction: str = "out",
        cash: bool = False,
        limits: bool = True,
    ) -> None:
        """Inside the flow's transaction: the party may move value, within its tier's limits; the movement
        is recorded and monitored. `amount_usd_minor` None: worth unknown (counted as zero)."""
        self.admit_many(conn, [Admission(client_id, flow, amount_usd_minor, ref, direction, cash, limits)])

    def admit_many(self, conn: Connection, admissions: Sequence[Admission]) -> None:
        """`admit` for several movements, in order, as if admitted one after another in this transaction
        (each counts against the limits of those before it), at a constant number of statements: the
        parties, their day's totals, their movements in the velocity window and their latest movement read
        once for all, the movements recorded in one statement. A refusal raises before anything is
        written. Cash movements are admitted one at a time: the structuring rule counts their rows."""
        if len(admissions) > 1 and any(a.cash for a in admissions):
            self.lock(conn, [a.client_id for a in admissions])  # every party's lock first, in one order
            for admission in admissions:
                self.admit_many(conn, [admission])
            return
        if not admissions:
            return
        clients = sorted({a.client_id for a in admissions})
        self.lock(conn, clients)
        parties = self._parties(conn, clients)
        now = self.clock()
        day = now // DAY_US
        first = self._windows(conn, clients, now, day)
        windows, previous = dict(first), self._latest(conn, clients)
        seen: list[tuple[Admission, Activity, int | None, _Window]] = []
        for admission in admissions:
            client_id, flow = admission.client_id, admission.flow
            if admission.direction == "out":
                self.check_party(parties[client_id], flow)  # what arrives for a frozen or pending party is held
            amount = admission.amount_usd_minor or 0
            window = windows[client_id]
            if admission.direction == "out" and admission.limits:
                tier = parties[client_id].tier
                per_transfer, per_day = self.tier_limits(tier)
                if amount > per_transfer:
                    raise ComplianceRefused(
                        f"{flow} of {_usd(amount)} exceeds the {tier} tier's limit of {_usd(per_transfer)} per "
                        "transfer",
                        code="limit_exceeded",
                        limit="per_transfer",
                    )
                spent = window.out_today
                if spent + amount > per_day:
                    raise ComplianceRefused(
                        f"{flow} of {_usd(amount)} would bring today's movements to {_usd(spent + amount)}, over "
                        f"the {tier} tier's limit of {_usd(per_day)} a day",
                        code="limit_exceeded",
                        limit="per_day",
                    )
            seen.append((admission, Activity(flow, admission.direction, admission.cash, amount, now),
                         previous.get(client_id), window))  # fmt: skip
            out = amount if admission.direction == "out" else 0
            windows[client_id] = _Window(
                window.out_today + out,
                window.cash_today + (amount if admission.cash else 0),
                window.in_window + 1,
                window.day_recorded,
            )
            previous[client_id] = now
        conn.execute(
            t.activity.insert(),
            [
                {"client_id": a.client_id, "flow": a.flow, "direction": a.direction, "cash": a.cash,
                 "amount_usd_minor": act.amount_usd_minor, "ref": a.ref[:200], "at_us": now}
                for a, act, _, _ in seen
            ],
        )  # fmt: skip
        self._add_to_days(conn, day, first, windows)
        due: list[AlertDue] = []
        for admission, activity, before, window in seen:
            due += self._monitor(conn, admission.client_id, activity, before, window, admission.ref)
        self.open_alerts(conn, due)  # a busy client's movements ask for the same alert again and again: one look-up

    def parties_of(self, clients: Sequence[str]) -> dict[str, Party]:
        """The parties of these clients that exist, read (a batch of requests reads its parties at once)."""
        with self.engine.connect() as conn:
            return self._read_parties(conn, clients)

    @staticmethod
    def _read_parties(conn: Connection, clients: Sequence[str]) -> dict[str, Party]:
        return {
            row.client_id: _party_of(row)
            for chunk in in_chunks(sorted(set(clients)))
            for row in conn.execute(select(t.parties).where(t.parties.c.client_id.in_(chunk)))
        }

    def _parties(self, conn: Connection, clients: list[str]) -> dict[str, Party]:
        """The parties of these clients, each created as `ensure_party` does when missing."""
        found = self._read_parties(conn, clients)
        for client_id in clients:
            if client_id not in found:
                found[client_id] = self.ensure_party(conn, client_id)
        return found

    def _latest(self, conn: Connection, clients: list[str]) -> dict[str, int | None]:
        """When each party last moved value (None: never): one look-up of its index each, never a scan of
        its history (the parties exist: `_parties` made them)."""
        p, a = t.parties, t.activity
        latest = select(func.max(a.c.at_us)).where(a.c.client_id == p.c.client_id).scalar_subquery()
        return {
            row[0]: None if row[1] is None else int(row[1])
            for chunk in in_chunks(clients)
            for row in conn.execute(select(p.c.client_id, latest).where(p.c.client_id.in_(chunk)))
        }

    def _windows(self, conn: Connection, clients: list[str], now: int, day: int) -> dict[str, _Window]:
        """Each party's figures before these movements: what left it today and its cash today (its totals
        row for the day), and how many movements in the velocity window (a count over that window's rows
        of its index)."""
        d, a = t.party_days, t.activity
        totals = {
            row[0]: (int(row[1]), int(row[2]))
            for chunk in in_chunks(clients)
            for row in conn.execute(
                select(d.c.client_id, d.c.out_usd_minor, d.c.cash_usd_minor).where(
                    d.c.client_id.in_(chunk), d.c.day == day
                )
            )
        }
        window_start = now - self.cs.monitoring.velocity_window_s * 1_000_000
        counts = {
            row[0]: int(row[1] or 0)
            for chunk in in_chunks(clients)
            for row in conn.execute(
                select(a.c.client_id, func.count())
                .where(a.c.client_id.in_(chunk), a.c.at_us >= window_start)
                .group_by(a.c.client_id)
            )
        }
        windows = {}
        for client_id in clients:
            if client_id in totals:
                out, cash = totals[client_id]
                windows[client_id] = _Window(out, cash, counts.get(client_id, 0), day_recorded=True)
            else:
                windows[client_id] = _Window(0, 0, counts.get(client_id, 0))
        return windows

    def _add_to_days(self, conn: Connection, day: int, before: dict[str, _Window], after: dict[str, _Window]) -> None:
        """The movements in the parties' totals of the day (under the parties' locks, taken by `admit_many`):
        a row changed or added for each party whose totals moved."""
        d = t.party_days
        changed, added = [], []
        for client_id, was in before.items():
            now = after[client_id]
            if (now.out_today, now.cash_today) == (was.out_today, was.cash_today):
                continue
            if was.day_recorded:
                changed.append({"_client_id": client_id, "_out": now.out_today, "_cash": now.cash_today})
            else:
                added.append(
                    {
                        "client_id": client_id,
                        "day": day,
                        "out_usd_minor": now.out_today,
                        "cash_usd_minor": now.cash_today,
                    }
                )
        if changed:
            conn.execute(
                update(d)
                .where(d.c.client_id == bindparam("_client_id"), d.c.day == day)
                .values(out_usd_minor=bindparam("_out"), cash_usd_minor=bindparam("_cash")),
                changed,
            )
        if added:
            conn.execute(d.insert(), added)

    # ------------------------------------------------------------- monitoring

    def _monitor(
        self, conn: Connection, client_id: str, now: Activity, previous: int | None, window: _Window, ref: str
    ) -> list[AlertDue]:
        """The monitoring rules over the party's movements, this one recorded: the alerts they ask for (each
        opened once a day, or once a velocity window, by `open_alerts`). Every figure is one indexed aggregate
        over the party's own rows, never a scan of its history."""
        m = self.cs.monitoring
        a = t.activity
        subject = f"client:{client_id}"
        day = now.at_us // DAY_US
        threshold = parse_minor(m.cash_daily_usd, 2)
        due: list[AlertDue] = []
        if now.cash:
            cash_today = window.cash_today + now.amount_usd_minor
            if cash_today > threshold:
                details: dict[str, Any] = {
                    "cash_today_usd": _usd(cash_today),
                    "threshold_usd": _usd(threshold),
                    "last_ref": ref,
                }
                due.append(AlertDue("cash_aggregate", client_id, subject, details, f"cash_aggregate:{client_id}:{day}"))
            floor = threshold * (100 - m.structuring_band_pct) // 100
            if floor <= now.amount_usd_minor < threshold:
                near = conn.execute(
                    select(func.count(), exact_sum(a.c.amount_usd_minor)).where(
                        a.c.client_id == client_id,
                        a.c.at_us >= now.at_us - DAY_US,
                        a.c.cash.is_(True),
                        a.c.amount_usd_minor >= floor,
                        a.c.amount_usd_minor < threshold,
                    )
                ).one()
                if int(near[0]) >= m.structuring_count_min:
                    details = {
                        "transactions": int(near[0]),
                        "each_between_usd": [_usd(floor), _usd(threshold)],
                        "total_usd": _usd(decode_amount(near[1])),
                        "window_hours": 24,
                        "last_ref": ref,
                    }
                    due.append(AlertDue("structuring", client_id, subject, details, f"structuring:{client_id}:{day}"))
        window_us = m.velocity_window_s * 1_000_000
        in_window = window.in_window + 1
        if in_window > m.velocity_count_max:
            details = {"transactions": in_window, "window_s": m.velocity_window_s, "max": m.velocity_count_max}
            dedupe = f"velocity:{client_id}:{now.at_us // window_us}"
            due.append(AlertDue("velocity", client_id, subject, details, dedupe))
        if previous is not None and now.at_us - int(previous) > m.dormant_days * DAY_US:
            details = {
                "idle_days": (now.at_us - int(previous)) // DAY_US,
                "dormant_days": m.dormant_days,
                "flow": now.flow,
                "amount_usd": _usd(now.amount_usd_minor),
                "ref": ref,
            }
            due.append(AlertDue("dormant_reactivation", client_id, subject, details, f"dormant:{client_id}:{day}"))
        return due

    # ----------------------------------------------------------------- alerts

    def open_alert(
        self,
        conn: Connection,
        rule: str,
        client_id: str | None,
        subject: str,
        details: dict[str, Any],
        dedupe: str,
    ) -> str | None:
        """Open an alert in the caller's transaction, once per `dedupe`; its id (None: already open)."""
        opened = self.open_alerts(conn, [AlertDue(rule, client_id, subject, details, dedupe)])
        return opened[0] if opened else None

    def open_alerts(self, conn: Connection, due: Sequence[AlertDue]) -> list[str]:
        """Open alerts in the caller's transaction, each once per `dedupe` (the first asked for wins); the
        ids of those opened. Which are open already is read in one statement: a busy client's movements
        ask for the same velocity alert with every movement of the window."""
        first: dict[str, AlertDue] = {}
        for alert in due:
            first.setdefault(alert.dedupe[:200], alert)
        if not first:
            return []
        a = t.alerts
        dedupes = sorted(first)
        existing = {
            row[0]
            for chunk in in_chunks(dedupes)
            for row in conn.execute(select(a.c.dedupe).where(a.c.dedupe.in_(chunk)))
        }
        opened: list[str] = []
        for dedupe, alert in first.items():
            if dedupe in existing:
                continue
            alert_id = self.ids.new_id()
            now = self.clock()
            values = {
                "id": alert_id,
                "rule": alert.rule,
                "client_id": alert.client_id,
                "subject": alert.subject[:2000],
                "details": json.dumps(alert.details, sort_keys=True, default=str),
                "dedupe": dedupe,
                "status": AlertStatus.OPEN.value,
                "assignee": None,
                "reason": None,
                "resolution": None,
                "opened_at_us": now,
                "updated_at_us": now,
            }
            try:
                with conn.begin_nested():
                    conn.execute(a.insert().values(**values))
            except IntegrityError:
                continue  # opened by a concurrent transaction: one alert
            conn.execute(
                t.alert_history.insert().values(
                    alert_id=alert_id, action="opened", by="andchain", note=alert.rule, at_us=now
                )
            )
            append_events(
                conn,
                [
                    NewEvent(
                        "compliance.alert_opened",
                        f"alert:{alert_id}",
                        {"alert": alert_id, "rule": alert.rule, **alert.details},
                    )
                ],
                now,
            )
            log.warning("compliance alert opened rule=%s client=%s alert=%s", alert.rule, alert.client_id, alert_id)
            opened.append(alert_id)
        return opened

    def alerts(
        self,
        *,
        status: str | None = None,
        rule: str | None = None,
        client_id: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        query = select(t.alerts).order_by(t.alerts.c.id).limit(max(1, min(limit, ALERTS_PAGE_MAX)))
        if status is not None:
            query = query.where(t.alerts.c.status == status)
        if rule is not None:
            query = query.where(t.alerts.c.rule == rule)
        if client_id is not None:
            query = query.where(t.alerts.c.client_id == client_id)
        if after is not None:
            query = query.where(t.alerts.c.id > after)
        with self.engine.connect() as conn:
            return [_alert_of(r) for r in conn.execute(query)]

    def alert(self, alert_id: str) -> Alert:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.alerts).where(t.alerts.c.id == alert_id)).first()
            if row is None:
                raise NotFound(f"no alert {alert_id!r}", code="alert_not_found")
            history = tuple(
                {"action": h.action, "by": h.by, "note": h.note, "at_us": int(h.at_us)}
                for h in conn.execute(
                    select(t.alert_history).where(t.alert_history.c.alert_id == alert_id).order_by(t.alert_history.c.id)
                )
            )
        return _alert_of(row, history)

    def assign(self, alert_id: str, assignee: str, *, by: str) -> Alert:
        if not assignee or len(assignee) > 120 or not assignee.isprintable():
            raise DomainError("an alert is assigned to a named person (1-120 characters)", code="invalid_request")
        return self._change(alert_id, "assigned", by, note=assignee, assignee=assignee, status=AlertStatus.ASSIGNED)

    def close(self, alert_id: str, reason: str, resolution: str, *, by: str) -> Alert:
        if not reason or not reason.strip() or len(reason) > REASON_MAX:
            raise DomainError(f"closing an alert needs a reason (1-{REASON_MAX} characters)", code="reason_required")
        if resolution not in Resolution.__members__.values():
            raise DomainError(
                f"resolution must be one of {', '.join(r.value for r in Resolution)}, was {resolution!r}",
                code="invalid_request",
            )
        return self._change(
            alert_id, "closed", by, note=reason, reason=reason, resolution=resolution, status=AlertStatus.CLOSED
        )

    def note(self, alert_id: str, note: str, *, by: str) -> Alert:
        if not note or len(note) > REASON_MAX:
            raise DomainError(f"a note is 1-{REASON_MAX} characters", code="invalid_request")
        return self._change(alert_id, "noted", by, note=note)

    def _change(
        self, alert_id: str, action: str, by: str, *, note: str, status: AlertStatus | None = None, **values: Any
    ) -> Alert:
        with write_transaction(self.engine) as conn:
            row = conn.execute(select(t.alerts).where(t.alerts.c.id == alert_id)).first()
            if row is None:
                raise NotFound(f"no alert {alert_id!r}", code="alert_not_found")
            if row.status == AlertStatus.CLOSED:
                raise Conflict(
                    f"alert {alert_id} is closed ({row.resolution}): it does not change", code="alert_closed"
                )
            now = self.clock()
            changed = conn.execute(
                update(t.alerts)
                .where(and_(t.alerts.c.id == alert_id, t.alerts.c.status == row.status))
                .values(**values, **({"status": status.value} if status else {}), updated_at_us=now)
            )
            if changed.rowcount != 1:
                raise Conflict(f"alert {alert_id} changed meanwhile; read it again", code="alert_changed")
            conn.execute(
                t.alert_history.insert().values(alert_id=alert_id, action=action, by=by[:120], note=note, at_us=now)
            )
            audit.append(conn, self.clock, by, f"alert.{action}", f"alert:{alert_id}", {"note": note, **values})
            if action in ("assigned", "closed"):
                append_events(
                    conn,
                    [
                        NewEvent(
                            f"compliance.alert_{action}",
                            f"alert:{alert_id}",
                            {"alert": alert_id, "rule": row.rule, "by": by, **values},
                        )
                    ],
                    now,
                )
        return self.alert(alert_id)


def _usd(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"
