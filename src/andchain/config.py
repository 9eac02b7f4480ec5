"""Configuration: embedded defaults, an optional `andchain.toml`, then `ANDCHAIN_*` variables.

Precedence, highest first: explicit keyword arguments, environment variables
(`ANDCHAIN_DATABASE_URL`, nested keys with `__`, e.g. `ANDCHAIN_API__PORT`), the
TOML file (`ANDCHAIN_CONFIG`, default `./andchain.toml`), the defaults below.
All state lives under `data_dir` (`./var/` by default).
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from andchain.money import AssetRegistry


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    page_size_max: int = Field(default=500, ge=1, le=10_000)
    idempotency_stale_after_s: int = Field(default=60, ge=1)


class LedgerSettings(BaseModel):
    # The expiry sweep runs at the start of every write batch; bounding it keeps one
    # batch's latency bounded even after a long outage left many pendings behind.
    expire_batch_max: int = Field(default=1000, ge=1, le=8190)


def config_path() -> Path:
    return Path(os.environ.get("ANDCHAIN_CONFIG", "andchain.toml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ANDCHAIN_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    data_dir: Path = Path("var")
    database_url: str | None = None
    # Extra assets beyond the built-in ones, as code -> scale (decimal places).
    assets: dict[str, int] = Field(default_factory=dict)
    log_level: str = "INFO"
    api: ApiSettings = Field(default_factory=ApiSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)

    @field_validator("database_url")
    @classmethod
    def _known_engine(cls, value: str | None) -> str | None:
        if value is None or value.startswith(("sqlite", "postgresql")):
            return value
        raise ValueError(f"database_url must be sqlite:/// or postgresql+psycopg://, was {value.split(':')[0]}:")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_path())
        return (init_settings, env_settings, toml)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'andchain.db').as_posix()}"

    @cached_property
    def asset_registry(self) -> AssetRegistry:
        return AssetRegistry.with_extra(self.assets)

    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
