from __future__ import annotations

from tests.chains.conftest import anvil, ctx  # noqa: F401 - fixtures shared with the chain tests
from tests.tokens.conftest import tokens  # noqa: F401
