"""Room for in-place updates on PostgreSQL: the tables whose rows are updated on every transfer or step
(account balances, operations, signed transactions) keep part of each page free, so that an update
writes its new row version on the same page and leaves the indexes alone (a HOT update).

Pages written from now on keep the room; `VACUUM FULL` (or pg_repack) rewrites the older ones.
SQLite has no such setting: nothing changes there.

Revision ID: 0018
Revises: 0017
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

# Percent of each page filled by inserts (PostgreSQL's default is 100).
FILLFACTORS = {"ledger_accounts": 70, "ops_operations": 80, "ops_transactions": 80}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, percent in FILLFACTORS.items():
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {percent})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in FILLFACTORS:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
