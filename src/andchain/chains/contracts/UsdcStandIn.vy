# pragma version ~=0.4.3
# @title UsdcStandIn
# @notice A local stand-in for USDC on the development networks: the interface of Circle's
#         FiatToken v2 that the bank and the custodians touch, with 6 decimals. Anyone holds
#         it (no allow list); a blacklisted address neither sends nor receives; minters mint
#         within the allowance the master minter gives them and burn what they hold; the
#         pauser stops transfers, mints and burns. Not deployed where real USDC exists: a
#         network's USDC address is configuration there.
# @dev EIP-2612 permit and EIP-3009 transferWithAuthorization are not part of this stand-in.

from ethereum.ercs import IERC20
from ethereum.ercs import IERC20Detailed

implements: IERC20
implements: IERC20Detailed

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256

event Mint:
    minter: indexed(address)
    to: indexed(address)
    amount: uint256

event Burn:
    burner: indexed(address)
    amount: uint256

event MinterConfigured:
    minter: indexed(address)
    minterAllowedAmount: uint256

event MinterRemoved:
    oldMinter: indexed(address)

event Blacklisted:
    account: indexed(address)

event UnBlacklisted:
    account: indexed(address)

event Pause:
    pass

event Unpause:
    pass

name: public(String[64])
symbol: public(String[32])
currency: public(String[8])
decimals: public(uint8)
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])

owner: public(address)
masterMinter: public(address)
pauser: public(address)
blacklister: public(address)
paused: public(bool)
isMinter: public(HashMap[address, bool])
minterAllowance: public(HashMap[address, uint256])
isBlacklisted: public(HashMap[address, bool])


@deploy
def __init__(owner_: address):
    assert owner_ != empty(address), "owner is zero"
    self.name = "USD Coin"
    self.symbol = "USDC"
    self.currency = "USD"
    self.decimals = 6
    self.owner = owner_
    self.masterMinter = owner_
    self.pauser = owner_
    self.blacklister = owner_


@view
@internal
def _not_blacklisted(account: address):
    assert not self.isBlacklisted[account], "Blacklistable: account is blacklisted"


@internal
def _transfer(sender: address, receiver: address, amount: uint256):
    assert not self.paused, "Pausable: paused"
    assert receiver != empty(address), "ERC20: transfer to the zero address"
    self._not_blacklisted(sender)
    self._not_blacklisted(receiver)
    balance: uint256 = self.balanceOf[sender]
    assert balance >= amount, "ERC20: transfer amount exceeds balance"
    self.balanceOf[sender] = balance - amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=sender, receiver=receiver, value=amount)


@external
def transfer(receiver: address, amount: uint256) -> bool:
    self._transfer(msg.sender, receiver, amount)
    return True


@external
def transferFrom(sender: address, receiver: address, amount: uint256) -> bool:
    self._not_blacklisted(msg.sender)
    allowed: uint256 = self.allowance[sender][msg.sender]
    assert allowed >= amount, "ERC20: transfer amount exceeds allowance"
    self.allowance[sender][msg.sender] = allowed - amount
    self._transfer(sender, receiver, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    assert not self.paused, "Pausable: paused"
    self._not_blacklisted(msg.sender)
    self._not_blacklisted(spender)
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def mint(to: address, amount: uint256) -> bool:
    assert not self.paused, "Pausable: paused"
    assert self.isMinter[msg.sender], "FiatToken: caller is not a minter"
    self._not_blacklisted(msg.sender)
    self._not_blacklisted(to)
    assert to != empty(address), "FiatToken: mint to the zero address"
    assert amount > 0, "FiatToken: mint amount not greater than 0"
    allowed: uint256 = self.minterAllowance[msg.sender]
    assert amount <= allowed, "FiatToken: mint amount exceeds minterAllowance"
    self.totalSupply += amount
    self.balanceOf[to] += amount
    self.minterAllowance[msg.sender] = allowed - amount
    log Mint(minter=msg.sender, to=to, amount=amount)
    log Transfer(sender=empty(address), receiver=to, value=amount)
    return True


@external
def burn(amount: uint256):
    assert not self.paused, "Pausable: paused"
    assert self.isMinter[msg.sender], "FiatToken: caller is not a minter"
    self._not_blacklisted(msg.sender)
    balance: uint256 = self.balanceOf[msg.sender]
    assert amount > 0, "FiatToken: burn amount not greater than 0"
    assert balance >= amount, "FiatToken: burn amount exceeds balance"
    self.totalSupply -= amount
    self.balanceOf[msg.sender] = balance - amount
    log Burn(burner=msg.sender, amount=amount)
    log Transfer(sender=msg.sender, receiver=empty(address), value=amount)


@external
def configureMinter(minter: address, minterAllowedAmount: uint256) -> bool:
    assert not self.paused, "Pausable: paused"
    assert msg.sender == self.masterMinter, "FiatToken: caller is not the masterMinter"
    self.isMinter[minter] = True
    self.minterAllowance[minter] = minterAllowedAmount
    log MinterConfigured(minter=minter, minterAllowedAmount=minterAllowedAmount)
    return True


@external
def removeMinter(minter: address) -> bool:
    assert msg.sender == self.masterMinter, "FiatToken: caller is not the masterMinter"
    self.isMinter[minter] = False
    self.minterAllowance[minter] = 0
    log MinterRemoved(oldMinter=minter)
    return True


@external
def blacklist(account: address):
    assert msg.sender == self.blacklister, "Blacklistable: caller is not the blacklister"
    self.isBlacklisted[account] = True
    log Blacklisted(account=account)


@external
def unBlacklist(account: address):
    assert msg.sender == self.blacklister, "Blacklistable: caller is not the blacklister"
    self.isBlacklisted[account] = False
    log UnBlacklisted(account=account)


@external
def pause():
    assert msg.sender == self.pauser, "Pausable: caller is not the pauser"
    self.paused = True
    log Pause()


@external
def unpause():
    assert msg.sender == self.pauser, "Pausable: caller is not the pauser"
    self.paused = False
    log Unpause()
