"""`andchain demo`: the deposit-token story, narrated, on the embedded defaults.

Onboard two clients, fund them, mint deposit tokens, pay 24/7 with a memo, settle
a DvP against a tokenized fund share, let a sweep rule redeem an excess, redeem,
move the token across networks, deposit USDC at the reference custodian, convert it
into USD deposits and mint tokens with it, and end with the reconciliation table.
Exit code 0 only if reconcile is clean.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.rule import Rule as Divider

from andchain.context import Context
from andchain.money import format_minor
from andchain.ops import Operation, OpStatus
from andchain.reconcile import Report, reconcile
from andchain.tokens.model import DEPOSIT_TOKEN, FUND_SHARE, TOKENS, holder_account
from andchain.tokens.rules import Rules
from andchain.tokens.runtime import run_until_idle
from andchain.tokens.service import TokenService
from andchain.trading.runtime import platform_worker

NETWORK = "internal"


def usd(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"


def run(console: Console | None = None, *, keep_nodes: bool = False) -> Report:
    console = console or Console(emoji=False, highlight=False)
    ctx = Context()
    ctx.upgrade_database()
    say = console.print

    def step(title: str) -> None:
        say(Divider(f"[bold]{title}[/bold]", align="left"))

    step("0. The bank's chain")
    started: list[str] = []  # the nodes this demo started, stopped again at its end (unless kept)
    node = ctx.node(NETWORK)
    if node.network.local and not node.status().healthy:
        say(f"starting the internal permissioned chain: {node.start()} ({node.network.rpc_url_shown})")
        started.append(NETWORK)
    say(f"internal chain id {node.network.chain_id}, zero gas, {node.network.confirmations} confirmation(s) to final")
    service = TokenService(ctx)
    addresses = service.setup(NETWORK)
    for name, address in addresses.items():
        say(f"  {name:14} {address}")
    worker = platform_worker(ctx, service)

    def complete(*ops: Operation) -> list[Operation]:
        if not run_until_idle(worker, seconds=120):
            raise RuntimeError(f"operations did not finish: {service.ops.counts()}")
        done = [service.ops.get(op.id) for op in ops]
        for op in done:
            mark = "[green]succeeded[/green]" if op.status == OpStatus.SUCCEEDED else f"[red]{op.status}[/red]"
            tx = (op.result or {}).get("tx_hash", "")
            say(f"  {op.kind:6} {op.id} {mark} {tx}")
        failed = [op for op in done if op.status != OpStatus.SUCCEEDED]
        if failed:
            raise RuntimeError(f"{failed[0].kind} {failed[0].id} ended {failed[0].status}: {failed[0].error_message}")
        return done

    def held(client: str, deployment: str = DEPOSIT_TOKEN) -> int:
        token = TOKENS[deployment]
        address = service.wallet(client, NETWORK).address
        return service.ledger.account(holder_account(NETWORK, token, address)).balance_posted

    run_id = time.strftime("%Y%m%d-%H%M%S")
    step("1. Onboard two clients and fund their deposit accounts")
    acme = service.onboard(f"Acme Treasury {run_id}").id
    globex = service.onboard(f"Globex Payments {run_id}").id
    service.deposit(acme, 1_000_000_00, reference=f"camt054-{run_id}-acme", memo="wire received")
    service.deposit(globex, 250_000_00, reference=f"camt054-{run_id}-globex", memo="wire received")
    say(
        f"  Acme DDA {usd(service.dda_balance(acme))}, Globex DDA {usd(service.dda_balance(globex))} "
        "(booked from camt.054-style credit notices)"
    )

    step("2. Mint deposit tokens to Acme's allow-listed address")
    mint = service.mint(acme, NETWORK, 500_000_00, f"demo-{run_id}-mint")
    say(f"  reserved {usd(500_000_00)} of Acme's DDA (pending until the mint is final)")
    complete(mint)
    say(
        f"  Acme holds {usd(held(acme))} in tokens at {service.wallet(acme, NETWORK).address}; "
        f"DDA now {usd(service.dda_balance(acme))}"
    )

    step("3. Pay 24/7, with a payment reference on chain")
    pay = service.pay(acme, globex, NETWORK, 125_000_00, "INV-2026-0042", f"demo-{run_id}-pay")
    complete(pay)
    say(f"  at {time.strftime('%A %H:%M UTC', time.gmtime())}: Acme -> Globex {usd(125_000_00)}, memo INV-2026-0042")
    say(f"  Acme {usd(held(acme))}, Globex {usd(held(globex))} in tokens")

    step("4. DvP: Acme buys tokenized money-market fund shares from Globex")
    shares = service.issue_shares(globex, NETWORK, 1_000_000_000, f"demo-{run_id}-shares")
    complete(shares)
    trade = service.dvp(acme, globex, NETWORK, 100_000_00, 400_000_000, f"demo-{run_id}-dvp")
    complete(trade)
    say(
        f"  Acme paid {usd(100_000_00)} and received {format_minor(held(acme, FUND_SHARE), 6)} MMF shares "
        "in one atomic settlement; the ledger booked both legs together"
    )

    step("5. A sweep rule keeps Globex at most $50,000.00 in tokens")
    rule = Rules(service).sweep(globex, NETWORK, 50_000_00)
    say(f"  rule {rule.id}: Globex holds {usd(held(globex))}; the excess goes back to its DDA")
    complete()
    say(f"  Globex holds {usd(held(globex))} in tokens, DDA {usd(service.dda_balance(globex))}")

    step("6. Acme redeems tokens to its deposit account")
    redeem = service.redeem(acme, NETWORK, 75_000_00, f"demo-{run_id}-redeem")
    complete(redeem)
    say(f"  Acme holds {usd(held(acme))} in tokens, DDA {usd(service.dda_balance(acme))}")

    public = [n for n in ("base", "tempo") if n in ctx.settings.networks and ctx.settings.networks[n].enabled]
    custodian: Any = None
    if len(public) == 2:
        started += _moves(ctx, service, say, step, complete, acme, run_id)
        custodian = _stablecoins(ctx, service, worker, say, step, complete, acme, run_id)
        try:
            _trading_desk(ctx, service, worker, say, step, complete, acme, run_id)
            _bank_to_wallet(ctx, service, worker, say, step, complete, run_id)
        except BaseException:
            if custodian is not None:
                custodian.stop()
            raise

    _compliance(ctx, service, say, step, complete, acme, redeem, run_id)

    step("12. Reconcile: the ledger, every chain, every holder and the custodian agree")
    report = reconcile(ctx)
    from andchain.cli.common import render_report

    render_report(report)
    if report.breaks:
        for b in report.breaks:
            say(f"[red]break:[/red] {escape(b.subject)}: expected {escape(b.expected)}, found {escape(b.found)}")
    for name, entry in report.custodians.items():
        for row in entry["accounts"]:
            if row["custodian_total"] != row["ledger"] or row["asset"] == "USDC":
                say(
                    f"  {name} {row['owner'][:12]:12} {row['asset']:5} custodian {row['custodian_total']:>14} "
                    f"ledger {row['ledger']:>14} {'ok' if row['ok'] else 'BREAK'}"
                )
    if custodian is not None and not keep_nodes:
        say(f"reference custodian {custodian.stop()} (its data stays in {custodian.directory})")
    elif custodian is not None:
        say(f"the reference custodian still runs at {custodian.url}: `andchain custodian stop` stops it")
    if started and not keep_nodes:
        for network in started:
            ctx.node(network).stop()
        say(f"stopped the nodes the demo started ({', '.join(started)}); their state stays under the data directory")
    elif started:
        say(f"the nodes the demo started are still running ({', '.join(started)}): `andchain networks down` stops them")
    ctx.close()
    return report


def _moves(
    ctx: Context, service: TokenService, say: Any, step: Any, complete: Any, client: str, run_id: str
) -> list[str]:
    from andchain.chains.client import Call
    from andchain.tokens.moves import Moves
    from andchain.tokens.service import TOKEN_ABI

    step("7. Move the token across networks: internal -> Base -> Tempo -> internal")
    moves = Moves(service)
    started = []
    for network in ("base", "tempo"):
        node = ctx.node(network)
        if node.network.local and not node.status().healthy:
            say(f"  starting {network}: {node.start()} ({node.network.rpc_url_shown})")
            started.append(network)
        service.setup(network)
    # Acme's own wallet on the public chains. Its key is created here only for the demo;
    # a real client keeps its key and signs the challenge and its approvals itself.
    own = {}
    for network in ("base", "tempo"):
        address = ctx.keys.create(f"demo:{run_id}:acme-own")
        nonce, message = moves.challenge(client, network)
        own[network] = moves.register(client, network, nonce, address, ctx.keys.signer(address).sign_personal(message))
        ctx.node(network).fund([address])  # gas for its own approvals (a local development node)
    say(f"  Acme proved it owns {own['base']} (EIP-191 signature); it was screened and allow-listed on first use")

    def approve(network: str, amount: int) -> None:
        ctx.chain(network).transact(
            own[network],
            Call(service.token_address(network), TOKEN_ABI.encode_call("approve", service.bank("minter"), amount)),
        )

    hops = [("internal", "base"), ("base", "tempo"), ("tempo", "internal")]
    for source, destination in hops:
        if source != "internal":
            approve(source, 50_000_00)
        op = moves.move(client, source, destination, 50_000_00, f"demo-{run_id}-move-{source}-{destination}")
        (done,) = complete(op)
        result = done.result or {}
        say(
            f"  {source} -> {destination}: burned in {str(result.get('burn_tx', ''))[:18]}..., minted in "
            f"{str(result.get('mint_tx', ''))[:18]}... after the burn was final"
        )
    for network in ("internal", "base", "tempo"):
        address = service.holder(client, network)
        balance = service.ledger.account(holder_account(network, TOKENS[DEPOSIT_TOKEN], address)).balance_posted
        say(f"  Acme on {network:8} {usd(balance)}")
    return started


def _stablecoins(
    ctx: Context, service: TokenService, worker: Any, say: Any, step: Any, complete: Any, client: str, run_id: str
) -> Any:
    """A client's USDC deposited at the reference custodian, converted into USD deposits, minted as
    deposit tokens. Returns the custodian process if this demo started it (else None)."""
    from andchain.chains.usdc import setup_local
    from andchain.custody.reference.local import LocalCustodian

    step("8. USDC at a third-party custodian: deposit, convert to USD deposits, mint deposit tokens")
    usdc = setup_local(ctx, "base")
    local = LocalCustodian(ctx)
    outcome = local.start()
    say(f"  reference custodian {outcome} at {local.url} (its own database and keys); USDC on Base at {usdc}")
    try:
        _through_the_custodian(ctx, service, worker, say, complete, client, run_id, usdc)
    except BaseException:
        if outcome != "already running":
            local.stop()  # never left behind by a demo that failed
        raise
    return local if outcome != "already running" else None


def _through_the_custodian(
    ctx: Context, service: TokenService, worker: Any, say: Any, complete: Any, client: str, run_id: str, usdc: str
) -> None:
    from andchain.chains.client import Call
    from andchain.chains.usdc import faucet, usdc_abi
    from andchain.custody.service import CustodyService, position_account

    custody = CustodyService(ctx, tokens=service)
    own = service.holder(client, "base")
    amount = 2_500 * 10**6
    faucet(ctx, "base", own, amount)  # Circle's part, played on the local node
    deposit = custody.deposit_address("reference", client, "USDC", "base")
    ctx.chain("base").transact(own, Call(usdc, usdc_abi().encode_call("transfer", deposit.address, amount)))
    say(f"  Acme sent 2,500.00 USDC from its own wallet {own} to its deposit address {deposit.address}")
    position = position_account("reference", client, "USDC")
    deadline = time.monotonic() + 180
    credited = 0
    while time.monotonic() < deadline:
        run_until_idle(worker, seconds=20)
        try:
            credited = service.ledger.account(position).balance_posted
        except Exception:
            credited = 0
        if credited >= amount:
            break
        time.sleep(0.5)
    if credited < amount:
        raise RuntimeError("the custodian's deposit was not credited within 180s")
    say(f"  the custodian reported the deposit once final; the ledger credited {position}")
    convert = custody.convert(client, 2_000 * 10**6, "USDC", "USD", f"demo-{run_id}-convert")
    complete(convert)
    say(f"  2,000.00 USDC moved to the desk's account at the custodian; Acme's DDA {usd(service.dda_balance(client))}")
    mint = service.mint(client, NETWORK, 2_000_00, f"demo-{run_id}-usdc-mint")
    complete(mint)
    say(f"  minted {usd(2_000_00)} of deposit tokens from it; DDA {usd(service.dda_balance(client))}")


def _trading_desk(
    ctx: Context, service: TokenService, worker: Any, say: Any, step: Any, complete: Any, client: str, run_id: str
) -> None:
    """Acme buys BTC from the bank's desk by RFQ, paying in deposit tokens; the BTC is delivered to its
    account at the reference custodian."""
    import hashlib

    from andchain.custody.port import DESK
    from andchain.custody.reference.runtime import build
    from andchain.custody.service import CustodyService, position_account
    from andchain.trading.desk import DeskService, trade_key

    step("9. The trading desk: Acme buys BTC by RFQ, paying in deposit tokens; the BTC arrives at its custodian")
    custody = CustodyService(ctx, tokens=service)
    desk = DeskService(ctx, custody=custody)
    desk_account = custody.open_account("reference", DESK).account_id
    custody.ensure_positions("reference", DESK, "BTC")
    inventory = position_account("reference", DESK, "BTC")
    if service.ledger.account(inventory).balance_posted < 10**8:
        # The desk's inventory: BTC the custodian's own Bitcoin node reports (played by its operator).
        running = build(ctx.settings)
        try:
            txid = hashlib.sha256(f"demo-desk-inventory-{run_id}".encode()).hexdigest()
            running.custodian.credit(desk_account, "BTC", "bitcoin", "2", f"{txid}:0")
        finally:
            running.close()
        deadline = time.monotonic() + 120
        while service.ledger.account(inventory).balance_posted < 10**8 and time.monotonic() < deadline:
            run_until_idle(worker, seconds=10)
            time.sleep(0.3)
    say(f"  the desk holds {format_minor(service.ledger.account(inventory).balance_posted, 8)} BTC at the custodian")
    custody.open_account("reference", client)
    quote = desk.quote(client, "BTC-USD", "buy", quantity="0.05", pay_with="deposit_token", network=NETWORK)
    say(
        f"  quote {quote.id}: 0.05 BTC at {quote.price} USD = {usd(quote.notional_minor)} "
        f"(the venue's book for that size plus the tier's {quote.spread_bps} bp), firm for "
        f"{ctx.settings.trading.quote_ttl_s:g}s"
    )
    trade = desk.accept(quote.id)
    say(f"  accepted: trade {trade.id}; its deposit tokens' redemption recorded with it")
    funding = service.ops.by_key(f"{trade_key(quote.id)}-funding")
    complete(funding, trade)
    balances = custody.custodian("reference").balances(custody.open_account("reference", client).account_id)
    btc = next((b for b in balances if b.asset == "BTC"), None)
    say(
        f"  settled both legs: Acme's account at the custodian holds "
        f"{format_minor(btc.total_minor if btc else 0, 8)} BTC (the custodian's own answer); "
        f"the desk was paid {usd(quote.notional_minor)} from Acme's redeemed deposit tokens"
    )
    view = desk.positions_view()
    say(f"  the desk's net position {view['net']}, realised P&L {view['realised_pnl']} USD")


def _bank_to_wallet(
    ctx: Context, service: TokenService, worker: Any, say: Any, step: Any, complete: Any, run_id: str
) -> None:
    """A retail customer links an exchange to its bank account with consent, funds its exchange wallet
    from checking and by card, and turns the card's rewards points into USDC in its own wallet."""
    from andchain.connect.cards import Cards, line_account
    from andchain.connect.oauth import Access, ConnectService
    from andchain.connect.pulls import Pulls
    from andchain.connect.rewards import Rewards
    from andchain.custody.service import CustodyService
    from andchain.tokens.model import dda_account
    from andchain.tokens.moves import Moves

    step("10. Bank-to-wallet: a retail customer links an exchange, funds it from checking and by card, "
         "and turns points into USDC")  # fmt: skip
    ada = service.onboard(f"Ada Retail {run_id}", "natural").id.lower()
    service.deposit(ada, 3_000_00, reference=f"camt054-{run_id}-ada", memo="salary")
    card = Cards(ctx).issue(ada, "2000.00")
    connect = ConnectService(ctx.engine, ctx.settings.connect, ctx.api_keys.digest, clock=ctx.clock)
    exchange, _ = connect.register_partner(f"Exchange One {run_id}", ["https://exchange.example/callback"],
                                           ["accounts:read", "payments:write"])  # fmt: skip
    accounts = [ctx.ledger.account(dda_account(ada)).id, ctx.ledger.account(line_account(ada, card.id)).id]
    # What the consent screen records when Ada signs in and allows (docs/connect.md: the OAuth flow
    # with PKCE, as a partner runs it over HTTP, is tested against `andchain serve`).
    consent = connect.grant(exchange.client_id, ada, ["accounts:read", "payments:write"], accounts, 90)
    access = Access("demo", exchange.client_id, consent.id, ada, ("accounts:read", "payments:write"),
                    tuple(accounts))  # fmt: skip
    say(f"  Ada consented: {exchange.name} may read and pull from her checking account and charge her card "
        f"for 90 days (consent {consent.id})")  # fmt: skip
    pull = Pulls(ctx).create(access, str(accounts[0]), "500.00", "fund wallet", f"demo-{run_id}-pull")
    say(f"  the exchange pulled $500.00 from checking: an ACH debit, {pull.status}, held on the account; "
        f"it settles when its return window closes")  # fmt: skip
    cards = Cards(ctx)
    purchase = cards.authorize(access, str(accounts[1]), "800.00", "5411", "Everyday purchases", f"demo-{run_id}-p")
    cards.capture(purchase.id)
    crypto = cards.authorize(access, str(accounts[1]), "300.00", "6051", exchange.name, f"demo-{run_id}-c")
    cards.capture(crypto.id)
    say(f"  card: $800.00 of purchases earned 800 points; the exchange's $300.00 charge (MCC 6051) is a cash "
        f"advance with a {format_minor(crypto.fee_minor, 2)} USD fee and no points; owed "
        f"{format_minor(cards.owed(cards.card(card.id)), 2)} USD")  # fmt: skip
    wallet = ctx.keys.create(f"demo:{run_id}:ada-own")
    moves = Moves(service)
    nonce, message = moves.challenge(ada, "base")
    moves.register(ada, "base", nonce, wallet, ctx.keys.signer(wallet).sign_personal(message))
    rewards = Rewards(ctx, CustodyService(ctx, tokens=service))
    redemption = rewards.redeem(ada, 500, "base", f"demo-{run_id}-points")
    withdrawal = service.ops.get(redemption.withdrawal_id)
    complete(withdrawal)
    rewards.follow()
    done = rewards.get(redemption.id)
    say(f"  500 points -> {format_minor(done.usdc_minor, 6)} USDC from the bank's treasury at the custodian to "
        f"Ada's own wallet {done.address}: {done.status}; {rewards.points(ada)} points left")  # fmt: skip


def _compliance(
    ctx: Context, service: TokenService, say: Any, step: Any, complete: Any, acme: str, redeem: Operation, run_id: str
) -> None:
    """Controls at every edge: screening at onboarding, a booked camt.054 credit, structuring caught, a
    freeze and a seizure on a lawful order, a redemption paid out in pacs.008, the audit log verified."""
    from andchain.compliance import audit
    from andchain.compliance.enforcement import Enforcement
    from andchain.compliance.payments import Payments
    from andchain.compliance.reserves import reserve_report
    from andchain.compliance.service import SanctionsHit

    step("11. Compliance: sanctions, a camt.054 credit, monitoring, a lawful freeze and seizure, ISO 20022, audit")
    compliance = service.clients.compliance
    listed = ctx.settings.ensure_data_dir() / "demo-sdn"
    listed.mkdir(exist_ok=True)
    # A two-party sample in the OFAC CSV format (sdn.csv, alt.csv); a bank loads the published list.
    (listed / "sdn.csv").write_text(
        '990001,"VOLKOV, Dmitri Sergeyevich","individual","CYBER2",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,'
        '"Digital Currency Address - ETH 0x9f1b6c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b."\r\n'
        '990002,"CRIMSON TIDE MIXER",-0- ,"CYBER2",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \r\n'
    )
    (listed / "alt.csv").write_text('990001,9901,"aka","VOLKOV, Dima",-0- \r\n')
    loaded = compliance.load_list(listed, by="demo")
    say(f"  sanctions list version {loaded['version']} loaded ({loaded['entries']} entries, diffed by content)")
    try:
        service.onboard("Dmitri Volkov", "natural")
    except SanctionsHit as hit:
        say(f"  onboarding 'Dmitri Volkov' refused: {hit.code}; alert opened for the case queue")
    initech = service.onboard(f"Initech {run_id}").id
    notice = _camt054(f"DEMO-{run_id}", [(f"BK-{run_id}", "40000.00", initech, f"E2E-{run_id}")])
    booked = Payments(service).credit_notice(notice, by="demo")
    say(f"  camt.054 {booked['message_id']}: {booked['credits'][0]['status']} 40,000.00 USD to Initech's account "
        "(only a booked credit funds a deposit account)")  # fmt: skip
    for i in range(3):
        service.deposit(initech, 9_500_00, reference=f"cash-{run_id}-{i}", memo="teller cash deposit", cash=True)
    rules = sorted({a.rule for a in compliance.alerts(client_id=initech)})
    say(f"  three cash deposits of 9,500.00 within a day: alerts {', '.join(rules)}")
    complete(service.mint(initech, NETWORK, 20_000_00, f"demo-{run_id}-initech-mint"))
    enforcement = Enforcement(service)
    frozen = enforcement.freeze(initech, reference=f"ORDER-{run_id}", authority="U.S. District Court", by="demo")
    if frozen.operation_id:
        complete(service.ops.get(frozen.operation_id))
    say(f"  freeze on order {frozen.reference}: Initech's ledger accounts and its address on every network frozen")
    seized = enforcement.seize(initech, reference=f"ORDER-{run_id}", authority="U.S. District Court", by="demo")
    if seized.operation_id:
        complete(service.ops.get(seized.operation_id))
    say(f"  seizure: {usd(seized.details['deposit_seized_minor'])} of deposits and every token burned to the "
        "bank's seizure account; supply and ledger fall together")  # fmt: skip
    payout = Payments(service).payout(redeem.id, creditor_name="Acme Treasury", creditor_account="000123456789",
                                      creditor_agent_bic="CHASUS33XXX", by="demo")  # fmt: skip
    say(f"  Acme's redemption paid out: pacs.008 EndToEndId {payout['end_to_end_id']}, UETR {payout['uetr']}, "
        f"burn tx {payout['tx_hash']}")  # fmt: skip
    report = audit.verify(ctx.engine)
    say(f"  audit log: {report.entries} entries, hash chain {'intact' if report.ok else 'BROKEN'}")
    reserves = reserve_report(ctx, time.strftime("%Y-%m", time.gmtime()), tokens=service)
    outstanding = reserves["tokens_outstanding"]["total"]["now"]
    say(f"  reserve attestation for this month: {outstanding} USD of tokens outstanding, backed 1:1 "
        "(andchain report reserves --month YYYY-MM)")  # fmt: skip


def _camt054(message_id: str, credits: list[tuple[str, str, str, str]]) -> bytes:
    """A camt.054.001.08 credit notice with booked USD credits (reference, amount, creditor account, EndToEndId)."""
    entries = "".join(
        f'<Ntry><Amt Ccy="USD">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>'
        f"<BookgDt><Dt>{time.strftime('%Y-%m-%d', time.gmtime())}</Dt></BookgDt><AcctSvcrRef>{ref}</AcctSvcrRef>"
        "<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>DMCT</SubFmlyCd></Fmly></Domn></BkTxCd>"
        f'<NtryDtls><TxDtls><Refs><EndToEndId>{e2e}</EndToEndId></Refs><Amt Ccy="USD">{amount}</Amt>'
        "<CdtDbtInd>CRDT</CdtDbtInd><RltdPties><Dbtr><Pty><Nm>Initech Holdings</Nm></Pty></Dbtr>"
        f"<CdtrAcct><Id><Othr><Id>{account}</Id></Othr></Id></CdtrAcct></RltdPties></TxDtls></NtryDtls></Ntry>"
        for ref, amount, account, e2e in credits
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08">'
        f"<BkToCstmrDbtCdtNtfctn><GrpHdr><MsgId>{message_id}</MsgId>"
        f"<CreDtTm>{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}</CreDtTm></GrpHdr>"
        f"<Ntfctn><Id>N-{message_id}</Id><Acct><Id><Othr><Id>BANK-USD-NOSTRO</Id></Othr></Id><Ccy>USD</Ccy></Acct>"
        f"{entries}</Ntfctn></BkToCstmrDbtCdtNtfctn></Document>"
    ).encode()


def demo(
    keep_nodes: Annotated[
        bool, typer.Option("--keep-nodes", help="leave the nodes the demo started running, to look around")
    ] = False,
) -> None:
    """The deposit-token story end to end on the embedded defaults; exit 0 only if reconcile is clean.

    The nodes it had to start are stopped at its end (their state is kept) unless --keep-nodes.
    """
    from andchain.cli.common import out

    report = run(out, keep_nodes=keep_nodes)
    if report.breaks:
        raise typer.Exit(1)
