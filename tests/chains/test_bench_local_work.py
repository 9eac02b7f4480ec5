"""The bench's comparison of the hand-written signer and encoder with the libraries they stand in for."""

from __future__ import annotations

from eth_utils import keccak, to_checksum_address

from andchain.bench.chain import compare_local_work


def test_the_bench_compares_signing_and_encoding_with_the_libraries_on_the_same_transfers():
    recipients = [to_checksum_address(keccak(text=f"recipient-{i}")[-20:]) for i in range(20)]
    token = to_checksum_address(keccak(text="token")[-20:])
    figures = compare_local_work(token, recipients, 770077, seconds=0.06)
    assert set(figures) == {"library_versions", "sign_legacy", "sign_eip1559", "encode_transfer"}
    assert figures["sign_legacy"]["library"] == "eth_account.Account.sign_transaction"
    assert figures["encode_transfer"]["library"] == "eth_abi.encode"
    for name in ("sign_legacy", "sign_eip1559", "encode_transfer"):
        row = figures[name]
        assert row["andchain_per_s"] > 0 and row["library_per_s"] > 0 and row["slices"] >= 3
        assert row["speedup"] > 0
