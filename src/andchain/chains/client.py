"""The chain client: encode and sign locally, submit in JSON-RPC batches, track receipts.

A transaction's life here: reserve nonces (persisted), fix gas and fees, sign with
the local key (no node round trip), send a whole batch in one HTTP request, then
poll receipts in batches until each is mined or the wait's bound is reached. A
transaction stuck in the pool can be re-sent at the same nonce with higher fees.
Every wait, retry and batch is bounded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import eth_abi
from eth_utils import keccak, to_checksum_address
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from andchain.chains import schema
from andchain.chains.contracts import Artifact, ContractAbi, artifact
from andchain.chains.keys import DynamicFeeTx, KeyStore, LegacyTx, Signer
from andchain.chains.nonces import NonceManager
from andchain.chains.rpc import NodeUnreachable, Rpc, RpcError
from andchain.config import NetworkSettings
from andchain.db import write_transaction
from andchain.errors import DomainError, NotFound
from andchain.ledger.model import Clock, system_clock_us

log = logging.getLogger(__name__)

WAIT_TIMEOUT_S = 60.0
# anvil's automine can leave ready transactions in its pool after a burst (see flush_stalled_automine).
AUTOMINE_STALL_S = 0.5
AUTOMINE_LOOK_EVERY_S = 0.25
BUMP_PERCENT = 25
BUMPS_MAX = 3
GAS_MARGIN_NUM, GAS_MARGIN_DEN = 13, 10
_ERROR_SELECTOR = keccak(text="Error(string)")[:4]


class ChainError(DomainError):
    code = "chain_error"
    http_status = 502
    transient = True  # a node's trouble, not a refusal: TxReverted says when the chain refuses


class TxReverted(ChainError):
    code = "tx_reverted"
    http_status = 422
    transient = False

    def __init__(self, reason: str, *, tx_hash: str | None = None) -> None:
        super().__init__(f"transaction reverted: {reason}" + (f" ({tx_hash})" if tx_hash else ""))
        self.reason = reason
        self.tx_hash = tx_hash


class TxTimeout(ChainError):
    code = "tx_timeout"
    http_status = 504


class WrongChain(ChainError):
    code = "wrong_chain"


@dataclass(frozen=True, slots=True)
class Call:
    """A transaction to send: to a contract (or None to deploy), with calldata."""

    to: str | None
    data: bytes
    value: int = 0
    gas: int | None = None


@dataclass(frozen=True, slots=True)
class SentTx:
    hash: str
    sender: str
    nonce: int
    call: Call
    gas: int
    fee: tuple[int, int]  # (gas price or max fee, priority fee)
    raw: bytes
    replaced: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_hash: str
    status: bool
    block_number: int
    block_hash: str
    gas_used: int
    contract_address: str | None
    logs: tuple[dict[str, Any], ...] = field(repr=False, default=())


def revert_reason(error: RpcError) -> str:
    """The reason string of a revert, from a node's error data when it has one."""
    data = error.data
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        raw = bytes.fromhex(data[2:])
        if raw[:4] == _ERROR_SELECTOR:
            try:
                return str(eth_abi.decode(["string"], raw[4:])[0])
            except Exception:
                pass
        if raw:
            return "0x" + raw.hex()
    message = error.rpc_message
    return message.split("reverted: ", 1)[-1] if "reverted" in message else message


def is_revert(error: RpcError) -> bool:
    """Whether a node's error answer to a call or an estimate says the EVM refused it (a revert, out of
    gas): deterministic. Any other error answer (a node in trouble, a rate limit) is transient."""
    message = error.rpc_message.lower()
    return error.rpc_code == 3 or "revert" in message or "out of gas" in message or "gas required exceeds" in message


def _answered(replies: list[Any]) -> list[Any]:
    """The replies of a batch of look-ups, or the first error answer among them, raised."""
    for reply in replies:
        if isinstance(reply, RpcError):
            raise reply
    return replies


def _receipt(data: dict[str, Any]) -> Receipt:
    return Receipt(
        tx_hash=data["transactionHash"],
        status=int(data["status"], 16) == 1,
        block_number=int(data["blockNumber"], 16),
        block_hash=data["blockHash"],
        gas_used=int(data["gasUsed"], 16),
        contract_address=to_checksum_address(data["contractAddress"]) if data.get("contractAddress") else None,
        logs=tuple(data.get("logs", ())),
    )


def already_known(rpc_message: str) -> bool:
    """The node already holds these very bytes (geth: "already known"; anvil: "transaction already
    imported"): the transaction is in flight, which is what sending it again wanted."""
    message = rpc_message.lower()
    return "already known" in message or "already imported" in message


class ChainClient:
    """One network: reads, deployments, and fast transaction submission for the bank's signers."""

    def __init__(
        self,
        name: str,
        network: NetworkSettings,
        engine: Engine,
        keys: KeyStore,
        *,
        rpc: Rpc | None = None,
        clock: Clock = system_clock_us,
        poll_interval_s: float = 0.02,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.network = network
        self.engine = engine
        self.keys = keys
        self.rpc = rpc or Rpc(network.rpc_url, name=name, batch_max=network.rpc_batch_max)
        self.clock = clock
        self.poll_interval_s = poll_interval_s
        self._sleep = sleep
        self.nonces = NonceManager(engine, network.chain_id, self.rpc, clock)
        self._gas_cache: dict[tuple[str | None, bytes, int], int] = {}
        self._deployments: dict[str, str] = {}  # found ones only: a deployment never disappears
        self._chain_checked = False
        self._automine_seen: tuple[int, float] | None = None  # (head, since) while the pool holds ready txs
        self._automine_looked_s = 0.0
        self.automine_stall_s = AUTOMINE_STALL_S
        self.automine_look_every_s = AUTOMINE_LOOK_EVERY_S
        self.automine_flushes = 0

    def close(self) -> None:
        self.rpc.close()

    @property
    def chain_id(self) -> int:
        return self.network.chain_id

    def check_chain(self) -> None:
        """Refuse to sign for a node whose chain id is not the configured one."""
        if self._chain_checked:
            return
        actual = int(self.rpc.call("eth_chainId"), 16)
        if actual != self.network.chain_id:
            raise WrongChain(
                f"network {self.name}: node at {self.network.rpc_url_shown} has chain id {actual}, "
                f"configured {self.network.chain_id}"
            )
        self._chain_checked = True

    def resend_gap(self, sender: str, sent: Sequence[SentTx], next_nonce: int) -> list[tuple[SentTx, RpcError]]:
        """Send the transactions of a nonce gap again, lowest nonce first; returns the refusals.

        A local automining anvil can hold the first of them as "queued" though it is next in line: the
        transaction before it was mined and the pool never promoted it, so it answers "transaction already
        imported" to the same bytes and never mines it (seen with a few thousand transactions of one
        sender). On such a node, when the transaction answered so is at `next_nonce` (the node's own next
        nonce for the sender: one below it is rightly queued behind a hole), the sender's transactions are
        taken out of the pool (`anvil_removePoolTransactions`) and the gap's are sent again; the later ones
        come back with the next repairs and the operations' own resends. Other nodes are only sent the
        bytes again."""
        if not sent:
            return []
        replies = self.rpc.batch([("eth_sendRawTransaction", ["0x" + tx.raw.hex()]) for tx in sent])
        refused = [
            (tx, reply)
            for tx, reply in zip(sent, replies, strict=True)
            if isinstance(reply, RpcError) and not already_known(reply.rpc_message)
        ]
        first = min(range(len(sent)), key=lambda i: sent[i].nonce)
        answer = replies[first]
        first_tx = sent[first]
        stuck = first_tx.nonce == next_nonce and isinstance(answer, RpcError) and already_known(answer.rpc_message)
        if not stuck or not self._automining_anvil():
            return refused
        try:
            self.rpc.call("anvil_removePoolTransactions", [sender])
        except (RpcError, NodeUnreachable) as exc:
            log.warning("network %s: the stuck pool of %s could not be emptied: %s", self.name, sender, exc)
            return refused
        log.warning(
            "network %s: the node held nonce %d of %s as queued though it is next; its pool was emptied of "
            "that sender's transactions and the gap sent again",
            self.name,
            first_tx.nonce,
            sender,
        )
        return self._broadcast(sent)

    def _may_automine(self) -> bool:
        """A node andchain runs itself with no block time: the only kind whose automine is worked around."""
        return self.network.local and not self.network.block_time_s

    def _automining_anvil(self) -> bool:
        """An anvil node andchain runs itself, mining each transaction as it comes (its own answer)."""
        if not self._may_automine():
            return False
        try:
            return self.rpc.call("anvil_getAutomine") is True
        except (RpcError, NodeUnreachable):
            return False

    def flush_stalled_automine(self) -> bool:
        """Mine what a local automining node left in its pool; True when it had to.

        anvil's automine can miss ready transactions when many arrive at once (foundry-rs/foundry#10122):
        they wait in its pool until another transaction wakes the miner, which may be never. On a node
        that andchain runs itself in that mode (`local`, no `block_time_s`, and the node says its automine
        is on: a test or an operator may have switched it off), a pool that holds ready transactions
        while the head has not moved for `automine_stall_s` is mined with `evm_mine`, as its own
        automine would have done. Other nodes mine on their own, and are left alone. Looks at most
        every `automine_look_every_s`; a node that does not answer is looked at again later.
        """
        if not self._may_automine():
            return False
        now = time.monotonic()
        if now - self._automine_looked_s < self.automine_look_every_s:
            return False
        self._automine_looked_s = now
        try:
            head_hex, pool, automine = self.rpc.batch(
                [("eth_blockNumber", []), ("txpool_status", []), ("anvil_getAutomine", [])]
            )
            if automine is not True or isinstance(head_hex, RpcError) or not isinstance(pool, dict):
                return False  # mining switched off or on a timer on purpose, or not an anvil node: its own business
            head, pending = int(head_hex, 16), int(pool.get("pending", "0x0"), 16)
            seen = self._automine_seen
            if not pending or seen is None or seen[0] != head:
                self._automine_seen = (head, now) if pending else None
                return False
            if now - seen[1] < self.automine_stall_s:
                return False
            self.rpc.call("evm_mine")
        except (RpcError, NodeUnreachable, ValueError, TypeError) as exc:
            log.info("automine check skipped network=%s: %s", self.name, exc)
            return False
        self._automine_seen = None
        self.automine_flushes += 1
        log.warning(
            "network %s: the node's automine left %d ready transaction(s) in its pool at block %d; mined them",
            self.name,
            pending,
            head,
        )
        return True

    # ------------------------------------------------------------------ reads

    def block_number(self) -> int:
        return int(self.rpc.call("eth_blockNumber"), 16)

    def block(self, number: int | str = "latest") -> dict[str, Any]:
        tag = hex(number) if isinstance(number, int) else number
        block = self.rpc.call("eth_getBlockByNumber", [tag, False])
        if block is None:
            raise NotFound(f"network {self.name} has no block {number}", code="block_not_found")
        return dict(block)

    def block_timestamp(self, number: int | str = "latest") -> int:
        """A block's timestamp, in seconds (the chain's own clock)."""
        return int(self.block(number)["timestamp"], 16)

    def balance(self, address: str) -> int:
        return int(self.rpc.call("eth_getBalance", [address, "latest"]), 16)

    def code(self, address: str) -> bytes:
        return bytes.fromhex(self.rpc.call("eth_getCode", [address, "latest"])[2:])

    def eth_call(self, to: str, data: bytes, *, sender: str | None = None, block: int | str = "latest") -> bytes:
        tag = hex(block) if isinstance(block, int) else block
        params: dict[str, Any] = {"to": to, "data": "0x" + data.hex()}
        if sender:
            params["from"] = sender
        try:
            return bytes.fromhex(self.rpc.call("eth_call", [params, tag])[2:])
        except RpcError as exc:
            if not is_revert(exc):
                raise
            raise TxReverted(revert_reason(exc)) from None

    def read(self, address: str, abi: ContractAbi, fn: str, *args: Any, block: int | str = "latest") -> Any:
        return abi.decode_output(fn, self.eth_call(address, abi.encode_call(fn, *args), block=block))

    def read_many(
        self, address: str, abi: ContractAbi, calls: Sequence[tuple[str, tuple[Any, ...]]], block: int | str = "latest"
    ) -> list[Any]:
        """Several view calls in one JSON-RPC batch."""
        tag = hex(block) if isinstance(block, int) else block
        replies = self.rpc.batch(
            [
                ("eth_call", [{"to": address, "data": "0x" + abi.encode_call(fn, *args).hex()}, tag])
                for fn, args in calls
            ]
        )
        out = []
        for (fn, _), reply in zip(calls, replies, strict=True):
            if isinstance(reply, RpcError):
                if not is_revert(reply):
                    raise reply
                raise TxReverted(revert_reason(reply))
            out.append(abi.decode_output(fn, bytes.fromhex(reply[2:])))
        return out

    def get_logs(self, addresses: Sequence[str], from_block: int, to_block: int) -> list[dict[str, Any]]:
        if not addresses:
            return []
        logs = self.rpc.call(
            "eth_getLogs", [{"address": list(addresses), "fromBlock": hex(from_block), "toBlock": hex(to_block)}]
        )
        return list(logs)

    # ------------------------------------------------------------ submission

    def signer(self, address: str) -> Signer:
        return self.keys.signer(address)

    def _fees(self) -> tuple[int, int]:
        policy = self.network.gas_policy
        if policy == "zero":
            return (0, 0)
        if policy == "legacy":
            return (int(self.rpc.call("eth_gasPrice"), 16), 0)
        block, priority = self.rpc.batch(
            [("eth_getBlockByNumber", ["latest", False]), ("eth_maxPriorityFeePerGas", [])]
        )
        if isinstance(block, RpcError):
            raise block
        tip = int(priority, 16) if not isinstance(priority, RpcError) else 10**9
        base = int(block.get("baseFeePerGas", "0x0"), 16)
        return (2 * base + tip, tip)

    def estimate_gas(self, sender: str, call: Call) -> int:
        params: dict[str, Any] = {"from": sender, "data": "0x" + call.data.hex(), "value": hex(call.value)}
        if call.to:
            params["to"] = call.to
        try:
            return int(self.rpc.call("eth_estimateGas", [params]), 16)
        except RpcError as exc:
            if not is_revert(exc):
                raise
            raise TxReverted(revert_reason(exc)) from None

    def _gas(self, sender: str, call: Call) -> int:
        if call.gas is not None:
            return call.gas
        if self.network.gas_policy != "zero":
            # Gas costs money here: estimate every transaction.
            estimate = self.estimate_gas(sender, call)
            return min(self.network.gas_limit, estimate * GAS_MARGIN_NUM // GAS_MARGIN_DEN + 5_000)
        # Gas is free on the bank's own chain: estimate once per call shape and keep a wide
        # margin (cold storage writes cost more than the estimate's warm ones).
        key = (call.to, call.data[:4], len(call.data))
        cached = self._gas_cache.get(key)
        if cached is None:
            cached = self._gas_cache[key] = self.estimate_gas(sender, call)
        return min(self.network.gas_limit, cached * 2 + 50_000)

    def _sign(self, signer: Signer, nonce: int, call: Call, gas: int, fee: tuple[int, int]) -> bytes:
        to = bytes.fromhex(call.to[2:]) if call.to else None
        if self.network.gas_policy == "eip1559":
            return signer.sign(DynamicFeeTx(nonce, fee[1], fee[0], gas, to, call.value, call.data, self.chain_id))
        return signer.sign(LegacyTx(nonce, fee[0], gas, to, call.value, call.data, self.chain_id))

    def sign_calls(self, sender: str, calls: Sequence[Call]) -> list[SentTx]:
        """Reserve nonces and sign `calls` from `sender`, without sending: the caller persists them first."""
        if not calls:
            return []
        (signed,) = self.sign_calls_many([(sender, calls)])
        if isinstance(signed, Exception):
            raise signed
        return signed

    def sign_calls_many(self, groups: Sequence[tuple[str, Sequence[Call]]]) -> list[list[SentTx] | Exception]:
        """`sign_calls` for several senders at once: the chain checked and the fee read once, every sender's
        nonces reserved in one transaction. A sender that cannot be signed for here (a call that would
        revert by the node's gas estimate, a key missing, an estimate the node did not give) has nothing
        reserved and gets the exception in its place: the caller signs it alone, or not. A failure of the
        chain check, the fee or the reservation raises, before any nonce is reserved or with none kept."""
        if not groups:
            return []
        self.check_chain()
        fee = self._fees()
        results: list[list[SentTx] | Exception] = []
        ready: dict[int, tuple[Signer, list[int]]] = {}
        for i, (sender, calls) in enumerate(groups):
            try:
                signer = self.signer(sender)
                ready[i] = (signer, [self._gas(signer.address, call) for call in calls])
            except Exception as exc:
                results.append(exc)
                continue
            results.append([])
        counts: dict[str, int] = {}
        for i, (signer, _) in ready.items():
            counts[signer.address] = counts.get(signer.address, 0) + len(groups[i][1])
        firsts = self.nonces.reserve_many(counts)
        for i, (signer, gas) in ready.items():
            calls = groups[i][1]
            first = firsts[signer.address]
            firsts[signer.address] = first + len(calls)  # a sender named twice: its second group follows the first
            results[i] = [self._signed(signer, first + n, calls[n], gas[n], fee) for n in range(len(calls))]
        return results

    def _prepare(self, sender: str, calls: Sequence[Call]) -> tuple[Signer, tuple[int, int], list[int], int]:
        """The signer, the fee, each call's gas and the first of the nonces reserved for them."""
        self.check_chain()
        signer = self.signer(sender)
        fee = self._fees()
        gases = [self._gas(signer.address, call) for call in calls]
        return signer, fee, gases, self.nonces.reserve(signer.address, len(calls))

    def _signed(self, signer: Signer, nonce: int, call: Call, gas: int, fee: tuple[int, int]) -> SentTx:
        raw = self._sign(signer, nonce, call, gas, fee)
        return SentTx("0x" + keccak(raw).hex(), signer.address, nonce, call, gas, fee, raw)

    def broadcast(self, sent: Sequence[SentTx]) -> list[tuple[SentTx, RpcError]]:
        """Send signed transactions in one batch. A refused one's nonce is filled with a no-op
        (so later nonces are not stuck) and returned with the refusal."""
        failures = self._broadcast(sent)
        if failures:
            by_sender: dict[str, list[int]] = {}
            for tx, _ in failures:
                by_sender.setdefault(tx.sender, []).append(tx.nonce)
            for sender, nonces in by_sender.items():
                self._fill(self.signer(sender), nonces, failures[0][0].fee)
        return failures

    def submit(self, sender: str, calls: Sequence[Call]) -> list[SentTx]:
        """Sign and send `calls` from `sender` in nonce order, in JSON-RPC batches (the network's rpc_batch_max),
        each batch sent once signed. A refused transaction's nonce is filled and the later batches still go
        (the first refusal raises at the end); a batch that could not be sent at all (a node that does not
        answer) raises at once, and nothing after it is sent. Does not wait."""
        if not calls:
            return []
        signer, fee, gases, first = self._prepare(sender, calls)
        size = self.network.rpc_batch_max
        sent: list[SentTx] = []
        failures: list[tuple[SentTx, RpcError]] = []
        for start in range(0, len(calls), size):
            part = [
                self._signed(signer, first + i, calls[i], gases[i], fee)
                for i in range(start, min(len(calls), start + size))
            ]
            failures += self.broadcast(part)
            sent += part
        if failures:
            tx, error = failures[0]
            raise ChainError(
                f"network {self.name} refused transaction nonce {tx.nonce}: {error.rpc_message}", code="tx_refused"
            )
        return sent

    def known(self, hashes: Sequence[str]) -> set[str]:
        """Which of these transactions the node knows (mined or in its pool).

        An error answer to any look-up raises it (transient): it says nothing about the transaction,
        and taking it for "unknown" would have a mined transaction signed again."""
        replies = _answered(self.rpc.batch([("eth_getTransactionByHash", [h]) for h in hashes]))
        return {h for h, r in zip(hashes, replies, strict=True) if r}

    def _broadcast(self, sent: Sequence[SentTx]) -> list[tuple[SentTx, RpcError]]:
        replies = self.rpc.batch([("eth_sendRawTransaction", ["0x" + tx.raw.hex()]) for tx in sent])
        failures = []
        for tx, reply in zip(sent, replies, strict=True):
            if isinstance(reply, RpcError) and not already_known(reply.rpc_message):
                failures.append((tx, reply))
        return failures

    def rebroadcast(self, sent: Sequence[SentTx]) -> list[tuple[SentTx, RpcError]]:
        """Send already-signed transactions again (after a restart); returns the refusals."""
        return self._broadcast(sent)

    def _fill(self, signer: Signer, nonces: Sequence[int], fee: tuple[int, int]) -> dict[int, str]:
        """Send a no-op at each nonce; returns the nonces filled and their hashes.

        A nonce the node's pool already holds (a transaction in flight) is refused as
        an underpriced replacement: it is no gap, and is left alone.
        """
        noop = Call(to=signer.address, data=b"", gas=21_000)
        raws = [self._sign(signer, n, noop, 21_000, fee) for n in nonces]
        replies = self.rpc.batch([("eth_sendRawTransaction", ["0x" + raw.hex()]) for raw in raws])
        filled = {}
        for nonce, raw, reply in zip(nonces, raws, replies, strict=True):
            if not isinstance(reply, RpcError):
                filled[nonce] = "0x" + keccak(raw).hex()
            elif "underpriced" not in reply.rpc_message and not already_known(reply.rpc_message):
                log.error("nonce gap fill failed network=%s nonce=%d error=%s", self.name, nonce, reply.rpc_message)
        return filled

    def fill_nonces(self, sender: str, nonces: Sequence[int]) -> dict[int, str]:
        """Send a no-op from `sender` at each of `nonces` (gaps no recorded transaction owns)."""
        self.check_chain()
        return self._fill(self.signer(sender), nonces, self._fees())

    def repair_nonce_gaps(self, sender: str) -> list[int]:
        """Fill every nonce reserved but never sent (a process died in between) with a no-op, and wait.

        For a sender no operation signs for; the operations worker repairs its own senders'
        gaps with the transactions that own the nonces (ops/chain.py).
        """
        self.check_chain()
        signer = self.signer(sender)
        gap = list(self.nonces.gaps(signer.address))
        if not gap:
            return []
        filled = self._fill(signer, gap, self._fees())
        log.warning("filled nonce gap network=%s address=%s nonces=%s", self.name, signer.address, sorted(filled))
        self.wait_hashes(list(filled.values()))
        return sorted(filled)

    def bump(self, tx: SentTx) -> SentTx:
        """Re-sign the same nonce with fees raised by BUMP_PERCENT and send it."""
        signer = self.signer(tx.sender)
        fee = self._fees()
        raised = (
            max(fee[0], tx.fee[0] * (100 + BUMP_PERCENT) // 100 + 1),
            max(fee[1], tx.fee[1] * (100 + BUMP_PERCENT) // 100 + 1),
        )
        raw = self._sign(signer, tx.nonce, tx.call, tx.gas, raised)
        bumped = replace(tx, hash="0x" + keccak(raw).hex(), fee=raised, raw=raw, replaced=(*tx.replaced, tx.hash))
        failures = self._broadcast([bumped])
        if failures:
            raise ChainError(f"bump of nonce {tx.nonce} refused: {failures[0][1].rpc_message}", code="tx_refused")
        log.info("tx bumped network=%s nonce=%d old=%s new=%s", self.name, tx.nonce, tx.hash, bumped.hash)
        return bumped

    def receipts(self, hashes: Sequence[str]) -> dict[str, Receipt]:
        """The receipts of those transactions that are mined (one batched look-up).

        An error answer to any look-up raises it (transient): "not mined" is only what the node says."""
        replies = _answered(self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes]))
        return {h: _receipt(r) for h, r in zip(hashes, replies, strict=True) if r}

    def wait_hashes(self, hashes: Sequence[str], timeout_s: float = WAIT_TIMEOUT_S) -> dict[str, Receipt]:
        """Wait until every transaction is mined. Give the hashes in submission order.

        Only the last pending hash is polled until it is mined; then all the others are
        fetched in one batch. Polling every receipt at every tick would load the node
        with look-ups and slow the very mining it waits for.
        """
        pending = list(hashes)
        found: dict[str, Receipt] = {}
        deadline = time.monotonic() + timeout_s
        while pending:
            probe = self.receipts([pending[-1]])
            if probe:
                found.update(probe)
                found.update(self.receipts(pending[:-1]))
                pending = [h for h in pending if h not in found]
                if not pending:
                    break
            if time.monotonic() >= deadline:
                raise TxTimeout(
                    f"network {self.name}: {len(pending)} transaction(s) not mined within "
                    f"{timeout_s:g}s, first {pending[0]}"
                )
            self.flush_stalled_automine()
            self._sleep(self.poll_interval_s)
        return found

    def wait(
        self, sent: Sequence[SentTx], *, timeout_s: float = WAIT_TIMEOUT_S, bump_after_s: float | None = None
    ) -> list[Receipt]:
        """Wait for every transaction; with bump_after_s, re-send stuck ones at higher fees (BUMPS_MAX times).

        Per sender, only the highest pending nonce is polled (with any hashes it replaced);
        once it is mined the lower ones must be too, and are fetched in one batch.
        """
        current = list(sent)
        found: dict[int, Receipt] = {}
        started = last_bump = time.monotonic()
        bumps = 0
        while len(found) < len(current):
            waiting = [(i, tx) for i, tx in enumerate(current) if i not in found]
            probes: dict[str, tuple[int, SentTx]] = {}
            for i, tx in waiting:
                if tx.sender not in probes or tx.nonce > probes[tx.sender][1].nonce:
                    probes[tx.sender] = (i, tx)
            mined = self.receipts([h for _, tx in probes.values() for h in (tx.hash, *tx.replaced)])
            done_senders = {tx.sender for _, tx in probes.values() if {tx.hash, *tx.replaced} & mined.keys()}
            if done_senders:
                rest = [h for _, tx in waiting if tx.sender in done_senders for h in (tx.hash, *tx.replaced)]
                mined.update(self.receipts([h for h in rest if h not in mined]))
            for i, tx in waiting:
                for h in (tx.hash, *tx.replaced):
                    if h in mined:
                        found[i] = mined[h]
                        break
            if len(found) == len(current):
                break
            now = time.monotonic()
            if now - started >= timeout_s:
                first = next(tx for i, tx in enumerate(current) if i not in found)
                raise TxTimeout(
                    f"network {self.name}: {len(current) - len(found)} transaction(s) not mined "
                    f"within {timeout_s:g}s, first nonce {first.nonce} {first.hash}"
                )
            if bump_after_s is not None and bumps < BUMPS_MAX and now - last_bump >= bump_after_s:
                for i, tx in enumerate(current):
                    if i not in found:
                        current[i] = self.bump(tx)
                bumps += 1
                last_bump = now
            self.flush_stalled_automine()
            self._sleep(self.poll_interval_s)
        return [found[i] for i in range(len(current))]

    def transact(self, sender: str, call: Call, *, timeout_s: float = WAIT_TIMEOUT_S) -> Receipt:
        """Send one transaction and wait for it; a revert raises TxReverted with its reason."""
        (tx,) = self.submit(sender, [call])
        (receipt,) = self.wait([tx], timeout_s=timeout_s)
        if not receipt.status:
            raise TxReverted(self.why_reverted(tx, receipt), tx_hash=receipt.tx_hash)
        return receipt

    def transact_many(self, sender: str, calls: Sequence[Call], *, timeout_s: float = WAIT_TIMEOUT_S) -> list[Receipt]:
        """Send several transactions from one sender in one batch and wait for all (one block, not one each);
        the first that reverts raises TxReverted with its reason."""
        if not calls:
            return []
        sent = self.submit(sender, calls)
        receipts = self.wait(sent, timeout_s=timeout_s)
        for tx, receipt in zip(sent, receipts, strict=True):
            if not receipt.status:
                raise TxReverted(self.why_reverted(tx, receipt), tx_hash=receipt.tx_hash)
        return receipts

    def why_reverted(self, tx: SentTx, receipt: Receipt) -> str:
        if receipt.gas_used >= tx.gas:
            return "out of gas"
        try:
            self.eth_call(tx.call.to or "", tx.call.data, sender=tx.sender, block=receipt.block_number - 1)
        except TxReverted as exc:
            return exc.reason
        return "reverted (no reason given)"

    # ------------------------------------------------------------ contracts

    def deploy(self, name: str, contract: str, args: Sequence[Any], sender: str) -> str:
        """Deploy `contract` under `name` on this network, or adopt the recorded deployment."""
        return self.deploy_many([(name, contract, args)], sender)[name]

    def deploy_many(self, items: Sequence[tuple[str, str, Sequence[Any]]], sender: str) -> dict[str, str]:
        """Deploy each (name, contract, args) not deployed yet, all in one batch; adopt the recorded others."""
        addresses: dict[str, str] = {}
        wanted = []
        for name, contract, args in items:
            existing = self.deployment(name, required=False)
            if existing and self.code(existing):
                addresses[name] = existing
            else:
                wanted.append((name, artifact(contract), args))
        receipts = self.transact_many(sender, [Call(to=None, data=art.deploy_data(*args)) for _, art, args in wanted])
        for (name, art, _), receipt in zip(wanted, receipts, strict=True):
            if receipt.contract_address is None:
                raise ChainError(f"deployment of {art.name} on {self.name} returned no address")
            self.record_deployment(name, art, receipt.contract_address, receipt.tx_hash, receipt.block_number)
            log.info(
                "deployed network=%s name=%s contract=%s address=%s",
                self.name,
                name,
                art.name,
                receipt.contract_address,
            )
            addresses[name] = receipt.contract_address
        return addresses

    def record_deployment(
        self, name: str, art: Artifact, address: str, tx_hash: str | None, block_number: int | None
    ) -> None:
        table = schema.deployments
        values = dict(
            chain_id=self.chain_id,
            name=name,
            network=self.name,
            contract=art.name,
            address=to_checksum_address(address),
            tx_hash=tx_hash,
            block_number=block_number,
            source_sha256=art.source_sha256,
            deployed_at_us=self.clock(),
        )
        self._deployments.pop(name, None)
        with write_transaction(self.engine) as conn:
            try:
                with conn.begin_nested():
                    conn.execute(table.insert().values(**values))
            except IntegrityError:
                conn.execute(
                    table.update().where(table.c.chain_id == self.chain_id, table.c.name == name).values(**values)
                )

    def deployment(self, name: str, *, required: bool = True) -> str | None:
        if name in self._deployments:
            return self._deployments[name]
        table = schema.deployments
        with self.engine.connect() as conn:
            address = conn.execute(
                select(table.c.address).where(table.c.chain_id == self.chain_id, table.c.name == name)
            ).scalar()
        if address is None:
            if required:
                raise NotFound(f"nothing named {name!r} is deployed on network {self.name}", code="not_deployed")
            return None
        self._deployments[name] = address
        return str(address)

    def deployments(self) -> dict[str, tuple[str, str]]:
        table = schema.deployments
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(table.c.name, table.c.contract, table.c.address).where(table.c.chain_id == self.chain_id)
            ).all()
        return {r.name: (r.contract, r.address) for r in rows}
