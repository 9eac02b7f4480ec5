"""IVMS101 identity payloads: the originator and beneficiary data the travel rule asks for.

The models follow the interVASP Messaging Standard IVMS101 (issue 1, 2020) as its JSON is
written on the wire (camelCase, as in the TRISA protocol buffers, `trisacrypto/trisa`
proto/ivms101/*.proto), so a field here has the spelling a counterparty uses. Every string has
the length bound of its IVMS101 datatype (Max16Text ... Max100Text), every list has a bound, and
an unknown field is refused rather than ignored: a payload that does not parse whole is not stored.

The constraints of the standard that a receiving or sending bank can check on its own are
enforced (C1..C12 are the standard's own numbers for its constraints):

- C1 OriginatorInformationNaturalPerson: a natural-person originator carries a geographic
  address, a customer identification, a national identification or a date and place of birth.
- C2 DateInPast: a date of birth is before today.
- C4 OriginatorInformationLegalPerson: a legal-person originator carries a GEOG address, a
  customer number or a national identification.
- C5 LegalNamePresentLegalPerson, C6 LegalNamePresent: at least one name of type LEGL.
- ValidNationalIdentifierLegalPerson: a legal person's national identifier is RAID, MISC, LEIX
  or TXID.
- C8 ValidAddress: addressLine, or streetName with buildingName and/or buildingNumber.
- C9 CompleteNationalIdentifierLegalPerson: no countryOfIssue for a legal person, and a
  registrationAuthority unless the identifier is an LEI.
- C10 RegistrationAuthority: the GLEIF code format RA followed by six digits (membership of the
  GLEIF list itself is not checked here: that needs the list).
- C11 ValidLEI: an LEIX identifier is an ISO 17442 LEI with valid check digits.

Error messages name the failing field and never repeat a name, an identifier or a date of
birth: they end up in logs, and these are personal data.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from andchain.errors import DomainError

# ISO 3166-1 alpha-2: the 249 officially assigned codes (ISO/TC 46 N1108, 2023-04-05, as
# listed in the tz database's iso3166.tab). IVMS101 also allows "XX" (country unknown); the
# bank refuses it, since a transfer whose parties cannot be placed cannot be screened. User-assigned
# codes such as XK (Kosovo) are not in ISO 3166-1 and are refused too.
_COUNTRY_TABLE: Final = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
"""
COUNTRY_CODES: Final[frozenset[str]] = frozenset(_COUNTRY_TABLE.split())
assert len(COUNTRY_CODES) == 249, f"ISO 3166-1 assigns 249 alpha-2 codes, the list has {len(COUNTRY_CODES)}"

# Bounds on repetition. IVMS101 says "one or more" or "zero or more" without a limit (except
# seven address lines); these limits are far above any real payload and keep a hostile one small.
persons_max: Final = 10
names_max: Final = 10
addresses_max: Final = 10
address_lines_max: Final = 7
account_numbers_max: Final = 20
# How many problems a refusal lists before it says "and N more".
problems_listed_max: Final = 10
# A path component longer than this (an unknown key is the sender's text) is cut.
path_part_chars_max: Final = 40

_LEI = re.compile(r"[0-9A-Z]{18}[0-9]{2}")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class TravelRuleError(DomainError, ValueError):
    """Travel-rule data that is not a valid IVMS101 identity payload.

    `problems` lists (field path, reason) pairs; `fields` the paths alone.
    """

    code = "invalid_travel_rule"
    http_status = 422

    def __init__(self, message: str, problems: list[tuple[str, str]]) -> None:
        super().__init__(message, fields=[path for path, _ in problems])
        self.problems = problems
        self.fields = [path for path, _ in problems]


# ---------------------------------------------------------------- leaf checks (pure)


def lei_is_valid(lei: str) -> bool:
    """Whether `lei` is an ISO 17442 LEI: 18 upper-case letters or digits, then two check digits
    such that the whole, letters read as 10..35, is 1 modulo 97 (ISO 7064 MOD 97-10)."""
    if _LEI.fullmatch(lei) is None:
        return False
    return int("".join(str(int(c, 36)) for c in lei)) % 97 == 1


def _plain_text(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank_text", "must not be blank")
    if _CONTROL.search(value) is not None:
        raise PydanticCustomError("control_characters", "must not contain control characters")
    return value


def _assigned_country(value: str) -> str:
    if value not in COUNTRY_CODES:
        # The value is two upper-case letters by now (the pattern ran first): safe to repeat.
        raise PydanticCustomError(
            "country_code",
            "must be an assigned ISO 3166-1 alpha-2 country code, was {country}",
            {"country": value},
        )
    return value


def _iso_date(value: object) -> date:
    if not isinstance(value, str) or _ISO_DATE.fullmatch(value) is None:
        raise PydanticCustomError("iso_date", "must be an ISO 8601 date written YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("iso_date", "must be a real calendar date written YYYY-MM-DD") from None


_TEXT = AfterValidator(_plain_text)

# IVMS101 datatypes.
Max16Text = Annotated[str, StringConstraints(min_length=1, max_length=16), _TEXT]
Max35Text = Annotated[str, StringConstraints(min_length=1, max_length=35), _TEXT]
Max50Text = Annotated[str, StringConstraints(min_length=1, max_length=50), _TEXT]
Max70Text = Annotated[str, StringConstraints(min_length=1, max_length=70), _TEXT]
Max100Text = Annotated[str, StringConstraints(min_length=1, max_length=100), _TEXT]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$"), AfterValidator(_assigned_country)]
RegistrationAuthority = Annotated[str, StringConstraints(pattern=r"^RA[0-9]{6}$")]
IsoDate = Annotated[date, BeforeValidator(_iso_date)]


# ---------------------------------------------------------------- codes


class NaturalPersonNameTypeCode(StrEnum):
    ALIAS = "ALIA"
    BIRTH = "BIRT"
    MAIDEN = "MAID"
    LEGAL = "LEGL"
    MISC = "MISC"


class LegalPersonNameTypeCode(StrEnum):
    LEGAL = "LEGL"
    SHORT = "SHRT"
    TRADING = "TRAD"


class AddressTypeCode(StrEnum):
    HOME = "HOME"
    BUSINESS = "BIZZ"
    GEOGRAPHIC = "GEOG"


class NationalIdentifierTypeCode(StrEnum):
    ALIEN_REGISTRATION = "ARNU"
    PASSPORT = "CCPT"
    REGISTRATION_AUTHORITY = "RAID"
    DRIVER_LICENSE = "DRLC"
    FOREIGN_INVESTMENT = "FIIN"
    TAX = "TXID"
    SOCIAL_SECURITY = "SOCS"
    IDENTITY_CARD = "IDCD"
    LEI = "LEIX"
    MISC = "MISC"


# The types a legal person's national identifier may have (ValidNationalIdentifierLegalPerson).
LEGAL_PERSON_IDENTIFIER_TYPES: Final = frozenset(
    {
        NationalIdentifierTypeCode.REGISTRATION_AUTHORITY,
        NationalIdentifierTypeCode.MISC,
        NationalIdentifierTypeCode.LEI,
        NationalIdentifierTypeCode.TAX,
    }
)


# ---------------------------------------------------------------- models


class _Model(BaseModel):
    # Strict: a number is not a string, a string is not a list (enum codes excepted, below).
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# JSON carries the codes as strings, which strict mode would refuse for an enum field.
_CODE = Strict(False)


class NaturalPersonNameId(_Model):
    primaryIdentifier: Max100Text
    secondaryIdentifier: Max100Text | None = None
    nameIdentifierType: Annotated[NaturalPersonNameTypeCode, _CODE]


class LegalPersonNameId(_Model):
    legalPersonName: Max100Text
    legalPersonNameIdentifierType: Annotated[LegalPersonNameTypeCode, _CODE]


class NaturalPersonName(_Model):
    nameIdentifier: list[NaturalPersonNameId] = Field(min_length=1, max_length=names_max)
    localNameIdentifier: list[NaturalPersonNameId] = Field(default_factory=list, max_length=names_max)
    phoneticNameIdentifier: list[NaturalPersonNameId] = Field(default_factory=list, max_length=names_max)

    @field_validator("nameIdentifier")
    @classmethod
    def _legal_name_present(cls, names: list[NaturalPersonNameId]) -> list[NaturalPersonNameId]:
        if not any(n.nameIdentifierType is NaturalPersonNameTypeCode.LEGAL for n in names):
            raise PydanticCustomError(
                "legal_name_missing",
                "at least one nameIdentifier must have nameIdentifierType LEGL (IVMS101 C6 LegalNamePresent)",
            )
        return names


class LegalPersonName(_Model):
    nameIdentifier: list[LegalPersonNameId] = Field(min_length=1, max_length=names_max)
    localNameIdentifier: list[LegalPersonNameId] = Field(default_factory=list, max_length=names_max)
    phoneticNameIdentifier: list[LegalPersonNameId] = Field(default_factory=list, max_length=names_max)

    @field_validator("nameIdentifier")
    @classmethod
    def _legal_name_present(cls, names: list[LegalPersonNameId]) -> list[LegalPersonNameId]:
        if not any(n.legalPersonNameIdentifierType is LegalPersonNameTypeCode.LEGAL for n in names):
            raise PydanticCustomError(
                "legal_name_missing",
                "at least one nameIdentifier must have legalPersonNameIdentifierType LEGL"
                " (IVMS101 C5 LegalNamePresentLegalPerson)",
            )
        return names


class Address(_Model):
    addressType: Annotated[AddressTypeCode, _CODE]
    department: Max50Text | None = None
    subDepartment: Max70Text | None = None
    streetName: Max70Text | None = None
    buildingNumber: Max16Text | None = None
    buildingName: Max35Text | None = None
    floor: Max70Text | None = None
    postBox: Max16Text | None = None
    room: Max70Text | None = None
    postCode: Max16Text | None = None
    townName: Max35Text
    townLocationName: Max35Text | None = None
    districtName: Max35Text | None = None
    countrySubDivision: Max35Text | None = None
    addressLine: list[Max70Text] = Field(default_factory=list, max_length=address_lines_max)
    country: CountryCode

    @model_validator(mode="after")
    def _valid_address(self) -> Address:
        structured = self.streetName is not None and (self.buildingName is not None or self.buildingNumber is not None)
        if not self.addressLine and not structured:
            raise PydanticCustomError(
                "invalid_address",
                "needs addressLine, or streetName with buildingName and/or buildingNumber (IVMS101 C8 ValidAddress)",
            )
        return self


class NationalIdentification(_Model):
    nationalIdentifier: Max35Text
    nationalIdentifierType: Annotated[NationalIdentifierTypeCode, _CODE]
    countryOfIssue: CountryCode | None = None
    registrationAuthority: RegistrationAuthority | None = None

    @model_validator(mode="after")
    def _valid_lei(self) -> NationalIdentification:
        if self.nationalIdentifierType is NationalIdentifierTypeCode.LEI and not lei_is_valid(self.nationalIdentifier):
            raise PydanticCustomError(
                "invalid_lei",
                "nationalIdentifier of type LEIX must be an ISO 17442 LEI (18 letters or digits and two"
                " check digits that verify modulo 97) (IVMS101 C11 ValidLEI)",
            )
        return self


class DateAndPlaceOfBirth(_Model):
    dateOfBirth: IsoDate
    placeOfBirth: Max70Text

    @field_validator("dateOfBirth")
    @classmethod
    def _date_in_past(cls, born: date, info: ValidationInfo) -> date:
        today = _today(info)
        if born >= today:
            raise PydanticCustomError(
                "date_not_in_past",
                "must be before today, {today} (IVMS101 C2 DateInPast)",
                {"today": today.isoformat()},
            )
        return born


def _today(info: ValidationInfo) -> date:
    context = info.context
    if isinstance(context, dict) and isinstance(context.get("today"), date):
        today: date = context["today"]
        return today
    return datetime.now(UTC).date()


class NaturalPerson(_Model):
    name: NaturalPersonName
    geographicAddress: list[Address] = Field(default_factory=list, max_length=addresses_max)
    nationalIdentification: NationalIdentification | None = None
    customerIdentification: Max50Text | None = None
    dateAndPlaceOfBirth: DateAndPlaceOfBirth | None = None
    countryOfResidence: CountryCode | None = None


class LegalPerson(_Model):
    name: LegalPersonName
    geographicAddress: list[Address] = Field(default_factory=list, max_length=addresses_max)
    customerNumber: Max50Text | None = None
    nationalIdentification: NationalIdentification | None = None
    countryOfRegistration: CountryCode | None = None

    @model_validator(mode="after")
    def _complete_national_identifier(self) -> LegalPerson:
        ident = self.nationalIdentification
        if ident is None:
            return self
        if ident.nationalIdentifierType not in LEGAL_PERSON_IDENTIFIER_TYPES:
            raise PydanticCustomError(
                "invalid_legal_person_identifier",
                "nationalIdentification.nationalIdentifierType of a legal person must be RAID, MISC, LEIX or TXID,"
                " was {kind} (IVMS101 ValidNationalIdentifierLegalPerson)",
                {"kind": ident.nationalIdentifierType.value},
            )
        if ident.countryOfIssue is not None:
            raise PydanticCustomError(
                "incomplete_legal_person_identifier",
                "nationalIdentification.countryOfIssue must be absent for a legal person"
                " (IVMS101 C9 CompleteNationalIdentifierLegalPerson)",
            )
        if ident.nationalIdentifierType is not NationalIdentifierTypeCode.LEI and ident.registrationAuthority is None:
            raise PydanticCustomError(
                "incomplete_legal_person_identifier",
                "nationalIdentification.registrationAuthority is required unless nationalIdentifierType is LEIX"
                " (IVMS101 C9 CompleteNationalIdentifierLegalPerson)",
            )
        return self


class Person(_Model):
    """Exactly one of a natural person or a legal person."""

    naturalPerson: NaturalPerson | None = None
    legalPerson: LegalPerson | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Person:
        if (self.naturalPerson is None) == (self.legalPerson is None):
            raise PydanticCustomError(
                "person_kind",
                "must have exactly one of naturalPerson or legalPerson, had {had}",
                {"had": "both" if self.naturalPerson is not None else "neither"},
            )
        return self


AccountNumber = Max100Text


def _originator_information_missing(index: int, person: Person) -> str | None:
    """Why the originator person at `index` lacks the information C1/C4 require, or None."""
    natural, legal = person.naturalPerson, person.legalPerson
    if natural is not None and not (
        natural.geographicAddress
        or natural.customerIdentification is not None
        or natural.nationalIdentification is not None
        or natural.dateAndPlaceOfBirth is not None
    ):
        return (
            f"originatorPersons[{index}].naturalPerson needs at least one of geographicAddress,"
            " customerIdentification, nationalIdentification or dateAndPlaceOfBirth"
            " (IVMS101 C1 OriginatorInformationNaturalPerson)"
        )
    if legal is not None and not (
        any(a.addressType is AddressTypeCode.GEOGRAPHIC for a in legal.geographicAddress)
        or legal.customerNumber is not None
        or legal.nationalIdentification is not None
    ):
        return (
            f"originatorPersons[{index}].legalPerson needs at least one of a geographicAddress of type GEOG,"
            " customerNumber or nationalIdentification (IVMS101 C4 OriginatorInformationLegalPerson)"
        )
    return None


class Originator(_Model):
    originatorPersons: list[Person] = Field(min_length=1, max_length=persons_max)
    accountNumber: list[AccountNumber] = Field(default_factory=list, max_length=account_numbers_max)

    @model_validator(mode="after")
    def _originator_information(self) -> Originator:
        missing = [m for i, p in enumerate(self.originatorPersons) if (m := _originator_information_missing(i, p))]
        if missing:
            raise PydanticCustomError("originator_information", "{missing}", {"missing": "; ".join(missing)})
        return self


class Beneficiary(_Model):
    beneficiaryPersons: list[Person] = Field(min_length=1, max_length=persons_max)
    accountNumber: list[AccountNumber] = Field(default_factory=list, max_length=account_numbers_max)


class OriginatingVasp(_Model):
    originatingVASP: Person


class BeneficiaryVasp(_Model):
    beneficiaryVASP: Person


class IdentityPayload(_Model):
    """The IVMS101 identity payload exchanged between VASPs for one transfer."""

    originator: Originator
    beneficiary: Beneficiary
    originatingVASP: OriginatingVasp | None = None
    beneficiaryVASP: BeneficiaryVasp | None = None


# ---------------------------------------------------------------- helpers


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = str(part)
        if len(text) > path_part_chars_max:
            text = text[:path_part_chars_max] + "..."
        out += f".{text}" if out else text
    return out or "(payload)"


def parse_payload(data: object, *, today: date | None = None) -> IdentityPayload:
    """Validate a decoded JSON object as an IVMS101 identity payload.

    `today` is the date a date of birth must precede (C2); by default the current UTC date.
    Raises TravelRuleError listing every failing field; the message never repeats the input.
    """
    context = {"today": today if today is not None else datetime.now(UTC).date()}
    try:
        return IdentityPayload.model_validate(data, context=context)
    except ValidationError as exc:
        problems = [(_path(e["loc"]), e["msg"]) for e in exc.errors(include_input=False, include_url=False)]
    assert problems, "a ValidationError always carries at least one error"
    listed = "; ".join(f"{path}: {msg}" for path, msg in problems[:problems_listed_max])
    more = len(problems) - problems_listed_max
    suffix = f"; and {more} more" if more > 0 else ""
    count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
    raise TravelRuleError(f"invalid travel rule data ({count}): {listed}{suffix}", problems)


def _legal_names(persons: list[Person]) -> list[str]:
    names: list[str] = []
    for person in persons:
        if person.naturalPerson is not None:
            for n in person.naturalPerson.name.nameIdentifier:
                if n.nameIdentifierType is NaturalPersonNameTypeCode.LEGAL:
                    # IVMS101 puts the family name in primaryIdentifier and the given names in
                    # secondaryIdentifier; screening lists write them given names first.
                    given = n.secondaryIdentifier
                    names.append(f"{given} {n.primaryIdentifier}" if given else n.primaryIdentifier)
        elif person.legalPerson is not None:
            names.extend(
                n.legalPersonName
                for n in person.legalPerson.name.nameIdentifier
                if n.legalPersonNameIdentifierType is LegalPersonNameTypeCode.LEGAL
            )
    # Keep the first occurrence of each name, in the payload's order.
    return list(dict.fromkeys(names))


def originator_names(payload: IdentityPayload) -> list[str]:
    """The originators' legal (LEGL) names as plain strings, given names first, to screen."""
    return _legal_names(payload.originator.originatorPersons)


def beneficiary_names(payload: IdentityPayload) -> list[str]:
    """The beneficiaries' legal (LEGL) names as plain strings, given names first, to screen."""
    return _legal_names(payload.beneficiary.beneficiaryPersons)


def canonical_json(payload: IdentityPayload) -> str:
    """One stable text per payload, to store and hash: keys sorted, no whitespace, UTF-8 text,
    absent fields and empty lists left out (so `[]` and a missing list give the same text)."""
    data = payload.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
