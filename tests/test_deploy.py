"""The deployment files under deploy/ (docs/deployment.md) parse, agree with one another and with
andchain's own configuration, and hold no private key. Nothing here starts Besu, PostgreSQL or
HAProxy: these checks are of the files only."""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from urllib.parse import urlparse

import pytest
import rlp
from eth_keys.datatypes import PrivateKey
from eth_utils import keccak

from andchain.chains.nonces import RESERVE_MAX
from andchain.chains.rpc import BATCH_SIZE_MAX
from andchain.config import DEFAULT_NETWORKS, Settings
from andchain.errors import DomainError

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BESU = DEPLOY / "besu"
ANDCHAIN = DEPLOY / "andchain"
PROFILE = ANDCHAIN / "andchain.production.toml"
VALIDATORS = [f"validator-{n}" for n in range(1, 5)]
RPC_NODES = ["rpc-1", "rpc-2"]
QBFT_MIX_HASH = "0x63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365"


def _json(path: Path) -> object:
    return json.loads(path.read_text())


def _genesis() -> dict:
    return _json(BESU / "genesis.json")  # type: ignore[return-value]


def _validators() -> list[dict]:
    return _json(BESU / "validators.json")["validators"]  # type: ignore[index]


def _node(name: str) -> dict:
    with (BESU / name / "config.toml").open("rb") as f:
        return tomllib.load(f)


def _make_genesis() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_genesis", BESU / "make_genesis.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    writes, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ under deploy/
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = writes
    return module


@pytest.fixture
def production_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment of an andchain process on a production host: the profile, and its secrets as
    the secret manager would set them (never in the file)."""
    for name in list(os.environ):
        if name.startswith("ANDCHAIN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ANDCHAIN_CONFIG", str(PROFILE))
    monkeypatch.setenv("ANDCHAIN_KEYSTORE__PASSPHRASE", "from-the-secret-manager")
    monkeypatch.setenv("ANDCHAIN_API__KEY_PEPPER", "from-the-secret-manager-too")
    return monkeypatch


# ------------------------------------------------------------------------ Besu genesis


def test_the_genesis_is_a_free_gas_qbft_genesis_with_every_fork_up_to_cancun_from_block_zero():
    genesis = _genesis()
    config = genesis["config"]
    qbft = config["qbft"]
    assert set(qbft) == {"blockperiodseconds", "epochlength", "requesttimeoutseconds"}
    assert all(isinstance(v, int) and v > 0 for v in qbft.values())
    assert qbft["requesttimeoutseconds"] >= 2 * qbft["blockperiodseconds"]
    assert config["chainId"] == DEFAULT_NETWORKS["internal"]["chain_id"]
    assert config["zeroBaseFee"] is True and genesis["baseFeePerGas"] == "0x0"
    assert config["londonBlock"] == 0 and config["shanghaiTime"] == 0 and config["cancunTime"] == 0
    assert "pragueTime" not in config  # the contracts' bytecode needs Cancun, not Prague (deploy/besu/README.md)
    assert genesis["alloc"] == {}  # gas is free: nobody to fund
    assert genesis["difficulty"] == "0x1" and genesis["mixHash"] == QBFT_MIX_HASH
    assert int(genesis["gasLimit"], 16) == 100_000_000


def test_the_genesis_extra_data_lists_exactly_the_four_shipped_validators_in_ascending_order():
    vanity, validators, votes, round_, seals = rlp.decode(bytes.fromhex(_genesis()["extraData"][2:]))
    shipped = _validators()
    assert vanity == bytes(32) and votes == [] and round_ == b"" and seals == []
    assert validators == sorted(validators)
    assert sorted("0x" + a.hex() for a in validators) == sorted(v["address"] for v in shipped)
    assert len(shipped) == 4
    for v in shipped:
        public_key = bytes.fromhex(v["public_key"][2:])
        assert len(public_key) == 64
        assert v["address"] == "0x" + keccak(public_key)[-20:].hex()  # Besu's node address


def test_the_extra_data_encoder_writes_besus_documented_example_byte_for_byte():
    # Besu's documentation ("Configure QBFT consensus", extra data): four validators, in that order.
    addresses = [
        "4592c8e45706cc08b8f44b11e43cba0cfc5892cb",
        "06e23768a0f59cf365e18c2e0c89e151bcdedc70",
        "c5327f96ee02d7bcbc1bf1236b8c15148971e1de",
        "ab5e7f4061c605820d3744227eed91ff8e2c8908",
    ]
    documented = (
        "0xf87aa00000000000000000000000000000000000000000000000000000000000000000f8549445"
        "92c8e45706cc08b8f44b11e43cba0cfc5892cb9406e23768a0f59cf365e18c2e0c89e151bcdedc70"
        "94c5327f96ee02d7bcbc1bf1236b8c15148971e1de94ab5e7f4061c605820d3744227eed91ff8e2c"
        "8908c080c0"
    )
    encoded = _make_genesis().rlp_encode([bytes(32), [bytes.fromhex(a) for a in addresses], [], b"", []])
    assert "0x" + encoded.hex() == documented


def test_the_shipped_besu_files_are_what_make_genesis_writes_from_the_example_public_keys():
    make_genesis = _make_genesis()
    written = make_genesis.render(make_genesis.build(_json(BESU / "validators.input.json")))
    for name, text in written.items():
        assert (BESU / name).read_text() == text, f"deploy/besu/{name} differs from make_genesis.py's output"


def test_static_nodes_name_every_validator_by_its_public_key_address_and_port():
    enodes = _json(BESU / "static-nodes.json")
    expected = [f"enode://{v['public_key'][2:]}@{v['host']}:{v['p2p_port']}" for v in _validators()]
    assert enodes == expected
    for v in _validators():
        node = _node(v["name"])
        assert (node["p2p-host"], node["p2p-port"]) == (v["host"], v["p2p_port"])
        assert v["address"] in (BESU / v["name"] / "config.toml").read_text()  # named in its own config


def test_fresh_test_keys_make_a_genesis_of_their_own_addresses_and_stay_private(tmp_path):
    make_genesis = _make_genesis()
    spec = make_genesis.new_test_keys(tmp_path / "besu", ["127.0.0.1"] * 4, 30303)
    keys = sorted((tmp_path / "besu").glob("validator-*/key"))
    assert len(keys) == 4
    assert all(k.stat().st_mode & 0o077 == 0 for k in keys)
    public_keys = [PrivateKey(bytes.fromhex(k.read_text()[2:])).public_key for k in keys]
    addresses = {"0x" + key.to_canonical_address().hex() for key in public_keys}
    _, in_genesis, _, _, _ = rlp.decode(bytes.fromhex(make_genesis.build(spec)["genesis.json"]["extraData"][2:]))
    assert {"0x" + a.hex() for a in in_genesis} == addresses


def test_test_keys_are_refused_anywhere_in_the_repository_but_var():
    make_genesis = _make_genesis()
    with pytest.raises(SystemExit, match="refusing to write private keys"):
        make_genesis.new_test_keys(BESU / "keys", ["127.0.0.1"] * 4, 30303)
    assert not (BESU / "keys").exists()


# ---------------------------------------------------------------------- Besu nodes


@pytest.mark.parametrize("name", VALIDATORS + RPC_NODES)
def test_every_node_configuration_parses_and_names_the_shared_genesis_and_static_nodes(name):
    node = _node(name)
    assert Path(node["genesis-file"]).name == "genesis.json"
    assert Path(node["static-nodes-file"]).name == "static-nodes.json"
    assert node["discovery-enabled"] is False
    assert node["min-gas-price"] == 0  # else the node silently drops zero-priced transactions
    assert set(node["rpc-http-api"]) <= {"ETH", "NET", "QBFT", "WEB3", "TXPOOL"}
    assert "*" not in node["host-allowlist"]
    # One signer (the bank's minter) may have a whole nonce reservation waiting in the pool.
    assert node["tx-pool"] == "sequenced"
    assert node["tx-pool-max-size"] * node["tx-pool-limit-by-account-percentage"] >= RESERVE_MAX


def test_validators_answer_json_rpc_on_their_own_machine_only():
    for name in VALIDATORS:
        assert _node(name)["rpc-http-host"] == "127.0.0.1"


def test_rpc_nodes_take_andchains_json_rpc_batches_and_answer_the_name_andchain_uses():
    with PROFILE.open("rb") as f:
        rpc_host = urlparse(tomllib.load(f)["networks"]["internal"]["rpc_url"]).hostname
    for name in RPC_NODES:
        node = _node(name)
        assert node["rpc-http-max-batch-size"] >= BATCH_SIZE_MAX
        assert rpc_host in node["host-allowlist"]


# ------------------------------------------------------------------ andchain profile


def test_the_production_profile_loads_through_andchains_settings_with_secrets_from_the_environment(production_env):
    settings = Settings()
    genesis = _genesis()
    internal = settings.network("internal")
    assert settings.environment == "production"
    assert settings.keystore.passphrase is not None and settings.api.key_pepper is not None
    assert internal.chain_id == genesis["config"]["chainId"]
    assert internal.gas_limit == int(genesis["gasLimit"], 16)
    assert (internal.kind, internal.local, internal.confirmations, internal.gas_policy) == (
        "permissioned",
        False,
        1,
        "zero",
    )
    assert settings.resolved_database_url.startswith("postgresql+psycopg://")
    assert settings.api.rate_limit_storage_uri.startswith("redis")
    assert settings.api.behind_tls_proxy and "*" not in settings.api.allowed_hosts
    assert all(not n.local for n in settings.networks.values() if n.enabled)


def test_the_production_profile_refuses_to_start_without_the_keystore_passphrase(production_env):
    production_env.delenv("ANDCHAIN_KEYSTORE__PASSPHRASE")
    with pytest.raises(DomainError) as refused:
        Settings()
    assert refused.value.code == "keystore_passphrase_missing"


def test_a_provider_url_from_the_environment_replaces_the_placeholder_and_keeps_the_profile(production_env):
    production_env.setenv("ANDCHAIN_NETWORKS__BASE__RPC_URL", "https://base.node-provider.example/v2/k3y")
    production_env.setenv("ANDCHAIN_CUSTODY__CUSTODIANS__FIREBLOCKS__API_KEY", "from-the-secret-manager")
    settings = Settings()
    base = settings.network("base")
    assert base.rpc_url.endswith("/v2/k3y") and base.local is False and base.chain_id == 8453
    fireblocks = settings.custody.custodians["fireblocks"]
    assert fireblocks.api_key is not None and fireblocks.api_key.get_secret_value() == "from-the-secret-manager"
    assert fireblocks.private_key_path == Path("/etc/andchain/fireblocks/api-user.pem")


def _keys(table: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in table.items():
        out.append(prefix + key)
        if isinstance(value, dict):
            out += _keys(value, f"{prefix}{key}.")
    return out


def test_the_production_profile_holds_no_secret_value():
    with PROFILE.open("rb") as f:
        profile = tomllib.load(f)
    secret_names = ("passphrase", "pepper", "api_key", "secret", "signing_key", "password")
    assert not [k for k in _keys(profile) if k.rsplit(".", 1)[-1].endswith(secret_names)]
    assert urlparse(profile["database_url"]).password is None
    assert urlparse(profile["api"]["rate_limit_storage_uri"]).password is None
    for name, network in profile["networks"].items():
        if "rpc_url" in network:
            url = urlparse(network["rpc_url"])
            assert url.username is None and url.path in ("", "/") and not url.query, f"{name}: keys go in the env"


def test_every_variable_of_the_env_example_is_empty_and_a_setting_andchain_accepts(production_env):
    lines = [line for line in (ANDCHAIN / "andchain.env.example").read_text().splitlines() if "=" in line]
    names = []
    for line in lines:
        if line.startswith("#"):
            continue
        name, value = line.split("=", 1)
        assert value == "", f"{name} has a value in the example"
        names.append(name)
    assert "ANDCHAIN_KEYSTORE__PASSPHRASE" in names and "ANDCHAIN_API__KEY_PEPPER" in names
    for name in names:
        if name.endswith("RPC_URL"):
            production_env.setenv(name, "https://node-provider.example/v2/k3y")
        elif name.endswith("STORAGE_URI"):
            production_env.setenv(name, "rediss://:pw@redis.bank.internal:6380/0")
        else:
            production_env.setenv(name, "from-the-secret-manager")
    Settings()  # an unknown or malformed name would be refused here


# ------------------------------------------------------------- processes and network


def _haproxy() -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = ""
    for raw in (ANDCHAIN / "haproxy.cfg").read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line:
            continue
        if not line[0].isspace():
            current = line.strip()
            sections[current] = []
        else:
            sections[current].append(line.strip())
    return sections


def test_andchain_reaches_the_bank_chain_through_one_active_rpc_node_and_one_backup(production_env):
    haproxy = _haproxy()
    rpc_url = urlparse(Settings().network("internal").rpc_url)
    (bind,) = [line for line in haproxy["frontend besu_rpc"] if line.startswith("bind ")]
    assert bind.endswith(f":{rpc_url.port}")
    servers = [line.split() for line in haproxy["backend besu_rpc"] if line.startswith("server ")]
    assert {(s[1], s[2]) for s in servers} == {
        (name, f"{_node(name)['rpc-http-host']}:{_node(name)['rpc-http-port']}") for name in RPC_NODES
    }
    assert [s[1] for s in servers if "backup" not in s[3:]] == ["rpc-1"]


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string((ANDCHAIN / "systemd" / name).read_text())
    return parser


def test_the_api_and_worker_units_run_andchain_with_the_profile_and_secrets_from_a_file():
    api_servers = [line.split()[2] for line in _haproxy()["backend andchain_api"] if line.startswith("server ")]
    assert {server.rsplit(":", 1)[1] for server in api_servers} == {"8001", "8002"}
    for unit, command in (
        ("andchain-api@.service", "andchain serve --host 0.0.0.0 --port %i"),
        ("andchain-worker@.service", "andchain worker"),
        ("andchain-migrate.service", "andchain db upgrade"),
    ):
        service = _unit(unit)["Service"]
        assert service["ExecStart"].endswith(command)
        assert service["EnvironmentFile"] == "/etc/andchain/andchain.env"
        text = (ANDCHAIN / "systemd" / unit).read_text()
        assert "Environment=ANDCHAIN_CONFIG=/etc/andchain/andchain.toml" in text
        assert not re.search(r"Environment=ANDCHAIN_\w*(PASSPHRASE|PEPPER|KEY|SECRET)", text)


def _postgresql(name: str) -> dict[str, str]:
    settings = {}
    for raw in (ANDCHAIN / "postgresql" / name).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            key, value = (part.strip() for part in line.split("=", 1))
            settings[key] = value.strip("'")
    return settings


def test_the_primary_waits_for_the_standby_that_names_itself_as_it_lists():
    primary, standby = _postgresql("primary.conf"), _postgresql("standby.conf")
    assert primary["wal_level"] == "replica" and primary["synchronous_commit"] == "on"
    assert primary["fsync"] == "on"
    conninfo = dict(pair.split("=", 1) for pair in standby["primary_conninfo"].split())
    assert "password" not in conninfo
    assert re.search(rf"\b{re.escape(conninfo['application_name'])}\b", primary["synchronous_standby_names"])
    assert "synchronous_standby_names" not in standby  # once promoted, it must not wait for itself


# ------------------------------------------------------------------------- secrets

HEX_32_BYTES = re.compile(r"(?<![0-9a-fA-F])(?:0x)?([0-9a-fA-F]{64})(?![0-9a-fA-F])")
ALLOWED_32_BYTES = {QBFT_MIX_HASH[2:], "00" * 32}


def test_no_file_under_deploy_holds_a_private_key():
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert files
    for path in files:
        name = path.relative_to(ROOT)
        assert path.name != "key" and path.suffix not in (".key", ".pem"), f"{name} looks like a key file"
        text = path.read_text()
        assert "PRIVATE KEY-----" not in text, f"{name} holds a PEM private key"
        assert '"ciphertext"' not in text, f"{name} holds an encrypted keystore"
        for line in text.splitlines():
            for match in HEX_32_BYTES.finditer(line):
                # A 32-byte hex value is a private key until shown otherwise; only known constants pass.
                assert match.group(1).lower() in ALLOWED_32_BYTES, f"{name}: a 32-byte hex value: {line.strip()}"
            assert not re.search(r"private\w*\W{0,8}(0x)?[0-9a-fA-F]{64}", line, re.IGNORECASE), name
