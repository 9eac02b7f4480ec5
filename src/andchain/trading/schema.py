"""The desk's tables: quotes (RFQ), fills, clients' tiers, and the clients' orders on its book."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, UniqueConstraint

from andchain.db import metadata

# One row per quote: open until accepted (then settled or failed) or expired. Decimals as text.
quotes = Table(
    "desk_quotes",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("instrument", String(32), nullable=False),
    Column("side", String(4), nullable=False),  # the client's: buy | sell
    Column("quantity", String(48), nullable=False),
    Column("price", String(48), nullable=False),
    Column("notional_minor", BigInteger, nullable=False),  # USD cents the client pays or receives
    Column("mid", String(48), nullable=False),  # the venue's mid when quoted
    Column("spread_bps", String(16), nullable=False),
    Column("pay_with", String(16), nullable=False),  # usd | deposit_token
    Column("network", String(64), nullable=True),  # the deposit tokens' network
    Column("custodian", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # open | accepted | settled | failed | expired
    Column("created_at_us", BigInteger, nullable=False),
    Column("expires_at_us", BigInteger, nullable=False),
    Column("decided_at_us", BigInteger, nullable=True),
    Column("trade_id", String(40), nullable=True),  # the desk_trade operation
    Index("ix_desk_quotes_status", "status", "expires_at_us"),
    Index("ix_desk_quotes_client", "client_id", "created_at_us"),
)

# Every fill of the desk, in the order recorded: a client's trade settled (the desk on the other
# side, at the custodian) or a hedge on a venue. Positions and P&L are their fold.
fills = Table(
    "desk_fills",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("ref", String(120), nullable=False, unique=True),  # recorded once: trade:<op>:client|hedge
    Column("source", String(16), nullable=False),  # client | hedge
    Column("trade_id", String(40), nullable=True),
    Column("client_id", String(64), nullable=True),
    Column("instrument", String(32), nullable=False),
    Column("asset", String(16), nullable=False),
    Column("place", String(80), nullable=False),  # custodian:<name> | venue:<name>
    Column("side", String(4), nullable=False),  # the desk's: buy | sell
    Column("quantity", String(48), nullable=False),
    Column("price", String(48), nullable=False),
    Column("fee", String(48), nullable=False),  # USD
    Column("notional_minor", BigInteger, nullable=False),  # USD cents
    Column("at_us", BigInteger, nullable=False),
    Index("ix_desk_fills_client", "client_id", "at_us"),
    Index("ix_desk_fills_at", "at_us"),
    sqlite_autoincrement=True,
)

# The trading tier of a client (its limits and spread); none recorded: `trading.risk.default_tier`.
tiers = Table(
    "desk_client_tiers",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("tier", String(32), nullable=False),
    Column("set_by", String(200), nullable=False),
    Column("set_at_us", BigInteger, nullable=False),
)

# The clients' orders on the desk's book (matched in-process by price, then time: trading/orders.py).
# Decimals as text; `priority` orders a price level (the book's version when the order took its place).
orders = Table(
    "desk_orders",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("client_id", String(64), nullable=False),
    Column("client_order_id", String(64), nullable=False),
    Column("request_sha256", String(64), nullable=False),
    Column("instrument", String(32), nullable=False),
    Column("side", String(4), nullable=False),
    Column("type", String(8), nullable=False),  # limit | market
    Column("tif", String(4), nullable=False),  # gtc | ioc | fok
    Column("post_only", Boolean, nullable=False),
    Column("route", Boolean, nullable=False),  # what the book cannot fill goes to the desk (priced at the venue)
    Column("price", String(48), nullable=True),
    Column("quantity", String(48), nullable=False),  # the total, fills included
    Column("filled", String(48), nullable=False),
    # What its fills cost, exactly (the sum of price x quantity): its cents are rounded from it.
    Column("cost", String(80), nullable=False),
    Column("status", String(16), nullable=False),  # open | filled | cancelled | rejected
    Column("reason", String(200), nullable=True),
    Column("priority", BigInteger, nullable=False),
    Column("hold_seq", Integer, nullable=False),  # the order's current hold: desk_order:<id>:<hold_seq>
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    UniqueConstraint("client_id", "client_order_id", name="uq_desk_orders_client_order"),
    Index("ix_desk_orders_book", "instrument", "status", "priority"),
    Index("ix_desk_orders_client", "client_id", "created_at_us"),
    sqlite_autoincrement=True,
)

# One row per instrument: its book's version, moved by every change (the lock and the cache's check).
books = Table(
    "desk_books",
    metadata,
    Column("instrument", String(32), primary_key=True),
    Column("version", BigInteger, nullable=False),
)
