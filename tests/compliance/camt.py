"""camt.054.001.08 credit notices written for the tests (valid against the official XSD)."""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape


@dataclass(frozen=True)
class Credit:
    ref: str
    amount: str  # "1234.56"
    account: str  # the creditor account: a client's id
    debtor: str = "Acme Treasury LLC"
    status: str = "BOOK"
    end_to_end_id: str = "NOTPROVIDED"
    uetr: str | None = None
    credit: bool = True


def _entry(c: Credit) -> str:
    uetr = f"<UETR>{c.uetr}</UETR>" if c.uetr else ""
    indicator = "CRDT" if c.credit else "DBIT"
    return f"""
      <Ntry>
        <Amt Ccy="USD">{c.amount}</Amt>
        <CdtDbtInd>{indicator}</CdtDbtInd>
        <Sts><Cd>{c.status}</Cd></Sts>
        <BookgDt><Dt>2026-11-26</Dt></BookgDt>
        <AcctSvcrRef>{escape(c.ref)}</AcctSvcrRef>
        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>DMCT</SubFmlyCd></Fmly></Domn></BkTxCd>
        <NtryDtls>
          <TxDtls>
            <Refs><EndToEndId>{escape(c.end_to_end_id)}</EndToEndId>{uetr}</Refs>
            <Amt Ccy="USD">{c.amount}</Amt>
            <CdtDbtInd>{indicator}</CdtDbtInd>
            <RltdPties>
              <Dbtr><Pty><Nm>{escape(c.debtor)}</Nm></Pty></Dbtr>
              <CdtrAcct><Id><Othr><Id>{escape(c.account)}</Id></Othr></Id></CdtrAcct>
            </RltdPties>
          </TxDtls>
        </NtryDtls>
      </Ntry>"""


def camt054(message_id: str, credits: list[Credit]) -> bytes:
    entries = "".join(_entry(c) for c in credits)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08">
  <BkToCstmrDbtCdtNtfctn>
    <GrpHdr><MsgId>{escape(message_id)}</MsgId><CreDtTm>2026-11-26T10:00:00Z</CreDtTm></GrpHdr>
    <Ntfctn>
      <Id>N-{escape(message_id)}</Id>
      <Acct><Id><Othr><Id>BANK-USD-NOSTRO</Id></Othr></Id><Ccy>USD</Ccy></Acct>{entries}
    </Ntfctn>
  </BkToCstmrDbtCdtNtfctn>
</Document>
""".encode()
