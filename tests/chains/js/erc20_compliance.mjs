// A standard third-party client (ethers v6) uses the deployed PermissionedToken as any
// wallet would: ERC-20 reads, transfer, approve, transferFrom, and an EIP-2612 permit
// signed with signTypedData. Prints one JSON object with what it observed.
import { ethers } from "ethers";

const cfg = JSON.parse(process.env.ANDCHAIN_COMPLIANCE);
const provider = new ethers.JsonRpcProvider(cfg.rpc, cfg.chainId, { staticNetwork: true });
// ethers' NonceManager counts nonces locally: the provider's pending count may lag a mined block.
const holder = new ethers.NonceManager(new ethers.Wallet(cfg.holderKey, provider));
const spender = new ethers.NonceManager(new ethers.Wallet(cfg.spenderKey, provider));
holder.address = await holder.getAddress();
spender.address = await spender.getAddress();
const abi = [
  "function name() view returns (string)",
  "function symbol() view returns (string)",
  "function decimals() view returns (uint8)",
  "function totalSupply() view returns (uint256)",
  "function balanceOf(address) view returns (uint256)",
  "function allowance(address,address) view returns (uint256)",
  "function nonces(address) view returns (uint256)",
  "function DOMAIN_SEPARATOR() view returns (bytes32)",
  "function transfer(address,uint256) returns (bool)",
  "function approve(address,uint256) returns (bool)",
  "function transferFrom(address,address,uint256) returns (bool)",
  "function permit(address,address,uint256,uint256,uint8,bytes32,bytes32)",
  "event Transfer(address indexed from, address indexed to, uint256 value)",
  "event Approval(address indexed owner, address indexed spender, uint256 value)",
];
const free = { type: 0, gasPrice: 0 };
const token = new ethers.Contract(cfg.token, abi, provider);
const out = {};
out.name = await token.name();
out.symbol = await token.symbol();
out.decimals = Number(await token.decimals());
out.totalSupply = (await token.totalSupply()).toString();

const sent = await (await token.connect(holder).transfer(cfg.recipient, 10n, free)).wait();
const transferLog = sent.logs.map((l) => token.interface.parseLog(l)).find((e) => e && e.name === "Transfer");
out.transferEvent = [transferLog.args[0], transferLog.args[1], transferLog.args[2].toString()];
out.transferReturns = await token.connect(holder).transfer.staticCall(cfg.recipient, 1n);

await (await token.connect(holder).approve(spender.address, 20n, free)).wait();
out.allowanceAfterApprove = (await token.allowance(holder.address, spender.address)).toString();
await (await token.connect(spender).transferFrom(holder.address, cfg.recipient, 5n, free)).wait();
out.allowanceAfterTransferFrom = (await token.allowance(holder.address, spender.address)).toString();

const domain = { name: out.name, version: "1", chainId: cfg.chainId, verifyingContract: cfg.token };
out.domainSeparatorMatches = ethers.TypedDataEncoder.hashDomain(domain) === (await token.DOMAIN_SEPARATOR());
const types = {
  Permit: [
    { name: "owner", type: "address" }, { name: "spender", type: "address" }, { name: "value", type: "uint256" },
    { name: "nonce", type: "uint256" }, { name: "deadline", type: "uint256" },
  ],
};
const deadline = BigInt(Math.floor(Date.now() / 1000) + 86400 * 30);
const nonce = await token.nonces(holder.address);
const signature = ethers.Signature.from(
  await holder.signTypedData(domain, types, { owner: holder.address, spender: spender.address, value: 30n, nonce, deadline }),
);
await (await token.connect(spender).permit(holder.address, spender.address, 30n, deadline, signature.v, signature.r, signature.s, free)).wait();
out.allowanceAfterPermit = (await token.allowance(holder.address, spender.address)).toString();
out.nonceAfterPermit = (await token.nonces(holder.address)).toString();
out.holderBalance = (await token.balanceOf(holder.address)).toString();
out.recipientBalance = (await token.balanceOf(cfg.recipient)).toString();
console.log(JSON.stringify(out));
