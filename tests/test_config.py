from pathlib import Path

import pytest
from pydantic import ValidationError

from andchain.config import Settings


def test_defaults_keep_all_state_under_var(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ANDCHAIN_DATA_DIR", raising=False)
    monkeypatch.delenv("ANDCHAIN_DATABASE_URL", raising=False)
    settings = Settings()
    assert settings.data_dir == Path("var")
    assert settings.resolved_database_url == "sqlite:///var/andchain.db"


def test_a_toml_file_and_the_environment_override_defaults(monkeypatch, tmp_path):
    config = tmp_path / "andchain.toml"
    config.write_text('data_dir = "/srv/andchain"\n[api]\nport = 9100\n[assets]\nJPMD = 2\n')
    monkeypatch.setenv("ANDCHAIN_CONFIG", str(config))
    monkeypatch.setenv("ANDCHAIN_DATABASE_URL", "postgresql+psycopg://bank@db/andchain")
    monkeypatch.setenv("ANDCHAIN_API__HOST", "0.0.0.0")
    settings = Settings()
    assert settings.data_dir == Path("/srv/andchain")
    assert (settings.api.host, settings.api.port) == ("0.0.0.0", 9100)
    assert settings.resolved_database_url.startswith("postgresql+psycopg://")
    assert settings.asset_registry.get("JPMD").scale == 2


def test_an_unknown_database_engine_is_refused(monkeypatch):
    monkeypatch.setenv("ANDCHAIN_DATABASE_URL", "mysql://x/y")
    with pytest.raises(ValidationError, match="sqlite:/// or postgresql"):
        Settings()


def test_an_unknown_key_in_the_file_is_refused(monkeypatch, tmp_path):
    config = tmp_path / "andchain.toml"
    config.write_text("databse_url = 'sqlite:///x.db'\n")
    monkeypatch.setenv("ANDCHAIN_CONFIG", str(config))
    with pytest.raises(ValidationError):
        Settings()
