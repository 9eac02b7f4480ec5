"""The venue the desk prices and hedges on, built from `trading.venue` (docs/trading.md)."""

from __future__ import annotations

import os

from andchain.context import Context
from andchain.errors import DomainError
from andchain.trading.instruments import Instruments
from andchain.trading.venues.port import Venue


def venue_of(ctx: Context, name: str | None = None) -> Venue:
    """`replay` (data files and a clock), or one of `trading.ccxt`'s exchanges (keys from the environment)."""
    trading = ctx.settings.trading
    name = name or trading.venue
    if name == "replay":
        from andchain.trading.venues.replay import ReplayVenue

        directory = trading.replay.data_dir or ctx.settings.data_dir / "venues" / "replay"
        return ReplayVenue(trading.replay, Instruments(trading), directory)
    cfg = trading.ccxt.get(name)
    if cfg is None:
        raise DomainError(
            f"no venue {name!r}: `replay`, or one of trading.ccxt ({', '.join(sorted(trading.ccxt)) or 'none'})",
            code="venue_not_configured",
        )
    from andchain.trading.venues.ccxt_venue import CcxtVenue, connect

    config: dict[str, object] = dict(cfg.options)
    for field, env in (("apiKey", cfg.api_key_env), ("secret", cfg.secret_env), ("password", cfg.password_env)):
        if env:
            value = os.environ.get(env)
            if not value:
                raise DomainError(f"venue {name}: the environment has no {env}", code="venue_not_configured")
            config[field] = value
    exchange = connect(cfg.exchange, config)
    if cfg.sandbox and hasattr(exchange, "set_sandbox_mode"):
        exchange.set_sandbox_mode(True)
    return CcxtVenue(exchange, name)
