"""Which of a custodian's assets is which of ours: (asset, network) <-> the provider's asset id.

Custodians name an asset per network (Fireblocks' `USDC_BASECHAIN_ETH_5I5C`, Prime's symbol
and network), andchain names it by its asset code and network name (`USDC` on `base`). The
map is configuration, written `ASSET@network = provider id`; an asset missing from it is
refused before anything is sent, and a provider's asset missing from it is not ours to book.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from andchain.errors import DomainError
from andchain.money import DEFAULT_ASSETS, AssetRegistry


class AssetNotSupported(DomainError):
    code = "asset_not_supported"


@dataclass(frozen=True)
class AssetMap:
    custodian: str
    ids: Mapping[tuple[str, str], str]
    registry: AssetRegistry

    @classmethod
    def parse(cls, custodian: str, mapping: Mapping[str, str], registry: AssetRegistry | None = None) -> AssetMap:
        registry = registry or AssetRegistry(DEFAULT_ASSETS)
        ids: dict[tuple[str, str], str] = {}
        for key, provider_id in mapping.items():
            asset, sep, network = key.partition("@")
            if not sep or not asset or not network or not provider_id:
                raise DomainError(f"custodian {custodian}: an asset is written ASSET@network = id, was {key!r}")
            registry.get(asset)  # an unknown asset code is refused here, with its own message
            ids[(asset, network)] = provider_id
        if len(set(ids.values())) != len(ids):
            raise DomainError(f"custodian {custodian}: two assets map to the same provider id")
        return cls(custodian, ids, registry)

    def provider_id(self, asset: str, network: str) -> str:
        try:
            return self.ids[(asset, network)]
        except KeyError:
            raise AssetNotSupported(
                f"custodian {self.custodian} has no asset {asset} on {network} configured",
                asset=asset,
                network=network,
            ) from None

    def ours(self, provider_id: str) -> tuple[str, str] | None:
        for key, value in self.ids.items():
            if value == provider_id:
                return key
        return None

    def scale(self, asset: str) -> int:
        return self.registry.get(asset).scale
