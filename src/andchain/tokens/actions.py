"""The chain steps of each token operation, what each books when final, and what each does on chain.

Each action plans its operation's next transaction from the steps already final
(`next_call`), books a final step in the transaction that records it (`step_done`),
books the result when no step is left (`finish`), releases its holds when it ends
without moving value (`release`), says when value has left (`irreversible`), how it
compensates (`reverted`, `exhausted`), and what each step does to holders' balances
(`effects`, for reconcile to count what is on chain but not yet in the ledger).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eth_utils import keccak
from sqlalchemy import Connection

from andchain.chains.client import Call, ChainClient, Receipt
from andchain.chains.contracts import encode_memo, memo32
from andchain.config import Settings
from andchain.errors import InvariantBroken
from andchain.ledger import Ledger
from andchain.ops import Operation, OpStatus, holds
from andchain.ops.chain import NotYet, OperationFailed, PlannedCall
from andchain.tokens.booking import DVP_ABI, TOKEN_ABI, Booking
from andchain.tokens.clients import Clients
from andchain.tokens.model import DEPOSIT_TOKEN, DVP, FUND_SHARE
from andchain.tokens.requests import issue_hold, mint_hold, move_hold, redeem_hold
from andchain.tokens.setup import TokenSetup

UNLIMITED = 2**256 - 1
# (network, token deployment, holder address, change of its on-chain balance)
Effect = tuple[str, str, str, int]


def done_steps(op: Operation) -> dict[str, dict[str, Any]]:
    return {d.get("step", ""): d for d in op.state.get("done", [])}


class Action:
    """What every token action shares: allow-listing, booking receipts, no holds by default."""

    kinds: tuple[str, ...] = ()
    event_booked = False  # whether the ledger books its steps from their events (else from its holds)

    def __init__(
        self,
        ledger: Ledger,
        clients: Clients,
        booking: Booking,
        setup: TokenSetup,
        chains: Callable[[str], ChainClient],
        settings: Settings,
    ) -> None:
        self.ledger = ledger
        self.clients = clients
        self.booking = booking
        self.setup = setup
        self.chains = chains
        self.settings = settings

    # ------------------------------------------------------------- helpers

    def allowlist_step(
        self, op: Operation, network: str, address: str, deployment: str = DEPOSIT_TOKEN
    ) -> PlannedCall | None:
        """Allow-list `address` on the token first, unless it already is."""
        step = f"allowlist:{deployment}:{address.lower()}:{network}"
        if step in done_steps(op):
            return None
        if deployment == DEPOSIT_TOKEN and self.clients.allowlisted_wallet(network, address):
            return None
        token = self.setup.token_address(network, deployment)
        if self.chains(network).read(token, TOKEN_ABI, "allowlisted", address):
            if deployment == DEPOSIT_TOKEN:
                self.clients.mark_allowlisted(network, address)
            return None
        return PlannedCall(
            self.setup.bank("compliance"),
            Call(token, TOKEN_ABI.encode_call("setAllowlisted", address, True)),
            step,
            network,
        )

    def minter_approval_step(self, op: Operation, network: str, holder: str, amount: int) -> PlannedCall | None:
        """A bank-managed wallet lets the bank's own minter burn from it without limit, once: the bank holds
        both keys anyway, and per-operation approvals of concurrent operations would overwrite one another
        (an ERC-20 approval replaces, it does not add). A client-owned address approves by itself."""
        if "approve" in done_steps(op) or not self.clients.bank_managed(network, holder):
            return None
        minter = self.setup.bank("minter")
        token = self.setup.token_address(network)
        if self.chains(network).read(token, TOKEN_ABI, "allowance", holder, minter) >= amount:
            return None
        return PlannedCall(holder, Call(token, TOKEN_ABI.encode_call("approve", minter, UNLIMITED)), "approve", network)

    # ------------------------------------------------------ the action port

    def before_finals(self, conn: Connection, finals: list[tuple[str, Receipt]]) -> None:
        """A batch's final steps (network, receipt) about to be booked together through `conn`: what their
        bookings look up is read once for all of them."""
        if self.event_booked:
            self.booking.read_mirrors(conn, finals)

    def step_done(self, op: Operation, receipt: Receipt, conn: Connection) -> dict[str, Any]:
        step = op.state["tx"].get("step", "")
        network = op.state["tx"].get("network") or op.network or ""
        if step.startswith(f"allowlist:{DEPOSIT_TOKEN}:"):
            self.clients.mark_allowlisted(network, step.split(":")[2], conn)
        elif self.event_booked and not step.startswith("allowlist:") and step not in ("approve", "propose"):
            self.booking.book_receipt(network, receipt, conn)
        return {}

    def release(self, op: Operation, conn: Connection) -> None:
        return None

    def irreversible(self, op: Operation) -> bool:
        return False

    def reverted(self, op: Operation, step: str, reason: str) -> dict[str, Any] | None:
        return None

    def exhausted(self, op: Operation) -> dict[str, Any] | None:
        return None

    def effects(self, op: Operation, step: str) -> list[Effect]:
        return []

    def booked(self, op: Operation, step: str) -> bool:
        """Whether the ledger already holds what `step` did (hold-based actions: once the operation ended)."""
        return op.status in (OpStatus.SUCCEEDED, OpStatus.FAILED)


class MintAction(Action):
    kinds = ("mint",)

    def next_call(self, op: Operation) -> PlannedCall | None:
        p = op.payload
        first = self.allowlist_step(op, p["network"], p["holder"])
        if first is not None:
            return first
        if "mint" in done_steps(op):
            return None
        token = self.setup.token_address(p["network"])
        return PlannedCall(
            self.setup.bank("minter"),
            Call(token, TOKEN_ABI.encode_call("mint", p["holder"], p["amount"], memo32(op.id))),
            "mint",
            p["network"],
        )

    def finish(self, op: Operation, conn: Connection) -> dict[str, Any]:
        holds.post(self.ledger, mint_hold(op.id), conn=conn)
        minted = done_steps(op)["mint"]
        p = op.payload
        return {"tx_hash": minted["hash"], "block": minted["block"], "amount": p["amount"], "holder": p["holder"]}

    def release(self, op: Operation, conn: Connection) -> None:
        holds.void(self.ledger, mint_hold(op.id), conn=conn)

    def effects(self, op: Operation, step: str) -> list[Effect]:
        p = op.payload
        return [(p["network"], DEPOSIT_TOKEN, p["holder"], p["amount"])] if step == "mint" else []


class PayAction(Action):
    kinds = ("pay",)
    event_booked = True

    def next_call(self, op: Operation) -> PlannedCall | None:
        p = op.payload
        first = self.allowlist_step(op, p["network"], p["receiver"])
        if first is not None:
            return first
        if "pay" in done_steps(op):
            return None
        token = self.setup.token_address(p["network"])
        memo = encode_memo(p["memo"], self.settings.network(p["network"]).memo_format)
        return PlannedCall(
            p["sender"],
            Call(token, TOKEN_ABI.encode_call("transferWithMemo", p["receiver"], p["amount"], memo)),
            "pay",
            p["network"],
        )

    def finish(self, op: Operation, conn: Connection) -> dict[str, Any]:
        paid = done_steps(op)["pay"]
        p = op.payload
        return {"tx_hash": paid["hash"], "block": paid["block"], "amount": p["amount"], "memo": p["memo"]}

    def effects(self, op: Operation, step: str) -> list[Effect]:
        p = op.payload
        if step != "pay":
            return []
        return [
            (p["network"], DEPOSIT_TOKEN, p["sender"], -p["amount"]),
            (p["network"], DEPOSIT_TOKEN, p["receiver"], p["amount"]),
        ]


class RedeemAction(Action):
    """The bank's minter burns the client's tokens (burnFrom); the DDA is credited by posting the hold."""

    kinds = ("redeem",)

    def next_call(self, op: Operation) -> PlannedCall | None:
        p = op.payload
        if "burn" in done_steps(op) or "redeem" in done_steps(op):
            return None
        approve = self.minter_approval_step(op, p["network"], p["holder"], p["amount"])
        if approve is not None:
            return approve
        token = self.setup.token_address(p["network"])
        return PlannedCall(
            self.setup.bank("minter"),
            Call(token, TOKEN_ABI.encode_call("burnFrom", p["holder"], p["amount"], memo32(op.id))),
            "burn",
            p["network"],
        )

    def finish(self, op: Operation, conn: Connection) -> dict[str, Any]:
        holds.post(self.ledger, redeem_hold(op.id), conn=conn)
        burned = done_steps(op)["burn"]
        return {"tx_hash": burned["hash"], "block": burned["block"], "amount": op.payload["amount"]}

    def release(self, op: Operation, conn: Connection) -> None:
        holds.void(self.ledger, redeem_hold(op.id), conn=conn)

    def effects(self, op: Operation, step: str) -> list[Effect]:
        p = op.payload
        return [(p["network"], DEPOSIT_TOKEN, p["holder"], -p["amount"])] if step == "burn" else []


class IssueSharesAction(Action):
    kinds = ("issue_shares",)

    def next_call(self, op: Operation) -> PlannedCall | None:
        p = op.payload
        first = self.allowlist_step(op, p["network"], p["holder"], FUND_SHARE)
        if first is not None:
            return first
        if "issue" in done_steps(op):
            return None
        token = self.setup.token_address(p["network"], FUND_SHARE)
        return PlannedCall(
            self.setup.bank("minter"),
            Call(token, TOKEN_ABI.encode_call("mint", p["holder"], p["amount"], memo32(op.id))),
            "issue",
            p["network"],
        )

    def finish(self, op: Operation, conn: Connection) -> dict[str, Any]:
        holds.post(self.ledger, issue_hold(op.id), conn=conn)
        issued = done_steps(op)["issue"]
        return {"tx_hash": issued["hash"], "block": issued["block"], "shares": op.payload["amount"]}

    def release(self, op: Operation, conn: Connection) -> None:
        holds.void(self.ledger, issue_hold(op.id), conn=conn)

    def effects(self, op: Operation, step: str) -> list[Effect]:
        p = op.payload
        return [(p["network"], FUND_SHARE, p["holder"], p["amount"])] if step == "issue" else []


class DvPAction(Action):
    """Propose, approve both legs, fund both: the second funding settles both legs atomically on chain.
    Once the buyer's cash is escrowed, a seller leg that cannot be delivered is refunded after the deadline."""

    kinds = ("dvp",)
    event_booked = True

    def next_call(self, op: Operation) -> PlannedCall | None:
        p = op.payload
        network = p["network"]
        dvp = self.setup.token_address(network, DVP)
        cash, shares = self.setup.token_address(network, DEPOSIT_TOKEN), self.setup.token_address(network, FUND_SHARE)
        done = done_steps(op)
        trade = keccak(text=op.id)
        if op.state.get("refund"):
            if "refund" in done:
                return None
            chain = self.chains(network)
            now, deadline = chain.block_timestamp(), int(chain.read(dvp, DVP_ABI, "trades", trade)[6])
            if now <= deadline:
                raise NotYet(f"trade {op.id} can be refunded after its deadline", retry_in_s=deadline - now + 1)
            return PlannedCall(p["buyer_address"], Call(dvp, DVP_ABI.encode_call("refund", trade)), "refund", network)
        for deployment in (DEPOSIT_TOKEN, FUND_SHARE):
            for address in (p["buyer_address"], p["seller_address"]):
                step = self.allowlist_step(op, network, address, deployment)
                if step is not None:
                    return step
        if "propose" not in done:
            return PlannedCall(
                p["buyer_address"],
                Call(
                    dvp,
                    DVP_ABI.encode_call(
                        "propose",
                        trade,
                        p["buyer_address"],
                        p["seller_address"],
                        cash,
                        p["cash"],
                        shares,
                        p["shares"],
                        self.chains(network).block_timestamp() + int(p["ttl_s"]),
                    ),
                ),
                "propose",
                network,
            )
        steps = [
            ("approve_cash", p["buyer_address"], Call(cash, TOKEN_ABI.encode_call("approve", dvp, p["cash"]))),
            ("approve_shares", p["seller_address"], Call(shares, TOKEN_ABI.encode_call("approve", dvp, p["shares"]))),
            ("fund_cash", p["buyer_address"], Call(dvp, DVP_ABI.encode_call("fund", trade))),
            ("fund_shares", p["seller_address"], Call(dvp, DVP_ABI.encode_call("fund", trade))),
        ]
        for name, sender, call in steps:
            if name not in done:
                return PlannedCall(sender, call, name, network)
        return None

    def finish(self, op: Operation, conn: Connection) -> dict[str, Any]:
        done = done_steps(op)
        p = op.payload
        trade = "0x" + keccak(text=op.id).hex()
        if "refund" in done:
            raise OperationFailed(
                "dvp_refunded",
                f"the seller's leg could not be delivered ({op.state.get('seller_error')}); the buyer's cash was "
                "refunded after the deadline",
                {"trade_id": trade, "refund_tx": done["refund"]["hash"], "refunded": True},
            )
        settled = done["fund_shares"]
        return {
            "trade_id": trade,
            "tx_hash": settled["hash"],
            "block": settled["block"],
            "cash": p["cash"],
            "shares": p["shares"],
        }

    def irreversible(self, op: Operation) -> bool:
        return "fund_cash" in done_steps(op)

    def reverted(self, op: Operation, step: str, reason: str) -> dict[str, Any] | None:
        """The buyer's cash is escrowed but the seller's leg cannot follow: refund after the deadline."""
        if self.irreversible(op) and not op.state.get("refund"):
            return {"refund": True, "seller_error": reason}
        return None

    def effects(self, op: Operation, step: str) -> list[Effect]:
        p = op.payload
        network, dvp = p["network"], self.setup.token_address(p["network"], DVP)
        buyer, seller = p["buyer_address"], p["seller_address"]
        if step == "fund_cash":
            return [(network, DEPOSIT_TOKEN, buyer, -p["cash"]), (network, DEPOSIT_TOKEN, dvp, p["cash"])]
        if step == "fund_shares":  # the seller's leg arrives and both legs settle
            return [
                (network, FUND_SHARE, seller, -p["shares"]),
                (network, FUND_SHARE, buyer, p["shares"]),
                (network, DEPOSIT_TOKEN, dvp, -p["cash"]),
                (network, DEPOSIT_TOKEN, seller, p["cash"]),
            ]
        if step == "refund":
            return [(network, DEPOSIT_TOKEN, dvp, -p["cash"]), (network, DEPOSIT_TOKEN, buyer, p["cash"])]
        return []


class MoveAction(Action):
    """Burn on the source (the bank's minter, within the holder's approval), mint on the destination once
    the burn is final; if the destination refuses the mint for good, or never answers within the retry
    budget, mint the tokens back on the source (a compensation, retried like any step)."""

    kinds = ("move",)

    def next_call(self, op: Operation) -> PlannedCall | None:
        p = op.payload
        done = done_steps(op)
        source, destination = p["source"], p["destination"]
        minter = self.setup.bank("minter")
        if op.state.get("compensate"):
            if "remint" in done:
                return None
            token = self.setup.token_address(source)
            return PlannedCall(
                minter,
                Call(token, TOKEN_ABI.encode_call("mint", p["from"], p["amount"], memo32(op.id))),
                "remint",
                source,
            )
        if "burn" not in done:
            approve = self.minter_approval_step(op, source, p["from"], p["amount"])
            if approve is not None:
                return approve
            token = self.setup.token_address(source)
            return PlannedCall(
                minter,
                Call(token, TOKEN_ABI.encode_call("burnFrom", p["from"], p["amount"], memo32(op.id))),
                "burn",
                source,
            )
        step = self.allowlist_step(op, destination, p["to"])
        if step is not None:
            return step
        if "mint" not in done:
            token = self.setup.token_address(destination)
            return PlannedCall(
                minter,
                Call(token, TOKEN_ABI.encode_call("mint", p["to"], p["amount"], memo32(op.id))),
                "mint",
                destination,
            )
        return None

    def irreversible(self, op: Operation) -> bool:
        return "burn" in done_steps(op)

    def _destination_step(self, op: Operation, step: str) -> bool:
        return step == "mint" or (step.startswith("allowlist:") and step.endswith(f":{op.payload['destination']}"))

    def reverted(self, op: Operation, step: str, reason: str) -> dict[str, Any] | None:
        """The destination refused the mint for good: give the client its tokens back on the source."""
        if (
            self.irreversible(op)
            and not op.state.get("compensate")
            and (self._destination_step(op, step) or step == "plan")
        ):
            return {"compensate": True, "destination_error": reason}
        return None

    def exhausted(self, op: Operation) -> dict[str, Any] | None:
        """The destination did not answer within the retry budget: compensate on the source."""
        if self.irreversible(op) and not op.state.get("compensate") and "mint" not in done_steps(op):
            tx = op.state.get("tx") or {}
            if tx and tx.get("step") == "mint":
                return None  # a mint was sent and may yet be mined: never mint twice; wait for an operator
            return {"compensate": True, "destination_error": op.error_message or "destination unavailable"}
        return None

    def finish(self, op: Operation, conn: Connection) -> dict[str, Any]:
        p = op.payload
        done = done_steps(op)
        if op.state.get("compensate"):
            holds.void(self.ledger, move_hold(op.id), conn=conn)
            raise OperationFailed(
                "destination_failed",
                f"the mint on {p['destination']} failed ({op.state.get('destination_error')}); "
                f"the tokens were minted back on {p['source']}",
                {"burn_tx": done["burn"]["hash"], "remint_tx": done["remint"]["hash"], "compensated": True},
            )
        holds.post(self.ledger, move_hold(op.id), conn=conn)
        return {
            "burn_tx": done["burn"]["hash"],
            "burn_block": done["burn"]["block"],
            "mint_tx": done["mint"]["hash"],
            "mint_block": done["mint"]["block"],
            "amount": p["amount"],
        }

    def release(self, op: Operation, conn: Connection) -> None:
        if self.irreversible(op):
            raise InvariantBroken(f"move {op.id} burned on its source: its hold is never released without a re-mint")
        holds.void(self.ledger, move_hold(op.id), conn=conn)

    def effects(self, op: Operation, step: str) -> list[Effect]:
        p = op.payload
        if step == "burn":
            return [(p["source"], DEPOSIT_TOKEN, p["from"], -p["amount"])]
        if step == "mint":
            return [(p["destination"], DEPOSIT_TOKEN, p["to"], p["amount"])]
        if step == "remint":
            return [(p["source"], DEPOSIT_TOKEN, p["from"], p["amount"])]
        return []


class ReturnStrayAction(Action):
    """The operator returns tokens sent to the DvP contract outside any trade."""

    kinds = ("return_stray",)
    event_booked = True

    def next_call(self, op: Operation) -> PlannedCall | None:
        p = op.payload
        if "return" in done_steps(op):
            return None
        first = self.allowlist_step(op, p["network"], p["receiver"], p["token"])
        if first is not None:
            return first
        token = self.setup.token_address(p["network"], p["token"])
        return PlannedCall(
            self.setup.bank("admin"),
            Call(p["dvp"], DVP_ABI.encode_call("returnStray", token, p["receiver"], p["amount"], memo32(op.id))),
            "return",
            p["network"],
        )

    def finish(self, op: Operation, conn: Connection) -> dict[str, Any]:
        returned = done_steps(op)["return"]
        return {"tx_hash": returned["hash"], "block": returned["block"], "amount": op.payload["amount"]}

    def effects(self, op: Operation, step: str) -> list[Effect]:
        p = op.payload
        if step != "return":
            return []
        return [
            (p["network"], p["token"], p["dvp"], -p["amount"]),
            (p["network"], p["token"], p["receiver"], p["amount"]),
        ]


class EnforceAction(Action):
    """A lawful order on chain, by the bank's compliance role, address by address on every network named:
    `freeze` and `unfreeze` each address (skipping one already so), `seize` freezes each first and then
    burns its whole balance with the order's reference (`seizeAndBurn`; the `Seized` event books the
    holder's mirror to the seizure account, as the listener does). Balances cannot move while frozen, so
    the amount read when a step is planned is the amount burned; a step already done on chain (found
    by reading it) is not sent again."""

    kinds = ("freeze", "unfreeze", "seize")
    event_booked = True

    def next_call(self, op: Operation) -> PlannedCall | None:
        p = op.payload
        done = done_steps(op)
        officer = self.setup.bank("compliance")
        for network, address in p["targets"]:
            chain = self.chains(network)
            token = self.setup.token_address(network)
            frozen = bool(chain.read(token, TOKEN_ABI, "frozen", address))
            if op.kind == "unfreeze":
                step = f"unfreeze:{network}:{address.lower()}"
                if step not in done and frozen:
                    return PlannedCall(officer, Call(token, TOKEN_ABI.encode_call("unfreeze", address)), step, network)
                continue
            step = f"freeze:{network}:{address.lower()}"
            if step not in done and not frozen:
                return PlannedCall(officer, Call(token, TOKEN_ABI.encode_call("freeze", address)), step, network)
            if op.kind != "seize":
                continue
            prefix = f"seize:{network}:{address.lower()}:"
            if any(name.startswith(prefix) for name in done):
                continue
            balance = int(chain.read(token, TOKEN_ABI, "balanceOf", address))
            if balance > 0:
                # The amount is in the step's name: what reconcile counts while the burn is in flight.
                reference = bytes.fromhex(p["reference32"])
                call = TOKEN_ABI.encode_call("seizeAndBurn", address, balance, reference)
                return PlannedCall(officer, Call(token, call), f"{prefix}{balance}", network)
        return None

    def effects(self, op: Operation, step: str) -> list[Effect]:
        if not step.startswith("seize:"):
            return []
        _, network, address, amount = step.split(":")
        return [(network, DEPOSIT_TOKEN, address, -int(amount))]

    def finish(self, op: Operation, conn: Connection) -> dict[str, Any]:
        done = done_steps(op)
        steps = {name: {"hash": d.get("hash"), "block": d.get("block")} for name, d in done.items() if name}
        return {"order": op.payload["order"], "steps": steps}


ACTIONS = (
    MintAction,
    PayAction,
    RedeemAction,
    IssueSharesAction,
    DvPAction,
    MoveAction,
    ReturnStrayAction,
    EnforceAction,
)
