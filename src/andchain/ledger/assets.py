"""The assets a book knows: the built-in and configured ones, and those recorded in its database.

An asset is recorded in `ledger_assets` (code, scale) when it is registered
(`Ledger.register_assets`) and when an account is opened in it, so every process on
the same database knows its scale, not only the one that added it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sqlalchemy import Engine, inspect, select

from andchain.errors import Conflict
from andchain.ledger import schema
from andchain.money import DEFAULT_ASSETS, Asset, AssetRegistry


class AssetConflict(Conflict):
    code = "asset_scale_conflict"


def conflict(known: Asset, other: Asset, where: str) -> AssetConflict:
    return AssetConflict(
        f"asset {known.code} is {where} with scale {known.scale}; it cannot also have scale {other.scale}"
    )


class BookAssets(AssetRegistry):
    """An asset registry that also knows the assets recorded in the ledger's database.

    It reads them when first asked, and again whenever asked for a code it does not
    know, so that an asset another process registered since then is found. `add`
    still registers an asset in this process's memory only.
    """

    def __init__(self, engine: Engine | Callable[[], Engine], assets: Iterable[Asset] = DEFAULT_ASSETS) -> None:
        self._lock = threading.RLock()
        self._engine_source = engine
        self._loaded = False
        self._table_seen = False
        super().__init__(assets)

    @property
    def engine(self) -> Engine:
        source = self._engine_source
        return source if isinstance(source, Engine) else source()

    def add(self, asset: Asset) -> Asset:
        with self._lock:
            return super().add(asset)

    def reload(self) -> None:
        """Read the recorded assets again; a recorded scale that differs from a known one is refused."""
        engine = self.engine
        with engine.connect() as conn:
            # A database not migrated yet records no asset (the ledger cannot book then anyway).
            if not self._table_seen:
                self._table_seen = inspect(conn).has_table(schema.assets.name)
            rows: list[Any] = []
            if self._table_seen:
                rows = list(conn.execute(select(schema.assets.c.code, schema.assets.c.scale)))
        with self._lock:
            for code, scale in rows:
                recorded = Asset(code, int(scale))
                if super().__contains__(code):
                    known = super().get(code)
                    if known != recorded:
                        raise conflict(recorded, known, "recorded in the ledger's database")
                else:
                    super().add(recorded)
            self._loaded = True

    def _knows(self, code: object) -> bool:
        reloaded = False
        if not self._loaded:
            self.reload()
            reloaded = True
        if super().__contains__(code):
            return True
        if reloaded or not isinstance(code, str):
            return False
        self.reload()
        return super().__contains__(code)

    def get(self, code: str) -> Asset:
        self._knows(code)
        return super().get(code)

    def __contains__(self, code: object) -> bool:
        return self._knows(code)

    def __iter__(self) -> Iterator[Asset]:
        if not self._loaded:
            self.reload()
        with self._lock:
            return iter(sorted(self._by_code.values(), key=lambda asset: asset.code))
