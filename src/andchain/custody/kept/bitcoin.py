"""Bitcoin at the reference custodian: addresses checked as Bitcoin checks them, balances kept
in the custodian's own book.

No Bitcoin node runs on these machines, so the reference custodian does not broadcast Bitcoin
transactions: a deposit is recorded by its operator (`andchain custodian credit`, as the
custodian's own node would report it), a withdrawal is booked out of the account when it is
"sent", with a transaction id derived from the transfer. Addresses are real ones: a
withdrawal's destination is decoded with its checksum (base58check for P2PKH and P2SH, bech32
for segwit v0, bech32m for taproot) for the configured Bitcoin network (embit), and each
account's deposit address is the P2WPKH address of its own key.
"""

from __future__ import annotations

import hashlib

from embit.ec import PublicKey
from embit.networks import NETWORKS
from embit.script import address_to_scriptpubkey, p2wpkh

BITCOIN = "bitcoin"
# andchain's names for Bitcoin's networks -> embit's
NETWORK_NAMES = {"mainnet": "main", "testnet": "test", "signet": "signet", "regtest": "regtest"}
ADDRESS_LENGTH_MAX = 100


def checked_address(address: object, network: str) -> str | None:
    """The address if it is a valid one on `network` (mainnet, testnet, signet, regtest), else None."""
    if not isinstance(address, str) or not address.isascii() or len(address) > ADDRESS_LENGTH_MAX:
        return None
    net = NETWORKS[NETWORK_NAMES[network]]
    try:
        script = address_to_scriptpubkey(address)
        # The address again from its script, on the wanted network: a checksum that decodes but
        # another network's prefix (a testnet address sent to a mainnet custodian) does not match.
        return address if script.address(net).lower() == address.lower() else None
    except Exception:
        return None


def deposit_address(public_key_compressed: bytes, network: str) -> str:
    """The P2WPKH (bech32) address of a key on `network`."""
    return str(p2wpkh(PublicKey.parse(public_key_compressed)).address(NETWORKS[NETWORK_NAMES[network]]))


def booked_txid(transfer_id: str) -> str:
    """The id a booked withdrawal is known by (no transaction is broadcast: see the module)."""
    return hashlib.sha256(f"andchain-reference-custodian:{transfer_id}".encode()).hexdigest()
