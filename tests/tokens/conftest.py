from __future__ import annotations

import pytest

from andchain.tokens.runtime import token_worker
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

    def idle() -> bool:
        counts = service.ops.counts()
        return not any(counts.get(s, 0) for s in ("received", "submitted", "confirming"))

    worker.run(seconds=seconds, idle_sleep_s=0.02, until=idle)
    worker.run_once()  # one more tick: the listener books what the last operations emitted
    assert idle(), service.ops.counts()
