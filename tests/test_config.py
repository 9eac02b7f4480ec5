from pathlib import Path

import pytest
from pydantic import ValidationError

from andchain.config import Settings
from andchain.errors import DomainError


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


def test_the_environment_is_development_unless_set_and_anything_else_is_refused(monkeypatch):
    monkeypatch.delenv("ANDCHAIN_ENVIRONMENT", raising=False)
    assert Settings().environment == "development"
    monkeypatch.setenv("ANDCHAIN_ENVIRONMENT", "staging")
    with pytest.raises(ValidationError, match="development"):
        Settings()


def test_production_without_a_keystore_passphrase_is_refused_at_start(monkeypatch):
    monkeypatch.setenv("ANDCHAIN_ENVIRONMENT", "production")
    monkeypatch.delenv("ANDCHAIN_KEYSTORE__PASSPHRASE", raising=False)
    with pytest.raises(DomainError) as caught:
        Settings()
    assert caught.value.code == "keystore_passphrase_missing"
    with pytest.raises(DomainError):
        Settings(keystore={"passphrase": ""})
    monkeypatch.setenv("ANDCHAIN_KEYSTORE__PASSPHRASE", "from-the-vault")
    settings = Settings()
    assert settings.environment == "production"
    assert "from-the-vault" not in repr(settings)


def test_the_command_line_says_in_one_line_that_production_needs_a_passphrase(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from andchain.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANDCHAIN_ENVIRONMENT", "production")
    monkeypatch.delenv("ANDCHAIN_KEYSTORE__PASSPHRASE", raising=False)
    result = CliRunner().invoke(app, ["ledger", "accounts", "list"])
    assert result.exit_code == 1
    assert "keystore.passphrase is not set" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "var").exists()


def test_scrypt_costs_at_least_2_18_by_default_and_must_be_a_power_of_two():
    assert Settings().keystore.scrypt_n >= 2**18
    assert Settings(keystore={"scrypt_n": 1024}).keystore.scrypt_n == 1024
    with pytest.raises(ValidationError, match="power of two"):
        Settings(keystore={"scrypt_n": 300_000})
