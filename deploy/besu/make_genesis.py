"""The bank chain's QBFT genesis, static nodes and validator list, from the validators' PUBLIC keys.

A validator's key never leaves its machine: each validator runs
`besu --data-path=/var/lib/besu public-key export --to=/tmp/validator.pub` (Besu creates
the node key in the data path if there is none) and sends only that public key to the
operator, who lists the four in a validators file:

    {"p2p_port": 30303, "validators": [
        {"name": "validator-1", "host": "10.20.0.11", "public_key": "0x<128 hex digits>"}, ...]}

(a validator may carry a "p2p_port" of its own), and runs, from the repository root with the
project's virtualenv:

    .venv/bin/python deploy/besu/make_genesis.py --validators validators.input.json --out DIR

which writes DIR/genesis.json, DIR/static-nodes.json and DIR/validators.json (each validator's
address, public key and enode URL). The same input always gives the same bytes.

For a throwaway network on one's own machine, `--new-test-keys DIR` creates four random node
keys as Besu reads them (DIR/validator-N/key, 0600) and the matching validators file. It
refuses any directory inside the repository other than `var/` (git-ignored): the project never
commits a private key. Production keys are made by Besu on each validator (or kept in an HSM
through Besu's `--security-module`), never by this script.

QBFT's extraData (Besu's documentation, "Configure QBFT consensus"): the RLP encoding of
[32 bytes of vanity, [validator addresses in ascending order], no vote, round 0, no seals].
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from eth_keys import keys
from eth_utils import keccak

from andchain.config import DEFAULT_NETWORKS

REPOSITORY = Path(__file__).resolve().parents[2]
VALIDATORS_COUNT = 4  # QBFT needs four to tolerate one faulty validator (f = (n - 1) // 3)
CHAIN_ID = int(DEFAULT_NETWORKS["internal"]["chain_id"])
BLOCK_PERIOD_S = 2
REQUEST_TIMEOUT_S = 4  # Besu's advice: start at twice the block period, lower it while no round changes
EPOCH_LENGTH = 30_000
GAS_LIMIT = 100_000_000
P2P_PORT = 30303
# QBFT's genesis mixHash ("ctical byzantine fault tolerance"), by which Besu recognises an Istanbul block.
QBFT_MIX_HASH = "0x63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365"
ZERO_HASH = "0x" + "00" * 32


# ------------------------------------------------------------------ RLP (encoding only)


def _length_prefix(length: int, offset: int) -> bytes:
    if length < 56:
        return bytes([offset + length])
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(size)]) + size


def rlp_encode(item: bytes | list[Any]) -> bytes:
    """RLP of a byte string or a (nested) list of them: the Ethereum yellow paper, appendix B."""
    if isinstance(item, bytes):
        if len(item) == 1 and item[0] < 0x80:
            return item
        return _length_prefix(len(item), 0x80) + item
    payload = b"".join(rlp_encode(x) for x in item)
    return _length_prefix(len(payload), 0xC0) + payload


def qbft_extra_data(addresses: list[bytes]) -> str:
    """extraData of a QBFT genesis with block-header validator selection; round 0 is the empty string."""
    if any(len(a) != 20 for a in addresses):
        raise ValueError("every validator address must be 20 bytes")
    return "0x" + rlp_encode([bytes(32), sorted(addresses), [], b"", []]).hex()


# ------------------------------------------------------------------------- keys


def public_key_of(text: str) -> keys.PublicKey:
    raw = bytes.fromhex(text.removeprefix("0x"))
    if len(raw) != 64:
        raise ValueError(
            f"a node public key is 64 bytes (128 hex digits, as `besu public-key export` writes), was {len(raw)}"
        )
    return keys.PublicKey(raw)  # refuses a point that is not on secp256k1


def address_of(public_key: keys.PublicKey) -> bytes:
    """Besu's node address: the last 20 bytes of keccak256 of the 64-byte public key."""
    return keccak(public_key.to_bytes())[-20:]


# --------------------------------------------------------------------- the files


def genesis(
    addresses: list[bytes],
    *,
    chain_id: int,
    block_period_s: int,
    request_timeout_s: int,
    epoch_length: int,
    gas_limit: int,
) -> dict[str, Any]:
    """Besu's genesis.json for a free-gas QBFT network that runs the Vyper contracts.

    The contracts are compiled for Vyper's default EVM (prague), whose bytecode here is the same as
    for cancun and uses Cancun's opcodes (MCOPY): so every fork up to Cancun is active from block 0.
    Gas is free: zeroBaseFee (with min-gas-price=0 on every node), and nothing to fund in alloc.
    The milestone names are those of Besu's genesis reference ("Genesis file items").
    """
    return {
        "config": {
            "chainId": chain_id,
            "homesteadBlock": 0,
            "eip150Block": 0,
            "eip158Block": 0,
            "byzantiumBlock": 0,
            "constantinopleBlock": 0,
            "constantinopleFixBlock": 0,
            "istanbulBlock": 0,
            "muirGlacierBlock": 0,
            "berlinBlock": 0,
            "londonBlock": 0,
            "shanghaiTime": 0,
            "cancunTime": 0,
            "zeroBaseFee": True,
            "qbft": {
                "blockperiodseconds": block_period_s,
                "epochlength": epoch_length,
                "requesttimeoutseconds": request_timeout_s,
            },
        },
        "nonce": "0x0",
        "timestamp": "0x0",
        "extraData": qbft_extra_data(addresses),
        "gasLimit": hex(gas_limit),
        "baseFeePerGas": "0x0",  # else Besu starts London at 1 gwei; zeroBaseFee keeps every later block at 0
        "difficulty": "0x1",
        "mixHash": QBFT_MIX_HASH,
        "coinbase": "0x" + "00" * 20,
        "alloc": {},
        "number": "0x0",
        "gasUsed": "0x0",
        "parentHash": ZERO_HASH,
    }


def enode(public_key: keys.PublicKey, host: str, port: int) -> str:
    return f"enode://{public_key.to_bytes().hex()}@{host}:{port}"


def build(spec: dict[str, Any], **params: int) -> dict[str, Any]:
    """The three files' contents, from a validators file's contents."""
    default_port = int(spec.get("p2p_port", P2P_PORT))
    entries = spec["validators"]
    if len(entries) != VALIDATORS_COUNT:
        raise ValueError(f"this layout has {VALIDATORS_COUNT} validators, the file lists {len(entries)}")
    validators = []
    for entry in entries:
        ipaddress.ip_address(entry["host"])  # Besu's enode URLs take IP addresses (names are early access)
        key = public_key_of(entry["public_key"])
        port = int(entry.get("p2p_port", default_port))
        validators.append(
            {
                "name": entry["name"],
                "host": entry["host"],
                "p2p_port": port,
                "address": "0x" + address_of(key).hex(),
                "public_key": "0x" + key.to_bytes().hex(),
                "enode": enode(key, entry["host"], port),
            }
        )
    addresses = [bytes.fromhex(v["address"][2:]) for v in validators]
    if len(set(addresses)) != len(addresses):
        raise ValueError("two validators share a key")
    if len({(v["host"], v["p2p_port"]) for v in validators}) != len(validators):
        raise ValueError("two validators share an address and port")
    settings = {
        "chain_id": CHAIN_ID,
        "block_period_s": BLOCK_PERIOD_S,
        "request_timeout_s": REQUEST_TIMEOUT_S,
        "epoch_length": EPOCH_LENGTH,
        "gas_limit": GAS_LIMIT,
        **params,
    }
    return {
        "genesis.json": genesis(addresses, **settings),
        "static-nodes.json": [v["enode"] for v in validators],
        "validators.json": {
            "comment": "Made by deploy/besu/make_genesis.py from public keys only; extraData lists these addresses.",
            "chain_id": settings["chain_id"],
            "validators": validators,
        },
    }


def render(contents: dict[str, Any]) -> dict[str, str]:
    return {name: json.dumps(value, indent=2) + "\n" for name, value in contents.items()}


def write(out: Path, contents: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render(contents).items():
        (out / name).write_text(text)


def new_test_keys(directory: Path, hosts: list[str], port: int) -> dict[str, Any]:
    """Four random node keys for a throwaway network, written where git never takes them. Validators on
    the same host get consecutive ports from `port`."""
    directory = directory.resolve()
    inside_repository = directory == REPOSITORY or REPOSITORY in directory.parents
    var = REPOSITORY / "var"
    if inside_repository and not (directory == var or var in directory.parents):
        raise SystemExit(f"refusing to write private keys into the repository at {directory}: use var/ (git-ignored)")
    if len(hosts) != VALIDATORS_COUNT:
        raise SystemExit(f"--hosts takes {VALIDATORS_COUNT} addresses, got {len(hosts)}")
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    validators = []
    for n, host in enumerate(hosts, start=1):
        private = keys.PrivateKey(secrets.token_bytes(32))
        node = directory / f"validator-{n}"
        node.mkdir(exist_ok=True)
        os.chmod(node, 0o700)
        path = node / "key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never overwrite a key
        with os.fdopen(fd, "w") as f:
            f.write("0x" + private.to_bytes().hex())  # Besu's `key` file: the hex private key
        validators.append(
            {
                "name": f"validator-{n}",
                "host": host,
                "p2p_port": port + hosts[: n - 1].count(host),
                "public_key": "0x" + private.public_key.to_bytes().hex(),
            }
        )
    spec = {"p2p_port": port, "validators": validators}
    (directory / "validators.input.json").write_text(json.dumps(spec, indent=2) + "\n")
    return spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--validators", type=Path, help="validators file: names, IP addresses, public keys")
    source.add_argument("--new-test-keys", type=Path, metavar="DIR", help="make 4 throwaway node keys in DIR (var/...)")
    parser.add_argument("--hosts", nargs="+", default=["127.0.0.1"] * VALIDATORS_COUNT, help="with --new-test-keys")
    parser.add_argument("--p2p-port", type=int, default=P2P_PORT, help="with --new-test-keys")
    parser.add_argument("--out", type=Path, required=True, help="where to write genesis.json, static-nodes.json ...")
    parser.add_argument("--chain-id", type=int, default=CHAIN_ID)
    parser.add_argument("--block-period-s", type=int, default=BLOCK_PERIOD_S)
    parser.add_argument("--request-timeout-s", type=int, default=REQUEST_TIMEOUT_S)
    parser.add_argument("--epoch-length", type=int, default=EPOCH_LENGTH)
    parser.add_argument("--gas-limit", type=int, default=GAS_LIMIT)
    args = parser.parse_args(argv)
    if args.new_test_keys is not None:
        spec = new_test_keys(args.new_test_keys, args.hosts, args.p2p_port)
    else:
        spec = json.loads(args.validators.read_text())
    contents = build(
        spec,
        chain_id=args.chain_id,
        block_period_s=args.block_period_s,
        request_timeout_s=args.request_timeout_s,
        epoch_length=args.epoch_length,
        gas_limit=args.gas_limit,
    )
    write(args.out, contents)
    for v in contents["validators.json"]["validators"]:
        print(f"{v['name']}: {v['address']} {v['enode']}")
    print(f"wrote genesis.json, static-nodes.json, validators.json to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
