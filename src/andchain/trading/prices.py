"""USD prices of crypto assets from the desk's venue, for the rest of the platform (compliance values a
crypto withdrawal against its tier limits and the travel rule's threshold with them)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from andchain.context import Context
from andchain.errors import Unavailable
from andchain.trading.venues.registry import venue_of

log = logging.getLogger(__name__)


def venue_prices(ctx: Context) -> Callable[[str], Decimal | None]:
    """The last price of ASSET-USD at the configured venue (made on first use). None when the desk has no
    such instrument (the worth is unknown: per-asset thresholds apply); a venue that does not answer is
    `Unavailable` (the request waits and is tried again, never passes unvalued)."""
    venue: Any = None

    def price(asset: str) -> Decimal | None:
        nonlocal venue
        symbol = f"{asset.upper()}-USD"
        if symbol not in ctx.settings.trading.instruments:
            return None
        try:
            if venue is None:
                venue = venue_of(ctx)
            return Decimal(str(venue.fetch_ticker(symbol).last))
        except Exception as exc:
            log.warning("no USD price for %s: %s", symbol, exc)
            raise Unavailable(
                f"the venue gives no price for {symbol} now; try again", code="valuation_unavailable"
            ) from exc

    return price


def install(ctx: Context) -> Context:
    """Give `ctx` the venue's prices (once)."""
    if ctx.price_source is None:
        ctx.price_source = venue_prices(ctx)
    return ctx
