"""The composition root: one place that turns settings into an engine, a ledger and services.

The CLI, the API and the tests all build their parts here, so they drive the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from andchain import migrate
from andchain.config import Settings, load_settings
from andchain.db import make_engine
from andchain.ledger import Ledger
from andchain.ledger.assets import BookAssets
from andchain.ledger.model import Clock, system_clock_us
from andchain.money import Asset

if TYPE_CHECKING:
    from andchain.api.auth import ApiKeys
    from andchain.chains.client import ChainClient
    from andchain.chains.keys import EncryptedKeyStore
    from andchain.chains.nodes import LocalNode
    from andchain.compliance.service import Compliance


class Context:
    def __init__(self, settings: Settings | None = None, *, clock: Clock = system_clock_us) -> None:
        self.settings = settings or load_settings()
        self.clock = clock
        self._chains: dict[str, ChainClient] = {}
        # Where crypto assets get their USD price (for compliance's limits and travel-rule thresholds).
        self.price_source: Callable[[str], Decimal | None] | None = None

    @cached_property
    def engine(self) -> Engine:
        if self.settings.resolved_database_url.startswith("sqlite"):
            self.settings.ensure_data_dir()
        return make_engine(self.settings.resolved_database_url)

    @cached_property
    def assets(self) -> BookAssets:
        """The built-in and configured assets, and those recorded in the ledger's database.

        The ledger shares this registry: an asset added here (in this process's memory)
        is known to it, and one another process recorded is found on first use.
        """
        return BookAssets(lambda: self.engine, self.settings.asset_registry)

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(
            self.engine, self.assets, clock=self.clock, expire_batch_max=self.settings.ledger.expire_batch_max
        )

    @cached_property
    def compliance(self) -> Compliance:
        """Screening, KYC, tier limits and monitoring, shared by every service of this context (one copy
        of the sanctions list's matchers in memory)."""
        from andchain.compliance.service import Compliance

        return Compliance(self.engine, self.settings, self.clock, self.ledger.ids, usd_price=self.usd_price)

    def usd_price(self, asset: str) -> Decimal | None:
        """The USD price of one unit of a crypto asset from `price_source` (the trading desk's venue, installed
        by the processes that run the desk: `andchain.trading.prices.install`); None when not known."""
        source = self.price_source
        return source(asset) if source is not None else None

    @cached_property
    def keys(self) -> EncryptedKeyStore:
        from andchain.chains.keys import EncryptedKeyStore, keystore_passphrase

        directory = self.settings.ensure_data_dir() / "keys"
        secret = self.settings.keystore.passphrase
        passphrase = keystore_passphrase(
            directory, secret.get_secret_value() if secret else None, self.settings.environment
        )
        return EncryptedKeyStore(directory, passphrase, scrypt_n=self.settings.keystore.scrypt_n)

    @cached_property
    def api_keys(self) -> ApiKeys:
        from andchain.api.auth import ApiKeys, dev_pepper

        secret = self.settings.api.key_pepper
        if secret is not None:
            pepper = secret.get_secret_value().encode()
        elif self.settings.environment == "development":
            pepper = dev_pepper(self.settings.ensure_data_dir() / "keys")
        else:
            from andchain.errors import DomainError

            raise DomainError(
                "api.key_pepper (ANDCHAIN_API__KEY_PEPPER) must be set outside development",
                code="api_key_pepper_missing",
            )
        return ApiKeys(self.engine, pepper, self.clock)

    def chain(self, network: str) -> ChainClient:
        """The chain client of a configured network (one per context)."""
        from andchain.chains.client import ChainClient

        if network not in self._chains:
            self._chains[network] = ChainClient(
                network, self.settings.network(network), self.engine, self.keys, clock=self.clock
            )
        return self._chains[network]

    def register_assets(self, assets: list[Asset]) -> None:
        """Make assets known to the ledger (persisted, so that every process knows them)."""
        self.ledger.register_assets(assets)

    def fund_gas(self, network: str, addresses: list[str]) -> None:
        """Give the bank's signers gas on a local development node; elsewhere the bank funds its own
        gas wallets (reconcile alerts when one runs low)."""
        settings = self.settings.network(network)
        if settings.local and settings.gas_policy != "zero":
            self.node(network).fund(addresses)

    def node(self, network: str) -> LocalNode:
        from andchain.chains.nodes import LocalNode

        return LocalNode(network, self.settings.network(network), self.settings.ensure_data_dir())

    def upgrade_database(self) -> str | None:
        migrate.upgrade(self.engine)
        return migrate.current(self.engine)

    def close(self) -> None:
        for client in self._chains.values():
            client.close()
        self._chains.clear()
        if "engine" in self.__dict__:
            self.engine.dispose()
