"""The chain steps of each token operation, and what the ledger books when they are final."""

from __future__ import annotations

from typing import Any

from eth_utils import keccak, to_checksum_address

from andchain.chains.client import Call, Receipt
from andchain.chains.contracts import encode_memo, memo32
from andchain.errors import DomainError
from andchain.ledger import Result, TransferFlags, TransferSpec
from andchain.ops import Operation
from andchain.ops.chain import PlannedCall
from andchain.tokens.model import DEPOSIT_TOKEN, DVP, FUND_SHARE, TOKENS
from andchain.tokens.service import DVP_ABI, TOKEN_ABI, TokenService

_ALLOWLIST = TOKEN_ABI.function("setAllowlisted").selector


def _done(op: Operation) -> set[str]:
    return {d.get("step", "") for d in op.state.get("done", [])}


class _Base:
    kinds: tuple[str, ...] = ()

    def __init__(self, service: TokenService) -> None:
        self.s = service

    def _allowlist_step(self, op: Operation, deployment: str, address: str) -> PlannedCall | None:
        """Allow-list `address` on the token first, unless it already is."""
        network = op.network or ""
        step = f"allowlist:{deployment}:{address.lower()}"
        if step in _done(op):
            return None
        if deployment == DEPOSIT_TOKEN and self.s.allowlisted_wallet(network, address):
            return None
        token = self.s.token_address(network, deployment)
        if self.s.chain(network).read(token, TOKEN_ABI, "allowlisted", address):
            if deployment == DEPOSIT_TOKEN:
                self.s.mark_allowlisted(network, address)
            return None
        return PlannedCall(
            self.s.bank("compliance"), Call(token, TOKEN_ABI.encode_call("setAllowlisted", address, True)), step
        )

    def step_done(self, op: Operation, receipt: Receipt) -> dict[str, Any]:
        step = op.state["tx"].get("step", "")
        if step.startswith(f"allowlist:{DEPOSIT_TOKEN}:"):
            self.s.mark_allowlisted(op.network or "", to_checksum_address(_allowlisted_address(op)))
        elif not step.startswith("allowlist:"):
            self.s.book_receipt(op.network or "", receipt)
        return {}

    def failed(self, op: Operation, code: str, reason: str) -> None:
        return None


def _allowlisted_address(op: Operation) -> str:
    data = bytes.fromhex(op.state["tx"]["data"])
    assert data[:4] == _ALLOWLIST
    return "0x" + data[4 + 12 : 4 + 32].hex()


class MintAction(_Base):
    kinds = ("mint",)

    def next_call(self, op: Operation) -> PlannedCall | None:
        p = op.payload
        # mint() reserved the DDA when it recorded the operation; only a crash in between
        # leaves an operation without its reservation.
        refusal = None if op.state.get("reserved") else self.s.reserve_mint(op)
        if refusal is not None:
            raise DomainError(refusal[1], code=refusal[0])
        first = self._allowlist_step(op, DEPOSIT_TOKEN, p["holder"])
        if first is not None:
            return first
        if "mint" in _done(op):
            return None
        token = self.s.token_address(p["network"])
        return PlannedCall(
            self.s.bank("minter"),
            Call(token, TOKEN_ABI.encode_call("mint", p["holder"], p["amount"], memo32(op.id))),
            "mint",
        )

    def step_done(self, op: Operation, receipt: Receipt) -> dict[str, Any]:
        if op.state["tx"].get("step") == "mint":
            return {}  # the mint is booked by posting its reservation in finish()
        return super().step_done(op, receipt)

    def finish(self, op: Operation) -> dict[str, Any]:
        result = self.s.ledger.create_transfer(
            TransferSpec(
                id=f"mint:{op.id}:post", pending_id=f"mint:{op.id}", flags=TransferFlags.POST_PENDING, code="mint"
            )
        )
        if result.result not in (Result.OK, Result.EXISTS):
            raise DomainError(f"posting mint {op.id} refused: {result.result.value}", code=result.result.value)
        minted = next(d for d in op.state["done"] if d.get("step") == "mint")
        return {
            "tx_hash": minted["hash"],
            "block": minted["block"],
            "amount": op.payload["amount"],
            "holder": op.payload["holder"],
        }

    def failed(self, op: Operation, code: str, reason: str) -> None:
        self.s.ledger.create_transfer(
            TransferSpec(
                id=f"mint:{op.id}:void", pending_id=f"mint:{op.id}", flags=TransferFlags.VOID_PENDING, code="mint_void"
            )
        )


class PayAction(_Base):
    kinds = ("pay",)

    def next_call(self, op: Operation) -> PlannedCall | None:
        p = op.payload
        first = self._allowlist_step(op, DEPOSIT_TOKEN, p["receiver"])
        if first is not None:
            return first
        if "pay" in _done(op):
            return None
        token = self.s.token_address(p["network"])
        return PlannedCall(
            p["sender"],
            Call(
                token,
                TOKEN_ABI.encode_call(
                    "transferWithMemo",
                    p["receiver"],
                    p["amount"],
                    encode_memo(p["memo"], self.s.ctx.settings.network(p["network"]).memo_format),
                ),
            ),
            "pay",
        )

    def finish(self, op: Operation) -> dict[str, Any]:
        paid = next(d for d in op.state["done"] if d.get("step") == "pay")
        return {
            "tx_hash": paid["hash"],
            "block": paid["block"],
            "amount": op.payload["amount"],
            "memo": op.payload["memo"],
        }


class RedeemAction(_Base):
    kinds = ("redeem",)

    def next_call(self, op: Operation) -> PlannedCall | None:
        p = op.payload
        if "redeem" in _done(op):
            return None
        token = self.s.token_address(p["network"])
        return PlannedCall(
            p["holder"], Call(token, TOKEN_ABI.encode_call("redeem", p["amount"], memo32(op.id))), "redeem"
        )

    def finish(self, op: Operation) -> dict[str, Any]:
        done = next(d for d in op.state["done"] if d.get("step") == "redeem")
        return {"tx_hash": done["hash"], "block": done["block"], "amount": op.payload["amount"]}


class IssueSharesAction(_Base):
    kinds = ("issue_shares",)

    def next_call(self, op: Operation) -> PlannedCall | None:
        p = op.payload
        first = self._allowlist_step(op, FUND_SHARE, p["holder"])
        if first is not None:
            return first
        if "issue" in _done(op):
            return None
        token = self.s.token_address(p["network"], FUND_SHARE)
        return PlannedCall(
            self.s.bank("minter"),
            Call(token, TOKEN_ABI.encode_call("mint", p["holder"], p["amount"], memo32(op.id))),
            "issue",
        )

    def step_done(self, op: Operation, receipt: Receipt) -> dict[str, Any]:
        return {}

    def finish(self, op: Operation) -> dict[str, Any]:
        p = op.payload
        issuance = self.s.ledger.account("bank:mmf:issuance").id
        holder = self.s.holder_id(p["network"], TOKENS[FUND_SHARE], p["holder"])
        result = self.s.ledger.create_transfer(
            TransferSpec(issuance, holder, p["amount"], id=f"issue:{op.id}", code="issue_shares", asset="MMF")
        )
        if not result.ok:
            raise DomainError(f"booking share issue {op.id} refused: {result.result.value}", code=result.result.value)
        done = next(d for d in op.state["done"] if d.get("step") == "issue")
        return {"tx_hash": done["hash"], "shares": p["amount"]}


class DvPAction(_Base):
    kinds = ("dvp",)

    def next_call(self, op: Operation) -> PlannedCall | None:
        p = op.payload
        network = p["network"]
        dvp = self.s.token_address(network, DVP)
        cash, shares = self.s.token_address(network, DEPOSIT_TOKEN), self.s.token_address(network, FUND_SHARE)
        for deployment in (DEPOSIT_TOKEN, FUND_SHARE):
            for address in (p["buyer_address"], p["seller_address"]):
                step = self._allowlist_step(op, deployment, address)
                if step is not None:
                    return step
        trade = keccak(text=op.id)
        done = _done(op)
        chain = self.s.chain(network)
        if "propose" not in done:
            deadline = int(chain.block()["timestamp"], 16) + (p["deadline"] - op.created_at_us // 1_000_000)
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
                        deadline,
                    ),
                ),
                "propose",
            )
        steps = [
            ("approve_cash", p["buyer_address"], Call(cash, TOKEN_ABI.encode_call("approve", dvp, p["cash"]))),
            ("approve_shares", p["seller_address"], Call(shares, TOKEN_ABI.encode_call("approve", dvp, p["shares"]))),
            ("fund_cash", p["buyer_address"], Call(dvp, DVP_ABI.encode_call("fund", trade))),
            ("fund_shares", p["seller_address"], Call(dvp, DVP_ABI.encode_call("fund", trade))),
        ]
        for name, sender, call in steps:
            if name not in done:
                return PlannedCall(sender, call, name)
        return None

    def finish(self, op: Operation) -> dict[str, Any]:
        settled = next(d for d in op.state["done"] if d.get("step") == "fund_shares")
        return {
            "trade_id": "0x" + keccak(text=op.id).hex(),
            "tx_hash": settled["hash"],
            "block": settled["block"],
            "cash": op.payload["cash"],
            "shares": op.payload["shares"],
        }


def all_actions(service: TokenService) -> list[Any]:
    from andchain.tokens.moves import MoveAction

    return [
        MintAction(service),
        PayAction(service),
        RedeemAction(service),
        IssueSharesAction(service),
        DvPAction(service),
        MoveAction(service),
    ]
