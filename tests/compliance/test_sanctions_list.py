from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from andchain.compliance.sanctions_list import (
    BITCOIN,
    EVM,
    TRON,
    AddressIndex,
    DigitalAddress,
    NameMatcher,
    SanctionsList,
    SanctionsListError,
    SdnEntry,
    chain_of_address,
    diff,
    load_list,
    normalize_name,
)

FIXTURES = Path(__file__).parent / "fixtures" / "ofac"
CSV_DIR = FIXTURES / "csv"
XML_DIR = FIXTURES / "xml"

PAVEL_ETH = "0x7F3a9b2C4d5E6f708192A3b4C5d6E7f8091a2B3c"
PAVEL_XBT = "1PZ3vKq8Ht5mWn4Rx7Cj2Ya9Ds6Fg3Bu1"
PAVEL_BECH32 = "bc1qpzry9x8gf2tvdw0s3jn54khce6mua7lqpzry9x8"
NORTHWIND_USDC = "0x2b5e8f1a9c3d7e6b4a0f1e2d3c4b5a6978695a4b"
HELIX_ETH = "0x4e2f9a3b1c5d7e8f9a0b1c2d3e4f5a6b7c8d9e0f"
HELIX_USDT_TRON = "TRk4Jm8Pq2Ws6Xn9Cv3Bz7Hd5Fg1Lt4Yab"

SDN_ROW = '{uid},"{name}",-0- ,"CYBER2",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,"{remarks}"'


@pytest.fixture(scope="module")
def csv_list() -> SanctionsList:
    return load_list(CSV_DIR)


@pytest.fixture(scope="module")
def xml_list() -> SanctionsList:
    return load_list(XML_DIR)


def _copy_csv_set(target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for source in CSV_DIR.iterdir():
        shutil.copy(source, target / source.name)
    return target


def _write_lines(path: Path, lines: list[str], encoding: str = "ascii") -> None:
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_bytes().decode("cp1252").rstrip("\x1a\r\n").split("\r\n") if line]


def _minimal_set(directory: Path, sdn_lines: list[str], comment_lines: list[str] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    _write_lines(directory / "sdn.csv", sdn_lines)
    _write_lines(directory / "alt.csv", [])
    if comment_lines is not None:
        _write_lines(directory / "sdn_comments.csv", comment_lines)
    return directory


# --- Loading both formats -------------------------------------------------------------------


def test_csv_and_xml_give_the_same_entries_and_digest(csv_list: SanctionsList, xml_list: SanctionsList) -> None:
    assert csv_list.source_format == "csv"
    assert xml_list.source_format == "xml"
    assert [e.uid for e in csv_list.entries] == ["90001", "90002", "90003", "90004", "90005", "90006"]
    assert csv_list.entries == xml_list.entries
    assert csv_list.digest == xml_list.digest


def test_the_entries_carry_kind_programs_and_aliases(csv_list: SanctionsList) -> None:
    pavel = csv_list.by_uid["90001"]
    assert pavel.name == "ZAKHAROV, Pavel Igorevich"
    assert pavel.kind == "individual"
    assert pavel.programs == ("CYBER2", "RUSSIA-EO14024")
    assert pavel.aliases == ("ZAHAROV, Pavel",)
    orion = csv_list.by_uid["90003"]
    assert orion.kind == "entity"
    # The accented alias came from a Windows-1252 alt.csv that ends with a Ctrl-Z line.
    assert orion.aliases == ("ORION MARINE HOLDINGS", "ORION SHIPPING GROUP", "ORIÓN MARÍTIMA S.A.")
    falcon = csv_list.by_uid["90004"]
    assert (falcon.kind, falcon.aliases) == ("vessel", ("OCEAN FALCON",))


def test_weak_aliases_and_non_latin_names_are_left_out_of_both_formats(xml_list: SanctionsList) -> None:
    pavel = xml_list.by_uid["90001"]
    assert "PAVLIK" not in pavel.aliases
    assert all(name.isascii() for name in (pavel.name, *pavel.aliases))


def test_a_null_field_reads_as_empty(csv_list: SanctionsList) -> None:
    quiet = csv_list.by_uid["90005"]
    assert quiet == SdnEntry(
        uid="90005", name="QUIET HOLLOW TRADING CO.", kind="entity", programs=(), aliases=(), addresses=()
    )


def test_digital_addresses_are_read_from_the_remarks(csv_list: SanctionsList) -> None:
    assert csv_list.by_uid["90001"].addresses == (
        DigitalAddress("ETH", PAVEL_ETH),
        DigitalAddress("XBT", PAVEL_XBT),
        DigitalAddress("XBT", PAVEL_BECH32),
    )
    assert csv_list.by_uid["90002"].addresses == (DigitalAddress("USDC", NORTHWIND_USDC),)


def test_remarks_continued_in_sdn_comments_give_the_address_cut_in_two(csv_list: SanctionsList) -> None:
    helix = csv_list.by_uid["90006"]
    assert DigitalAddress("ETH", HELIX_ETH) in helix.addresses
    assert DigitalAddress("USDT", HELIX_USDT_TRON) in helix.addresses
    assert len(helix.addresses) == 4


def test_a_remarks_cut_next_to_a_space_keeps_the_space(tmp_path: Path) -> None:
    directory = _minimal_set(
        tmp_path / "set",
        [SDN_ROW.format(uid="1", name="CUT LTD", remarks="Website cut.example; Digital Currency")],
        [f'1," Address - ETH {HELIX_ETH}."'],
    )
    assert load_list(directory).by_uid["1"].addresses == (DigitalAddress("ETH", HELIX_ETH),)


def test_a_utf8_set_and_its_windows_1252_copy_load_the_same(tmp_path: Path) -> None:
    lines = _lines(CSV_DIR / "alt.csv")
    utf8 = _copy_csv_set(tmp_path / "utf8")
    _write_lines(utf8 / "alt.csv", lines, encoding="utf-8")
    assert load_list(utf8).digest == load_list(CSV_DIR).digest


# --- Fingerprints and diffs -----------------------------------------------------------------


def test_rows_in_another_order_give_the_same_digest_and_an_empty_diff(tmp_path: Path, csv_list: SanctionsList) -> None:
    reordered = _copy_csv_set(tmp_path / "reordered")
    for name in ("sdn.csv", "alt.csv", "add.csv"):
        _write_lines(reordered / name, list(reversed(_lines(CSV_DIR / name))), encoding="cp1252")
    again = load_list(reordered)
    assert again.digest == csv_list.digest
    assert diff(csv_list.hashes, again).is_empty


def test_the_order_of_aliases_and_addresses_never_changes_the_content_hash() -> None:
    one = SdnEntry(
        uid="7",
        name="A B C",
        kind="entity",
        programs=("SDGT", "CYBER2"),
        aliases=("Y", "X"),
        addresses=(DigitalAddress("ETH", HELIX_ETH), DigitalAddress("XBT", PAVEL_XBT)),
    )
    other = SdnEntry(
        uid="7",
        name="A B C",
        kind="entity",
        programs=("CYBER2", "SDGT"),
        aliases=("X", "Y"),
        addresses=(DigitalAddress("XBT", PAVEL_XBT), DigitalAddress("ETH", HELIX_ETH)),
    )
    assert one.content_hash == other.content_hash


def test_the_diff_shows_added_removed_and_changed_entries(tmp_path: Path, csv_list: SanctionsList) -> None:
    changed = _copy_csv_set(tmp_path / "changed")
    sdn = [line for line in _lines(CSV_DIR / "sdn.csv") if not line.startswith("90005,")]
    sdn = [line.replace('"IRAN"', '"IRAN] [SDGT"') if line.startswith("90004,") else line for line in sdn]
    sdn.append(
        SDN_ROW.format(uid="90007", name="NEW MIXER LTD", remarks=f"Digital Currency Address - ETH {HELIX_ETH}.")
    )
    _write_lines(changed / "sdn.csv", sdn)
    new = load_list(changed)
    result = diff(csv_list.hashes, new)
    assert result.added == ("90007",)
    assert result.removed == ("90005",)
    assert result.changed == ("90004",)
    assert new.digest != csv_list.digest


def test_an_empty_store_sees_every_entry_as_added(csv_list: SanctionsList) -> None:
    result = diff({}, csv_list)
    assert result.added == tuple(e.uid for e in csv_list.entries)
    assert result.removed == result.changed == ()


# --- Addresses ------------------------------------------------------------------------------


def test_addresses_are_classified_by_family() -> None:
    assert chain_of_address("ETH", PAVEL_ETH) == EVM
    assert chain_of_address("USDC", NORTHWIND_USDC) == EVM
    assert chain_of_address("USDT", NORTHWIND_USDC) == EVM
    assert chain_of_address("XBT", PAVEL_XBT) == BITCOIN
    assert chain_of_address("USDT", HELIX_USDT_TRON) == TRON
    assert chain_of_address("TRX", "TXyzPq8W3mNk5Rj7Ht2Vc9Bf4Gd6Ls1Ae8") == TRON
    assert chain_of_address("XMR", "4" + "A" * 94) == "xmr"


def test_an_evm_address_matches_in_any_case_within_the_evm_family_only(csv_list: SanctionsList) -> None:
    index = AddressIndex.build(csv_list.entries)
    assert index.lookup(EVM, PAVEL_ETH) == ("90001",)
    assert index.lookup(EVM, PAVEL_ETH.lower()) == ("90001",)
    assert index.lookup(EVM, "0x" + PAVEL_ETH[2:].upper()) == ("90001",)
    # USDC listed an EVM address: the same key controls it on every EVM network.
    assert index.lookup(EVM, NORTHWIND_USDC.upper().replace("0X", "0x")) == ("90002",)
    assert index.lookup("eth", PAVEL_ETH) == ()
    assert index.lookup(BITCOIN, PAVEL_ETH) == ()


def test_a_base58_bitcoin_address_matches_only_in_its_exact_case(csv_list: SanctionsList) -> None:
    index = AddressIndex.build(csv_list.entries)
    assert index.lookup(BITCOIN, PAVEL_XBT) == ("90001",)
    assert index.lookup(BITCOIN, PAVEL_XBT.lower()) == ()
    assert index.lookup(BITCOIN, PAVEL_XBT.swapcase()) == ()


def test_a_bech32_bitcoin_address_matches_in_any_case(csv_list: SanctionsList) -> None:
    index = AddressIndex.build(csv_list.entries)
    assert index.lookup(BITCOIN, PAVEL_BECH32.upper()) == ("90001",)


def test_an_address_lookup_is_exact_not_a_prefix_or_a_near_miss(csv_list: SanctionsList) -> None:
    index = AddressIndex.build(csv_list.entries)
    assert index.lookup(EVM, PAVEL_ETH[:-1]) == ()
    assert index.lookup(EVM, PAVEL_ETH[:-1] + "d") == ()
    assert index.lookup(BITCOIN, PAVEL_XBT + "1") == ()


def test_a_tron_address_listed_under_usdt_is_found_in_the_tron_family(csv_list: SanctionsList) -> None:
    index = AddressIndex.build(csv_list.entries)
    assert index.lookup(TRON, HELIX_USDT_TRON) == ("90006",)
    assert index.lookup("usdt", HELIX_USDT_TRON) == ()


# --- Names ----------------------------------------------------------------------------------


def test_normalize_name_drops_accents_punctuation_and_extra_spaces() -> None:
    assert normalize_name("  Ñúñez-Ruiz,   José  ") == "NUNEZ RUIZ JOSE"
    assert normalize_name("ORIÓN MARÍTIMA S.A.") == "ORION MARITIMA S A"
    assert normalize_name("Søren Straße") == "SOREN STRASSE"


def test_a_misspelt_name_is_matched(csv_list: SanctionsList) -> None:
    matcher = NameMatcher.build(csv_list.entries)
    found = matcher.match("Northwind Digital Exchang LLC", 85)
    assert [m.uid for m in found] == ["90002"]
    assert 85 <= found[0].score < 100


def test_an_individual_is_matched_with_first_name_first(csv_list: SanctionsList) -> None:
    matcher = NameMatcher.build(csv_list.entries)
    found = matcher.match("Pavel Igorevich Zakharov", 85)
    assert [(m.uid, m.matched, m.score) for m in found] == [("90001", "ZAKHAROV, Pavel Igorevich", 100)]


def test_an_alias_is_matched_and_reported(csv_list: SanctionsList) -> None:
    matcher = NameMatcher.build(csv_list.entries)
    found = matcher.match("Orion Maritima SA", 85)
    assert [(m.uid, m.matched) for m in found] == [("90003", "ORIÓN MARÍTIMA S.A.")]


def test_each_entry_appears_once_with_its_best_name(csv_list: SanctionsList) -> None:
    matcher = NameMatcher.build(csv_list.entries)
    found = matcher.match("Pavel Zaharov", 60)
    assert [m.uid for m in found] == ["90001"]
    assert found[0].matched == "ZAHAROV, Pavel"


def test_an_unrelated_name_is_not_matched(csv_list: SanctionsList) -> None:
    matcher = NameMatcher.build(csv_list.entries)
    assert matcher.match("Maria Fernanda Oliveira", 85) == []
    assert matcher.match("Global Bank", 85) == []


def test_a_name_of_two_letters_matches_nothing(csv_list: SanctionsList) -> None:
    entries = (*csv_list.entries, SdnEntry(uid="1", name="AL", kind="entity", programs=(), aliases=(), addresses=()))
    matcher = NameMatcher.build(entries)
    assert matcher.match("AL", 1) == []
    assert matcher.match("a.l.", 1) == []


def test_a_threshold_out_of_range_is_refused(csv_list: SanctionsList) -> None:
    matcher = NameMatcher.build(csv_list.entries)
    with pytest.raises(ValueError, match=r"^threshold must be within 1\.\.100, was 0$"):
        matcher.match("SEA FALCON", 0)


# --- Refusals -------------------------------------------------------------------------------


def test_a_row_with_a_missing_column_is_refused_with_its_line(tmp_path: Path) -> None:
    broken = _copy_csv_set(tmp_path / "broken")
    sdn = _lines(CSV_DIR / "sdn.csv")
    sdn[2] = sdn[2].rsplit(",", 1)[0]
    _write_lines(broken / "sdn.csv", sdn)
    with pytest.raises(SanctionsListError, match=r"^sdn\.csv line 3: expected 12 columns, found 11$"):
        load_list(broken)


def test_an_empty_sdn_csv_is_refused_rather_than_read_as_an_empty_list(tmp_path: Path) -> None:
    directory = _copy_csv_set(tmp_path / "empty")
    (directory / "sdn.csv").write_bytes(b"\x1a")
    (directory / "sdn_comments.csv").unlink()
    (directory / "alt.csv").write_bytes(b"")
    (directory / "add.csv").unlink()
    with pytest.raises(SanctionsListError, match=r"^sdn\.csv: expected at least one entry, found none$"):
        load_list(directory)


def test_an_xml_without_parties_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "sdn_advanced.xml"
    empty.write_text(
        '<?xml version="1.0"?>\n<Sanctions xmlns="urn:any"><DistinctParties/></Sanctions>\n', encoding="utf-8"
    )
    with pytest.raises(SanctionsListError, match=r"^sdn_advanced\.xml: expected at least one entry, found none$"):
        load_list(tmp_path)


def test_an_unknown_sdn_type_is_refused(tmp_path: Path) -> None:
    directory = _minimal_set(tmp_path / "set", ['1,"X Y Z","company","SDGT",-0-,-0-,-0-,-0-,-0-,-0-,-0-,-0-'])
    with pytest.raises(SanctionsListError, match=r"expected an SDN_Type of individual, vessel, aircraft or -0-"):
        load_list(directory)


def test_an_alias_of_an_unknown_entry_is_refused(tmp_path: Path) -> None:
    directory = _minimal_set(tmp_path / "set", [SDN_ROW.format(uid="1", name="X Y Z", remarks="-0-")])
    _write_lines(directory / "alt.csv", ['2,1,"aka","OTHER",-0-'])
    with pytest.raises(SanctionsListError, match=r"^alt\.csv line 1: expected an ent_num of sdn\.csv, found 2$"):
        load_list(directory)


def test_a_mention_of_an_address_without_one_is_refused(tmp_path: Path) -> None:
    directory = _minimal_set(
        tmp_path / "set", [SDN_ROW.format(uid="1", name="X Y Z", remarks="Digital Currency Address - see below.")]
    )
    with pytest.raises(SanctionsListError, match=r"expected a digital currency address"):
        load_list(directory)


def test_a_set_without_alt_csv_is_refused(tmp_path: Path) -> None:
    directory = _copy_csv_set(tmp_path / "no-alt")
    (directory / "alt.csv").unlink()
    with pytest.raises(SanctionsListError, match=r"^alt\.csv: expected a readable file, found"):
        load_list(directory)


def test_xml_that_is_not_well_formed_is_refused_with_its_line(tmp_path: Path) -> None:
    text = (XML_DIR / "sdn_advanced.xml").read_text(encoding="utf-8")
    broken = tmp_path / "sdn_advanced.xml"
    broken.write_text(text.replace("</DistinctParty>", "</DistinctPart>", 1), encoding="utf-8")
    with pytest.raises(SanctionsListError, match=r"^sdn_advanced\.xml line [0-9]+: expected well-formed XML, found: "):
        load_list(broken)


def test_xml_with_a_doctype_and_an_external_entity_is_refused_unread(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET", encoding="utf-8")
    hostile = tmp_path / "hostile.xml"
    hostile.write_text(
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE Sanctions [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
        '<Sanctions xmlns="https://sanctionslistservice.ofac.treas.gov/api/PublicationPreview/exports/ADVANCED_XML">'
        '<DistinctParties><DistinctParty FixedRef="1"><Comment>&xxe;</Comment></DistinctParty></DistinctParties>'
        "</Sanctions>\n",
        encoding="utf-8",
    )
    with pytest.raises(SanctionsListError, match=r"^hostile\.xml line 3: expected no DOCTYPE") as refused:
        load_list(hostile)
    assert "SECRET" not in str(refused.value)


def test_xml_with_another_root_element_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.xml"
    other.write_text('<?xml version="1.0"?>\n<sdnList><sdnEntry/></sdnList>\n', encoding="utf-8")
    with pytest.raises(
        SanctionsListError, match=r"^other\.xml line 2: expected the root element Sanctions, found 'sdnList'$"
    ):
        load_list(other)


def test_a_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SanctionsListError, match=r"found nothing at that path$"):
        load_list(tmp_path / "nowhere")


def test_a_directory_without_the_list_is_refused_with_what_it_holds(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("x", encoding="utf-8")
    with pytest.raises(
        SanctionsListError, match=r"expected a directory holding sdn\.csv or sdn_advanced\.xml, found readme\.txt$"
    ):
        load_list(tmp_path)


def test_a_file_that_is_neither_format_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "sdn.txt"
    other.write_text("x", encoding="utf-8")
    with pytest.raises(SanctionsListError, match=r"found the file sdn\.txt$"):
        load_list(other)
