"""The double-entry book of record."""

from andchain.ledger.assets import AssetConflict, BookAssets
from andchain.ledger.core import BatchTooLarge, Ledger
from andchain.ledger.model import (
    BATCH_SIZE_MAX,
    Account,
    AccountFlags,
    AccountKind,
    AccountSpec,
    CreateResult,
    IdSource,
    PendingStatus,
    Result,
    Transfer,
    TransferFlags,
    TransferSpec,
)

__all__ = [
    "BATCH_SIZE_MAX",
    "Account",
    "AccountFlags",
    "AccountKind",
    "AccountSpec",
    "AssetConflict",
    "BatchTooLarge",
    "BookAssets",
    "CreateResult",
    "IdSource",
    "Ledger",
    "PendingStatus",
    "Result",
    "Transfer",
    "TransferFlags",
    "TransferSpec",
]
