"""The platform's worker: the tokens' and custody's operations and parts, the desk's trades and quote
expiry, and partners' account pulls along their lifecycle."""

from __future__ import annotations

from andchain.connect.pulls import Pulls, PullsPart
from andchain.connect.rewards import Rewards, RewardsPart
from andchain.context import Context
from andchain.ops.worker import Worker
from andchain.tokens.runtime import token_worker
from andchain.tokens.service import TokenService
from andchain.trading.desk import DeskHandler, DeskService, QuoteExpiryPart
from andchain.trading.orders import FrozenOrdersPart, OrderBooks
from andchain.trading.prices import install as install_prices


def platform_worker(
    ctx: Context, service: TokenService | None = None, *, owner: str | None = None, desk: DeskService | None = None
) -> Worker:
    install_prices(ctx)
    worker = token_worker(ctx, service, owner=owner)
    if desk is None:
        from andchain.custody.service import CustodyHandler

        for handler_in in worker.handlers.values():
            if isinstance(handler_in, CustodyHandler):
                desk = DeskService(ctx, custody=handler_in.service)
                break
        else:
            desk = DeskService(ctx)
    handler = DeskHandler(desk)
    for kind in handler.kinds:
        worker.handlers[kind] = handler
    worker.parts.append(QuoteExpiryPart(desk))
    worker.parts.append(FrozenOrdersPart(OrderBooks(desk)))
    worker.parts.append(PullsPart(Pulls(ctx)))
    worker.parts.append(RewardsPart(Rewards(ctx, desk.custody)))
    return worker
