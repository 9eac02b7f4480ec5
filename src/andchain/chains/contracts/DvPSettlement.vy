# pragma version ~=0.4.3
# @title DvPSettlement
# @notice Delivery versus payment between two parties: two ERC-20 legs are escrowed
#         here and swapped atomically when the second leg arrives, or refunded after
#         the deadline. A hash-locked variant escrows one leg against a secret whose
#         reveal settles the matching leg on another chain (HTLC).
#         Tokens sent here outside any trade or lock (a plain transfer by mistake) are
#         not escrow: the operator can return them, never touching what is escrowed.
# @dev On a permissioned token this contract must itself be allow-listed.

from ethereum.ercs import IERC20

STATE_NONE: constant(uint8) = 0
STATE_OPEN: constant(uint8) = 1
STATE_SETTLED: constant(uint8) = 2
STATE_REFUNDED: constant(uint8) = 3

struct Trade:
    party_a: address
    party_b: address
    token_a: address
    amount_a: uint256
    token_b: address
    amount_b: uint256
    deadline: uint256
    funded_a: bool
    funded_b: bool
    state: uint8

struct Lock:
    sender: address
    receiver: address
    token: address
    amount: uint256
    hashlock: bytes32
    deadline: uint256
    state: uint8

event TradeProposed:
    trade_id: indexed(bytes32)
    party_a: indexed(address)
    party_b: indexed(address)
    token_a: address
    amount_a: uint256
    token_b: address
    amount_b: uint256
    deadline: uint256

event TradeFunded:
    trade_id: indexed(bytes32)
    party: indexed(address)

event TradeSettled:
    trade_id: indexed(bytes32)

event TradeRefunded:
    trade_id: indexed(bytes32)

event Locked:
    lock_id: indexed(bytes32)
    sender: indexed(address)
    receiver: indexed(address)
    token: address
    amount: uint256
    hashlock: bytes32
    deadline: uint256

event Claimed:
    lock_id: indexed(bytes32)
    preimage: bytes32

event LockRefunded:
    lock_id: indexed(bytes32)

event StrayReturned:
    token: indexed(address)
    receiver: indexed(address)
    amount: uint256
    reference: bytes32

event OperatorChanged:
    previous: indexed(address)
    operator: indexed(address)

trades: public(HashMap[bytes32, Trade])
locks: public(HashMap[bytes32, Lock])
# What open trades and locks hold of each token; anything above it is stray.
escrowed: public(HashMap[address, uint256])
operator: public(address)


@deploy
def __init__(operator_: address):
    assert operator_ != empty(address), "operator is zero"
    self.operator = operator_


@internal
def _pull(token: address, sender: address, amount: uint256):
    self.escrowed[token] += amount
    assert extcall IERC20(token).transferFrom(sender, self, amount, default_return_value=True), "pull failed"


@internal
def _push(token: address, receiver: address, amount: uint256):
    self.escrowed[token] -= amount
    assert extcall IERC20(token).transfer(receiver, amount, default_return_value=True), "push failed"


@external
def returnStray(token: address, receiver: address, amount: uint256, reference: bytes32):
    """The operator returns tokens that were sent here outside any trade or lock; escrow stays untouched."""
    assert msg.sender == self.operator, "not the operator"
    assert amount > 0, "amount is zero"
    held: uint256 = staticcall IERC20(token).balanceOf(self)
    assert held >= self.escrowed[token] + amount, "not stray"
    assert extcall IERC20(token).transfer(receiver, amount, default_return_value=True), "push failed"
    log StrayReturned(token=token, receiver=receiver, amount=amount, reference=reference)


@external
def setOperator(operator_: address):
    assert msg.sender == self.operator, "not the operator"
    assert operator_ != empty(address), "operator is zero"
    log OperatorChanged(previous=self.operator, operator=operator_)
    self.operator = operator_


@external
def propose(
    trade_id: bytes32,
    party_a: address,
    party_b: address,
    token_a: address,
    amount_a: uint256,
    token_b: address,
    amount_b: uint256,
    deadline: uint256,
):
    assert self.trades[trade_id].state == STATE_NONE, "trade exists"
    assert msg.sender == party_a or msg.sender == party_b, "not a party"
    assert party_a != party_b and party_a != empty(address) and party_b != empty(address), "bad parties"
    assert amount_a > 0 and amount_b > 0, "amount is zero"
    assert deadline > block.timestamp, "deadline passed"
    self.trades[trade_id] = Trade(
        party_a=party_a, party_b=party_b, token_a=token_a, amount_a=amount_a, token_b=token_b,
        amount_b=amount_b, deadline=deadline, funded_a=False, funded_b=False, state=STATE_OPEN,
    )
    log TradeProposed(
        trade_id=trade_id, party_a=party_a, party_b=party_b, token_a=token_a, amount_a=amount_a,
        token_b=token_b, amount_b=amount_b, deadline=deadline,
    )


@external
def fund(trade_id: bytes32):
    """A party delivers its leg; the second leg to arrive settles both in the same transaction."""
    trade: Trade = self.trades[trade_id]
    assert trade.state == STATE_OPEN, "trade not open"
    assert block.timestamp <= trade.deadline, "trade expired"
    if msg.sender == trade.party_a:
        assert not trade.funded_a, "already funded"
        self._pull(trade.token_a, msg.sender, trade.amount_a)
        trade.funded_a = True
    elif msg.sender == trade.party_b:
        assert not trade.funded_b, "already funded"
        self._pull(trade.token_b, msg.sender, trade.amount_b)
        trade.funded_b = True
    else:
        raise "not a party"
    log TradeFunded(trade_id=trade_id, party=msg.sender)
    if trade.funded_a and trade.funded_b:
        trade.state = STATE_SETTLED
        self.trades[trade_id] = trade
        self._push(trade.token_a, trade.party_b, trade.amount_a)
        self._push(trade.token_b, trade.party_a, trade.amount_b)
        log TradeSettled(trade_id=trade_id)
    else:
        self.trades[trade_id] = trade


@external
def refund(trade_id: bytes32):
    """After the deadline, return whatever legs were delivered. Anyone may call it."""
    trade: Trade = self.trades[trade_id]
    assert trade.state == STATE_OPEN, "trade not open"
    assert block.timestamp > trade.deadline, "trade not expired"
    self.trades[trade_id].state = STATE_REFUNDED
    if trade.funded_a:
        self._push(trade.token_a, trade.party_a, trade.amount_a)
    if trade.funded_b:
        self._push(trade.token_b, trade.party_b, trade.amount_b)
    log TradeRefunded(trade_id=trade_id)


@external
def lock(lock_id: bytes32, receiver: address, token: address, amount: uint256, hashlock: bytes32, deadline: uint256):
    """Escrow a leg that the receiver claims by revealing sha256 preimage of `hashlock` before `deadline`."""
    assert self.locks[lock_id].state == STATE_NONE, "lock exists"
    assert receiver != empty(address) and receiver != msg.sender, "bad receiver"
    assert amount > 0, "amount is zero"
    assert deadline > block.timestamp, "deadline passed"
    self._pull(token, msg.sender, amount)
    self.locks[lock_id] = Lock(
        sender=msg.sender, receiver=receiver, token=token, amount=amount, hashlock=hashlock,
        deadline=deadline, state=STATE_OPEN,
    )
    log Locked(
        lock_id=lock_id, sender=msg.sender, receiver=receiver, token=token, amount=amount, hashlock=hashlock,
        deadline=deadline,
    )


@external
def claim(lock_id: bytes32, preimage: bytes32):
    held: Lock = self.locks[lock_id]
    assert held.state == STATE_OPEN, "lock not open"
    assert block.timestamp <= held.deadline, "lock expired"
    assert sha256(preimage) == held.hashlock, "wrong preimage"
    self.locks[lock_id].state = STATE_SETTLED
    self._push(held.token, held.receiver, held.amount)
    log Claimed(lock_id=lock_id, preimage=preimage)


@external
def refundLock(lock_id: bytes32):
    held: Lock = self.locks[lock_id]
    assert held.state == STATE_OPEN, "lock not open"
    assert block.timestamp > held.deadline, "lock not expired"
    self.locks[lock_id].state = STATE_REFUNDED
    self._push(held.token, held.sender, held.amount)
    log LockRefunded(lock_id=lock_id)
