"""The custodians the bank is configured to reach (`custody.custodians`), each behind the port."""

from __future__ import annotations

from pathlib import Path

from eth_utils import is_hex_address, to_checksum_address

from andchain.config import CustodianAdapterSettings
from andchain.context import Context
from andchain.custody.assets import AssetMap
from andchain.custody.port import Custodian
from andchain.errors import DomainError, NotFound


class CustodyConfigError(DomainError):
    code = "custody_config"


def _secret(value: object, name: str, what: str) -> str:
    if value is None:
        raise CustodyConfigError(f"custodian {name}: {what} is not configured")
    text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    if not text:
        raise CustodyConfigError(f"custodian {name}: {what} is empty")
    return str(text)


def _read(path: Path | None, name: str, what: str) -> str:
    if path is None:
        raise CustodyConfigError(f"custodian {name}: {what} is not configured")
    try:
        return path.read_text()
    except OSError as exc:
        raise CustodyConfigError(f"custodian {name}: cannot read {what} at {path}: {exc.strerror}") from None


def build(ctx: Context, name: str, cfg: CustodianAdapterSettings, *, owner: str | None = None) -> Custodian:
    """The custodian `name` behind the port. `owner` names the worker that would advance a `self`
    custodian (its lease's holder)."""
    registry = ctx.settings.asset_registry
    if cfg.kind == "reference":
        from andchain.custody.adapters.reference import ReferenceCustodianAdapter
        from andchain.custody.reference.runtime import directory_of

        directory = directory_of(ctx.settings)
        local = ctx.settings.environment == "development"
        api_key = cfg.api_key or (_dev_file(directory / "api-key") if local else None)
        webhook_secret = cfg.webhook_secret or (_dev_file(directory / "webhook-secret") if local else None)
        service = ctx.settings.custodian
        return ReferenceCustodianAdapter(
            base_url=cfg.base_url or f"http://{service.host}:{service.port}",
            api_key=_secret(api_key, name, "api_key (the reference custodian's, from its directory in development)"),
            webhook_secret=_secret(webhook_secret, name, "webhook_secret"),
            assets=registry,
            timeout_s=cfg.timeout_s,
            name=name,
        )
    if cfg.kind == "self":
        from andchain.custody.adapters.self_custody import SelfCustodian
        from andchain.custody.kept.service import KeptCustody, Token

        tokens = []
        for key, address in cfg.tokens.items():
            asset, sep, network = key.partition("@")
            if not sep or not is_hex_address(address):
                raise CustodyConfigError(f"custodian {name}: tokens are ASSET@network = 0x address, was {key!r}")
            registry.get(asset)
            ctx.settings.network(network)
            tokens.append(Token(asset, network, to_checksum_address(address)))
        from andchain.ops.core import worker_identity
        from andchain.ops.leases import Lease

        lease = Lease(
            ctx.engine, f"custody:kept:{name}", owner or worker_identity(), ctx.settings.ops.lease_s, ctx.clock
        )
        for network in cfg.native_networks:
            ctx.settings.network(network)  # an unknown network is refused here, with its own message
        kept = KeptCustody(
            ctx.engine,
            ctx.keys,
            ctx.chain,
            tokens,
            registry,
            clock=ctx.clock,
            fund_gas=ctx.fund_gas,
            lease=lease,
            native_networks=cfg.native_networks,
        )
        return SelfCustodian(kept, registry, name=name)
    if cfg.kind == "fireblocks":
        from andchain.custody.adapters.fireblocks import BASE_URL, FireblocksCustodian

        return FireblocksCustodian(
            api_key=_secret(cfg.api_key, name, "api_key"),
            private_key_pem=_read(cfg.private_key_path, name, "private_key_path"),
            assets=AssetMap.parse(name, cfg.assets, registry),
            webhook_public_key_pem=_read(cfg.webhook_public_key_path, name, "webhook_public_key_path")
            if cfg.webhook_public_key_path
            else None,
            base_url=cfg.base_url or BASE_URL,
            timeout_s=cfg.timeout_s,
            name=name,
        )
    from andchain.custody.adapters.coinbase_prime import BASE_URL as PRIME_URL
    from andchain.custody.adapters.coinbase_prime import CoinbasePrimeCustodian

    if not cfg.portfolio_id:
        raise CustodyConfigError(f"custodian {name}: portfolio_id is not configured")
    return CoinbasePrimeCustodian(
        access_key=_secret(cfg.api_key, name, "api_key (Prime's access key)"),
        passphrase=_secret(cfg.passphrase, name, "passphrase"),
        signing_key=_secret(cfg.signing_key, name, "signing_key"),
        portfolio_id=cfg.portfolio_id,
        assets=AssetMap.parse(name, cfg.assets, registry),
        base_url=cfg.base_url or PRIME_URL,
        timeout_s=cfg.timeout_s,
        name=name,
    )


def _dev_file(path: Path) -> str | None:
    return path.read_text().strip() if path.exists() else None


def custodian(ctx: Context, name: str) -> Custodian:
    configured = ctx.settings.custody.custodians
    if name not in configured:
        raise NotFound(
            f"no custodian {name!r} is configured; configured: {', '.join(sorted(configured)) or 'none'}",
            code="custodian_not_found",
        )
    return build(ctx, name, configured[name])


class KeptCustodyPart:
    """A `self` custodian's transfers and deposits, advanced by the bank's worker beside its other
    parts (under the custodian's lease: one worker at a time)."""

    def __init__(self, ctx: Context, name: str, owner: str) -> None:
        from andchain.custody.adapters.self_custody import SelfCustodian

        built = build(ctx, name, ctx.settings.custody.custodians[name], owner=owner)
        assert isinstance(built, SelfCustodian)
        self.custodian = built
        self.name = f"custody:{name}"
        self._idle = False

    def run(self) -> None:
        changed = self.custodian.process()
        self._idle = changed == 0 and self.custodian.kept.unfinished() == 0

    def idle(self) -> bool:
        return self._idle

    def release(self) -> None:
        if self.custodian.kept.lease is not None:
            self.custodian.kept.lease.release()


def custody_parts(ctx: Context, owner: str) -> list[KeptCustodyPart]:
    """The worker parts of the bank's own (`self`) custodians."""
    return [
        KeptCustodyPart(ctx, name, owner)
        for name, cfg in sorted(ctx.settings.custody.custodians.items())
        if cfg.kind == "self"
    ]
