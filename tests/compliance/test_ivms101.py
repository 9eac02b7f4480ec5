"""IVMS101 identity payloads: what parses, what is refused and why, names to screen, the stored text."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import date
from typing import Any

import pytest

from andchain.compliance.ivms101 import (
    COUNTRY_CODES,
    IdentityPayload,
    TravelRuleError,
    beneficiary_names,
    canonical_json,
    lei_is_valid,
    originator_names,
    parse_payload,
)
from andchain.errors import DomainError

TODAY = date(2025, 6, 1)
# Real LEIs (GLEIF's own, and another published one): their check digits verify.
GLEIF_LEI = "506700GE1G29325QX363"
OTHER_LEI = "5493001KJTIIGC8Y1R12"


def _bank(name: str, lei: str) -> dict[str, Any]:
    return {
        "legalPerson": {
            "name": {"nameIdentifier": [{"legalPersonName": name, "legalPersonNameIdentifierType": "LEGL"}]},
            "geographicAddress": [
                {
                    "addressType": "GEOG",
                    "streetName": "Main Street",
                    "buildingNumber": "1",
                    "townName": "New York",
                    "country": "US",
                }
            ],
            "nationalIdentification": {"nationalIdentifier": lei, "nationalIdentifierType": "LEIX"},
            "countryOfRegistration": "US",
        }
    }


def natural_payload() -> dict[str, Any]:
    return {
        "originator": {
            "originatorPersons": [
                {
                    "naturalPerson": {
                        "name": {
                            "nameIdentifier": [
                                {
                                    "primaryIdentifier": "Doe",
                                    "secondaryIdentifier": "John",
                                    "nameIdentifierType": "LEGL",
                                },
                                {"primaryIdentifier": "JD", "nameIdentifierType": "ALIA"},
                            ],
                            "localNameIdentifier": [
                                {
                                    "primaryIdentifier": "ドウ",
                                    "secondaryIdentifier": "ジョン",
                                    "nameIdentifierType": "LEGL",
                                }
                            ],
                        },
                        "geographicAddress": [
                            {
                                "addressType": "HOME",
                                "addressLine": ["12 Rue de la Paix"],
                                "townName": "Paris",
                                "country": "FR",
                            }
                        ],
                        "nationalIdentification": {
                            "nationalIdentifier": "12AB34567",
                            "nationalIdentifierType": "CCPT",
                            "countryOfIssue": "FR",
                        },
                        "customerIdentification": "CUST-0001",
                        "dateAndPlaceOfBirth": {"dateOfBirth": "1980-02-29", "placeOfBirth": "Lyon"},
                        "countryOfResidence": "FR",
                    }
                }
            ],
            "accountNumber": ["0x1111111111111111111111111111111111111111"],
        },
        "beneficiary": {
            "beneficiaryPersons": [
                {
                    "naturalPerson": {
                        "name": {
                            "nameIdentifier": [
                                {
                                    "primaryIdentifier": "Smith",
                                    "secondaryIdentifier": "Jane",
                                    "nameIdentifierType": "LEGL",
                                }
                            ]
                        }
                    }
                }
            ],
            "accountNumber": ["0x2222222222222222222222222222222222222222"],
        },
        "originatingVASP": {"originatingVASP": _bank("Andchain Bank N.A.", GLEIF_LEI)},
        "beneficiaryVASP": {"beneficiaryVASP": _bank("Other Exchange Ltd", OTHER_LEI)},
    }


def legal_payload() -> dict[str, Any]:
    return {
        "originator": {
            "originatorPersons": [
                {
                    "legalPerson": {
                        "name": {
                            "nameIdentifier": [
                                {"legalPersonName": "Acme Holdings Inc.", "legalPersonNameIdentifierType": "LEGL"},
                                {"legalPersonName": "Acme", "legalPersonNameIdentifierType": "SHRT"},
                            ]
                        },
                        "geographicAddress": [
                            {
                                "addressType": "GEOG",
                                "streetName": "Bahnhofstrasse",
                                "buildingNumber": "10",
                                "postCode": "8001",
                                "townName": "Zürich",
                                "country": "CH",
                            }
                        ],
                        "customerNumber": "C-778",
                        "nationalIdentification": {
                            "nationalIdentifier": "CHE-123.456.789",
                            "nationalIdentifierType": "RAID",
                            "registrationAuthority": "RA000548",
                        },
                        "countryOfRegistration": "CH",
                    }
                }
            ],
            "accountNumber": ["acct-1"],
        },
        "beneficiary": {
            "beneficiaryPersons": [
                {
                    "legalPerson": {
                        "name": {
                            "nameIdentifier": [
                                {"legalPersonName": "Globex Corporation", "legalPersonNameIdentifierType": "LEGL"}
                            ]
                        },
                        "nationalIdentification": {"nationalIdentifier": OTHER_LEI, "nationalIdentifierType": "LEIX"},
                    }
                }
            ]
        },
        "originatingVASP": {"originatingVASP": _bank("Andchain Bank N.A.", GLEIF_LEI)},
        "beneficiaryVASP": {"beneficiaryVASP": _bank("Other Exchange Ltd", OTHER_LEI)},
    }


def _refusal(data: object) -> TravelRuleError:
    with pytest.raises(TravelRuleError) as caught:
        parse_payload(data, today=TODAY)
    return caught.value


def _natural_originator(data: dict[str, Any]) -> dict[str, Any]:
    person: dict[str, Any] = data["originator"]["originatorPersons"][0]["naturalPerson"]
    return person


ORIGINATOR = "originator.originatorPersons[0]"


# ---------------------------------------------------------------- what parses


def test_a_natural_person_payload_with_vasps_parses():
    payload = parse_payload(natural_payload(), today=TODAY)

    assert isinstance(payload, IdentityPayload)
    person = payload.originator.originatorPersons[0].naturalPerson
    assert person is not None
    assert person.dateAndPlaceOfBirth is not None
    assert person.dateAndPlaceOfBirth.dateOfBirth == date(1980, 2, 29)
    assert payload.originatingVASP is not None
    vasp = payload.originatingVASP.originatingVASP.legalPerson
    assert vasp is not None and vasp.nationalIdentification is not None
    assert vasp.nationalIdentification.nationalIdentifier == GLEIF_LEI


def test_a_legal_person_payload_with_vasps_parses():
    payload = parse_payload(legal_payload(), today=TODAY)

    org = payload.originator.originatorPersons[0].legalPerson
    assert org is not None
    assert org.countryOfRegistration == "CH"
    assert payload.beneficiaryVASP is not None


def test_the_vasps_may_be_left_out():
    data = natural_payload()
    del data["originatingVASP"], data["beneficiaryVASP"]

    payload = parse_payload(data, today=TODAY)

    assert payload.originatingVASP is None and payload.beneficiaryVASP is None


def test_lei_check_digits_follow_iso_17442():
    assert lei_is_valid(GLEIF_LEI)
    assert lei_is_valid(OTHER_LEI)
    assert not lei_is_valid(GLEIF_LEI[:-2] + "64")
    assert not lei_is_valid(GLEIF_LEI.lower())
    assert not lei_is_valid(GLEIF_LEI[:-1])


def test_the_country_list_holds_every_assigned_code_and_no_placeholder():
    assert len(COUNTRY_CODES) == 249
    assert {"US", "FR", "CH", "SS", "AX", "BQ"} <= COUNTRY_CODES
    assert not {"XX", "XK", "UK", "ZZ"} & COUNTRY_CODES


# ---------------------------------------------------------------- what is refused


def test_a_natural_person_without_a_legal_name_is_refused():
    data = natural_payload()
    for name in _natural_originator(data)["name"]["nameIdentifier"]:
        name["nameIdentifierType"] = "ALIA"

    error = _refusal(data)

    assert error.code == "invalid_travel_rule"
    assert f"{ORIGINATOR}.naturalPerson.name.nameIdentifier" in error.fields
    assert "LEGL" in str(error) and "C6" in str(error)


def test_a_legal_person_without_a_legal_name_is_refused():
    data = legal_payload()
    data["beneficiary"]["beneficiaryPersons"][0]["legalPerson"]["name"]["nameIdentifier"][0][
        "legalPersonNameIdentifierType"
    ] = "TRAD"

    error = _refusal(data)

    assert error.fields == ["beneficiary.beneficiaryPersons[0].legalPerson.name.nameIdentifier"]
    assert "C5" in str(error)


def test_a_person_that_is_both_natural_and_legal_is_refused():
    data = natural_payload()
    data["originator"]["originatorPersons"][0]["legalPerson"] = legal_payload()["originator"]["originatorPersons"][0][
        "legalPerson"
    ]

    error = _refusal(data)

    assert error.fields == [ORIGINATOR]
    assert "exactly one of naturalPerson or legalPerson, had both" in str(error)


def test_a_person_that_is_neither_natural_nor_legal_is_refused():
    data = natural_payload()
    data["beneficiary"]["beneficiaryPersons"] = [{}]

    error = _refusal(data)

    assert error.fields == ["beneficiary.beneficiaryPersons[0]"]
    assert "had neither" in str(error)


@pytest.mark.parametrize("country", ["XX", "ZZ", "us", "USA"])
def test_a_country_that_is_not_an_assigned_iso_code_is_refused(country: str):
    data = natural_payload()
    _natural_originator(data)["geographicAddress"][0]["country"] = country

    error = _refusal(data)

    assert error.fields == [f"{ORIGINATOR}.naturalPerson.geographicAddress[0].country"]


def test_an_unknown_country_of_residence_is_refused_and_named():
    data = natural_payload()
    _natural_originator(data)["countryOfResidence"] = "XX"

    error = _refusal(data)

    assert error.fields == [f"{ORIGINATOR}.naturalPerson.countryOfResidence"]
    assert "ISO 3166-1 alpha-2" in str(error) and "was XX" in str(error)


def test_an_lei_with_bad_check_digits_is_refused():
    data = natural_payload()
    ident = data["originatingVASP"]["originatingVASP"]["legalPerson"]["nationalIdentification"]
    ident["nationalIdentifier"] = GLEIF_LEI[:-2] + "00"

    error = _refusal(data)

    assert error.fields == ["originatingVASP.originatingVASP.legalPerson.nationalIdentification"]
    assert "C11" in str(error)
    assert GLEIF_LEI[:-2] not in str(error)


def test_a_date_of_birth_in_the_future_is_refused():
    data = natural_payload()
    _natural_originator(data)["dateAndPlaceOfBirth"]["dateOfBirth"] = "2030-01-01"

    error = _refusal(data)

    assert error.fields == [f"{ORIGINATOR}.naturalPerson.dateAndPlaceOfBirth.dateOfBirth"]
    assert "C2" in str(error)
    assert "2030" not in str(error)


def test_a_date_of_birth_of_today_is_refused():
    data = natural_payload()
    _natural_originator(data)["dateAndPlaceOfBirth"]["dateOfBirth"] = TODAY.isoformat()

    assert _refusal(data).fields == [f"{ORIGINATOR}.naturalPerson.dateAndPlaceOfBirth.dateOfBirth"]


@pytest.mark.parametrize("written", ["01/02/1980", "1980-2-1", "1980-02-30", "1980-02-01T00:00:00", 315532800])
def test_a_date_of_birth_not_written_yyyy_mm_dd_is_refused(written: object):
    data = natural_payload()
    _natural_originator(data)["dateAndPlaceOfBirth"]["dateOfBirth"] = written

    assert _refusal(data).fields == [f"{ORIGINATOR}.naturalPerson.dateAndPlaceOfBirth.dateOfBirth"]


def test_an_unknown_field_is_refused():
    data = natural_payload()
    _natural_originator(data)["favouriteColour"] = "blue"

    error = _refusal(data)

    assert error.fields == [f"{ORIGINATOR}.naturalPerson.favouriteColour"]


def test_an_unknown_top_level_field_with_a_huge_name_is_refused_without_repeating_it():
    data = natural_payload()
    data["k" * 5000] = 1

    error = _refusal(data)

    assert len(str(error)) < 300
    assert error.fields == ["k" * 40 + "..."]


def test_a_ten_thousand_character_name_is_refused_without_repeating_it():
    data = natural_payload()
    _natural_originator(data)["name"]["nameIdentifier"][0]["primaryIdentifier"] = "A" * 10_000

    error = _refusal(data)

    assert error.fields == [f"{ORIGINATOR}.naturalPerson.name.nameIdentifier[0].primaryIdentifier"]
    assert "at most 100 characters" in str(error)
    assert "A" * 101 not in str(error)


def test_an_originator_without_persons_is_refused():
    data = natural_payload()
    data["originator"]["originatorPersons"] = []

    error = _refusal(data)

    assert error.fields == ["originator.originatorPersons"]


def test_an_originator_without_the_persons_field_is_refused():
    data = natural_payload()
    del data["originator"]["originatorPersons"]

    assert _refusal(data).fields == ["originator.originatorPersons"]


def test_a_natural_person_originator_with_only_a_name_is_refused():
    data = natural_payload()
    person = _natural_originator(data)
    for key in ("geographicAddress", "nationalIdentification", "customerIdentification", "dateAndPlaceOfBirth"):
        del person[key]

    error = _refusal(data)

    assert error.fields == ["originator"]
    assert "originatorPersons[0].naturalPerson" in str(error) and "C1" in str(error)


def test_a_natural_person_originator_with_any_one_of_the_c1_fields_parses():
    for kept in ("geographicAddress", "nationalIdentification", "customerIdentification", "dateAndPlaceOfBirth"):
        data = natural_payload()
        person = _natural_originator(data)
        for key in {"geographicAddress", "nationalIdentification", "customerIdentification", "dateAndPlaceOfBirth"} - {
            kept
        }:
            del person[key]

        parse_payload(data, today=TODAY)


def test_a_natural_person_beneficiary_with_only_a_name_parses():
    payload = parse_payload(natural_payload(), today=TODAY)

    assert beneficiary_names(payload) == ["Jane Smith"]


def test_a_legal_person_originator_without_address_number_or_identifier_is_refused():
    data = legal_payload()
    org = data["originator"]["originatorPersons"][0]["legalPerson"]
    del org["customerNumber"], org["nationalIdentification"]
    org["geographicAddress"][0]["addressType"] = "BIZZ"

    error = _refusal(data)

    assert error.fields == ["originator"]
    assert "C4" in str(error)


def test_an_address_without_lines_or_street_and_building_is_refused():
    data = natural_payload()
    address = _natural_originator(data)["geographicAddress"][0]
    address["addressLine"] = []
    address["streetName"] = "Rue de la Paix"

    error = _refusal(data)

    assert error.fields == [f"{ORIGINATOR}.naturalPerson.geographicAddress[0]"]
    assert "C8" in str(error)


def test_an_address_without_a_town_is_refused():
    data = natural_payload()
    del _natural_originator(data)["geographicAddress"][0]["townName"]

    assert _refusal(data).fields == [f"{ORIGINATOR}.naturalPerson.geographicAddress[0].townName"]


def test_an_address_with_more_than_seven_lines_is_refused():
    data = natural_payload()
    _natural_originator(data)["geographicAddress"][0]["addressLine"] = ["line"] * 8

    assert _refusal(data).fields == [f"{ORIGINATOR}.naturalPerson.geographicAddress[0].addressLine"]


def test_a_legal_person_identifier_needs_a_registration_authority_unless_it_is_an_lei():
    data = legal_payload()
    del data["originator"]["originatorPersons"][0]["legalPerson"]["nationalIdentification"]["registrationAuthority"]

    error = _refusal(data)

    assert error.fields == [f"{ORIGINATOR}.legalPerson"]
    assert "C9" in str(error)


def test_a_legal_person_identifier_has_no_country_of_issue():
    data = legal_payload()
    data["originator"]["originatorPersons"][0]["legalPerson"]["nationalIdentification"]["countryOfIssue"] = "CH"

    assert "C9" in str(_refusal(data))


def test_a_legal_person_cannot_carry_a_passport_number():
    data = legal_payload()
    ident = data["originator"]["originatorPersons"][0]["legalPerson"]["nationalIdentification"]
    ident["nationalIdentifierType"] = "CCPT"

    error = _refusal(data)

    assert error.fields == [f"{ORIGINATOR}.legalPerson"]
    assert "RAID, MISC, LEIX or TXID, was CCPT" in str(error)


def test_a_registration_authority_must_be_a_gleif_code():
    data = legal_payload()
    data["originator"]["originatorPersons"][0]["legalPerson"]["nationalIdentification"]["registrationAuthority"] = (
        "Zurich registry"
    )

    assert _refusal(data).fields == [f"{ORIGINATOR}.legalPerson.nationalIdentification.registrationAuthority"]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("nameIdentifier", 0, "nameIdentifierType"), "NICK"),
        (("nameIdentifier", 0, "primaryIdentifier"), 42),
        (("nameIdentifier", 0, "primaryIdentifier"), "   "),
        (("nameIdentifier", 0, "primaryIdentifier"), "Doe\x00"),
    ],
)
def test_a_name_that_is_not_plain_text_of_a_known_type_is_refused(path: tuple[Any, ...], value: object):
    data = natural_payload()
    target: Any = _natural_originator(data)["name"]
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value

    error = _refusal(data)

    assert error.fields == [f"{ORIGINATOR}.naturalPerson.name.nameIdentifier[0].{path[-1]}"]


@pytest.mark.parametrize("data", [None, [], "payload", 7])
def test_something_other_than_an_object_is_refused(data: object):
    error = _refusal(data)

    assert error.fields == ["(payload)"]


def test_every_problem_is_listed_at_once():
    data = natural_payload()
    _natural_originator(data)["countryOfResidence"] = "XX"
    data["beneficiary"]["beneficiaryPersons"] = []

    error = _refusal(data)

    assert set(error.fields) == {"beneficiary.beneficiaryPersons", f"{ORIGINATOR}.naturalPerson.countryOfResidence"}
    assert "2 problems" in str(error)


def test_a_refusal_is_a_domain_error_and_a_value_error_that_never_repeats_personal_data():
    data = natural_payload()
    _natural_originator(data)["dateAndPlaceOfBirth"]["dateOfBirth"] = "2999-12-31"
    _natural_originator(data)["name"]["nameIdentifier"][0]["nameIdentifierType"] = "MISC"

    error = _refusal(data)

    assert isinstance(error, DomainError) and isinstance(error, ValueError)
    assert error.http_status == 422
    assert error.details["fields"] == error.fields
    for secret in ("Doe", "John", "12AB34567", "2999", "Lyon", "CUST-0001"):
        assert secret not in str(error)


# ---------------------------------------------------------------- names to screen


def test_originator_names_are_the_legal_names_given_names_first():
    payload = parse_payload(natural_payload(), today=TODAY)

    assert originator_names(payload) == ["John Doe"]


def test_legal_person_names_are_their_legal_names_only():
    payload = parse_payload(legal_payload(), today=TODAY)

    assert originator_names(payload) == ["Acme Holdings Inc."]
    assert beneficiary_names(payload) == ["Globex Corporation"]


def test_every_person_and_legal_name_is_listed_once_in_order():
    data = natural_payload()
    names = _natural_originator(data)["name"]["nameIdentifier"]
    names.append({"primaryIdentifier": "Roe", "secondaryIdentifier": "John", "nameIdentifierType": "LEGL"})
    names.append({"primaryIdentifier": "Doe", "secondaryIdentifier": "John", "nameIdentifierType": "LEGL"})
    names.append({"primaryIdentifier": "Madonna", "nameIdentifierType": "LEGL"})
    data["originator"]["originatorPersons"].append(legal_payload()["originator"]["originatorPersons"][0])

    payload = parse_payload(data, today=TODAY)

    assert originator_names(payload) == ["John Doe", "John Roe", "Madonna", "Acme Holdings Inc."]


# ---------------------------------------------------------------- the stored text


def test_canonical_json_is_sorted_compact_and_parses_back_to_the_same_payload():
    payload = parse_payload(natural_payload(), today=TODAY)

    text = canonical_json(payload)

    assert "\n" not in text and '": ' not in text and '", "' not in text
    assert text.startswith('{"beneficiary":{"accountNumber":')
    assert "ドウ" in text
    assert "null" not in text
    decoded = json.loads(text)
    assert json.dumps(decoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False) == text
    assert parse_payload(decoded, today=TODAY) == payload
    assert canonical_json(parse_payload(decoded, today=TODAY)) == text


def test_canonical_json_does_not_depend_on_key_order_or_empty_lists():
    data = legal_payload()
    reordered = json.loads(json.dumps(data, sort_keys=True))
    reordered = dict(reversed(list(reordered.items())))
    with_empty_lists = copy.deepcopy(data)
    with_empty_lists["beneficiary"]["accountNumber"] = []
    with_empty_lists["originator"]["originatorPersons"][0]["legalPerson"]["name"]["localNameIdentifier"] = []

    texts = {canonical_json(parse_payload(d, today=TODAY)) for d in (data, reordered, with_empty_lists)}

    assert len(texts) == 1
    digest = hashlib.sha256(texts.pop().encode()).hexdigest()
    assert digest == hashlib.sha256(canonical_json(parse_payload(legal_payload(), today=TODAY)).encode()).hexdigest()


def test_canonical_json_keeps_the_ivms101_field_names():
    text = canonical_json(parse_payload(natural_payload(), today=TODAY))

    for field in (
        '"originatorPersons"',
        '"beneficiaryPersons"',
        '"originatingVASP":{"originatingVASP"',
        '"beneficiaryVASP":{"beneficiaryVASP"',
        '"nameIdentifierType":"LEGL"',
        '"dateOfBirth":"1980-02-29"',
        '"nationalIdentifierType":"LEIX"',
    ):
        assert field in text
