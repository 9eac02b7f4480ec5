"""The `self` adapter speaks the port's language whatever its domain raises: a missing transfer is
TransferNotFound, a refusal of the request CustodianRefused, and anything that says nothing about
the request (a node away, the key store, the database busy, a transfer moved meanwhile) unknown."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from andchain.chains.keys import KeyStoreError
from andchain.chains.rpc import NodeUnreachable
from andchain.custody.adapters.self_custody import SelfCustodian
from andchain.custody.port import CustodianRefused, CustodianUnavailable, TransferNotFound
from andchain.errors import Conflict, DomainError, NotFound
from andchain.money import DEFAULT_ASSETS, AssetRegistry


class Raising:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def get(self, transfer_id: str):
        raise self.exc


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (NotFound("no transfer x", code="transfer_not_found"), TransferNotFound),
        (NotFound("no account y", code="account_not_found"), CustodianRefused),
        (DomainError("amount: too many decimals", code="invalid_amount"), CustodianRefused),
        (Conflict("used for another transfer", code="idempotency_key_reused"), CustodianRefused),
        (Conflict("changed meanwhile", code="transfer_changed"), CustodianUnavailable),
        (NotFound("no key labelled", code="key_not_found"), CustodianUnavailable),
        (KeyStoreError("cannot decrypt: wrong passphrase?"), CustodianUnavailable),
        (NodeUnreachable("node base did not answer", network="base"), CustodianUnavailable),
        (OperationalError("SELECT 1", {}, Exception("database is locked")), CustodianUnavailable),
    ],
)
def test_each_domain_error_becomes_the_ports(raised, expected):
    adapter = SelfCustodian(Raising(raised), AssetRegistry(DEFAULT_ASSETS))  # type: ignore[arg-type]
    with pytest.raises(expected):
        adapter.get("x")


def test_a_bug_is_not_disguised_as_a_refusal_or_a_wait():
    adapter = SelfCustodian(Raising(KeyError("oops")), AssetRegistry(DEFAULT_ASSETS))  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        adapter.get("x")
