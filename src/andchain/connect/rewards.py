"""Rewards to USDC: a customer redeems its card points for USDC, delivered to its own wallet.

Points (asset PTS, scale 0) are worth `connect.point_value_usd` each (default 0.01). A redemption
sends the USDC from the bank's treasury (the desk's account at `connect.rewards_custodian`) to an
address the customer registered and verified on the network (the Step 7 custody withdrawal), and
holds the points in the same transaction (`clients:<customer>:points` -> `bank:pts:redeemed`). The
points are taken only when the custodian completes the withdrawal, released when it fails, is
rejected or cancelled (two-phase); the worker follows the withdrawal (`RewardsPart`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from andchain.connect import schema
from andchain.connect.cards import points_account
from andchain.context import Context
from andchain.custody.port import DESK
from andchain.custody.service import CustodyService
from andchain.db import write_transaction
from andchain.errors import Conflict, DomainError, NotFound
from andchain.events.store import iso
from andchain.ledger import AccountKind, AccountSpec
from andchain.money import format_minor
from andchain.ops import holds
from andchain.ops.core import OpStatus

log = logging.getLogger(__name__)

REDEEMED = "bank:pts:redeemed"
HOLD_CODE = "points_redemption"
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
POINTS_MAX = 10**12


def redemption_hold(redemption_id: str) -> holds.Hold:
    return holds.Hold(f"{HOLD_CODE}:{redemption_id}", HOLD_CODE)


@dataclass(frozen=True)
class Redemption:
    id: str
    customer: str
    points: int
    usdc_minor: int
    network: str
    address: str
    withdrawal_id: str
    status: str
    created_at_us: int
    key: str = ""

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "customer": self.customer,
            "points": self.points,
            "usdc": format_minor(self.usdc_minor, 6),
            "network": self.network,
            "address": self.address,
            "withdrawal": self.withdrawal_id,
            "status": self.status,
            "created_at": iso(self.created_at_us),
        }


def _of(row: Any) -> Redemption:
    return Redemption(row.id, row.customer, int(row.points), int(row.usdc_minor), row.network, row.address,
                      row.withdrawal_id, row.status, int(row.created_at_us), row.idempotency_key)  # fmt: skip


class Rewards:
    def __init__(self, ctx: Context, custody: CustodyService | None = None) -> None:
        self.ctx = ctx
        self.ledger = ctx.ledger
        self.settings = ctx.settings.connect
        self._custody = custody

    @property
    def custody(self) -> CustodyService:
        if self._custody is None:
            self._custody = CustodyService(self.ctx)
        return self._custody

    def points(self, customer: str) -> int:
        try:
            return self.ledger.account(points_account(customer)).available
        except DomainError:
            return 0

    def redeem(self, customer_ref: str, points: int, network: str, key: str) -> Redemption:
        """Redeem `points` for USDC delivered to the customer's verified address on `network`."""
        if isinstance(points, bool) or not isinstance(points, int) or not 0 < points <= POINTS_MAX:
            raise DomainError("points are a positive whole number", code="invalid_amount")
        if not isinstance(key, str) or not 0 < len(key) <= 200:
            raise DomainError("a redemption carries an idempotency key of 1-200 characters", code="invalid_request")
        client = self.custody.clients.client(customer_ref)
        customer = client.id.lower()
        existing = self._by_key(customer, key)
        if existing is not None:
            if (existing.points, existing.network) != (points, network):
                raise Conflict("this key was used for another redemption", code="idempotency_key_reused")
            return existing
        client = self.custody.clients.active(client.id)
        address = next(
            (a.address for a in self.custody.clients.addresses(client.id)
             if a.network == network and a.status == "verified"), None,
        )  # fmt: skip
        if address is None:
            raise DomainError(
                f"the customer has no verified address of its own on {network}: register one first",
                code="no_registered_address",
            )
        usdc_minor = int((Decimal(points) * Decimal(self.settings.point_value_usd) * 10**6).to_integral_value())
        if usdc_minor <= 0:
            raise DomainError("those points are worth less than the smallest USDC unit", code="invalid_amount")
        for result in self.ledger.create_accounts([AccountSpec(REDEEMED, "PTS", kind=AccountKind.EQUITY)]):
            if not (result.ok or result.result.value == "exists"):
                raise DomainError(f"the redemption account was refused: {result.result.value}")
        # Named by the customer and its key: two requests with the same key at once make the same
        # redemption and the same withdrawal (one records them, the other finds them).
        digest = hashlib.sha256(f"{customer}\x00{key}".encode()).hexdigest()
        redemption_id = "rdm_" + digest[:32]
        withdrawal_key = f"rewards-{digest}"
        now = self.ctx.clock()

        self.ctx.compliance.screen(customer, flow="rewards", addresses=((network, address),))

        def with_withdrawal(conn: Connection) -> None:
            """In the withdrawal's transaction: the redemption, its points hold, and compliance's admission
            (USDC 1:1 with cents)."""
            self.ctx.compliance.admit(conn, customer, "rewards", usdc_minor // 10_000, f"rewards:{redemption_id}")
            conn.execute(
                schema.redemptions.insert().values(
                    id=redemption_id, customer=customer, idempotency_key=key, points=points, usdc_minor=usdc_minor,
                    network=network, address=address, withdrawal_id="", status=PENDING, created_at_us=now,
                    updated_at_us=now,
                )
            )  # fmt: skip
            try:
                holds.reserve(
                    self.ledger, redemption_hold(redemption_id),
                    self.ledger.account(points_account(customer), conn=conn).id,
                    self.ledger.account(REDEEMED, conn=conn).id, points, "PTS",
                    memo=f"redeemed for {format_minor(usdc_minor, 6)} USDC", conn=conn,
                )  # fmt: skip
            except (holds.LedgerRefused, DomainError) as exc:
                raise DomainError(
                    f"the customer does not have {points} points available", code="insufficient_funds"
                ) from exc

        try:
            op = self.custody.withdraw(
                self.settings.rewards_custodian, DESK, "USDC", network, usdc_minor, address, withdrawal_key,
                note=f"rewards {redemption_id}", before=with_withdrawal,
            )  # fmt: skip
        except (IntegrityError, Conflict):
            found = self._by_key(customer, key)
            if found is None or (found.points, found.network) != (points, network):
                raise
            return found
        except holds.LedgerRefused as exc:
            # (The customer's points were checked in the same transaction: this is the treasury.)
            raise DomainError(
                "the bank's USDC treasury cannot deliver this now; the points were not touched",
                code="treasury_insufficient",
            ) from exc
        with write_transaction(self.ctx.engine) as conn:
            conn.execute(
                update(schema.redemptions)
                .where(schema.redemptions.c.id == redemption_id, schema.redemptions.c.withdrawal_id == "")
                .values(withdrawal_id=op.id)
            )
        return self.get(redemption_id)

    def _by_key(self, customer: str, key: str) -> Redemption | None:
        t = schema.redemptions
        with self.ctx.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.customer == customer, t.c.idempotency_key == key)).first()
        return None if row is None else _of(row)

    def get(self, redemption_id: str, *, customer: str | None = None) -> Redemption:
        t = schema.redemptions
        with self.ctx.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == redemption_id)).first()
        if row is None or (customer is not None and row.customer != customer):
            raise NotFound(f"no redemption {redemption_id!r}", code="redemption_not_found")
        return _of(row)

    def list(self, *, customer: str | None = None, limit: int = 100) -> list[Redemption]:
        t = schema.redemptions
        query = select(t).order_by(t.c.created_at_us.desc()).limit(limit)
        if customer is not None:
            query = query.where(t.c.customer == customer)
        with self.ctx.engine.connect() as conn:
            return [_of(r) for r in conn.execute(query)]

    def follow(self) -> int:
        """Take or release the points of each redemption whose withdrawal ended."""
        t = schema.redemptions
        with self.ctx.engine.connect() as conn:
            pending = [
                _of(r)
                for r in conn.execute(
                    select(t).where(t.c.status == PENDING).order_by(t.c.updated_at_us, t.c.id).limit(200)
                )
            ]
        ops = self.custody.ops
        done = 0
        for redemption in pending:
            withdrawal = redemption.withdrawal_id or None
            if withdrawal is None:
                digest = hashlib.sha256(f"{redemption.customer}\x00{redemption.key}".encode()).hexdigest()
                found = ops.find_by_key(f"rewards-{digest}")
                withdrawal = found.id if found else None
            if withdrawal is None:
                continue
            op = ops.get(withdrawal)
            if not op.terminal:
                # Looked at: to the back of the queue, so that the ones after it are looked at too.
                with write_transaction(self.ctx.engine) as conn:
                    conn.execute(update(t).where(t.c.id == redemption.id, t.c.status == PENDING)
                                 .values(updated_at_us=self.ctx.clock()))  # fmt: skip
                continue
            delivered = op.status == OpStatus.SUCCEEDED
            with write_transaction(self.ctx.engine) as conn:
                moved = conn.execute(
                    update(t).where(t.c.id == redemption.id, t.c.status == PENDING)
                    .values(status=DELIVERED if delivered else FAILED, withdrawal_id=op.id,
                            updated_at_us=self.ctx.clock())
                )  # fmt: skip
                if moved.rowcount == 1:
                    (holds.post if delivered else holds.void)(self.ledger, redemption_hold(redemption.id), conn=conn)
                    done += 1
        return done


class RewardsPart:
    """The worker's part: points taken or released as their USDC withdrawals end."""

    name = "connect-rewards"

    def __init__(self, rewards: Rewards) -> None:
        self.rewards = rewards
        self._next = 0.0
        self.done = 0

    def run(self) -> None:
        if time.monotonic() < self._next:
            return
        self.done = self.rewards.follow()
        self._next = time.monotonic() + 0.5

    def idle(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {"settled": self.done}
