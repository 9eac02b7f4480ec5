"""The Vyper contracts, compiled from source by the pinned vyper package, and their ABIs.

Encoding and decoding go through eth_abi directly, with selectors and event topics
computed once per contract, and calls whose arguments are all one word take a
hand-written fast path, because the chain client encodes thousands of calls a second.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import eth_abi
import eth_abi.exceptions
from eth_utils import keccak, to_checksum_address

from andchain.errors import DomainError

CONTRACT_NAMES = ("PermissionedToken", "DvPSettlement", "UsdcStandIn")


class UnknownContract(DomainError):
    code = "unknown_contract"


def _canonical_type(item: dict[str, Any]) -> str:
    kind = str(item["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in item["components"])
        return f"({inner}){kind[5:]}"
    return kind


_STATIC_TYPES = frozenset({"address", "bool", "bytes32", *(f"uint{n}" for n in range(8, 257, 8))})


def _encode_static(types: tuple[str, ...], args: tuple[Any, ...]) -> bytes:
    """ABI encoding of one-word arguments (address, uintN, bool, bytes32), checked like eth_abi.

    The chain client encodes thousands of transfers a second; this path is about eight times
    faster than eth_abi's general encoder (`andchain bench chain` measures both in the same
    run, docs/benchmarks.md) and tests check it byte for byte against it.
    """
    if len(types) != len(args):
        raise TypeError(f"expected {len(types)} arguments, got {len(args)}")
    words = []
    for typ, value in zip(types, args, strict=True):
        if typ == "address":
            raw = value
            if isinstance(value, str) and value.startswith("0x"):
                try:
                    raw = bytes.fromhex(value[2:])
                except ValueError:
                    raise eth_abi.exceptions.EncodingError(f"not an address: {value!r}") from None
            if not isinstance(raw, bytes) or len(raw) != 20:
                raise eth_abi.exceptions.EncodingError(f"not an address: {value!r}")
            words.append(b"\0" * 12 + raw)
        elif typ == "bytes32":
            if not isinstance(value, bytes) or len(value) > 32:
                raise eth_abi.exceptions.EncodingError(f"not bytes32: {value!r}")
            words.append(value.ljust(32, b"\0"))
        elif typ == "bool":
            if not isinstance(value, bool):
                raise eth_abi.exceptions.EncodingError(f"not a bool: {value!r}")
            words.append(int(value).to_bytes(32, "big"))
        else:
            bits = int(typ[4:])
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**bits:
                raise eth_abi.exceptions.EncodingError(f"{value!r} does not fit {typ}")
            words.append(value.to_bytes(32, "big"))
    return b"".join(words)


# Addresses recur (a bank's holders, its minter): their EIP-55 spelling is a keccak each time.
checksum_address = lru_cache(maxsize=65_536)(to_checksum_address)


def _decode_static(event: EventAbi, topics: list[bytes], data: bytes) -> DecodedEvent | None:
    """An event whose values are all one word (address, uintN, bool, bytes32), decoded word by word; None
    when it has others, or a word that eth_abi's strict decoder refuses (that path then raises as it does).

    The listener decodes every log of a busy chain; this is several times faster than eth_abi's general
    decoder, and tests check it against it value for value."""
    types = event.types
    if not _STATIC_TYPES.issuperset(types):
        return None
    indexed = list(topics[1:])
    plain = len(types) - len(indexed)
    if plain < 0 or len(data) != 32 * plain or any(len(topic) != 32 for topic in indexed):
        return None
    args: dict[str, Any] = {}
    at = 0
    for name, ix, typ in zip(event.names, event.indexed, types, strict=True):
        if ix:
            if not indexed:
                return None
            word = indexed.pop(0)
        else:
            word, at = data[at : at + 32], at + 32
        if typ == "address":
            if word[:12] != _ZERO12:
                return None
            args[name] = checksum_address("0x" + word[12:].hex())
        elif typ == "bytes32":
            args[name] = word
        else:
            value = int.from_bytes(word, "big")
            if typ == "bool":
                if value > 1:
                    return None
                args[name] = bool(value)
            else:
                if value >> int(typ[4:]):
                    return None
                args[name] = value
    if indexed:
        return None
    return DecodedEvent(event.name, args)


_ZERO12 = bytes(12)


@dataclass(frozen=True)
class Function:
    name: str
    selector: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    mutability: str


@dataclass(frozen=True)
class EventAbi:
    name: str
    topic: bytes
    names: tuple[str, ...]
    indexed: tuple[bool, ...]
    types: tuple[str, ...]


@dataclass(frozen=True)
class DecodedEvent:
    name: str
    args: dict[str, Any]


@dataclass(frozen=True)
class ContractAbi:
    abi: tuple[dict[str, Any], ...]
    functions: dict[str, Function] = field(default_factory=dict)
    events: dict[bytes, EventAbi] = field(default_factory=dict)
    events_by_name: dict[str, EventAbi] = field(default_factory=dict)
    constructor_inputs: tuple[str, ...] = ()
    _static: frozenset[str] = frozenset()

    @classmethod
    def of(cls, abi: list[dict[str, Any]]) -> ContractAbi:
        functions, events, by_name = {}, {}, {}
        constructor: tuple[str, ...] = ()
        for item in abi:
            if item["type"] == "function":
                inputs = tuple(_canonical_type(i) for i in item["inputs"])
                signature = f"{item['name']}({','.join(inputs)})"
                functions[item["name"]] = Function(
                    item["name"],
                    keccak(text=signature)[:4],
                    inputs,
                    tuple(_canonical_type(o) for o in item["outputs"]),
                    item.get("stateMutability", "nonpayable"),
                )
            elif item["type"] == "event":
                types = tuple(_canonical_type(i) for i in item["inputs"])
                event = EventAbi(
                    item["name"],
                    keccak(text=f"{item['name']}({','.join(types)})"),
                    tuple(i["name"] for i in item["inputs"]),
                    tuple(bool(i["indexed"]) for i in item["inputs"]),
                    types,
                )
                events[event.topic] = event
                by_name[event.name] = event
            elif item["type"] == "constructor":
                constructor = tuple(_canonical_type(i) for i in item["inputs"])
        static = frozenset(n for n, f in functions.items() if all(t in _STATIC_TYPES for t in f.inputs))
        return cls(tuple(abi), functions, events, by_name, constructor, static)

    def function(self, name: str) -> Function:
        try:
            return self.functions[name]
        except KeyError:
            raise UnknownContract(f"contract has no function {name!r}") from None

    def encode_call(self, name: str, *args: Any) -> bytes:
        fn = self.function(name)
        if fn.name in self._static:
            return fn.selector + _encode_static(fn.inputs, args)
        return fn.selector + eth_abi.encode(fn.inputs, args)

    def decode_output(self, name: str, data: bytes) -> Any:
        fn = self.function(name)
        values = [
            to_checksum_address(v) if t == "address" else v
            for t, v in zip(fn.outputs, eth_abi.decode(fn.outputs, data), strict=True)
        ]
        return values[0] if len(values) == 1 else tuple(values)

    def topic(self, event: str) -> bytes:
        return self.events_by_name[event].topic

    def decode_log(self, topics: list[bytes], data: bytes) -> DecodedEvent | None:
        if not topics:
            return None
        event = self.events.get(topics[0])
        if event is None:
            return None
        fast = _decode_static(event, topics, data)
        if fast is not None:
            return fast
        indexed_types = [t for t, ix in zip(event.types, event.indexed, strict=True) if ix]
        plain_types = [t for t, ix in zip(event.types, event.indexed, strict=True) if not ix]
        indexed_values = [eth_abi.decode([t], topic)[0] for t, topic in zip(indexed_types, topics[1:], strict=True)]
        plain_values = list(eth_abi.decode(plain_types, data)) if plain_types else []
        args: dict[str, Any] = {}
        for name, ix, typ in zip(event.names, event.indexed, event.types, strict=True):
            value = indexed_values.pop(0) if ix else plain_values.pop(0)
            args[name] = checksum_address(value) if typ == "address" else value
        return DecodedEvent(event.name, args)


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: ContractAbi
    bytecode: bytes
    source_sha256: str

    def deploy_data(self, *args: Any) -> bytes:
        return self.bytecode + (eth_abi.encode(self.abi.constructor_inputs, args) if args else b"")


def source(name: str) -> str:
    if name not in CONTRACT_NAMES:
        raise UnknownContract(f"unknown contract {name!r}; known: {', '.join(CONTRACT_NAMES)}")
    return (resources.files("andchain.chains") / "contracts" / f"{name}.vy").read_text()


def _cache_dir() -> Path:
    return Path(os.environ.get("ANDCHAIN_CACHE_DIR") or Path.home() / ".cache" / "andchain") / "contracts"


@cache
def artifact(name: str) -> Artifact:
    """Compile a contract from its source with the pinned vyper.

    Compiling takes a second, so the output is cached per process and on disk, keyed by
    the source's hash and the compiler's version: a changed source or compiler compiles anew.
    """
    import vyper

    text = source(name)
    digest = hashlib.sha256(text.encode()).hexdigest()
    cached = _cache_dir() / f"{name}-{digest[:16]}-vyper{vyper.__version__}.json"
    try:
        out = json.loads(cached.read_text())
    except (OSError, ValueError):
        out = vyper.compile_code(text, output_formats=["abi", "bytecode"], contract_path=f"{name}.vy")
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"abi": out["abi"], "bytecode": out["bytecode"]}))
            os.replace(tmp, cached)
        except OSError:
            pass  # a read-only home only costs the compile next time
    return Artifact(name, ContractAbi.of(out["abi"]), bytes.fromhex(out["bytecode"].removeprefix("0x")), digest)


def memo32(text: str | bytes) -> bytes:
    """A payment reference as bytes32: UTF-8, at most 32 bytes, right-padded with zeros."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > 32:
        raise DomainError(f"a memo holds at most 32 bytes, was {len(raw)}", code="memo_too_long")
    return raw.ljust(32, b"\0")


def memo_text(value: bytes) -> str:
    return value.rstrip(b"\0").decode(errors="replace")


def permit_digest(
    token_name: str, chain_id: int, token: str, owner: str, spender: str, value: int, nonce: int, deadline: int
) -> bytes:
    """The EIP-712 digest an owner signs for PermissionedToken.permit (EIP-2612, version "1")."""
    domain_type = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    permit_type = keccak(text="Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)")
    domain = keccak(
        eth_abi.encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [domain_type, keccak(text=token_name), keccak(text="1"), chain_id, token],
        )
    )
    message = keccak(
        eth_abi.encode(
            ["bytes32", "address", "address", "uint256", "uint256", "uint256"],
            [permit_type, owner, spender, value, nonce, deadline],
        )
    )
    return keccak(b"\x19\x01" + domain + message)


_UETR_TAG = b"UETR"


def encode_memo(reference: str, memo_format: str = "text") -> bytes:
    """The 32-byte memo a payment carries on chain.

    "text": the reference in UTF-8 (at most 32 bytes). "iso20022" (the Swift ledger profile):
    a UETR (a UUID) travels as "UETR" + its 16 bytes, so it fits and stays exact; any other
    reference is an EndToEndId and travels as text (at most 32 characters, where ISO 20022
    allows 35: longer ones are refused rather than cut).
    """
    if memo_format == "iso20022":
        import uuid

        try:
            uetr = uuid.UUID(reference)
        except ValueError:
            return memo32(reference)
        return (_UETR_TAG + uetr.bytes).ljust(32, b"\0")
    return memo32(reference)


def decode_memo(memo: bytes, memo_format: str = "text") -> str:
    if memo_format == "iso20022" and memo.startswith(_UETR_TAG) and not memo[20:].strip(b"\0"):
        import uuid

        return str(uuid.UUID(bytes=memo[4:20]))
    return memo_text(memo)
