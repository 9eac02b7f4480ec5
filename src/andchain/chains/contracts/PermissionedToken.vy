# pragma version ~=0.4.3
# @title PermissionedToken
# @notice A bank-issued, permissioned ERC-20: the deposit token and tokenized assets.
#         Only allow-listed, unfrozen addresses hold and move it. Minters mint within
#         allowances set by the master minter (after Circle's FiatToken); the pauser
#         stops transfers, mints and burns; the compliance role allow-lists, freezes
#         and seizes (after ERC-3643 and the GENIUS Act). EIP-2612 permit.
# @dev Every state change emits an event: the bank's ledger mirrors the chain from them.

from ethereum.ercs import IERC20
from ethereum.ercs import IERC20Detailed

implements: IERC20
implements: IERC20Detailed

BATCH_MAX: constant(uint256) = 512

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256

event TransferWithMemo:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256
    memo: bytes32

event Mint:
    minter: indexed(address)
    receiver: indexed(address)
    value: uint256
    memo: bytes32

event Burn:
    burner: indexed(address)
    value: uint256
    memo: bytes32

event Redeemed:
    holder: indexed(address)
    value: uint256
    memo: bytes32

event Seized:
    holder: indexed(address)
    receiver: indexed(address)
    value: uint256
    burned: bool
    reference: bytes32

event MinterConfigured:
    minter: indexed(address)
    allowance: uint256

event MinterRemoved:
    minter: indexed(address)

event Allowlisted:
    account: indexed(address)
    status: bool

event Frozen:
    account: indexed(address)

event Unfrozen:
    account: indexed(address)

event Paused:
    account: address

event Unpaused:
    account: address

event RoleChanged:
    role: indexed(bytes32)
    account: indexed(address)

event AdminTransferStarted:
    current: indexed(address)
    pending: indexed(address)

event SupplyCapChanged:
    cap: uint256

name: public(String[64])
symbol: public(String[32])
decimals: public(uint8)
totalSupply: public(uint256)
supplyCap: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])

admin: public(address)
pendingAdmin: public(address)
masterMinter: public(address)
pauser: public(address)
compliance: public(address)
paused: public(bool)
isMinter: public(HashMap[address, bool])
minterAllowance: public(HashMap[address, uint256])
allowlisted: public(HashMap[address, bool])
frozen: public(HashMap[address, bool])

nonces: public(HashMap[address, uint256])
_DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_PERMIT_TYPEHASH: constant(bytes32) = keccak256(
    "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
)
_VERSION: constant(String[8]) = "1"
# Half the secp256k1 curve order: larger s values are the malleable twins of valid ones.
_S_MAX: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168
_cached_chain_id: uint256
_cached_domain_separator: bytes32

ROLE_ADMIN: constant(bytes32) = keccak256("ADMIN")
ROLE_MASTER_MINTER: constant(bytes32) = keccak256("MASTER_MINTER")
ROLE_PAUSER: constant(bytes32) = keccak256("PAUSER")
ROLE_COMPLIANCE: constant(bytes32) = keccak256("COMPLIANCE")


@deploy
def __init__(name_: String[64], symbol_: String[32], decimals_: uint8, cap: uint256, admin_: address):
    assert admin_ != empty(address), "admin is zero"
    self.name = name_
    self.symbol = symbol_
    self.decimals = decimals_
    self.supplyCap = cap
    self.admin = admin_
    self.masterMinter = admin_
    self.pauser = admin_
    self.compliance = admin_
    self._cached_chain_id = chain.id
    self._cached_domain_separator = self._domain_separator()
    log RoleChanged(role=ROLE_ADMIN, account=admin_)
    log SupplyCapChanged(cap=cap)


# ------------------------------------------------------------------ internals

@view
@internal
def _domain_separator() -> bytes32:
    return keccak256(abi_encode(
        _DOMAIN_TYPEHASH, keccak256(self.name), keccak256(_VERSION), chain.id, self
    ))


@view
@internal
def _check_holder(account: address):
    assert self.allowlisted[account], "not allowlisted"
    assert not self.frozen[account], "frozen"


@internal
def _move(sender: address, receiver: address, amount: uint256):
    assert not self.paused, "paused"
    assert receiver != empty(address), "receiver is zero"
    self._check_holder(sender)
    self._check_holder(receiver)
    balance: uint256 = self.balanceOf[sender]
    assert balance >= amount, "insufficient balance"
    self.balanceOf[sender] = balance - amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=sender, receiver=receiver, value=amount)


@internal
def _spend_allowance(owner: address, spender: address, amount: uint256):
    allowed: uint256 = self.allowance[owner][spender]
    if allowed != max_value(uint256):
        assert allowed >= amount, "insufficient allowance"
        self.allowance[owner][spender] = allowed - amount


@internal
def _approve(owner: address, spender: address, amount: uint256):
    assert not self.paused, "paused"
    assert not self.frozen[owner], "frozen"
    assert not self.frozen[spender], "frozen"
    self.allowance[owner][spender] = amount
    log Approval(owner=owner, spender=spender, value=amount)


@internal
def _mint(receiver: address, amount: uint256, memo: bytes32):
    assert not self.paused, "paused"
    assert self.isMinter[msg.sender], "not a minter"
    allowed: uint256 = self.minterAllowance[msg.sender]
    assert allowed >= amount, "over minter allowance"
    self._check_holder(receiver)
    supply: uint256 = self.totalSupply + amount
    assert supply <= self.supplyCap, "over supply cap"
    self.minterAllowance[msg.sender] = allowed - amount
    self.totalSupply = supply
    self.balanceOf[receiver] += amount
    log Transfer(sender=empty(address), receiver=receiver, value=amount)
    log Mint(minter=msg.sender, receiver=receiver, value=amount, memo=memo)


@internal
def _burn(holder: address, amount: uint256):
    balance: uint256 = self.balanceOf[holder]
    assert balance >= amount, "insufficient balance"
    self.balanceOf[holder] = balance - amount
    self.totalSupply -= amount
    log Transfer(sender=holder, receiver=empty(address), value=amount)


# ------------------------------------------------------------------- ERC-20

@external
def transfer(receiver: address, amount: uint256) -> bool:
    self._move(msg.sender, receiver, amount)
    return True


@external
def transferFrom(owner: address, receiver: address, amount: uint256) -> bool:
    assert not self.frozen[msg.sender], "frozen"
    self._spend_allowance(owner, msg.sender, amount)
    self._move(owner, receiver, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    self._approve(msg.sender, spender, amount)
    return True


@external
def transferWithMemo(receiver: address, amount: uint256, memo: bytes32) -> bool:
    self._move(msg.sender, receiver, amount)
    log TransferWithMemo(sender=msg.sender, receiver=receiver, value=amount, memo=memo)
    return True


@external
def batchTransfer(receivers: DynArray[address, BATCH_MAX], amounts: DynArray[uint256, BATCH_MAX]) -> bool:
    assert len(receivers) == len(amounts), "length mismatch"
    for i: uint256 in range(len(receivers), bound=BATCH_MAX):
        self._move(msg.sender, receivers[i], amounts[i])
    return True


@external
def batchTransferWithMemo(
    receivers: DynArray[address, BATCH_MAX],
    amounts: DynArray[uint256, BATCH_MAX],
    memos: DynArray[bytes32, BATCH_MAX],
) -> bool:
    assert len(receivers) == len(amounts) and len(receivers) == len(memos), "length mismatch"
    for i: uint256 in range(len(receivers), bound=BATCH_MAX):
        self._move(msg.sender, receivers[i], amounts[i])
        log TransferWithMemo(sender=msg.sender, receiver=receivers[i], value=amounts[i], memo=memos[i])
    return True


# ------------------------------------------------------------- EIP-2612 permit

@view
@external
def DOMAIN_SEPARATOR() -> bytes32:
    if chain.id == self._cached_chain_id:
        return self._cached_domain_separator
    return self._domain_separator()


@external
def permit(owner: address, spender: address, amount: uint256, deadline: uint256, v: uint8, r: bytes32, s: bytes32):
    assert owner != empty(address), "owner is zero"
    assert block.timestamp <= deadline, "permit expired"
    nonce: uint256 = self.nonces[owner]
    separator: bytes32 = self._cached_domain_separator
    if chain.id != self._cached_chain_id:
        separator = self._domain_separator()
    digest: bytes32 = keccak256(concat(
        b"\x19\x01",
        separator,
        keccak256(abi_encode(_PERMIT_TYPEHASH, owner, spender, amount, nonce, deadline)),
    ))
    # Reject malleable signatures (s in the upper half of the curve order), as OpenZeppelin does.
    assert convert(s, uint256) <= _S_MAX, "invalid signature"
    signer: address = ecrecover(digest, v, r, s)
    assert signer == owner, "invalid signature"
    self.nonces[owner] = nonce + 1
    self._approve(owner, spender, amount)


# ------------------------------------------------------- issuance and redemption

@external
def mint(receiver: address, amount: uint256, memo: bytes32) -> bool:
    self._mint(receiver, amount, memo)
    return True


@external
def batchMint(
    receivers: DynArray[address, BATCH_MAX], amounts: DynArray[uint256, BATCH_MAX], memos: DynArray[bytes32, BATCH_MAX]
) -> bool:
    assert len(receivers) == len(amounts) and len(receivers) == len(memos), "length mismatch"
    for i: uint256 in range(len(receivers), bound=BATCH_MAX):
        self._mint(receivers[i], amounts[i], memos[i])
    return True


@external
def burn(amount: uint256, memo: bytes32):
    """A minter burns tokens it holds (the bank's redemption account)."""
    assert not self.paused, "paused"
    assert self.isMinter[msg.sender], "not a minter"
    self._check_holder(msg.sender)
    self._burn(msg.sender, amount)
    log Burn(burner=msg.sender, value=amount, memo=memo)


@external
def burnFrom(holder: address, amount: uint256, memo: bytes32):
    """A minter burns a holder's tokens within the allowance the holder gave it: the source leg of a
    move to another network (the bank re-mints them there)."""
    assert not self.paused, "paused"
    assert self.isMinter[msg.sender], "not a minter"
    self._check_holder(holder)
    self._spend_allowance(holder, msg.sender, amount)
    self._burn(holder, amount)
    log Burn(burner=holder, value=amount, memo=memo)


@external
def redeem(amount: uint256, memo: bytes32):
    """A holder redeems: its tokens are burned and the bank credits its deposit account."""
    assert not self.paused, "paused"
    assert amount > 0, "amount is zero"
    self._check_holder(msg.sender)
    self._burn(msg.sender, amount)
    log Redeemed(holder=msg.sender, value=amount, memo=memo)


# -------------------------------------------------------------------- roles

@external
def configureMinter(minter: address, allowance_: uint256):
    assert msg.sender == self.masterMinter, "not the master minter"
    assert minter != empty(address), "minter is zero"
    self.isMinter[minter] = True
    self.minterAllowance[minter] = allowance_
    log MinterConfigured(minter=minter, allowance=allowance_)


@external
def removeMinter(minter: address):
    assert msg.sender == self.masterMinter, "not the master minter"
    self.isMinter[minter] = False
    self.minterAllowance[minter] = 0
    log MinterRemoved(minter=minter)


@external
def pause():
    assert msg.sender == self.pauser, "not the pauser"
    self.paused = True
    log Paused(account=msg.sender)


@external
def unpause():
    assert msg.sender == self.pauser, "not the pauser"
    self.paused = False
    log Unpaused(account=msg.sender)


@internal
def _set_allowlisted(account: address, status: bool):
    assert account != empty(address), "account is zero"
    self.allowlisted[account] = status
    log Allowlisted(account=account, status=status)


@external
def setAllowlisted(account: address, status: bool):
    assert msg.sender == self.compliance, "not compliance"
    self._set_allowlisted(account, status)


@external
def batchSetAllowlisted(accounts: DynArray[address, BATCH_MAX], status: bool):
    assert msg.sender == self.compliance, "not compliance"
    for account: address in accounts:
        self._set_allowlisted(account, status)


@external
def freeze(account: address):
    assert msg.sender == self.compliance, "not compliance"
    self.frozen[account] = True
    log Frozen(account=account)


@external
def unfreeze(account: address):
    assert msg.sender == self.compliance, "not compliance"
    self.frozen[account] = False
    log Unfrozen(account=account)


@external
def seize(holder: address, receiver: address, amount: uint256, reference: bytes32):
    """On lawful order: move a frozen holder's tokens to a bank address. Works while paused."""
    assert msg.sender == self.compliance, "not compliance"
    assert self.frozen[holder], "holder not frozen"
    assert self.allowlisted[receiver] and not self.frozen[receiver], "receiver not allowed"
    balance: uint256 = self.balanceOf[holder]
    assert balance >= amount, "insufficient balance"
    self.balanceOf[holder] = balance - amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=holder, receiver=receiver, value=amount)
    log Seized(holder=holder, receiver=receiver, value=amount, burned=False, reference=reference)


@external
def seizeAndBurn(holder: address, amount: uint256, reference: bytes32):
    """On lawful order: destroy a frozen holder's tokens. Works while paused."""
    assert msg.sender == self.compliance, "not compliance"
    assert self.frozen[holder], "holder not frozen"
    self._burn(holder, amount)
    log Seized(holder=holder, receiver=empty(address), value=amount, burned=True, reference=reference)


@external
def setRole(role: bytes32, account: address):
    assert msg.sender == self.admin, "not the admin"
    assert account != empty(address), "account is zero"
    if role == ROLE_MASTER_MINTER:
        self.masterMinter = account
    elif role == ROLE_PAUSER:
        self.pauser = account
    elif role == ROLE_COMPLIANCE:
        self.compliance = account
    else:
        raise "unknown role"
    log RoleChanged(role=role, account=account)


@external
def setSupplyCap(cap: uint256):
    assert msg.sender == self.admin, "not the admin"
    assert cap >= self.totalSupply, "cap below supply"
    self.supplyCap = cap
    log SupplyCapChanged(cap=cap)


@external
def transferAdmin(new_admin: address):
    """Step one of two: name the next admin, who must accept."""
    assert msg.sender == self.admin, "not the admin"
    self.pendingAdmin = new_admin
    log AdminTransferStarted(current=msg.sender, pending=new_admin)


@external
def acceptAdmin():
    assert msg.sender == self.pendingAdmin, "not the pending admin"
    assert msg.sender != empty(address), "no pending admin"
    self.admin = msg.sender
    self.pendingAdmin = empty(address)
    log RoleChanged(role=ROLE_ADMIN, account=msg.sender)
