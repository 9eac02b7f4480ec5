"""The composition root: one place that turns settings into an engine, a ledger and services.

The CLI, the API and the tests all build their parts here, so they drive the same code.
"""

from __future__ import annotations

from functools import cached_property

from sqlalchemy import Engine

from andchain import migrate
from andchain.config import Settings, load_settings
from andchain.db import make_engine
from andchain.ledger import Ledger
from andchain.ledger.model import Clock, system_clock_us
from andchain.money import AssetRegistry


class Context:
    def __init__(self, settings: Settings | None = None, *, clock: Clock = system_clock_us) -> None:
        self.settings = settings or load_settings()
        self.clock = clock

    @cached_property
    def engine(self) -> Engine:
        if self.settings.resolved_database_url.startswith("sqlite"):
            self.settings.ensure_data_dir()
        return make_engine(self.settings.resolved_database_url)

    @property
    def assets(self) -> AssetRegistry:
        return self.settings.asset_registry

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(
            self.engine, self.assets, clock=self.clock, expire_batch_max=self.settings.ledger.expire_batch_max
        )

    def upgrade_database(self) -> str | None:
        migrate.upgrade(self.engine)
        return migrate.current(self.engine)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
