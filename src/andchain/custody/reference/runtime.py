"""Build the reference custodian from andchain's settings: its own data directory, database,
key store and secrets, the networks andchain knows, the tokens it is told to hold."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from eth_utils import is_hex_address, to_checksum_address

from andchain.config import KeystoreSettings, Settings
from andchain.context import Context
from andchain.custody.kept.service import KeptCustody, Token
from andchain.custody.reference.app import Worker
from andchain.devtools.dev_secrets import dev_secret
from andchain.errors import DomainError
from andchain.money import parse_minor


@dataclass
class Running:
    ctx: Context
    custodian: KeptCustody
    api_key: str
    webhook_secret: str
    directory: Path

    def worker(self) -> Worker:
        cs = self.ctx.settings.custodian
        return Worker(
            self.custodian, webhook_secret=self.webhook_secret, poll_s=cs.poll_s, attempts_max=cs.webhook_attempts_max
        )

    def close(self) -> None:
        self.ctx.close()


def private_dir(directory: Path) -> Path:
    """The custodian's directory, made private to its owner (0700) when this process makes it."""
    if not directory.exists():
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
    return directory


def serve_lock(directory: Path) -> IO[bytes]:
    """One serving process per custodian: two would each sign for the same accounts, and one's
    nonce-gap repair could fill a nonce the other has signed for. The lock is the process's for as
    long as it keeps the returned file open."""
    private_dir(directory)
    handle = open(directory / "serve.lock", "wb")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DomainError(
            f"another custodian process serves {directory} already", code="custodian_already_serving"
        ) from None
    return handle


def directory_of(settings: Settings) -> Path:
    return settings.custodian.data_dir or settings.data_dir / "custodian"


def secret(directory: Path, name: str, configured: str | None, environment: str) -> str:
    """A configured secret, or in development one generated once and kept in the custodian's
    directory (0600) for the bank's side to read."""
    if configured:
        return configured
    if environment != "development":
        raise DomainError(f"custodian.{name} must be set outside development", code="custodian_secret_missing")
    private_dir(directory)
    try:
        return dev_secret(directory / name.replace("_", "-"))
    except ValueError as exc:
        raise DomainError(str(exc), code="custodian_secret_missing") from None


def build(settings: Settings) -> Running:
    cs = settings.custodian
    directory = directory_of(settings)
    own = settings.model_copy(
        update={
            "data_dir": directory,
            "database_url": None,
            "keystore": KeystoreSettings(passphrase=cs.keystore_passphrase, scrypt_n=settings.keystore.scrypt_n),
        }
    )
    ctx = Context(own)
    # andchain's schema: its own tables (custody_kept_*) and the chain tables its signer needs.
    ctx.upgrade_database()
    registry = settings.asset_registry
    tokens = []
    for key, address in cs.tokens.items():
        asset, sep, network = key.partition("@")
        if not sep or not is_hex_address(address):
            raise DomainError(f"custodian.tokens: write ASSET@network = 0x address, was {key!r} = {address!r}")
        registry.get(asset)
        settings.network(network)
        tokens.append(Token(asset, network, to_checksum_address(address)))
    approval = {asset: parse_minor(amount, registry.get(asset).scale) for asset, amount in cs.approval_above.items()}
    environment = settings.environment
    custodian = KeptCustody(
        ctx.engine,
        ctx.keys,
        ctx.chain,
        tokens,
        registry,
        clock=ctx.clock,
        approval_above=approval,
        blocked_addresses=frozenset(cs.blocked_addresses),
        fund_gas=ctx.fund_gas,
        webhook_url=cs.webhook_url,
        bitcoin_network=cs.bitcoin_network,
        native_networks=[n for n in cs.native_networks if settings.network(n)],
    )
    api_key = secret(directory, "api_key", cs.api_key.get_secret_value() if cs.api_key else None, environment)
    webhook_secret = secret(
        directory, "webhook_secret", cs.webhook_secret.get_secret_value() if cs.webhook_secret else None, environment
    )
    return Running(ctx, custodian, api_key, webhook_secret, directory)
