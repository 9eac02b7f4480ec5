"""Configuration: embedded defaults, an optional `andchain.toml`, then `ANDCHAIN_*` variables.

Precedence, highest first: explicit keyword arguments, environment variables
(`ANDCHAIN_DATABASE_URL`, nested keys with `__`, e.g. `ANDCHAIN_API__PORT`), the
TOML file (`ANDCHAIN_CONFIG`, default `./andchain.toml`), the defaults below.
All state lives under `data_dir` (`./var/` by default).
"""

from __future__ import annotations

import logging
import os
import stat
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from andchain.money import AssetRegistry

log = logging.getLogger(__name__)


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    page_size_max: int = Field(default=500, ge=1, le=10_000)
    idempotency_stale_after_s: int = Field(default=60, ge=1)
    # The secret under which API keys are hashed (HMAC-SHA256), kept out of the database.
    # Required in production; in development one is generated beside the keys.
    key_pepper: SecretStr | None = None
    # A request body over this is refused (413 body_too_large) before or while it is read.
    body_bytes_max: int = Field(default=1024 * 1024, ge=1, le=1024 * 1024 * 1024)
    # Requests per caller (its API key's id, else its address), in the `limits` notation:
    # "600/minute", or several at once, "20/second;600/minute". Reads are GET and HEAD.
    rate_limit_reads: str = "600/minute"
    rate_limit_writes: str = "120/minute"
    # Where the counts are kept: "memory://" is this process alone. Several API processes
    # behind one load balancer need a storage they share (e.g. "redis://host:6379"), else
    # each allows the full rate and a caller gets the limit times the number of processes.
    rate_limit_storage_uri: str = "memory://"
    rate_limit_strategy: Literal["moving-window", "sliding-window-counter", "fixed-window"] = "moving-window"
    # The names the API answers to (the Host header); anything else is 400 invalid_host.
    # `host` (the address it listens on) is added when it is a name or a specific address.
    # "*.bank.example" allows every subdomain; "*" allows any name (do not, in production).
    allowed_hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1", "localhost"])
    # Set once a TLS-terminating proxy stands in front: `andchain serve` then stops warning
    # that it listens beyond this machine over plain HTTP.
    behind_tls_proxy: bool = False

    @field_validator("rate_limit_reads", "rate_limit_writes")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(
                f"a rate limit must read like '600/minute' or '20/second;600/minute', was {value!r}"
            ) from None
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        names = [name.strip().lower() for name in value]
        if not names or any(not name or "/" in name or " " in name for name in names):
            raise ValueError(f"allowed_hosts must be host names like 'api.bank.example', was {value!r}")
        return names


class LedgerSettings(BaseModel):
    # The expiry sweep runs at the start of every write batch; bounding it keeps one
    # batch's latency bounded even after a long outage left many pendings behind.
    expire_batch_max: int = Field(default=1000, ge=1, le=8190)


class OpsSettings(BaseModel):
    """How operations are retried and supervised."""

    # Transient failures (a node that does not answer, a refused nonce, a timeout) of one
    # operation are retried this many times with backoff; then the operation compensates
    # (a move's destination that never answers) or stops in needs_attention, its holds kept.
    attempts_max: int = Field(default=8, ge=1, le=1000)
    backoff_base_s: float = Field(default=0.5, gt=0, le=3600)
    backoff_max_s: float = Field(default=60.0, gt=0, le=86_400)
    # How long a worker's claim on an operation (or a listener's lease) lasts without renewal.
    lease_s: float = Field(default=30.0, ge=1, le=3600)
    # An active operation older than this is reported by reconcile.
    stuck_after_s: float = Field(default=600.0, ge=1)
    # A nonce gap that stays this long is filled: by the transaction that owns the nonce, or a no-op.
    nonce_gap_grace_s: float = Field(default=3.0, ge=0, le=3600)
    # /health calls a worker alive when its last round ended within this many seconds.
    worker_stale_after_s: float = Field(default=30.0, ge=1)


# The Standard Webhooks retry schedule: the first attempt at once, then after 5 s, 5 min, 30 min,
# 2 h, 5 h, 10 h, 14 h, 20 h and 24 h (about three days and a half in all).
STANDARD_WEBHOOK_SCHEDULE_S = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0)


class EventsSettings(BaseModel):
    """The event feed, its stream and webhook deliveries (docs/events.md)."""

    # The wait before each attempt of a delivery: attempt 1 after the first delay (0: at once), attempt n
    # after the n-th; a delivery whose last attempt failed is `failed` (a replay queues it again).
    retry_schedule_s: list[float] = Field(default_factory=lambda: list(STANDARD_WEBHOOK_SCHEDULE_S))
    # One attempt: connect, send and read the status within this many seconds.
    delivery_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # Deliveries claimed per round at most, and how long a claim lasts: longer than a round can take.
    delivery_batch_max: int = Field(default=100, ge=1, le=10_000)
    delivery_lease_s: float = Field(default=60.0, ge=1, le=3600)
    # How often a worker looks for new events and due deliveries.
    delivery_poll_s: float = Field(default=0.25, ge=0, le=60)
    # Events turned into deliveries per subscription and round at most.
    fanout_batch_max: int = Field(default=1000, ge=1, le=100_000)
    # Plain http:// endpoints are accepted only when true (a receiver on a development machine).
    allow_http: bool = False
    # Endpoints on this machine or the bank's own network (loopback, private, link-local such as a
    # cloud's metadata service) are accepted only when true: a client's webhook must not reach inside.
    # Names are resolved and checked at every attempt, and the connection goes to the checked address.
    private_targets: bool = False
    # The server-sent event stream: how often it looks for new events, how often it sends a heartbeat
    # comment, and how long one connection lasts before the server ends it (the client reconnects with
    # Last-Event-ID and loses nothing).
    stream_poll_s: float = Field(default=1.0, gt=0, le=60)
    stream_heartbeat_s: float = Field(default=15.0, gt=0, le=300)
    stream_max_s: float = Field(default=300.0, gt=0, le=86_400)

    @field_validator("retry_schedule_s")
    @classmethod
    def _schedule(cls, value: list[float]) -> list[float]:
        if not 1 <= len(value) <= 50:
            raise ValueError(f"events.retry_schedule_s must hold 1 to 50 delays, held {len(value)}")
        if any(not 0 <= d <= 7 * 86_400 for d in value):
            raise ValueError("every delay of events.retry_schedule_s must be within 0..604800 s")
        return value

    @model_validator(mode="after")
    def _lease_outlasts_an_attempt(self) -> EventsSettings:
        # An attempt takes up to three timeouts (connect, write, read); a round sends only while a whole
        # attempt still fits in the claim.
        if self.delivery_lease_s < 4 * self.delivery_timeout_s:
            raise ValueError(
                f"events.delivery_lease_s ({self.delivery_lease_s:g}) must be at least four times "
                f"events.delivery_timeout_s ({self.delivery_timeout_s:g})"
            )
        return self


def shown_url(url: str) -> str:
    """A URL without what may be a secret: a node provider's URL carries its API key in the user
    part, the path or the query (https://eth.example/v2/<key>), so only the scheme, host and port
    are shown, with '/...' where something was left out."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parsed.port}" if parsed.port else ""
    except ValueError:
        port = ""
    hidden = parsed.username or parsed.password or parsed.path.strip("/") or parsed.query or parsed.fragment
    return f"{parsed.scheme}://{host}{port}" + ("/..." if hidden else "")


class NetworkSettings(BaseModel):
    """One EVM network andchain reaches over JSON-RPC."""

    model_config = {"extra": "forbid"}

    display_name: str
    chain_id: int = Field(ge=1)
    rpc_url: str
    kind: Literal["permissioned", "public"]
    # Blocks on top of an event's block before it is final for the bank (1 = its own block).
    confirmations: int = Field(default=1, ge=1, le=1000)
    # zero: the bank's permissioned chain charges no gas; eip1559 / legacy: paid gas.
    gas_policy: Literal["zero", "eip1559", "legacy"] = "eip1559"
    explorer_url: str | None = Field(default=None, description="template with {tx}, e.g. https://etherscan.io/tx/{tx}")
    # local: andchain starts and stops an anvil node for it under <data_dir>/networks/<name>.
    local: bool = True
    enabled: bool = True
    # Seconds between blocks of a local node; None mines one block per transaction.
    block_time_s: float | None = None
    gas_limit: int = Field(default=30_000_000, ge=1_000_000)
    # Moves of the deposit token between networks: token buckets in minor units (USD cents).
    # capacity = the most that may leave (or arrive) at once; refill = cents per second.
    move_outbound_capacity: int = Field(default=10**13, ge=0)
    move_outbound_refill_per_s: int = Field(default=10**9, ge=0)
    move_inbound_capacity: int = Field(default=10**13, ge=0)
    move_inbound_refill_per_s: int = Field(default=10**9, ge=0)
    # How a payment reference becomes the 32-byte on-chain memo: "text" (UTF-8, at most 32 bytes)
    # or "iso20022" (a UETR as its 16 bytes, or an EndToEndId of at most 32 characters).
    memo_format: Literal["text", "iso20022"] = "text"
    # Public networks: alert when a bank signer's gas balance falls below this (wei).
    gas_alert_below_wei: int = Field(default=5 * 10**16, ge=0)
    # The most calls in one JSON-RPC batch (a worker's signed transactions are broadcast in batches of at
    # most this many); providers cap it, some at 100.
    rpc_batch_max: int = Field(default=1000, ge=1, le=10_000)

    @field_validator("rpc_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if urlparse(value).scheme not in ("http", "https"):
            raise ValueError(f"rpc_url must be http(s)://, was {value!r}")
        return value

    @property
    def rpc_url_shown(self) -> str:
        """The node's URL as messages, logs and API answers show it (see `shown_url`)."""
        return shown_url(self.rpc_url)

    @property
    def port(self) -> int:
        parsed = urlparse(self.rpc_url)
        return parsed.port or (443 if parsed.scheme == "https" else 80)

    @property
    def host(self) -> str:
        return urlparse(self.rpc_url).hostname or "127.0.0.1"

    def explorer_link(self, tx_hash: str) -> str | None:
        return self.explorer_url.format(tx=tx_hash) if self.explorer_url else None


# The shipped profiles. Local development nodes keep the public chain ids so that
# signatures and addresses behave as on the real networks; rpc_url and local=false
# point a profile at a real endpoint instead.
DEFAULT_NETWORKS: dict[str, dict[str, Any]] = {
    "internal": {
        "display_name": "Bank internal chain (permissioned)",
        "chain_id": 770077,
        "kind": "permissioned",
        "rpc_url": "http://127.0.0.1:8545",
        "confirmations": 1,
        "gas_policy": "zero",
        "gas_limit": 1_000_000_000,
    },
    "ethereum": {
        "display_name": "Ethereum",
        "chain_id": 1,
        "kind": "public",
        "rpc_url": "http://127.0.0.1:8546",
        "confirmations": 3,
        "gas_policy": "eip1559",
        "explorer_url": "https://etherscan.io/tx/{tx}",
        "block_time_s": 1.0,
    },
    "base": {
        "display_name": "Base",
        "chain_id": 8453,
        "kind": "public",
        "rpc_url": "http://127.0.0.1:8547",
        "confirmations": 2,
        "gas_policy": "eip1559",
        "explorer_url": "https://basescan.org/tx/{tx}",
        "block_time_s": 1.0,
    },
    "tempo": {
        "display_name": "Tempo",
        "chain_id": 4217,
        "kind": "public",
        "rpc_url": "http://127.0.0.1:8548",
        "confirmations": 1,
        "gas_policy": "eip1559",
        "block_time_s": 1.0,
    },
    "swift": {
        "display_name": "Swift shared ledger (Besu)",
        "chain_id": 770078,
        "kind": "permissioned",
        "rpc_url": "http://127.0.0.1:8549",
        "memo_format": "iso20022",
        "confirmations": 1,
        "gas_policy": "zero",
        "enabled": False,
        "gas_limit": 1_000_000_000,
    },
}


class KeystoreSettings(BaseModel):
    # Required in production. In development, None means a passphrase generated once and kept
    # beside the keys under <data_dir>/keys, with a warning each time a process uses it.
    passphrase: SecretStr | None = None
    # scrypt's cost N for new keys (r = 8, so memory is N x 1 KiB: 256 MiB at 2^18). Each key
    # costs one derivation when created and one per process that signs with it.
    scrypt_n: int = Field(default=2**18, ge=2**10, le=2**20)

    @field_validator("scrypt_n")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError(f"keystore.scrypt_n must be a power of two, was {value}")
        return value


class KycTierSettings(BaseModel):
    """What a party of one KYC tier may move (USD, decimal strings): per transfer and per UTC day."""

    per_transfer_usd: str
    per_day_usd: str


class MonitoringSettings(BaseModel):
    """The transaction-monitoring rules (docs/compliance.md); each opens an alert, none blocks."""

    # Cash in and out of a party in one UTC day above this (the CTR threshold).
    cash_daily_usd: str = "10000"
    # Structuring: at least `structuring_count_min` cash transactions in 24 h, each within
    # `structuring_band_pct` percent below the cash threshold.
    structuring_count_min: int = Field(default=3, ge=2, le=100)
    structuring_band_pct: int = Field(default=20, ge=1, le=99)
    # Velocity: more than this many transactions of a party in the window.
    velocity_count_max: int = Field(default=50, ge=1, le=100_000)
    velocity_window_s: int = Field(default=3600, ge=60, le=86_400 * 7)
    # Dormant reactivation: the first transaction after this many days without one.
    dormant_days: int = Field(default=180, ge=1, le=3650)


class ComplianceSettings(BaseModel):
    # How long a client has to sign an address-ownership challenge.
    challenge_ttl_s: int = Field(default=900, ge=30)
    # The OFAC SDN list: a directory with sdn.csv/add.csv/alt.csv (and sdn_comments.csv), or the
    # advanced XML (sdn_advanced.xml). Loaded by `andchain compliance load-list`; none: no list loaded.
    sanctions_list_path: Path | None = None
    # A name scoring at least this (0-100, rapidfuzz token ratio) against a listed name is a hit.
    name_match_threshold: int = Field(default=90, ge=50, le=100)
    # The KYC status a client is onboarded with: the operator onboarding a client records the bank's
    # KYC decision; "pending" makes every flow wait for an approval (`andchain compliance kyc`).
    onboarding_kyc_status: Literal["pending", "approved"] = "approved"
    kyc_tiers: dict[str, KycTierSettings] = Field(
        default_factory=lambda: {
            "basic": KycTierSettings(per_transfer_usd="10000", per_day_usd="25000"),
            "standard": KycTierSettings(per_transfer_usd="1000000", per_day_usd="5000000"),
            "enhanced": KycTierSettings(per_transfer_usd="100000000", per_day_usd="500000000"),
        }
    )
    default_kyc_tier: str = "standard"
    # Where the bank is regulated, and from which amount (USD) each jurisdiction's travel rule asks
    # for originator and beneficiary data (IVMS101).
    jurisdiction: str = "US"
    travel_rule_usd: dict[str, str] = Field(default_factory=lambda: {"US": "3000", "FATF": "1000"})
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    # The bank itself in the ISO 20022 messages it produces (pain.001, pacs.008).
    bank_name: str = "andchain Bank"
    bank_bic: str = "ANDCUS33XXX"
    bank_account: str = "US-ANDCHAIN-SETTLEMENT"

    @model_validator(mode="after")
    def _tiers(self) -> ComplianceSettings:
        if self.default_kyc_tier not in self.kyc_tiers:
            raise ValueError(f"compliance.default_kyc_tier {self.default_kyc_tier!r} is not in compliance.kyc_tiers")
        if self.jurisdiction not in self.travel_rule_usd:
            raise ValueError(f"compliance.jurisdiction {self.jurisdiction!r} has no travel_rule_usd threshold")
        return self


class CustodianSettings(BaseModel):
    """The bundled reference custodian (`andchain custodian serve`): a separate service, with its
    own data directory (database and keys) under `data_dir`, default <andchain data_dir>/custodian."""

    host: str = "127.0.0.1"
    port: int = Field(default=8650, ge=1, le=65535)
    data_dir: Path | None = None
    # Its API key and webhook secret: generated once in development under its data directory.
    api_key: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    # Where it sends its signed webhooks (the bank's receiving route), if anywhere.
    webhook_url: str | None = None
    webhook_attempts_max: int = Field(default=12, ge=1, le=100)
    keystore_passphrase: SecretStr | None = None
    # The ERC-20 tokens it holds: "ASSET@network" -> the token's address on that network.
    tokens: dict[str, str] = Field(default_factory=dict)
    # The EVM networks on which it holds native ETH (in development, `andchain custodian start`
    # adds the local public ones when this is empty).
    native_networks: list[str] = Field(default_factory=list)
    # Withdrawals above these amounts (per asset, decimal) wait for its operator's approval.
    approval_above: dict[str, str] = Field(default_factory=lambda: {"USDC": "10000", "BTC": "1"})
    blocked_addresses: list[str] = Field(default_factory=list)
    poll_s: float = Field(default=0.5, gt=0, le=60)
    # BTC is kept in its own book (no Bitcoin node runs here): addresses are checked for this
    # Bitcoin network; None holds no BTC.
    bitcoin_network: Literal["mainnet", "testnet", "signet", "regtest"] | None = "regtest"


class CustodianAdapterSettings(BaseModel):
    """One custodian the bank reaches through the custodian port (docs/custody.md)."""

    kind: Literal["reference", "self", "fireblocks", "coinbase_prime"]
    # reference: default http://<custodian.host>:<custodian.port>; fireblocks and coinbase_prime:
    # the provider's production URL.
    base_url: str | None = None
    # reference: its API key and webhook secret (in development, read from the reference
    # custodian's directory); fireblocks: the API key; coinbase_prime: the access key.
    api_key: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    # fireblocks: the API user's RSA private key and Fireblocks' webhook public key, as PEM files.
    private_key_path: Path | None = None
    webhook_public_key_path: Path | None = None
    # coinbase_prime: the passphrase, the signing key and the portfolio.
    passphrase: SecretStr | None = None
    signing_key: SecretStr | None = None
    portfolio_id: str | None = None
    # fireblocks and coinbase_prime: "ASSET@network" -> the provider's asset id or symbol.
    assets: dict[str, str] = Field(default_factory=dict)
    # self: "ASSET@network" -> the token's address the bank holds itself, and the networks on which
    # it holds native ETH.
    tokens: dict[str, str] = Field(default_factory=dict)
    native_networks: list[str] = Field(default_factory=list)
    timeout_s: float = Field(default=10.0, gt=0, le=120)


class CustodySettings(BaseModel):
    # The embedded default: the bundled reference custodian on this machine.
    custodians: dict[str, CustodianAdapterSettings] = Field(
        default_factory=lambda: {"reference": CustodianAdapterSettings(kind="reference")}
    )
    # How often the worker reads each custodian's transfers (the backstop of its webhooks), and
    # the longest wait between two look-ups of one transfer in flight.
    poll_s: float = Field(default=2.0, gt=0, le=3600)
    transfer_poll_max_s: float = Field(default=30.0, gt=0, le=3600)
    # Withdrawals of at least these amounts (per asset, decimal) carry the travel rule's IVMS101
    # originator and beneficiary data.
    travel_rule_from: dict[str, str] = Field(
        default_factory=lambda: {"USDC": "1000", "BTC": "0.01", "ETH": "0.3", "USD": "1000"}
    )
    # `andchain stablecoin convert`: where the bank holds the stablecoins it converts, and on
    # which network it delivers them.
    stablecoin_custodian: str = "reference"
    stablecoin_network: str = "base"


class InstrumentSettings(BaseModel):
    """One instrument the desk trades (decimals as strings: exact)."""

    model_config = ConfigDict(extra="forbid")

    price_increment: str
    size_increment: str
    min_size: str
    max_size: str
    min_notional: str
    max_notional: str


def _default_instruments() -> dict[str, InstrumentSettings]:
    rows = {
        # symbol: price increment, size increment, min size, max size, min notional, max notional (USD)
        "BTC-USD": ("0.01", "0.00000001", "0.00001", "100", "1", "10000000"),
        "ETH-USD": ("0.01", "0.00000001", "0.0001", "2500", "1", "10000000"),
        "SOL-USD": ("0.001", "0.0001", "0.01", "100000", "1", "5000000"),
        "USDC-USD": ("0.0001", "0.01", "1", "10000000", "1", "10000000"),
    }
    return {
        symbol: InstrumentSettings(
            price_increment=p, size_increment=q, min_size=lo, max_size=hi, min_notional=nlo, max_notional=nhi
        )
        for symbol, (p, q, lo, hi, nlo, nhi) in rows.items()
    }


class ReplayVenueSettings(BaseModel):
    """The `replay` venue: order books generated from a seed and served on a clock (docs/trading.md)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 20261126
    # How long the generated day runs (one snapshot a second) before it starts again.
    seconds: int = Field(default=3600, ge=60, le=86_400)
    levels: int = Field(default=20, ge=1, le=200)
    # A market order pays this beyond the book it walks, and every fill this fee (basis points).
    slippage_bps: str = "2"
    fee_bps: str = "10"
    balances: dict[str, str] = Field(
        default_factory=lambda: {"USD": "50000000", "BTC": "500", "ETH": "10000", "SOL": "200000", "USDC": "50000000"}
    )
    # Where its data files and its state live; default <data_dir>/venues/replay.
    data_dir: Path | None = None


class ClientTierSettings(BaseModel):
    """What a client of one tier may trade (USD amounts as decimal strings)."""

    model_config = ConfigDict(extra="forbid")

    max_order_notional: str
    max_daily_notional: str
    instruments: list[str]
    # What the desk adds to (buys) or takes from (sells) the venues' price for the size, in basis points.
    spread_bps: str = "25"


class RiskSettings(BaseModel):
    """The bank's risk appetite for the desk, and each client tier's limits (docs/trading.md)."""

    model_config = ConfigDict(extra="forbid")

    tiers: dict[str, ClientTierSettings] = Field(
        default_factory=lambda: {
            "basic": ClientTierSettings(
                max_order_notional="10000",
                max_daily_notional="50000",
                instruments=["BTC-USD", "ETH-USD", "USDC-USD"],
                spread_bps="50",
            ),
            "standard": ClientTierSettings(
                max_order_notional="250000",
                max_daily_notional="1000000",
                instruments=["BTC-USD", "ETH-USD", "SOL-USD", "USDC-USD"],
            ),
            "professional": ClientTierSettings(
                max_order_notional="5000000",
                max_daily_notional="25000000",
                instruments=["BTC-USD", "ETH-USD", "SOL-USD", "USDC-USD"],
                spread_bps="10",
            ),
        }
    )
    # The tier of a client with none recorded.
    default_tier: str = "standard"
    # The desk: the most it may hold long or short per asset (in the asset), its gross exposure
    # (the sum of every position's absolute value at the mark, USD), the most it may lose in a day.
    max_net_position: dict[str, str] = Field(
        default_factory=lambda: {"BTC": "50", "ETH": "800", "SOL": "40000", "USDC": "20000000"}
    )
    max_gross_exposure: str = "10000000"
    max_daily_loss: str = "250000"
    # An order's price at most this far from the reference price (basis points of the mid).
    price_band_bps: str = "500"
    # Orders a client may submit in a window.
    submit_rate: int = Field(default=20, ge=1)
    submit_window_s: float = Field(default=1.0, gt=0)


class CcxtVenueSettings(BaseModel):
    """A real exchange reached through ccxt (`pip install 'andchain[venues]'`); its keys come from the
    environment variables named here, never from the file."""

    model_config = ConfigDict(extra="forbid")

    exchange: str
    api_key_env: str | None = None
    secret_env: str | None = None
    password_env: str | None = None
    sandbox: bool = True
    options: dict[str, Any] = Field(default_factory=dict)


class ConnectSettings(BaseModel):
    """Bank-to-wallet: partner apps reaching customers' accounts with their consent (docs/connect.md)."""

    model_config = ConfigDict(extra="forbid")

    # The authorization server's issuer (its base URL as partners reach it); default from api.host/port.
    issuer: str | None = None
    access_token_ttl_s: int = Field(default=900, ge=60, le=86_400)
    refresh_token_ttl_s: int = Field(default=30 * 86_400, ge=3600, le=400 * 86_400)
    code_ttl_s: int = Field(default=60, ge=10, le=600)
    # How long a consent lasts unless the customer picks less, and the most it may.
    consent_days: int = Field(default=90, ge=1, le=400)
    consent_days_max: int = Field(default=365, ge=1, le=400)
    # The bank's ABA routing number, shown to partners with a tokenized account number.
    routing_number: str = Field(default="123456780", pattern=r"^[0-9]{9}$")
    # Account pulls (ACH-like debits a partner sends): posted this long after they arrive (the
    # settlement date), settled when the return window after that closes; per customer, at most
    # this much a day and this many in an hour.
    pull_post_after_s: float = Field(default=0, ge=0, le=7 * 86_400)
    pull_return_window_s: float = Field(default=2 * 86_400, ge=0, le=60 * 86_400)
    pull_daily_max: str = "5000.00"
    pull_hourly_count_max: int = Field(default=5, ge=1, le=1000)
    # Cards: an authorization not captured within this expires (its hold released by the ledger); a
    # purchase with one of these merchant category codes (6051: crypto, quasi-cash) is a cash advance,
    # charged this fee (percent of the amount, at least the minimum) and earning no points; points
    # earned per USD of other purchases.
    card_auth_ttl_s: int = Field(default=7 * 86_400, ge=60, le=31 * 86_400)
    cash_advance_mccs: list[str] = Field(default_factory=lambda: ["6051", "6050", "6010", "6011"])
    cash_advance_fee_percent: str = "5"
    cash_advance_fee_min: str = "10.00"
    points_per_usd: str = "1"
    # Rewards: what a point is worth when redeemed for USDC, and where the USDC comes from (the bank's
    # treasury: the desk's account at this custodian).
    point_value_usd: str = "0.01"
    rewards_custodian: str = "reference"


class TradingSettings(BaseModel):
    # "BASE-QUOTE" -> its precision and limits (docs/trading.md).
    instruments: dict[str, InstrumentSettings] = Field(default_factory=_default_instruments)
    replay: ReplayVenueSettings = Field(default_factory=ReplayVenueSettings)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    # Where the desk prices and hedges: "replay", or the name of one of `ccxt`'s entries.
    venue: str = "replay"
    ccxt: dict[str, CcxtVenueSettings] = Field(default_factory=dict)
    # Where the desk settles assets with its clients (an internal transfer between two accounts
    # there), and on which network each asset is held.
    custodian: str = "reference"
    settlement_networks: dict[str, str] = Field(
        default_factory=lambda: {"BTC": "bitcoin", "ETH": "base", "USDC": "base"}
    )
    # How long a quote can be accepted (seconds).
    quote_ttl_s: float = Field(default=5.0, gt=0, le=300)
    # The desk keeps a trade without hedging it when its net position in the asset stays within
    # this (or the trade reduces it); otherwise it hedges the trade's whole size on the venue.
    internalise_max: dict[str, str] = Field(
        default_factory=lambda: {"BTC": "1", "ETH": "20", "SOL": "1000", "USDC": "250000"}
    )


def config_path() -> Path:
    return Path(os.environ.get("ANDCHAIN_CONFIG", "andchain.toml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ANDCHAIN_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    # "production" refuses to start without keystore.passphrase; "development" (the embedded
    # defaults on one machine) generates one and warns that it is for development only.
    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("var")
    database_url: str | None = None
    # Extra assets beyond the built-in ones, as code -> scale (decimal places).
    assets: dict[str, int] = Field(default_factory=dict)
    log_level: str = "INFO"
    api: ApiSettings = Field(default_factory=ApiSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    keystore: KeystoreSettings = Field(default_factory=KeystoreSettings)
    compliance: ComplianceSettings = Field(default_factory=ComplianceSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    custodian: CustodianSettings = Field(default_factory=CustodianSettings)
    custody: CustodySettings = Field(default_factory=CustodySettings)
    trading: TradingSettings = Field(default_factory=TradingSettings)
    connect: ConnectSettings = Field(default_factory=ConnectSettings)
    networks: dict[str, NetworkSettings] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _merge_network_profiles(cls, data: Any) -> Any:
        """A file or variable that sets one field of one network keeps the rest of its profile."""
        if not isinstance(data, dict):
            return data
        given = data.get("networks") or {}
        merged = {name: dict(profile) for name, profile in DEFAULT_NETWORKS.items()}
        for name, profile in given.items():
            base = merged.get(name, {})
            merged[name] = {**base, **(profile.model_dump() if isinstance(profile, BaseModel) else profile)}
        return {**data, "networks": merged}

    @model_validator(mode="after")
    def _production_has_a_passphrase(self) -> Settings:
        # A DomainError, not a ValueError: it leaves pydantic unwrapped, so the CLI and the
        # server print one line at start instead of a validation report.
        secret = self.keystore.passphrase
        if self.environment == "production" and (secret is None or not secret.get_secret_value()):
            from andchain.errors import DomainError

            raise DomainError(
                "environment is production but keystore.passphrase is not set: set "
                "ANDCHAIN_KEYSTORE__PASSPHRASE (or [keystore] passphrase) from the bank's secret manager",
                code="keystore_passphrase_missing",
            )
        return self

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

    def network(self, name: str) -> NetworkSettings:
        from andchain.errors import NotFound

        try:
            return self.networks[name]
        except KeyError:
            raise NotFound(
                f"unknown network {name!r}; configured: {', '.join(sorted(self.networks))}", code="unknown_network"
            ) from None

    def ensure_data_dir(self) -> Path:
        """The data directory, created private to the bank's service user (0700) whatever the umask.

        A directory that already exists is left as the operator made it (it may be shared with
        a backup agent's group on purpose), with a warning when others can read it.
        """
        try:
            self.data_dir.mkdir(parents=True)
        except FileExistsError:
            mode = stat.S_IMODE(self.data_dir.stat().st_mode)
            if mode & 0o077:
                log.warning(
                    "data_dir=%s mode=%o: others than its owner can reach keys and the database; chmod 700 it",
                    self.data_dir,
                    mode,
                )
        else:
            os.chmod(self.data_dir, 0o700)
        return self.data_dir


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
