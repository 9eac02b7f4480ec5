"""ISO 20022: camt.054 notices read exactly; pain.001 and pacs.008 payouts built valid against the official XSDs."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from andchain.compliance import iso20022
from andchain.compliance.iso20022 import (
    CURRENCY_MINOR_UNITS,
    DOCUMENT_BYTES_MAX,
    PAYOUTS_MAX,
    EntryStatus,
    Iso20022Error,
    Payout,
    pacs008,
    pain001,
    parse_camt054,
    parse_payment_ids,
)

FIXTURES = Path(__file__).parent / "fixtures" / "iso20022"
CAMT054 = (FIXTURES / "camt054_credits_and_debit.xml").read_bytes()
CREATED_AT = datetime(2025, 3, 17, 9, 0, tzinfo=UTC)
PAIN_NS = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.10"
PACS_NS = "urn:iso:std:iso:20022:tech:xsd:pacs.008.001.09"

ACME = Payout(
    end_to_end_id="E2E-RDM-0001",
    uetr="0b8f6a52-3c1d-4e7a-9b2c-5d6e7f8a9b0c",
    instruction_id="INSTR-0001",
    amount_minor=1234,
    currency="USD",
    debtor_name="Andchain Issuer Omnibus",
    debtor_account="8472910365",
    debtor_agent_bic="CHASUS33XXX",
    creditor_name="Acme Treasury LLC",
    creditor_account="000987654321",
    creditor_agent_bic="BOFAUS3N",
    remittance="Redemption RDM-0001",
    requested_date=date(2025, 3, 17),
)
GLOBEX = dataclasses.replace(
    ACME,
    end_to_end_id="E2E-RDM-0002",
    uetr="1c9a7b63-4d2e-4f8b-8c3d-6e7f8a9b0c1d",
    instruction_id="INSTR-0002",
    amount_minor=123456789,
    creditor_name="Globex GmbH",
    creditor_account="GB29NWBK60161331926819",
    creditor_agent_bic="NWBKGB2L",
    remittance="",
)


def _refused(data: bytes) -> Iso20022Error:
    with pytest.raises(Iso20022Error) as caught:
        parse_camt054(data)
    assert caught.value.code == "invalid_message"
    return caught.value


# ---------------------------------------------------------------- camt.054


def test_a_booked_credit_is_read_exactly_with_its_payment_ids():
    notice = parse_camt054(CAMT054)

    assert notice.message_id == "CAMT054-20250314-0001"
    assert notice.created_at == "2025-03-14T10:15:00Z"
    booked = notice.entries[0]
    assert booked.entry_ref == "BK20250314-000981"
    assert booked.status is EntryStatus.BOOK
    assert booked.credit is True
    assert booked.reversal is False
    assert (booked.amount_minor, booked.currency) == (123456789, "USD")
    assert booked.account == "8472910365"
    assert booked.booking_date == "2025-03-14"
    (tx,) = booked.transactions
    assert tx == iso20022.NoticeTransaction(
        end_to_end_id="E2E-ACME-20250314-01",
        uetr="2f6c1d9e-8a3b-4c5d-9e7f-0a1b2c3d4e5f",
        tx_id="FW20250314-77810",
        amount_minor=123456789,
        currency="USD",
        debtor_name="Acme Treasury LLC",
        debtor_account="000987654321",
        creditor_account="8472910365",
        remittance=("ANDCHAIN MINT MINT-7781", "CLIENT ACME-TREASURY"),
    )


def test_a_pending_credit_a_debit_and_a_second_account_are_told_apart():
    pending, debit, euro = parse_camt054(CAMT054).entries[1:]

    assert (pending.status, pending.credit, pending.amount_minor) == (EntryStatus.PDNG, True, 50000)
    # Without AcctSvcrRef the entry is known by its NtryRef.
    assert pending.entry_ref == "NTRY-0002"
    assert pending.booking_date is None
    # The only transaction of an entry takes the entry's amount when it states none.
    (globex,) = pending.transactions
    assert (globex.end_to_end_id, globex.uetr, globex.debtor_name) == ("E2E-GLOBEX-0002", None, "Globex Corporation")
    assert (globex.amount_minor, globex.currency) == (50000, "USD")
    assert globex.debtor_account == "GB29NWBK60161331926819"

    assert (debit.status, debit.credit, debit.amount_minor) == (EntryStatus.BOOK, False, 25000)
    assert debit.booking_date == "2025-03-14T09:30:00Z"
    assert debit.transactions[0].creditor_account == "000555123987"

    assert (euro.account, euro.currency, euro.amount_minor, euro.transactions) == (
        "DE89370400440532013000",
        "EUR",
        100050,
        (),
    )


def test_a_reversal_is_flagged():
    data = CAMT054.replace(
        b"<CdtDbtInd>DBIT</CdtDbtInd>\n        <Sts>", b"<CdtDbtInd>DBIT</CdtDbtInd><RvslInd>true</RvslInd><Sts>"
    )

    assert [entry.reversal for entry in parse_camt054(data).entries] == [False, False, True, False]


def test_an_amount_with_more_decimals_than_the_currency_allows_is_refused_not_rounded():
    error = _refused(
        CAMT054.replace(
            b'<Amt Ccy="USD">1234567.89</Amt>\n        <CdtDbtInd>', b'<Amt Ccy="USD">1234567.891</Amt><CdtDbtInd>'
        )
    )

    assert "1234567.891 USD" in str(error)
    assert f"line {_line_of(b'1234567.89')}" in str(error)
    assert "never rounded" in str(error)


def test_yen_has_no_minor_digits():
    yen = CAMT054.replace(b'<Amt Ccy="EUR">1000.5</Amt>', b'<Amt Ccy="JPY">150000</Amt>')
    assert parse_camt054(yen).entries[-1].amount_minor == 150000

    _refused(CAMT054.replace(b'<Amt Ccy="EUR">1000.5</Amt>', b'<Amt Ccy="JPY">150000.5</Amt>'))


def test_trailing_zeros_beyond_the_minor_unit_are_exact_and_accepted():
    data = CAMT054.replace(b'<Amt Ccy="EUR">1000.5</Amt>', b'<Amt Ccy="EUR">1000.50000</Amt>')

    assert parse_camt054(data).entries[-1].amount_minor == 100050


def test_a_currency_without_a_known_minor_unit_is_refused():
    error = _refused(CAMT054.replace(b'<Amt Ccy="EUR">1000.5</Amt>', b'<Amt Ccy="XYZ">1000.5</Amt>'))

    assert "'XYZ'" in str(error)
    assert "ISO 4217" in str(error)


def test_a_proprietary_entry_status_is_refused_rather_than_guessed():
    error = _refused(CAMT054.replace(b"<Cd>PDNG</Cd>", b"<Prtry>ALMOST</Prtry>"))

    assert "'ALMOST'" in str(error)


def test_a_document_missing_a_required_element_is_refused_naming_it():
    # The first entry loses its CdtDbtInd, which the XSD requires.
    data = CAMT054.replace(b"<CdtDbtInd>CRDT</CdtDbtInd>\n        <Sts>", b"<Sts>", 1)

    error = _refused(data)

    assert "camt.054.001.08.xsd" in str(error)
    assert f"line {_line_of(b'<Sts>', data)}" in str(error)
    assert "Expected is ( CdtDbtInd )" in str(error)
    # The namespace is left out so an operator reads element names, not URNs.
    assert "urn:iso" not in str(error)


def test_a_document_with_an_entity_declaration_is_refused(tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do-not-leak")
    external = (
        b'<?xml version="1.0"?>\n<!DOCTYPE Document [<!ENTITY x SYSTEM "file://'
        + str(secret).encode()
        + b'">]>\n'
        + CAMT054.split(b"?>", 1)[1].replace(b"CAMT054-20250314-0001", b"&x;")
    )
    laughs = (
        b'<?xml version="1.0"?>\n<!DOCTYPE Document [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>\n'
        + CAMT054.split(b"?>", 1)[1].replace(b"CAMT054-20250314-0001", b"&b;")
    )

    for data in (external, laughs):
        error = _refused(data)
        assert "DOCTYPE" in str(error)
        assert "do-not-leak" not in str(error)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "not well-formed"),
        (b"%PDF-1.7 not xml at all", "not well-formed"),
        (b"<Document><unclosed></Document>", "not well-formed"),
        (b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"/>', "camt.054.001.08 Document"),
    ],
)
def test_what_is_not_a_camt054_is_refused(data: bytes, words: str):
    assert words in str(_refused(data))


def test_text_and_oversized_documents_are_refused_before_parsing():
    with pytest.raises(Iso20022Error, match="bytes, was str"):
        parse_camt054(CAMT054.decode())  # type: ignore[arg-type]

    huge = CAMT054 + b" " * (DOCUMENT_BYTES_MAX + 1 - len(CAMT054))
    assert "more than" in str(_refused(huge))


# ---------------------------------------------------------------- pain.001 / pacs.008


def test_pain001_for_two_payouts_is_valid_and_carries_their_ids_and_exact_amounts():
    data = pain001("PAIN001-0001", CREATED_AT, [ACME, GLOBEX], "Andchain Issuer")

    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert etree.XMLSchema(etree.parse(_xsd("pain.001.001.10"))).validate(etree.fromstring(data))
    assert parse_payment_ids(data) == [(ACME.end_to_end_id, ACME.uetr), (GLOBEX.end_to_end_id, GLOBEX.uetr)]
    root = etree.fromstring(data)
    n = {"p": PAIN_NS}
    assert root.xpath("//p:InstdAmt/text()", namespaces=n) == ["12.34", "1234567.89"]
    assert root.xpath("//p:GrpHdr/p:NbOfTxs/text()", namespaces=n) == ["2"]
    assert root.xpath("//p:GrpHdr/p:CtrlSum/text()", namespaces=n) == ["1234580.23"]
    # Same debtor, account, agent and date: one payment information block.
    assert root.xpath("//p:PmtInf/p:PmtInfId/text()", namespaces=n) == ["INSTR-0001"]
    assert root.xpath("//p:CdtrAcct/p:Id/p:IBAN/text()", namespaces=n) == ["GB29NWBK60161331926819"]
    assert root.xpath("//p:CdtrAcct/p:Id/p:Othr/p:Id/text()", namespaces=n) == ["000987654321"]


def test_pacs008_for_two_payouts_is_valid_and_carries_their_ids_and_exact_amounts():
    data = pacs008("PACS008-0001", CREATED_AT, [ACME, GLOBEX], "CHASUS33", "BOFAUS3N")

    assert etree.XMLSchema(etree.parse(_xsd("pacs.008.001.09"))).validate(etree.fromstring(data))
    assert parse_payment_ids(data) == [(ACME.end_to_end_id, ACME.uetr), (GLOBEX.end_to_end_id, GLOBEX.uetr)]
    root = etree.fromstring(data)
    n = {"p": PACS_NS}
    assert root.xpath("//p:CdtTrfTxInf/p:IntrBkSttlmAmt/text()", namespaces=n) == ["12.34", "1234567.89"]
    assert root.xpath("//p:TtlIntrBkSttlmAmt/text()", namespaces=n) == ["1234580.23"]
    assert root.xpath("//p:SttlmMtd/text()", namespaces=n) == ["CLRG"]
    assert root.xpath("//p:PmtId/p:TxId/text()", namespaces=n) == ["INSTR-0001", "INSTR-0002"]


def test_pacs008_in_several_currencies_has_no_total_and_yen_has_no_decimals():
    yen = dataclasses.replace(GLOBEX, currency="JPY", amount_minor=150000)

    root = etree.fromstring(pacs008("PACS008-0002", CREATED_AT, [ACME, yen], "CHASUS33", "BOFAUS3N", "INDA"))

    n = {"p": PACS_NS}
    assert root.xpath("//p:TtlIntrBkSttlmAmt", namespaces=n) == []
    assert root.xpath("//p:IntrBkSttlmAmt[@Ccy='JPY']/text()", namespaces=n) == ["150000"]


def test_an_unknown_settlement_method_is_refused():
    with pytest.raises(Iso20022Error, match="settlement_method must be one of CLRG, COVE, INDA, INGA") as caught:
        pacs008("PACS008-0003", CREATED_AT, [ACME], "CHASUS33", "BOFAUS3N", "WIRE")
    assert caught.value.code == "invalid_payout"


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"amount_minor": 12.34}, "must be an int of minor units, was float"),
        ({"amount_minor": Decimal("12.34")}, "must be an int of minor units, was Decimal"),
        ({"amount_minor": True}, "must be an int of minor units, was bool"),
        ({"amount_minor": -1234}, "within 1..999999999999999999, was -1234"),
        ({"amount_minor": 0}, "within 1..999999999999999999, was 0"),
        ({"amount_minor": 10**18}, "within 1.."),
        ({"currency": "usd"}, "currency 'usd'"),
        ({"uetr": "0B8F6A52-3C1D-4E7A-9B2C-5D6E7F8A9B0C"}, "lower-case UUID version 4"),
        ({"uetr": "0b8f6a52-3c1d-1e7a-9b2c-5d6e7f8a9b0c"}, "lower-case UUID version 4"),
        ({"end_to_end_id": "E" * 36}, "at most 35 characters"),
        ({"end_to_end_id": ""}, "must not be empty"),
        ({"creditor_name": "Acme\nTreasury"}, "control characters"),
        ({"creditor_name": " Acme"}, "white space"),
        ({"creditor_agent_bic": "bofaus3n"}, "BIC of 8 or 11"),
        ({"creditor_account": "GB29NWBK60161331926818"}, "check digits are wrong"),
        ({"remittance": "R" * 141}, "at most 140 characters"),
        ({"requested_date": datetime(2025, 3, 17, 12, 0, tzinfo=UTC)}, "must be a date, was datetime"),
    ],
)
def test_a_payout_with_a_wrong_field_is_refused_at_construction(changes: dict[str, object], words: str):
    with pytest.raises(Iso20022Error) as caught:
        dataclasses.replace(ACME, **changes)  # type: ignore[arg-type]

    assert caught.value.code == "invalid_payout"
    assert words in str(caught.value)


def test_a_message_refuses_duplicate_ids_too_many_payouts_and_a_naive_time():
    with pytest.raises(Iso20022Error, match="end_to_end_id must be unique"):
        pain001("PAIN001-0002", CREATED_AT, [ACME, dataclasses.replace(GLOBEX, end_to_end_id=ACME.end_to_end_id)], "X")
    with pytest.raises(Iso20022Error, match="uetr must be unique"):
        pacs008("PACS008-0004", CREATED_AT, [ACME, dataclasses.replace(GLOBEX, uetr=ACME.uetr)], "CHASUS33", "BOFAUS3N")
    with pytest.raises(Iso20022Error, match=f"1..{PAYOUTS_MAX} payouts, was given 0"):
        pain001("PAIN001-0003", CREATED_AT, [], "Andchain Issuer")
    with pytest.raises(Iso20022Error, match=f"1..{PAYOUTS_MAX} payouts, was given {PAYOUTS_MAX + 1}"):
        pain001("PAIN001-0004", CREATED_AT, [ACME] * (PAYOUTS_MAX + 1), "Andchain Issuer")
    with pytest.raises(Iso20022Error, match="time zone"):
        pain001("PAIN001-0005", datetime(2025, 3, 17, 9, 0), [ACME], "Andchain Issuer")


def test_a_total_beyond_eighteen_digits_is_refused_rather_than_sent():
    big = dataclasses.replace(ACME, amount_minor=10**18 - 1)
    other = dataclasses.replace(GLOBEX, amount_minor=1)

    with pytest.raises(Iso20022Error, match="smaller messages"):
        pain001("PAIN001-0006", CREATED_AT, [big, other], "Andchain Issuer")


def test_a_document_that_fails_its_own_xsd_is_never_returned(monkeypatch: pytest.MonkeyPatch):
    # A bug guard: pretend the module writes a charge bearer the XSD does not know.
    monkeypatch.setattr(iso20022, "_CHARGE_BEARER", "NONE")

    with pytest.raises(Iso20022Error) as caught:
        pacs008("PACS008-0005", CREATED_AT, [ACME], "CHASUS33", "BOFAUS3N")

    assert caught.value.code == "invalid_outgoing_message"
    assert "ChrgBr" in str(caught.value)


def test_parse_payment_ids_refuses_a_notice():
    with pytest.raises(Iso20022Error, match=r"pacs.008.001.09 or pain.001.001.10 Document"):
        parse_payment_ids(CAMT054)


@given(
    amount_minor=st.integers(min_value=1, max_value=10**18 - 1),
    currency=st.sampled_from(sorted(CURRENCY_MINOR_UNITS)),
)
def test_any_amount_is_written_exactly_at_its_currency_scale(amount_minor: int, currency: str):
    payout = dataclasses.replace(ACME, amount_minor=amount_minor, currency=currency)

    root = etree.fromstring(pacs008("PACS008-P", CREATED_AT, [payout], "CHASUS33", "BOFAUS3N"))

    (text,) = root.xpath("//p:CdtTrfTxInf/p:IntrBkSttlmAmt/text()", namespaces={"p": PACS_NS})
    assert Decimal(text).scaleb(CURRENCY_MINOR_UNITS[currency]) == amount_minor
    assert len(text.partition(".")[2]) == CURRENCY_MINOR_UNITS[currency]


def _line_of(marker: bytes, data: bytes = CAMT054) -> int:
    """The line of `data` where `marker` first appears, counted from 1 as the parser counts them."""
    return data[: data.index(marker)].count(b"\n") + 1


def _xsd(name: str) -> str:
    return str(Path(iso20022.__file__).parent / "xsd" / f"{name}.xsd")
