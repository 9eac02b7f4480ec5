"""Gas used by the deposit token's calls, for sizing the bank chain's blocks (docs/deployment.md).

Usage (from the repository root, with the project's virtualenv):

    .venv/bin/python deploy/besu/transfer_gas.py

It starts a throwaway anvil node with the internal profile (as `andchain bench chain` does),
deploys the PermissionedToken, allow-lists a sender and recipients, and prints the `gasUsed`
of each call's receipt as JSON. Gas is set by the EVM's rules and the contract's bytecode, not
by the machine, so the figures hold on Besu for the same bytecode and fork (the contracts need
Cancun: see deploy/besu/README.md). Nothing here is a benchmark of speed.
"""

from __future__ import annotations

import json
from typing import Any

from eth_utils import keccak, to_checksum_address

from andchain.bench import throwaway_internal_chain
from andchain.chains.client import Call
from andchain.chains.contracts import artifact, memo32

BATCH_RECIPIENTS = 500


def measure() -> dict[str, Any]:
    with throwaway_internal_chain("andchain-transfer-gas-") as ctx:
        chain = ctx.chain("internal")
        abi = artifact("PermissionedToken").abi
        admin = ctx.keys.create("gas:admin")
        sender = ctx.keys.create("gas:sender")
        token = chain.deploy("gas_token", "PermissionedToken", ["Gas", "GAS", 2, 10**30, admin], admin)

        def gas(who: str, fn: str, *args: Any) -> int:
            return chain.transact(who, Call(token, abi.encode_call(fn, *args))).gas_used

        recipients = [to_checksum_address(keccak(text=f"gas-recipient-{i}")[-20:]) for i in range(2 * BATCH_RECIPIENTS)]
        gas(admin, "configureMinter", admin, 10**29)
        for start in range(0, len(recipients), 250):
            gas(admin, "batchSetAllowlisted", recipients[start : start + 250], True)
        gas(admin, "batchSetAllowlisted", [admin, sender], True)
        gas(admin, "mint", admin, 1, memo32("gas"))  # the supply is no longer zero: later mints are typical
        first_mint = gas(admin, "mint", sender, 10**20, memo32("gas"))
        later_mint = gas(admin, "mint", sender, 10**20, memo32("gas"))
        new_holder = gas(sender, "transfer", recipients[0], 1)
        holder = gas(sender, "transfer", recipients[0], 1)
        memo_new_holder = gas(sender, "transferWithMemo", recipients[-1], 1, memo32("invoice 7"))
        with_memo = gas(sender, "transferWithMemo", recipients[0], 1, memo32("invoice 7"))
        fresh = recipients[1 : 1 + BATCH_RECIPIENTS]
        batch_new = gas(sender, "batchTransfer", fresh, [1] * BATCH_RECIPIENTS)
        batch_held = gas(sender, "batchTransfer", fresh, [1] * BATCH_RECIPIENTS)
        return {
            "measure": "gasUsed per call, PermissionedToken, internal profile (anvil)",
            "mint_to_a_new_holder": first_mint,
            "mint_to_a_holder": later_mint,
            "transfer_to_a_new_holder": new_holder,
            "transfer_to_a_holder": holder,
            "transfer_with_memo_to_a_new_holder": memo_new_holder,
            "transfer_with_memo_to_a_holder": with_memo,
            "batch_transfer_recipients": BATCH_RECIPIENTS,
            "batch_transfer_to_new_holders": batch_new,
            "batch_transfer_to_holders": batch_held,
            "batch_transfer_to_holders_per_transfer": batch_held // BATCH_RECIPIENTS,
        }


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
