"""A party's totals of each UTC day (what left it, what it moved in cash), kept with its activity: the tier
limits and the cash rules read one row instead of summing the day's movements, which grew with each.

The totals of today and yesterday (UTC) are filled from the activity already recorded; older days are
never read by the rules.

Revision ID: 0019
Revises: 0018
"""

import time

import sqlalchemy as sa
from alembic import op

from andchain.db import AmountType, decode_amount

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

DAY_US = 86_400 * 1_000_000


def upgrade() -> None:
    table = op.create_table(
        "compliance_party_days",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("out_usd_minor", AmountType(), nullable=False),
        sa.Column("cash_usd_minor", AmountType(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "day", name="pk_compliance_party_days"),
    )
    since = (time.time_ns() // 1000 // DAY_US - 1) * DAY_US
    activity = sa.table(
        "compliance_activity",
        sa.column("client_id", sa.String()),
        sa.column("direction", sa.String()),
        sa.column("cash", sa.Boolean()),
        sa.column("amount_usd_minor", sa.String()),
        sa.column("at_us", sa.BigInteger()),
    )
    totals: dict[tuple[str, int], list[int]] = {}
    rows = op.get_bind().execute(
        sa.select(
            activity.c.client_id, activity.c.direction, activity.c.cash, activity.c.amount_usd_minor, activity.c.at_us
        ).where(activity.c.at_us >= since)
    )
    for row in rows:
        client_id, direction, cash, amount, at_us = row
        day = totals.setdefault((str(client_id), int(str(at_us)) // DAY_US), [0, 0])
        value = decode_amount(amount)  # exact: text digits on SQLite, NUMERIC on PostgreSQL
        if direction == "out":
            day[0] += value
        if cash:
            day[1] += value
    filled = [
        {"client_id": client_id, "day": day, "out_usd_minor": out, "cash_usd_minor": cash}
        for (client_id, day), (out, cash) in sorted(totals.items())
        if out or cash
    ]
    if filled:
        op.bulk_insert(table, filled)


def downgrade() -> None:
    op.drop_table("compliance_party_days")
