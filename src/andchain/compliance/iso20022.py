"""ISO 20022 bank messages: camt.054 credit notices in, pain.001 and pacs.008 payouts out.

A deposit token is minted only after the bank has booked the client's money, and the
bank says so in a camt.054 (bank-to-customer debit/credit notification). A redemption
paid out to a client's bank account leaves as a pain.001 (customer credit transfer
initiation, to our own bank) or a pacs.008 (FI to FI customer credit transfer, to
another bank). Each carries an EndToEndId and a UETR that the platform keeps next to
the chain transaction hash, so a payment and a mint or burn can be traced both ways.

Every document, read or written, is checked against the official XSD published by
iso20022.org and vendored under `xsd/` (camt.054.001.08, pacs.008.001.09,
pain.001.001.10). Amounts are exact integers of the currency's ISO 4217 minor unit:
an amount with more decimals than its currency has is refused, never rounded.

This module is pure: bytes in, values out, and values in, bytes out. It reads no
clock and no database; the caller passes the times and ids.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any, Final

from lxml import etree

from andchain.errors import DomainError
from andchain.money import MoneyError, format_minor, parse_minor, rescale_minor

# A camt.054 for one account and one day is a few kilobytes to a few hundred; 5 MB is
# far above any notice we expect and still small enough to parse and validate in memory.
DOCUMENT_BYTES_MAX: Final = 5 * 1024 * 1024
# One message may carry many transactions, but a batch we build is held, validated and
# sent as one document: 1,000 payouts keeps it small and a rejection cheap to redo.
PAYOUTS_MAX: Final = 1_000
# Every ISO 20022 amount type (ActiveOrHistoricCurrencyAndAmount, ActiveCurrencyAndAmount,
# DecimalNumber) allows at most 18 digits, so no amount or total may reach 10^18 minor units.
AMOUNT_MINOR_MAX: Final = 10**18 - 1

CAMT054: Final = "camt.054.001.08"
PACS008: Final = "pacs.008.001.09"
PAIN001: Final = "pain.001.001.10"
_NS_PREFIX: Final = "urn:iso:std:iso:20022:tech:xsd:"

# ISO 4217 minor units of the currencies a bank-token platform pays and is paid in.
# A currency outside this table is refused: guessing its scale could book 100 times too much.
CURRENCY_MINOR_UNITS: Final[dict[str, int]] = {
    "AED": 2,
    "AUD": 2,
    "BHD": 3,
    "BRL": 2,
    "CAD": 2,
    "CHF": 2,
    "CNY": 2,
    "CZK": 2,
    "DKK": 2,
    "EUR": 2,
    "GBP": 2,
    "HKD": 2,
    "ILS": 2,
    "INR": 2,
    "JOD": 3,
    "JPY": 0,
    "KRW": 0,
    "KWD": 3,
    "MXN": 2,
    "NOK": 2,
    "NZD": 2,
    "OMR": 3,
    "PLN": 2,
    "SAR": 2,
    "SEK": 2,
    "SGD": 2,
    "TND": 3,
    "USD": 2,
    "ZAR": 2,
}

SETTLEMENT_METHODS: Final = frozenset({"CLRG", "INDA", "INGA", "COVE"})
# Redemptions are paid at par: the client must receive the full amount, so the bank
# (the debtor) bears every charge.
_CHARGE_BEARER: Final = "DEBT"

# Patterns copied from the XSDs (UUIDv4Identifier, BICFIDec2014Identifier, IBAN2007Identifier),
# checked when a payout is built so that a bad value is refused with a clear message, not
# found later as a schema error. re.ASCII keeps every class to ASCII.
_UETR_RE = re.compile(r"[a-f0-9]{8}-[a-f0-9]{4}-4[a-f0-9]{3}-[89ab][a-f0-9]{3}-[a-f0-9]{12}", re.ASCII)
_BIC_RE = re.compile(r"[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}(?:[A-Z0-9]{3})?", re.ASCII)
_IBAN_RE = re.compile(r"[A-Z]{2}[0-9]{2}[a-zA-Z0-9]{1,30}", re.ASCII)
# XML 1.0 cannot carry most control characters, and a payment text has no use for the rest.
_FORBIDDEN_CHARS_RE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_ISO_NAMESPACE_RE = re.compile(r"\{urn:iso:std:iso:20022:tech:xsd:[a-z0-9.]+\}", re.ASCII)


class Iso20022Error(DomainError, ValueError):
    """An ISO 20022 document or payout that is refused, with a message a bank operator can act on.

    Codes: `invalid_message` (a document we were given), `invalid_payout` (a payout or a
    message argument), `invalid_outgoing_message` (a document we built failed its own XSD:
    a bug in this module, never the caller's fault).
    """

    code = "invalid_message"


class EntryStatus(StrEnum):
    """ExternalEntryStatus1Code: only BOOK means the money is on the account."""

    BOOK = "BOOK"
    PDNG = "PDNG"
    INFO = "INFO"
    FUTR = "FUTR"


@dataclass(frozen=True, slots=True)
class NoticeTransaction:
    """One transaction behind an entry (NtryDtls/TxDtls), with the ids that link it to a payment.

    `amount_minor`/`currency` come from TxDtls/Amt, or from the entry when it has a single
    transaction and the bank left TxDtls/Amt out; they are None for a batch entry whose
    transaction carries no amount of its own. `remittance` holds the RmtInf/Ustrd lines.
    """

    end_to_end_id: str | None
    uetr: str | None
    tx_id: str | None
    amount_minor: int | None
    currency: str | None
    debtor_name: str | None
    debtor_account: str | None
    creditor_account: str | None
    remittance: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NoticeEntry:
    """One entry (Ntry) on the notified account. Only `status == BOOK` with `credit` is money received.

    `entry_ref` is AcctSvcrRef, else NtryRef, else None. `booking_date` is BookgDt as the
    bank wrote it (an ISO date or date-time). `reversal` is RvslInd: a reversal undoes an
    earlier entry and must never be treated as a new payment.
    """

    entry_ref: str | None
    status: EntryStatus
    credit: bool
    amount_minor: int
    currency: str
    account: str
    booking_date: str | None
    transactions: tuple[NoticeTransaction, ...]
    reversal: bool = False


@dataclass(frozen=True, slots=True)
class CreditNotice:
    """A camt.054 notice: its message id, creation time (as written) and its entries in document order."""

    message_id: str
    created_at: str
    entries: tuple[NoticeEntry, ...]


@dataclass(frozen=True, slots=True)
class Payout:
    """One outgoing customer credit transfer: a redemption paid to a client's bank account.

    Accounts are an IBAN when they look like one (and then its check digits must be right),
    else another account id (Othr/Id) such as a US account number.
    """

    end_to_end_id: str
    uetr: str
    instruction_id: str
    amount_minor: int
    currency: str
    debtor_name: str
    debtor_account: str
    debtor_agent_bic: str
    creditor_name: str
    creditor_account: str
    creditor_agent_bic: str
    remittance: str
    requested_date: date

    def __post_init__(self) -> None:
        _check_text("end_to_end_id", self.end_to_end_id, 35)
        _check_text("instruction_id", self.instruction_id, 35)
        if not isinstance(self.uetr, str) or not _UETR_RE.fullmatch(self.uetr):
            raise _payout_error(f"uetr must be a lower-case UUID version 4, was {self.uetr!r}")
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise _payout_error(
                f"amount_minor must be an int of minor units, was {type(self.amount_minor).__name__} "
                f"({self.amount_minor!r})"
            )
        if not 0 < self.amount_minor <= AMOUNT_MINOR_MAX:
            raise _payout_error(f"amount_minor must be within 1..{AMOUNT_MINOR_MAX}, was {self.amount_minor}")
        _currency_scale(self.currency, error=_payout_error)
        _check_text("debtor_name", self.debtor_name, 140)
        _check_text("creditor_name", self.creditor_name, 140)
        _check_account("debtor_account", self.debtor_account)
        _check_account("creditor_account", self.creditor_account)
        _check_bic("debtor_agent_bic", self.debtor_agent_bic)
        _check_bic("creditor_agent_bic", self.creditor_agent_bic)
        _check_text("remittance", self.remittance, 140, allow_empty=True)
        # A datetime is a date too, but a time of day here would be silently dropped.
        if isinstance(self.requested_date, datetime) or not isinstance(self.requested_date, date):
            raise _payout_error(f"requested_date must be a date, was {type(self.requested_date).__name__}")


# ---------------------------------------------------------------- camt.054 in


def parse_camt054(data: bytes) -> CreditNotice:
    """Validate a camt.054.001.08 document against the official XSD and read its entries exactly."""
    ns = _NS_PREFIX + CAMT054
    root = _load(data, CAMT054, "the camt.054 document")
    _validate(root, CAMT054, "the camt.054 document", code="invalid_message")
    n = {"d": ns}
    notification = root.find("d:BkToCstmrDbtCdtNtfctn", n)
    entries: list[NoticeEntry] = []
    for ntfctn in notification.iterfind("d:Ntfctn", n):
        account = _account_id(ntfctn.find("d:Acct", n), n)
        entries.extend(_entry(ntry, account, n) for ntry in ntfctn.iterfind("d:Ntry", n))
    return CreditNotice(
        message_id=_text(notification, "d:GrpHdr/d:MsgId", n) or "",
        created_at=_text(notification, "d:GrpHdr/d:CreDtTm", n) or "",
        entries=tuple(entries),
    )


def _entry(ntry: Any, account: str, n: dict[str, str]) -> NoticeEntry:
    amount_el = ntry.find("d:Amt", n)
    amount_minor, currency = _amount(amount_el, "entry amount")
    # Minting hangs on this status: a proprietary (Prtry) or unknown one cannot be interpreted
    # and stops the notice rather than being guessed.
    status_text = _text(ntry, "d:Sts/d:Cd", n)
    if status_text not in tuple(EntryStatus):
        found = repr(status_text) if status_text is not None else f"proprietary {_text(ntry, 'd:Sts/d:Prtry', n)!r}"
        raise Iso20022Error(
            f"line {ntry.sourceline}: entry status must be the code {', '.join(EntryStatus)}, was {found}"
        )
    status = EntryStatus(status_text)
    details = ntry.findall("d:NtryDtls/d:TxDtls", n)
    transactions = tuple(_transaction(tx, len(details) == 1, amount_minor, currency, n) for tx in details)
    return NoticeEntry(
        entry_ref=_text(ntry, "d:AcctSvcrRef", n) or _text(ntry, "d:NtryRef", n),
        status=status,
        credit=_text(ntry, "d:CdtDbtInd", n) == "CRDT",
        amount_minor=amount_minor,
        currency=currency,
        account=account,
        booking_date=_text(ntry, "d:BookgDt/d:Dt", n) or _text(ntry, "d:BookgDt/d:DtTm", n),
        transactions=transactions,
        reversal=(_text(ntry, "d:RvslInd", n) or "").strip() in ("true", "1"),
    )


def _transaction(tx: Any, sole: bool, entry_minor: int, entry_currency: str, n: dict[str, str]) -> NoticeTransaction:
    amount_el = tx.find("d:Amt", n)
    amount_minor: int | None
    currency: str | None
    if amount_el is not None:
        amount_minor, currency = _amount(amount_el, "transaction amount")
    elif sole:
        # ISO usage: the only transaction of an entry may leave its amount to the entry.
        amount_minor, currency = entry_minor, entry_currency
    else:
        amount_minor, currency = None, None
    debtor_account = tx.find("d:RltdPties/d:DbtrAcct", n)
    creditor_account = tx.find("d:RltdPties/d:CdtrAcct", n)
    return NoticeTransaction(
        end_to_end_id=_text(tx, "d:Refs/d:EndToEndId", n),
        uetr=_text(tx, "d:Refs/d:UETR", n),
        tx_id=_text(tx, "d:Refs/d:TxId", n),
        amount_minor=amount_minor,
        currency=currency,
        # Since camt.054.001.08 a party is a choice of a person or organisation (Pty) or a bank (Agt).
        debtor_name=_text(tx, "d:RltdPties/d:Dbtr/d:Pty/d:Nm", n)
        or _text(tx, "d:RltdPties/d:Dbtr/d:Agt/d:FinInstnId/d:Nm", n),
        debtor_account=_account_id(debtor_account, n) if debtor_account is not None else None,
        creditor_account=_account_id(creditor_account, n) if creditor_account is not None else None,
        remittance=tuple(line.text or "" for line in tx.iterfind("d:RmtInf/d:Ustrd", n)),
    )


def _amount(element: Any, what: str) -> tuple[int, str]:
    currency = element.get("Ccy")
    text = element.text or ""
    scale = _currency_scale(currency, error=lambda m: Iso20022Error(f"line {element.sourceline}: {what}: {m}"))
    try:
        # The XSD has already checked this is an xs:decimal of at most 5 decimals and not
        # negative; Decimal reads every lexical form of it (".5", "5.") exactly, and
        # parse_minor refuses anything finer than the currency's minor unit.
        minor = parse_minor(format(Decimal(text), "f"), scale)
    except (InvalidOperation, MoneyError) as exc:
        raise Iso20022Error(
            f"line {element.sourceline}: {what} {text.strip()} {currency} cannot be booked exactly ({exc}); "
            f"{currency} has {scale} decimal places and an amount is refused, never rounded"
        ) from None
    return minor, currency


def _account_id(cash_account: Any, n: dict[str, str]) -> str:
    return _text(cash_account, "d:Id/d:IBAN", n) or _text(cash_account, "d:Id/d:Othr/d:Id", n) or ""


def _text(element: Any, path: str, n: dict[str, str]) -> str | None:
    found = element.find(path, n)
    return None if found is None else (found.text or "")


# ---------------------------------------------------------------- pain.001 / pacs.008 out


def pain001(message_id: str, created_at: datetime, payouts: Sequence[Payout], initiating_party: str) -> bytes:
    """Build a pain.001.001.10 customer credit transfer initiation, validated against its XSD.

    Payouts from the same debtor account, agent and requested date share one payment
    information block (PmtInf), whose id is the instruction id of its first payout.
    """
    _check_message(message_id, created_at, payouts)
    _check_text("initiating_party", initiating_party, 140)
    b = _Builder(_NS_PREFIX + PAIN001)
    root = b.root()
    initiation = b.sub(root, "CstmrCdtTrfInitn")
    header = b.sub(initiation, "GrpHdr")
    b.sub(header, "MsgId", message_id)
    b.sub(header, "CreDtTm", _iso_datetime(created_at))
    b.sub(header, "NbOfTxs", str(len(payouts)))
    b.sub(header, "CtrlSum", _control_sum(payouts))
    b.sub(b.sub(header, "InitgPty"), "Nm", initiating_party)
    groups: dict[tuple[str, str, str, date], list[Payout]] = {}
    for payout in payouts:
        key = (payout.debtor_name, payout.debtor_account, payout.debtor_agent_bic, payout.requested_date)
        groups.setdefault(key, []).append(payout)
    for (debtor_name, debtor_account, debtor_agent_bic, requested_date), group in groups.items():
        info = b.sub(initiation, "PmtInf")
        b.sub(info, "PmtInfId", group[0].instruction_id)
        b.sub(info, "PmtMtd", "TRF")
        b.sub(info, "NbOfTxs", str(len(group)))
        b.sub(info, "CtrlSum", _control_sum(group))
        b.sub(b.sub(info, "ReqdExctnDt"), "Dt", requested_date.isoformat())
        b.sub(b.sub(info, "Dbtr"), "Nm", debtor_name)
        b.account(info, "DbtrAcct", debtor_account)
        b.agent(info, "DbtrAgt", debtor_agent_bic)
        b.sub(info, "ChrgBr", _CHARGE_BEARER)
        for payout in group:
            tx = b.sub(info, "CdtTrfTxInf")
            ids = b.sub(tx, "PmtId")
            b.sub(ids, "InstrId", payout.instruction_id)
            b.sub(ids, "EndToEndId", payout.end_to_end_id)
            b.sub(ids, "UETR", payout.uetr)
            b.amount(b.sub(tx, "Amt"), "InstdAmt", payout)
            b.agent(tx, "CdtrAgt", payout.creditor_agent_bic)
            b.sub(b.sub(tx, "Cdtr"), "Nm", payout.creditor_name)
            b.account(tx, "CdtrAcct", payout.creditor_account)
            b.remittance(tx, payout.remittance)
    return _finish(root, PAIN001)


def pacs008(
    message_id: str,
    created_at: datetime,
    payouts: Sequence[Payout],
    instructing_agent_bic: str,
    instructed_agent_bic: str,
    settlement_method: str = "CLRG",
) -> bytes:
    """Build a pacs.008.001.09 FI to FI customer credit transfer, validated against its XSD.

    Each payout is one CdtTrfTxInf with InstrId and TxId (the payout's instruction id),
    EndToEndId and UETR, settled on its requested date.
    """
    _check_message(message_id, created_at, payouts)
    _check_bic("instructing_agent_bic", instructing_agent_bic)
    _check_bic("instructed_agent_bic", instructed_agent_bic)
    if settlement_method not in SETTLEMENT_METHODS:
        raise _payout_error(
            f"settlement_method must be one of {', '.join(sorted(SETTLEMENT_METHODS))}, was {settlement_method!r}"
        )
    b = _Builder(_NS_PREFIX + PACS008)
    root = b.root()
    transfer = b.sub(root, "FIToFICstmrCdtTrf")
    header = b.sub(transfer, "GrpHdr")
    b.sub(header, "MsgId", message_id)
    b.sub(header, "CreDtTm", _iso_datetime(created_at))
    b.sub(header, "NbOfTxs", str(len(payouts)))
    currencies = {payout.currency for payout in payouts}
    # A total settlement amount only means something in one currency; a mixed batch has none.
    if len(currencies) == 1:
        (currency,) = currencies
        total = b.sub(header, "TtlIntrBkSttlmAmt", _control_sum(payouts))
        total.set("Ccy", currency)
    b.sub(b.sub(header, "SttlmInf"), "SttlmMtd", settlement_method)
    b.agent(header, "InstgAgt", instructing_agent_bic)
    b.agent(header, "InstdAgt", instructed_agent_bic)
    for payout in payouts:
        tx = b.sub(transfer, "CdtTrfTxInf")
        ids = b.sub(tx, "PmtId")
        b.sub(ids, "InstrId", payout.instruction_id)
        b.sub(ids, "EndToEndId", payout.end_to_end_id)
        b.sub(ids, "TxId", payout.instruction_id)
        b.sub(ids, "UETR", payout.uetr)
        b.amount(tx, "IntrBkSttlmAmt", payout)
        b.sub(tx, "IntrBkSttlmDt", payout.requested_date.isoformat())
        b.sub(tx, "ChrgBr", _CHARGE_BEARER)
        b.sub(b.sub(tx, "Dbtr"), "Nm", payout.debtor_name)
        b.account(tx, "DbtrAcct", payout.debtor_account)
        b.agent(tx, "DbtrAgt", payout.debtor_agent_bic)
        b.agent(tx, "CdtrAgt", payout.creditor_agent_bic)
        b.sub(b.sub(tx, "Cdtr"), "Nm", payout.creditor_name)
        b.account(tx, "CdtrAcct", payout.creditor_account)
        b.remittance(tx, payout.remittance)
    return _finish(root, PACS008)


def parse_payment_ids(data: bytes) -> list[tuple[str, str | None]]:
    """Read back (EndToEndId, UETR or None) of every transaction of a pacs.008.001.09 or pain.001.001.10."""
    root = _load(data, (PACS008, PAIN001), "the payment document")
    name = PACS008 if root.tag == f"{{{_NS_PREFIX + PACS008}}}Document" else PAIN001
    _validate(root, name, f"the {name[:8]} document", code="invalid_message")
    n = {"d": _NS_PREFIX + name}
    path = (
        "d:FIToFICstmrCdtTrf/d:CdtTrfTxInf/d:PmtId"
        if name == PACS008
        else "d:CstmrCdtTrfInitn/d:PmtInf/d:CdtTrfTxInf/d:PmtId"
    )
    return [(_text(ids, "d:EndToEndId", n) or "", _text(ids, "d:UETR", n)) for ids in root.iterfind(path, n)]


class _Builder:
    """Elements in one message's namespace, so the builders above read like the message itself."""

    def __init__(self, ns: str) -> None:
        self.ns = ns

    def root(self) -> Any:
        return etree.Element(f"{{{self.ns}}}Document", nsmap={None: self.ns})

    def sub(self, parent: Any, tag: str, text: str | None = None) -> Any:
        element = etree.SubElement(parent, f"{{{self.ns}}}{tag}")
        if text is not None:
            element.text = text
        return element

    def amount(self, parent: Any, tag: str, payout: Payout) -> None:
        scale = CURRENCY_MINOR_UNITS[payout.currency]
        self.sub(parent, tag, format_minor(payout.amount_minor, scale)).set("Ccy", payout.currency)

    def account(self, parent: Any, tag: str, account: str) -> None:
        identification = self.sub(self.sub(parent, tag), "Id")
        if _IBAN_RE.fullmatch(account):
            self.sub(identification, "IBAN", account)
        else:
            self.sub(self.sub(identification, "Othr"), "Id", account)

    def agent(self, parent: Any, tag: str, bic: str) -> None:
        self.sub(self.sub(self.sub(parent, tag), "FinInstnId"), "BICFI", bic)

    def remittance(self, parent: Any, text: str) -> None:
        if text:
            self.sub(self.sub(parent, "RmtInf"), "Ustrd", text)


_XML_DECLARATION: Final = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def _finish(root: Any, name: str) -> bytes:
    # The declaration is written by hand for its double quotes: lxml writes single ones, which
    # XML allows but some bank gateways' hand-written checks do not.
    data: bytes = _XML_DECLARATION + etree.tostring(root, encoding="UTF-8", xml_declaration=False, pretty_print=True)
    # Validate the bytes we hand out, parsed back, not only the tree they came from.
    _validate(
        _load(data, name, f"the {name[:8]} andchain built"),
        name,
        f"the {name[:8]} andchain built",
        code="invalid_outgoing_message",
    )
    return data


def _check_message(message_id: str, created_at: datetime, payouts: Sequence[Payout]) -> None:
    _check_text("message_id", message_id, 35)
    if not isinstance(created_at, datetime) or created_at.utcoffset() is None:
        raise _payout_error(f"created_at must be a datetime with a time zone, was {created_at!r}")
    if not 1 <= len(payouts) <= PAYOUTS_MAX:
        raise _payout_error(f"a message carries 1..{PAYOUTS_MAX} payouts, was given {len(payouts)}")
    for payout in payouts:
        if not isinstance(payout, Payout):
            raise _payout_error(f"payouts must be Payout values, found {type(payout).__name__}")
    # Banks and the platform find a payment by these ids; two payments sharing one in a
    # message could be confused or rejected as duplicates.
    for field in ("end_to_end_id", "uetr", "instruction_id"):
        _check_unique(field, (getattr(payout, field) for payout in payouts))


def _check_unique(field: str, values: Iterable[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise _payout_error(f"{field} must be unique within a message, {value!r} appears twice")
        seen.add(value)


def _control_sum(payouts: Sequence[Payout]) -> str:
    """The exact sum of the amounts, as ISO's CtrlSum defines it: irrespective of currency."""
    scale = max(CURRENCY_MINOR_UNITS[payout.currency] for payout in payouts)
    total = sum(rescale_minor(p.amount_minor, CURRENCY_MINOR_UNITS[p.currency], scale) for p in payouts)
    if total > AMOUNT_MINOR_MAX:
        raise _payout_error(
            f"the payouts add up to {format_minor(total, scale)}, more than the 18 digits an ISO 20022 total "
            f"can hold; send them in smaller messages"
        )
    return format_minor(total, scale)


def _iso_datetime(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


# ---------------------------------------------------------------- checks shared by both ways


def _currency_scale(currency: object, *, error: Callable[[str], Iso20022Error]) -> int:
    scale = CURRENCY_MINOR_UNITS.get(currency) if isinstance(currency, str) else None
    if scale is None:
        raise error(
            f"currency {currency!r} is not one whose ISO 4217 minor unit andchain knows "
            f"({', '.join(CURRENCY_MINOR_UNITS)})"
        )
    return scale


def _check_text(field: str, value: object, length_max: int, *, allow_empty: bool = False) -> str:
    """Refuse what an ISO 20022 text field (MaxNNText) cannot carry cleanly; return the text."""
    if not isinstance(value, str):
        raise _payout_error(f"{field} must be a string, was {type(value).__name__}")
    if not value and not allow_empty:
        raise _payout_error(f"{field} must not be empty")
    if len(value) > length_max:
        raise _payout_error(f"{field} must be at most {length_max} characters, was {len(value)}")
    if value != value.strip():
        raise _payout_error(f"{field} must not start or end with white space, was {value!r}")
    if _FORBIDDEN_CHARS_RE.search(value):
        raise _payout_error(f"{field} must not contain control characters, was {value!r}")
    return value


def _check_bic(field: str, value: object) -> None:
    if not isinstance(value, str) or not _BIC_RE.fullmatch(value):
        raise _payout_error(f"{field} must be a BIC of 8 or 11 upper-case letters and digits, was {value!r}")


def _check_account(field: str, value: object) -> None:
    account = _check_text(field, value, 34)
    # Something shaped like an IBAN is sent as one, so its check digits must hold: a typo
    # must stop here rather than pay a stranger.
    if _IBAN_RE.fullmatch(account) and not _iban_check_digits_hold(account):
        raise _payout_error(f"{field} {value!r} looks like an IBAN but its check digits are wrong")


def _iban_check_digits_hold(iban: str) -> bool:
    rearranged = (iban[4:] + iban[:4]).upper()
    digits = "".join(str(int(char, 36)) for char in rearranged)
    return int(digits) % 97 == 1


def _payout_error(message: str) -> Iso20022Error:
    return Iso20022Error(message, code="invalid_payout")


# ---------------------------------------------------------------- parsing and validation


def _parser() -> Any:
    # A new parser per document: lxml parsers are not meant to be shared between threads.
    # No entity is resolved, no DTD loaded and nothing fetched from the network.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


def _load(data: object, expected: str | tuple[str, ...], what: str) -> Any:
    """Parse untrusted bytes into the root Document element of one of the expected messages."""
    if not isinstance(data, bytes):
        raise Iso20022Error(f"{what} must be given as bytes, was {type(data).__name__}")
    if len(data) > DOCUMENT_BYTES_MAX:
        raise Iso20022Error(f"{what} has {len(data)} bytes, more than the {DOCUMENT_BYTES_MAX} accepted")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise Iso20022Error(f"{what} is not well-formed XML: line {exc.lineno}: {exc.msg}") from None
    docinfo = root.getroottree().docinfo
    # ISO 20022 messages never have a DOCTYPE; one can declare entities (billion laughs,
    # external files), so any DOCTYPE at all is refused.
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise Iso20022Error(f"{what} has a DOCTYPE declaration; ISO 20022 messages have none and it is refused")
    names = (expected,) if isinstance(expected, str) else expected
    wanted = [f"{{{_NS_PREFIX + name}}}Document" for name in names]
    if root.tag not in wanted:
        raise Iso20022Error(f"{what} must be a {' or '.join(names)} Document ({' or '.join(wanted)}), found {root.tag}")
    return root


@cache
def _schema(name: str) -> Any:
    # The XSDs ship inside the package (see xsd/README.md) and import nothing, so no file
    # or network access happens beyond reading them once.
    data = resources.files(__package__).joinpath("xsd", f"{name}.xsd").read_bytes()
    return etree.XMLSchema(etree.fromstring(data, _parser()))


# An XMLSchema keeps its error log on itself, so two threads validating with one schema
# would read each other's errors: validation takes this lock.
_VALIDATION_LOCK = threading.Lock()


def _validate(root: Any, name: str, what: str, *, code: str) -> None:
    schema = _schema(name)
    with _VALIDATION_LOCK:
        valid = schema.validate(root)
        first = None if valid else schema.error_log[0]
    if first is not None:
        message = _ISO_NAMESPACE_RE.sub("", first.message)
        raise Iso20022Error(f"{what} is not valid against {name}.xsd: line {first.line}: {message}", code=code)
