"""The chain client against a real anvil node: signing, batches, nonces, bumps, failures."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
from eth_account import Account
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from andchain.chains.client import Call, ChainClient, TxTimeout, WrongChain
from andchain.chains.keys import DynamicFeeTx, EncryptedKeyStore, KeyStoreError, LegacyTx, Signer
from andchain.chains.rpc import NodeUnreachable, Rpc
from andchain.devtools.postgres import free_port
from tests.chains.conftest import TokenWorld, make_context, network_settings, start_node

KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")


@settings(max_examples=60, deadline=None)
@given(
    nonce=st.integers(0, 2**32),
    gas=st.integers(21_000, 30_000_000),
    fee=st.integers(0, 10**12),
    tip=st.integers(0, 10**10),
    value=st.integers(0, 10**24),
    data=st.binary(max_size=200),
    to=st.one_of(st.none(), st.binary(min_size=20, max_size=20)),
    chain_id=st.sampled_from([1, 8453, 4217, 770077]),
)
def test_the_fast_signer_produces_exactly_what_eth_account_produces(nonce, gas, fee, tip, value, data, to, chain_id):
    signer = Signer(KEY)
    base = {"nonce": nonce, "gas": gas, "value": value, "data": data, "chainId": chain_id}
    if to is not None:
        base["to"] = to_checksum_address(to)
    legacy = signer.sign(LegacyTx(nonce, fee, gas, to, value, data, chain_id))
    assert legacy == bytes(Account.sign_transaction({**base, "gasPrice": fee}, KEY).raw_transaction)
    dynamic = signer.sign(DynamicFeeTx(nonce, tip, fee + tip, gas, to, value, data, chain_id))
    expected = Account.sign_transaction(
        {**base, "maxFeePerGas": fee + tip, "maxPriorityFeePerGas": tip, "type": 2}, KEY
    )
    assert dynamic == bytes(expected.raw_transaction)
    assert signer.address == Account.from_key(KEY).address


def test_the_key_store_keeps_keys_encrypted_and_refuses_a_wrong_passphrase(tmp_path):
    store = EncryptedKeyStore(tmp_path / "keys", "correct horse", scrypt_n=1024)
    address = store.import_key("bank:treasury", KEY)
    text = next((tmp_path / "keys").glob("*.json")).read_text()
    assert KEY.hex() not in text and "crypto" in text
    assert store.labels() == {"bank:treasury": address}
    assert store.create("bank:treasury") == address  # an existing label is kept, never replaced
    assert "4c0883" not in repr(store) + repr(store.signer(address))
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        EncryptedKeyStore(tmp_path / "keys", "wrong", scrypt_n=1024).signer(address)
    with pytest.raises(KeyStoreError, match="already holds another key"):
        store.import_key("bank:treasury", bytes(32 * [1]))
    with pytest.raises(KeyStoreError, match="label"):
        store.create("Bad Label!")


def test_a_labels_address_is_read_from_its_file_once(tmp_path, monkeypatch):
    """The workers ask for the bank's addresses on every operation they plan: a store reads each label's
    file once, and another store on the same directory (another process) finds the same address."""
    store = EncryptedKeyStore(tmp_path / "keys", "correct horse", scrypt_n=1024)
    minter = store.create("bank:minter")
    other = EncryptedKeyStore(tmp_path / "keys", "correct horse", scrypt_n=1024)
    reads: list[object] = []
    read = EncryptedKeyStore._read

    def counting(self, path):
        reads.append(path)
        return read(self, path)

    monkeypatch.setattr(EncryptedKeyStore, "_read", counting)
    assert [store.create("bank:minter") for _ in range(3)] == [minter] * 3 and reads == []
    assert [other.create("bank:minter") for _ in range(3)] + [other.address("bank:minter")] == [minter] * 4
    assert len(reads) == 1
    with pytest.raises(KeyStoreError, match="already holds another key"):
        other.import_key("bank:minter", KEY)


def test_two_processes_creating_one_label_at_once_both_get_the_key_on_disk(tmp_path, monkeypatch):
    """Another process writes the label between this one's look and its write: this one's key is not
    written over it, and it answers (and keeps) the address on disk, whose key it can sign with."""
    import andchain.chains.keys as keys

    mine = EncryptedKeyStore(tmp_path / "keys", "correct horse", scrypt_n=1024)
    theirs = EncryptedKeyStore(tmp_path / "keys", "correct horse", scrypt_n=1024)
    link, raced = keys.os.link, []

    def racing(source, destination):
        if not raced:
            raced.append(None)
            raced[0] = theirs.create("bank:minter")  # the other process gets there first
        return link(source, destination)

    monkeypatch.setattr(keys.os, "link", racing)
    address = mine.create("bank:minter")
    assert raced == [address] == [theirs.address("bank:minter")] == [mine.address("bank:minter")]
    assert mine.signer(address).address == address
    assert [p.name for p in (tmp_path / "keys").iterdir() if p.name.endswith(".tmp")] == []
    with pytest.raises(KeyStoreError, match="already holds another key"):
        mine.import_key("bank:minter", KEY)


def test_a_batch_of_transfers_is_signed_locally_sent_in_one_request_and_all_mined(token: TokenWorld):
    token.tx(token.minter, "mint", token.alice, 1_000, b"\0" * 32)
    calls = [Call(token.address, token.abi.encode_call("transfer", token.bob, 1)) for _ in range(150)]
    sent = token.chain.submit(token.alice, calls)
    assert [tx.nonce for tx in sent] == list(range(sent[0].nonce, sent[0].nonce + 150))
    receipts = token.chain.wait(sent)
    assert all(r.status for r in receipts)
    assert token.read("balanceOf", token.bob) == 150


def test_batches_are_sent_in_nonce_order_and_a_batch_not_sent_stops_the_rest(token: TokenWorld, monkeypatch):
    token.tx(token.minter, "mint", token.alice, 1_000, b"\0" * 32)
    chain = token.chain
    monkeypatch.setattr(chain, "network", chain.network.model_copy(update={"rpc_batch_max": 2}))
    calls = [Call(token.address, token.abi.encode_call("transfer", token.bob, 1)) for _ in range(5)]
    sent = chain.submit(token.alice, calls)  # three JSON-RPC batches: 2, 2, 1
    assert [tx.nonce for tx in sent] == list(range(sent[0].nonce, sent[0].nonce + 5))
    assert all(r.status for r in chain.wait(sent)) and token.read("balanceOf", token.bob) == 5

    sent_batches: list[list[str]] = []
    broadcast = chain.broadcast

    def second_batch_unsendable(part):
        if len(sent_batches) == 1:
            sent_batches.append([])
            raise NodeUnreachable("node went away", network=chain.name)
        sent_batches.append([tx.hash for tx in part])
        return broadcast(part)

    monkeypatch.setattr(chain, "broadcast", second_batch_unsendable)
    with pytest.raises(NodeUnreachable):
        chain.submit(token.alice, calls)
    assert len(sent_batches) == 2 and len(sent_batches[0]) == 2  # the third batch never left


def test_many_senders_are_signed_with_their_nonces_reserved_in_one_transaction(token: TokenWorld, monkeypatch):
    """A round of payments from many payers: every sender's nonces are reserved in one write transaction,
    a sender named twice gets the nonces after its first group's, and a sender one of whose calls would
    revert, or whose key is not here, gets the exception in its place and has no nonce reserved."""
    from andchain.chains import nonces as nonces_module
    from andchain.chains.client import TxReverted

    chain = token.chain
    token.tx(token.minter, "mint", token.alice, 100, b"\0" * 32)
    token.tx(token.minter, "mint", token.bob, 100, b"\0" * 32)
    transactions = []
    counted = nonces_module.write_transaction

    def counting(engine):
        transactions.append(engine)
        return counted(engine)

    monkeypatch.setattr(nonces_module, "write_transaction", counting)
    first = {a: chain.nonces.node_pending(a) for a in (token.alice, token.bob, token.outsider)}
    stranger = Account.create().address

    def transfer(to: str, amount: int) -> Call:
        return Call(token.address, token.abi.encode_call("transfer", to, amount))

    results = chain.sign_calls_many(
        [
            (token.alice, [transfer(token.bob, 1), transfer(token.bob, 2)]),
            (token.outsider, [Call(token.address, token.abi.encode_call("pause"))]),  # not the pauser: reverts
            (token.bob, [transfer(token.alice, 3)]),
            (token.alice, [transfer(token.bob, 4)]),
            (stranger, [transfer(token.bob, 5)]),  # no key here: signed by nobody
        ]
    )
    assert len(transactions) == 1
    alice, outsider, bob, alice_again, nobody = results
    assert isinstance(outsider, TxReverted) and isinstance(nobody, Exception)
    assert chain.nonces.peek(stranger) is None
    assert isinstance(alice, list) and isinstance(bob, list) and isinstance(alice_again, list)
    assert [tx.nonce for tx in alice + alice_again] == [first[token.alice] + n for n in range(3)]
    assert [tx.nonce for tx in bob] == [first[token.bob]]
    assert chain.nonces.peek(token.outsider) is None  # nothing reserved for it
    assert chain.nonces.peek(token.alice) == first[token.alice] + 3
    assert chain.broadcast([*alice, *bob, *alice_again]) == []  # many senders in one JSON-RPC batch
    chain.wait([*alice, *bob, *alice_again], timeout_s=10)
    assert (token.read("balanceOf", token.alice), token.read("balanceOf", token.bob)) == (100 - 7 + 3, 100 + 7 - 3)
    assert chain.sign_calls_many([]) == []


def test_nonces_survive_a_restart_and_a_gap_left_by_a_crash_is_repaired(ctx, token: TokenWorld, tmp_path, anvil):
    token.tx(token.minter, "mint", token.alice, 100, b"\0" * 32)
    token.tx(token.alice, "transfer", token.bob, 1)
    chain = token.chain
    before = chain.nonces.peek(token.alice)
    assert before == 1
    # A crash between reserving nonces and sending them: three nonces are lost to the node.
    chain.nonces.reserve(token.alice, 3)
    restarted = make_context(tmp_path, anvil)  # a new process on the same database and keys
    client = restarted.chain("internal")
    assert client.nonces.peek(token.alice) == before + 3
    assert list(client.nonces.gaps(token.alice)) == [before, before + 1, before + 2]
    stuck = client.submit(token.alice, [Call(token.address, token.abi.encode_call("transfer", token.bob, 1))])
    with pytest.raises(TxTimeout):
        client.wait(stuck, timeout_s=0.5)
    assert client.repair_nonce_gaps(token.alice) == [before, before + 1, before + 2]
    (receipt,) = client.wait(stuck, timeout_s=10)
    assert receipt.status and token.read("balanceOf", token.bob) == 2
    assert list(client.nonces.gaps(token.alice)) == []
    restarted.close()


def test_an_unreachable_node_gives_a_clear_error_after_bounded_retries():
    slept: list[float] = []
    port = free_port()
    rpc = Rpc(f"http://127.0.0.1:{port}", name="internal", retries_max=3, sleep=slept.append)
    with pytest.raises(NodeUnreachable) as caught:
        rpc.call("eth_blockNumber")
    assert f"node internal at http://127.0.0.1:{port} did not answer after 4 attempts" in caught.value.message
    assert slept == [0.1, 0.2, 0.4]


def test_a_providers_key_in_the_node_url_never_reaches_a_message():
    """A provider's URL carries its API key (https://eth.example/v2/<key>); the refusal reaches logs,
    operations and API answers, so it names the host alone, even when the node answers 500."""
    import http.server

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        for url in (f"http://127.0.0.1:{port}/v2/sEcReTkEy", f"http://user:sEcReTkEy@127.0.0.1:{port}/?key=sEcReTkEy"):
            rpc = Rpc(url, retries_max=1, sleep=lambda s: None)
            with pytest.raises(NodeUnreachable) as caught:
                rpc.call("eth_blockNumber")
            assert "sEcReTkEy" not in caught.value.message and "sEcReTkEy" not in rpc.name
            assert f"127.0.0.1:{port}/..." in caught.value.message and "HTTP 500" in caught.value.message
    finally:
        server.shutdown()
        server.server_close()


def test_a_shown_url_keeps_the_scheme_host_and_port_only():
    from andchain.config import shown_url

    assert shown_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545"
    assert shown_url("https://eth-mainnet.example/v2/abc") == "https://eth-mainnet.example/..."
    assert shown_url("https://u:p@node.example:8443") == "https://node.example:8443/..."
    assert shown_url("https://node.example/?apikey=abc") == "https://node.example/..."
    assert shown_url("http://[::1]:8545/") == "http://[::1]:8545"


def test_the_client_refuses_a_node_with_another_chain_id(ctx, anvil):
    wrong = ChainClient("internal", network_settings(anvil.network.port, chain_id=1), ctx.engine, ctx.keys)
    with pytest.raises(WrongChain, match="has chain id 770077, configured 1"):
        wrong.submit(ctx.keys.create("x"), [Call("0x" + "11" * 20, b"")])


def test_a_stuck_transaction_is_bumped_and_the_bumped_one_is_mined(tmp_path):
    node = start_node(tmp_path / "public", name="base", chain_id=8453, kind="public", gas_policy="eip1559")
    try:
        ctx = make_context(tmp_path, node)
        client = ctx.chain("base")
        sender = ctx.keys.create("gas:base")
        client.rpc.call("anvil_setBalance", [sender, hex(10**20)])
        client.rpc.call("evm_setAutomine", [False])
        (tx,) = client.submit(sender, [Call(sender, b"", gas=21_000)])

        # Nothing mines until the bump has been sent; then one block is mined.
        def mine_after_bump() -> None:
            for _ in range(200):
                pool = client.rpc.call("txpool_content")
                txs = pool["pending"].get(sender, {}) or pool["pending"].get(sender.lower(), {})
                if any(t["hash"] != tx.hash for t in txs.values()):
                    client.rpc.call("evm_mine", [])
                    return
                threading.Event().wait(0.05)

        miner = threading.Thread(target=mine_after_bump)
        miner.start()
        (receipt,) = client.wait([tx], timeout_s=20, bump_after_s=0.3)
        miner.join()
        assert receipt.status and receipt.tx_hash != tx.hash
        assert client.receipts([tx.hash]) == {}
        ctx.close()
    finally:
        node.stop()


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.one_of(st.integers(0, 2**256), st.binary(max_size=80)), lambda c: st.lists(c, max_size=6), max_leaves=30
    )
)
def test_the_rlp_encoder_matches_pyrlp(item):
    import rlp

    from andchain.chains.keys import rlp_encode

    assert rlp_encode(item) == rlp.encode(item)


@settings(max_examples=100, deadline=None)
@given(
    to=st.binary(min_size=20, max_size=20),
    amount=st.integers(0, 2**256 - 1),
    memo=st.binary(max_size=32),
    flag=st.booleans(),
)
def test_the_static_abi_encoder_matches_eth_abi(to, amount, memo, flag):
    import eth_abi

    from andchain.chains.contracts import artifact

    abi = artifact("PermissionedToken").abi
    address = to_checksum_address(to)
    assert abi.encode_call("transferWithMemo", address, amount, memo) == (
        abi.function("transferWithMemo").selector
        + eth_abi.encode(["address", "uint256", "bytes32"], [address, amount, memo])
    )
    assert abi.encode_call("setAllowlisted", address, flag)[4:] == eth_abi.encode(["address", "bool"], [address, flag])


def test_the_static_abi_encoder_refuses_what_eth_abi_refuses():
    import eth_abi.exceptions

    from andchain.chains.contracts import artifact

    abi = artifact("PermissionedToken").abi
    for bad in [
        ("0x1234", 1),
        ("0x" + "gg" * 20, 1),
        ("0x" + "11" * 20, -1),
        ("0x" + "11" * 20, 2**256),
        ("0x" + "11" * 20, True),
    ]:
        with pytest.raises(eth_abi.exceptions.EncodingError):
            abi.encode_call("transfer", *bad)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_static_log_decoder_matches_eth_abi(data):
    """Every event of the contracts, with words that fit their types and words that do not: the fast path
    answers what eth_abi answers, and refuses (leaving eth_abi to raise) what eth_abi refuses."""
    import eth_abi

    from andchain.chains.contracts import CONTRACT_NAMES, _decode_static, artifact

    abi = artifact(data.draw(st.sampled_from(CONTRACT_NAMES))).abi
    event = data.draw(st.sampled_from(sorted(abi.events.values(), key=lambda e: e.name)))
    fitting = {
        "address": st.binary(min_size=20, max_size=20).map(lambda b: bytes(12) + b),
        "bool": st.sampled_from([bytes(32), (1).to_bytes(32, "big")]),
    }

    def word(typ: str):
        fits = (
            fitting[typ]
            if typ in fitting
            else st.integers(0, 2 ** int(typ[4:]) - 1).map(lambda v: v.to_bytes(32, "big"))
            if typ.startswith("uint")
            else st.binary(min_size=32, max_size=32)
        )
        bits = {"bool": 1, "address": 160}.get(typ) or (int(typ[4:]) if typ.startswith("uint") else 256)
        edges = [(2**bits + 1).to_bytes(33, "big")[-32:], b"\x01" + bytes(31), (2).to_bytes(32, "big")]
        return st.one_of(fits, st.sampled_from(edges), st.binary(min_size=32, max_size=32))  # and anything at all

    words = [data.draw(word(t)) for t in event.types]
    topics = [event.topic, *(w for w, ix in zip(words, event.indexed, strict=True) if ix)]
    payload = b"".join(w for w, ix in zip(words, event.indexed, strict=True) if not ix)
    fast = _decode_static(event, topics, payload)
    try:
        slow = {}
        plain = iter(eth_abi.decode([t for t, ix in zip(event.types, event.indexed, strict=True) if not ix], payload))
        for name, ix, typ, w in zip(event.names, event.indexed, event.types, words, strict=True):
            value = eth_abi.decode([typ], w)[0] if ix else next(plain)
            slow[name] = to_checksum_address(value) if typ == "address" else value
    except eth_abi.exceptions.DecodingError:
        assert fast is None
        return
    if fast is not None:  # None only for events with a type of more than one word
        assert fast.name == event.name and fast.args == slow
    assert abi.decode_log(topics, payload).args == slow


def test_memos_follow_the_networks_profile():
    from andchain.chains.contracts import decode_memo, encode_memo
    from andchain.errors import DomainError

    uetr = "eb6305c9-1f7f-49de-aed0-16487c27b42d"
    assert decode_memo(encode_memo(uetr, "iso20022"), "iso20022") == uetr
    assert decode_memo(encode_memo("E2E-REF-2026-11-0042", "iso20022"), "iso20022") == "E2E-REF-2026-11-0042"
    assert encode_memo("INV-77") == b"INV-77".ljust(32, b"\0")
    with pytest.raises(DomainError):
        encode_memo("E" * 35, "iso20022")  # an ISO 20022 EndToEndId may be 35 long: refused, never cut


def test_personal_sign_is_what_eth_account_recovers():
    from eth_account.messages import encode_defunct

    signer = Signer(KEY)
    message = "andchain address registration\nnonce: 42"
    assert Account.recover_message(encode_defunct(text=message), signature=signer.sign_personal(message)) == (
        signer.address
    )


@contextlib.contextmanager
def own_node(tmp_path, rpc_class, *node_args):
    """A node of the test's own (started with `node_args`), a context on it, and a chain client that talks
    to it through `rpc_class`: (node, ctx, rpc, chain, a sender key)."""
    from andchain.chains.nodes import LocalNode
    from tests.chains.conftest import network_settings

    node = LocalNode("internal", network_settings(free_port()), tmp_path / "node", extra_args=node_args)
    node.start()
    ctx = make_context(tmp_path / "a", node)
    try:
        rpc = rpc_class(node.network.rpc_url, name="internal")
        chain = ChainClient("internal", node.network, ctx.engine, ctx.keys, rpc=rpc)
        yield node, ctx, rpc, chain, ctx.keys.create("bank:sender")
    finally:
        ctx.close()
        node.stop()


def test_ready_transactions_a_local_automining_node_left_in_its_pool_are_mined(tmp_path, caplog):
    """anvil's automine can miss ready transactions after a burst (foundry-rs/foundry#10122): they would
    wait in its pool until another transaction arrives. The node here runs with --no-mining, the same
    state made deterministic, and its answer to anvil_getAutomine is the one of a node that should
    mine: its pool is mined once the head has not moved for AUTOMINE_STALL_S. A node whose mining is
    off on purpose, one with its own block time, and one andchain does not run are left alone."""

    class AutomineSays(Rpc):
        automine = True

        def batch(self, calls):
            replies = super().batch(calls)
            return [self.automine if m == "anvil_getAutomine" else r for (m, _), r in zip(calls, replies, strict=True)]

    with own_node(tmp_path, AutomineSays, "--no-mining") as (node, ctx, rpc, chain, sender):
        sent = chain.submit(sender, [Call(to_checksum_address(b"\x01" * 20), b"") for _ in range(3)])
        assert chain.block_number() == 0
        with caplog.at_level("WARNING", logger="andchain.chains.client"):
            receipts = chain.wait(sent, timeout_s=20)
        assert [r.status for r in receipts] == [True, True, True]
        assert "automine left 3 ready transaction(s) in its pool at block 0; mined them" in caplog.text
        assert chain.automine_flushes == 1

        more = chain.submit(sender, [Call(to_checksum_address(b"\x01" * 20), b"")])
        untouched = [
            # the node's own answer: mining is off on purpose
            ChainClient("internal", node.network, ctx.engine, ctx.keys),
            # a network with its own block time mines on its own
            ChainClient(
                "internal", node.network.model_copy(update={"block_time_s": 1.0}), ctx.engine, ctx.keys, rpc=rpc
            ),
            # a node andchain does not run
            ChainClient("internal", node.network.model_copy(update={"local": False}), ctx.engine, ctx.keys, rpc=rpc),
        ]
        for client in untouched:
            client.automine_stall_s, client.automine_look_every_s = 0.05, 0.0
        for _ in range(4):
            assert [client.flush_stalled_automine() for client in untouched] == [False, False, False]
            time.sleep(0.1)
        assert chain.receipts([more[0].hash]) == {}  # still in the pool


def test_a_gap_the_node_holds_as_queued_though_it_is_next_is_sent_again_from_an_emptied_pool(tmp_path, caplog):
    """anvil can keep the next transaction of a sender as "queued" (the one before it mined, the pool never
    promoted it): it answers "transaction already imported" to the same bytes and never mines it. The node
    here is sent the gap for real, and its first answer is that one: the sender's pool is emptied and the
    gap sent again, and mined. Only on a local automining anvil: elsewhere the refusal is returned as is."""
    from andchain.chains.rpc import RpcError

    class FirstSendSeenAsQueued(Rpc):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.calls: list[str] = []
            self.armed = True

        def batch(self, calls):
            self.calls.extend(m for m, _ in calls)
            if self.armed and calls and calls[0][0] == "eth_sendRawTransaction":
                self.armed = False
                replies = super().batch(calls[1:])
                imported = RpcError(
                    "eth_sendRawTransaction", {"code": -32003, "message": "transaction already imported"}
                )
                return [imported, *replies]
            return super().batch(calls)

        def call(self, method, params=()):
            self.calls.append(method)
            return super().call(method, params)

    with own_node(tmp_path, FirstSendSeenAsQueued) as (node, ctx, rpc, chain, sender):
        signed = chain.sign_calls(sender, [Call(to_checksum_address(b"\x01" * 20), b"") for _ in range(3)])
        with caplog.at_level("WARNING", logger="andchain.chains.client"):
            assert chain.resend_gap(sender, signed, 0) == []
        assert "anvil_removePoolTransactions" in rpc.calls
        assert f"held nonce 0 of {sender} as queued" in caplog.text
        assert [r.status for r in chain.wait(signed, timeout_s=20)] == [True, True, True]

        # A node with its own block time: a transaction it knows is no refusal, and its pool is left alone.
        rpc.armed, rpc.calls = True, []
        timed = ChainClient(
            "internal", node.network.model_copy(update={"block_time_s": 1.0}), ctx.engine, ctx.keys, rpc=rpc
        )
        more = timed.sign_calls(sender, [Call(to_checksum_address(b"\x01" * 20), b"")])
        assert timed.resend_gap(sender, more, more[0].nonce) == []
        assert "anvil_removePoolTransactions" not in rpc.calls and "anvil_getAutomine" not in rpc.calls
        # Nor is the pool emptied when the transaction answered so is not the node's next one: a lower
        # nonce is missing (a hole no transaction owns), and this one is rightly queued behind it.
        rpc.armed, rpc.calls = True, []
        chain.nonces.reserve(sender, 1)  # the hole
        behind = chain.sign_calls(sender, [Call(to_checksum_address(b"\x01" * 20), b"")])
        assert chain.resend_gap(sender, behind, behind[0].nonce - 1) == []
        assert "anvil_removePoolTransactions" not in rpc.calls
