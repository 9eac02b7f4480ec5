from __future__ import annotations

import pytest

from andchain.tokens.runtime import run_until_idle, token_worker
from andchain.tokens.service import TokenService
from tests.chains.conftest import anvil, ctx  # noqa: F401 - fixtures shared with the chain tests


@pytest.fixture
def tokens(ctx) -> TokenService:  # noqa: F811
    service = TokenService(ctx)
    service.setup("internal")
    return service


def settle(ctx, service: TokenService, *, seconds: float = 30.0) -> None:  # noqa: F811
    """Run the worker until no operation is unfinished and the listener has caught up."""
    worker = token_worker(ctx, service)
    assert run_until_idle(worker, seconds=seconds), service.ops.counts()


def sent_and_mined(ctx, service: TokenService, ops) -> None:  # noqa: F811
    """One round of the worker sends the operations' transactions (its listener and other parts do not run),
    and every one is mined before the next round: their final steps then come in one batch, and the
    listener reads them in one range, however slow the node is on a busy machine."""
    worker = token_worker(ctx, service)
    worker.parts = []
    worker.run_once()
    service.chain("internal").wait_hashes([service.ops.get(op.id).state["tx"]["hash"] for op in ops])
