"""`andchain compliance`, `andchain audit` and `andchain report`: KYC, the sanctions list, the case queue,
lawful orders, ISO 20022 credit notices and payouts, the audit log, the reserve attestation
(docs/compliance.md)."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from andchain.cli.common import JsonOpt, clean_errors, emit_json, fail, out, token_service

app = typer.Typer(help="Compliance: KYC, sanctions, alerts, lawful orders, ISO 20022.", no_args_is_help=True)
audit_app = typer.Typer(
    help="The hash-chained audit log of every operator and compliance action.", no_args_is_help=True
)
report_app = typer.Typer(help="Reports for regulators and auditors.", no_args_is_help=True)


def _by() -> str:
    return f"cli:{getpass.getuser()}"


def _tokens() -> Any:
    service = token_service()
    service.ctx.upgrade_database()
    return service


# ------------------------------------------------------------------ parties


@app.command("kyc")
@clean_errors
def kyc(
    client: Annotated[str, typer.Argument(help="the client's id or name")],
    status: Annotated[str | None, typer.Option(help="pending, approved, rejected or suspended")] = None,
    tier: Annotated[str | None, typer.Option(help="a KYC tier of compliance.kyc_tiers")] = None,
    country: Annotated[str | None, typer.Option(help="ISO 3166 alpha-2")] = None,
    reason: Annotated[str, typer.Option(help="why (kept in the audit log)")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Show a client's KYC, or record the bank's decision (status, tier, country)."""
    service = _tokens()
    client_id = service.clients.client(client).id
    compliance = service.clients.compliance
    if status is None and tier is None and country is None:
        party = compliance.party(client_id)
    else:
        party = compliance.set_kyc(client_id, status=status, tier=tier, country=country, reason=reason, by=_by())
    view = {
        "client": party.client_id,
        "kyc_status": party.kyc_status,
        "tier": party.tier,
        "country": party.country,
        "frozen_order": party.frozen_order,
    }
    if as_json:
        emit_json(view)
        return
    frozen = f", frozen by order {party.frozen_order}" if party.frozen else ""
    out.print(f"{party.client_id}: KYC {party.kyc_status}, tier {party.tier}, country {party.country or '-'}{frozen}")


# ------------------------------------------------------------- sanctions


@app.command("load-list")
@clean_errors
def load_list(
    path: Annotated[Path | None, typer.Argument(help="the SDN CSV directory or sdn_advanced.xml")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Load the OFAC SDN list, diff it by content with the one loaded, and screen everyone again."""
    summary = _tokens().clients.compliance.load_list(path, by=_by())
    if as_json:
        emit_json(summary)
        return
    if summary.get("unchanged"):
        out.print(f"the list is unchanged (version {summary['version']}, {summary['entries']} entries)")
        return
    out.print(
        f"list version {summary['version']} ({summary['source_format']}): {summary['entries']} entries, "
        f"{summary['added']} added, {summary['removed']} removed, {summary['changed']} changed; "
        f"{summary.get('rescreen_hits', 0)} new hits on parties and addresses"
    )


@app.command("rescreen")
@clean_errors
def rescreen() -> None:
    """Screen every party's name and every known address against the whole loaded list again."""
    hits = _tokens().clients.compliance.rescreen()
    out.print(f"{hits} new hits (each an alert in the case queue)")


@app.command("screen")
@clean_errors
def screen(
    name: Annotated[str | None, typer.Option(help="a person's or an entity's name")] = None,
    network: Annotated[str | None, typer.Option(help="the network of --address")] = None,
    address: Annotated[str | None, typer.Option(help="an address")] = None,
) -> None:
    """Screen a name or an address against the loaded list (a hit opens an alert, as in a flow)."""
    compliance = _tokens().clients.compliance
    if name:
        compliance.screen_name(name, flow="manual")
    if address:
        if not network:
            fail("--address needs --network")
        compliance.screen_address(network, address, flow="manual")
    if not name and not address:
        fail("give --name, or --network and --address")
    out.print("no hit")


# ------------------------------------------------------------------ alerts


@app.command("alerts")
@clean_errors
def alerts(
    status: Annotated[str | None, typer.Option(help="open, assigned or closed")] = None,
    rule: Annotated[str | None, typer.Option(help="sanctions_name, structuring, cash_aggregate...")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
    as_json: JsonOpt = False,
) -> None:
    """The case queue."""
    found = _tokens().clients.compliance.alerts(status=status, rule=rule, limit=limit)
    if as_json:
        emit_json([a.__dict__ for a in found])
        return
    table = Table("id", "rule", "client", "subject", "status", "assignee")
    for a in found:
        table.add_row(a.id, a.rule, a.client_id or "-", a.subject[:60], a.status, a.assignee or "-")
    out.print(table)


@app.command("alert")
@clean_errors
def alert(
    alert_id: Annotated[str, typer.Argument()],
    assign: Annotated[str | None, typer.Option(help="assign it to this person")] = None,
    close: Annotated[str | None, typer.Option(help="close it with this reason")] = None,
    resolution: Annotated[str, typer.Option(help="false_positive, reported, no_action, escalated")] = "no_action",
    note: Annotated[str | None, typer.Option(help="add a note")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show an alert with its history; assign, note or close it."""
    compliance = _tokens().clients.compliance
    if assign:
        compliance.assign(alert_id, assign, by=_by())
    if note:
        compliance.note(alert_id, note, by=_by())
    if close:
        compliance.close(alert_id, close, resolution, by=_by())
    found = compliance.alert(alert_id)
    if as_json:
        emit_json(found.__dict__)
        return
    out.print(f"{found.id} {found.rule} [{found.status}] {found.subject}")
    out.print(json.dumps(found.details, indent=2, sort_keys=True))
    for h in found.history:
        out.print(f"  {h['action']} by {h['by']}: {h.get('note') or ''}")


# ------------------------------------------------------------------ orders


def _order(kind: str, client: str, reference: str, authority: str, as_json: bool) -> None:
    from andchain.compliance.enforcement import Enforcement

    order = Enforcement(_tokens()).carry_out(kind, client, reference=reference, authority=authority, by=_by())
    if as_json:
        emit_json(order.__dict__)
        return
    out.print(
        f"order {order.id}: {kind} {order.client_id} ({reference}, {authority}); "
        f"on chain by operation {order.operation_id or '-'} (the worker carries it out)"
    )


Reference = Annotated[str, typer.Option(help="the lawful order's reference")]
Authority = Annotated[str, typer.Option(help="who issued it (a court, an agency)")]


@app.command("freeze")
@clean_errors
def freeze(client: str, reference: Reference, authority: Authority, as_json: JsonOpt = False) -> None:
    """Freeze a client on a lawful order: its ledger accounts now, its addresses on every network."""
    _order("freeze", client, reference, authority, as_json)


@app.command("unfreeze")
@clean_errors
def unfreeze(client: str, reference: Reference, authority: Authority, as_json: JsonOpt = False) -> None:
    """Lift a freeze on a lawful order."""
    _order("unfreeze", client, reference, authority, as_json)


@app.command("seize")
@clean_errors
def seize(client: str, reference: Reference, authority: Authority, as_json: JsonOpt = False) -> None:
    """Seize a frozen client's funds to the bank's seizure account, burning its tokens on every network."""
    _order("seize", client, reference, authority, as_json)


# ------------------------------------------------------------- ISO 20022


@app.command("credit-notice")
@clean_errors
def credit_notice(
    path: Annotated[Path, typer.Argument(help="a camt.054.001.08 document")], as_json: JsonOpt = False
) -> None:
    """Book a camt.054 credit notice: each booked USD credit funds its client's deposit account."""
    from andchain.compliance.payments import Payments

    if not path.is_file():
        fail(f"no file {path}")
    result = Payments(_tokens()).credit_notice(path.read_bytes(), by=_by())
    if as_json:
        emit_json(result)
        return
    table = Table("ref", "status", "client", "amount (minor)", "EndToEndId", "reason")
    for c in result["credits"]:
        table.add_row(c["ref"], c["status"], c["client"] or "-", str(c["amount_minor"]), c["end_to_end_id"] or "-",
                      c["reason"] or "")  # fmt: skip
    out.print(table)


@app.command("payout")
@clean_errors
def payout(
    redemption: Annotated[str, typer.Argument(help="the redemption operation's id")],
    creditor_name: Annotated[str, typer.Option()],
    creditor_account: Annotated[str, typer.Option(help="an IBAN or the account number")],
    creditor_agent_bic: Annotated[str, typer.Option(help="the creditor's bank (BIC)")],
    output: Annotated[Path | None, typer.Option(help="write the pain.001 and pacs.008 here (a directory)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Pay a completed redemption out to the client's bank account: pain.001 + pacs.008."""
    from andchain.compliance.payments import Payments

    done = Payments(_tokens()).payout(
        redemption,
        creditor_name=creditor_name,
        creditor_account=creditor_account,
        creditor_agent_bic=creditor_agent_bic,
        by=_by(),
    )
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        (output / f"{done['message_id']}.pain001.xml").write_text(done["pain001"] or "")
        (output / f"{done['message_id']}.pacs008.xml").write_text(done["pacs008"] or "")
    if as_json:
        emit_json(done)
        return
    out.print(
        f"payout {done['ref']}: EndToEndId {done['end_to_end_id']}, UETR {done['uetr']}, burn tx {done['tx_hash']}"
    )


# ------------------------------------------------------------------- audit


@audit_app.command("verify")
@clean_errors
def audit_verify(
    expect_head: Annotated[
        str | None, typer.Option(help="SEQ:HASH of a head kept elsewhere: also detects removed newest entries")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Walk the hash chain: any edited, removed or out-of-place entry is reported (exit 1)."""
    from andchain.compliance import audit
    from andchain.context import Context

    ctx = Context()
    ctx.upgrade_database()
    head = None
    if expect_head:
        seq, _, digest = expect_head.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            fail(f"--expect-head is SEQ:HASH (a number and 64 hex digits), was {expect_head!r}")
        head = (int(seq), digest)
    report = audit.verify(ctx.engine, expect_head=head)
    view = {
        "ok": report.ok,
        "entries": report.entries,
        "head": f"{report.head_seq}:{report.head_hash}",
        "problems": list(report.problems),
    }
    if as_json:
        emit_json(view)
    else:
        for problem in report.problems:
            out.print(f"[red]{problem}[/red]")
        verdict = "intact" if report.ok else "BROKEN"
        out.print(f"{report.entries} entries, head {report.head_seq}:{report.head_hash}: {verdict}")
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("log")
@clean_errors
def audit_log(
    after: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The audit log's entries, in order."""
    from andchain.compliance import audit
    from andchain.context import Context

    ctx = Context()
    ctx.upgrade_database()
    found = audit.entries(ctx.engine, after=after, limit=limit)
    if as_json:
        emit_json([e.__dict__ for e in found])
        return
    table = Table("seq", "actor", "action", "subject")
    for e in found:
        table.add_row(str(e.seq), e.actor, e.action, e.subject[:60])
    out.print(table)


# ------------------------------------------------------------------ report


@report_app.command("reserves")
@clean_errors
def reserves(
    month: Annotated[str, typer.Option(help="YYYY-MM")],
    as_json: JsonOpt = False,
) -> None:
    """The monthly reserve attestation: tokens outstanding per network, the deposits backing them, the
    reconciliation evidence, and the month's redemptions with their timeliness."""
    from andchain.compliance.reserves import render_text, reserve_report

    service = _tokens()
    report = reserve_report(service.ctx, month, tokens=service)
    if as_json:
        emit_json(report)
        return
    out.print(render_text(report))
