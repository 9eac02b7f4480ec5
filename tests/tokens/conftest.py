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
