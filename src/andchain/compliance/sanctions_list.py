"""The OFAC SDN list: load it, fingerprint it, diff it, and screen addresses and names against it.

Pure parsing and in-memory indexes: no database and no network. The caller keeps what it needs
between loads (the `uid -> content_hash` map of the last list, for `diff`) and decides what a
match means (block, hold for review); this module only answers exactly what the list says.

Two published formats are read, and both give the same `SdnEntry` values for the same list:

- the CSV set in a directory: `sdn.csv`, `alt.csv`, optionally `add.csv` and `sdn_comments.csv`
  (no header rows; `-0-` is an empty field; digital currency addresses live in the remarks);
- the advanced XML (`sdn_advanced.xml`), where addresses are `Digital Currency Address - XXX`
  features of a party's profile and programs are the comments of its sanctions measures.

Weak aliases (low-quality a.k.a.s) are left out of both: the CSV set carries them only as free
text in the remarks and the XML marks them `LowQuality="true"`, and OFAC describes them as broad
aliases that raise many false hits and does not require screening against them. Names in
non-Latin scripts, which only the XML carries, are left out too, so that both formats describe
one entry with the same content hash.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final

from lxml import etree
from rapidfuzz import fuzz, process

# The real files are a few MB (CSV) and about a hundred MB (advanced XML); the bound leaves room
# for growth and still refuses something that is not the list before it fills memory.
FILE_BYTES_MAX: Final = 200 * 1024 * 1024
# The SDN list holds about 18,000 entries; five times that is not the list.
ENTRIES_MAX: Final = 100_000
# alt.csv, the longest of the CSV set, has about 20,000 rows.
CSV_ROWS_MAX: Final = 1_000_000
# A name match returns at most this many entries unless the caller asks for another bound.
MATCHES_MAX: Final = 50
# A name must keep this many letters or digits after normalization to be screened at all: a
# shorter one ("AL", "LI") says too little about a person and matches only by accident.
NAME_CHARACTERS_MIN: Final = 3
# The recommended threshold for `NameMatcher.match`, on the 0-100 scale of token_sort_ratio.
# One wrong letter in a name of seven letters or more scores at least 85.7 and is caught; names
# that share only a token or two ("BANK" against "BANK MELLI IRAN": 42) stay well below it.
NAME_THRESHOLD_DEFAULT: Final = 85

KINDS: Final = ("individual", "entity", "vessel", "aircraft")
SOURCE_FORMATS: Final = ("csv", "xml")

# Address families for `AddressIndex.lookup`. An EVM key controls the same address on every EVM
# network (Ethereum, Base, the bank's chain...), so EVM addresses are one family whatever the
# currency OFAC listed them under.
EVM: Final = "evm"
BITCOIN: Final = "bitcoin"
TRON: Final = "trx"

_CSV_COLUMNS: Final = {"sdn.csv": 12, "add.csv": 6, "alt.csv": 5, "sdn_comments.csv": 2}
_NULL: Final = "-0-"
# The DOS end-of-file marker (Ctrl-Z) that some published copies end with.
_EOF_MARKER: Final = "\x1a"

# Digits are spelled [0-9], never \d, which matches every Unicode decimal digit.
_UID_RE: Final = re.compile(r"[0-9]{1,12}", re.ASCII)
_CURRENCY_RE: Final = re.compile(r"[A-Z0-9]{2,10}", re.ASCII)
# Addresses in the formats OFAC lists (base58, bech32, hex, Monero, XRP, CashAddr without its
# prefix) are letters and digits only; anything else means the remarks were read wrong.
_ADDRESS_RE: Final = re.compile(r"[A-Za-z0-9]{10,128}", re.ASCII)
_EVM_ADDRESS_RE: Final = re.compile(r"0x[0-9a-fA-F]{40}", re.ASCII)
_TRON_ADDRESS_RE: Final = re.compile(r"T[1-9A-HJ-NP-Za-km-z]{33}", re.ASCII)
_BECH32_PREFIXES: Final = ("bc1", "tb1", "bcrt1")
# Tron and the stablecoins issued on Tron: a Tron-format address under one of them is controlled
# by a Tron key, whatever token OFAC saw moving through it, so it is screened with Tron transfers.
_TRON_CURRENCIES: Final = frozenset({"TRX", "USDT", "USDC"})
_BITCOIN_CURRENCIES: Final = frozenset({"XBT", "BTC"})
_DCA_PHRASE: Final = "Digital Currency Address"
_DCA_RE: Final = re.compile(r"Digital Currency Address - (?P<currency>\S+)\s+(?P<address>[^\s;]+)")
_PROGRAM_SPLIT_RE: Final = re.compile(r"\]\s*\[|;")

# Fallback identifiers of the advanced XML's reference values, used only when a file leaves its
# ReferenceValueSets out; a file that has them is always read through them.
_PARTY_SUBTYPE_FALLBACK: Final = {"1": "vessel", "2": "aircraft", "3": "entity", "4": "individual"}
_LAST_NAME_TYPE_FALLBACK: Final = frozenset({"1520"})
_LATIN_SCRIPT_FALLBACK: Final = frozenset({"215"})
_PROGRAM_SANCTIONS_TYPE_FALLBACK: Final = frozenset({"1"})

# Letters that NFKD does not decompose into a base letter and an accent.
_FOLD: Final = str.maketrans(
    {"ß": "SS", "Æ": "AE", "æ": "AE", "Œ": "OE", "œ": "OE", "Ø": "O", "ø": "O", "Đ": "D", "đ": "D",
     "Ł": "L", "ł": "L", "Þ": "TH", "þ": "TH", "ı": "I"}
)  # fmt: skip
_NOT_A_NAME_CHARACTER_RE: Final = re.compile(r"[\W_]+")


class SanctionsListError(ValueError):
    """A file that is not the SDN list in a format this module reads, with where and why."""


@dataclass(frozen=True, slots=True, order=True)
class DigitalAddress:
    """A digital currency address as OFAC lists it: the currency code and the address, unchanged."""

    currency: str
    address: str

    def __post_init__(self) -> None:
        if not _CURRENCY_RE.fullmatch(self.currency):
            raise ValueError(f"currency must be 2-10 upper-case letters or digits, was {self.currency!r}")
        if not _ADDRESS_RE.fullmatch(self.address):
            raise ValueError(f"address must be 10-128 letters or digits, was {self.address!r}")

    @property
    def chain(self) -> str:
        return chain_of_address(self.currency, self.address)


@dataclass(frozen=True, slots=True)
class SdnEntry:
    """One party of the list. Its tuples are kept sorted and without repeats, whatever the order
    of the rows it came from, so that equal content always compares and hashes equal."""

    uid: str
    name: str
    kind: str
    programs: tuple[str, ...]
    aliases: tuple[str, ...]
    addresses: tuple[DigitalAddress, ...]

    def __post_init__(self) -> None:
        if not _UID_RE.fullmatch(self.uid):
            raise ValueError(f"uid must be 1-12 digits, was {self.uid!r}")
        if not self.name.strip():
            raise ValueError(f"name of entry {self.uid} must not be empty")
        if self.kind not in KINDS:
            raise ValueError(f"kind of entry {self.uid} must be one of {', '.join(KINDS)}, was {self.kind!r}")
        for label, values in (("program", self.programs), ("alias", self.aliases)):
            for value in values:
                if not value.strip():
                    raise ValueError(f"{label} of entry {self.uid} must not be empty")
        object.__setattr__(self, "programs", tuple(sorted(set(self.programs))))
        object.__setattr__(self, "aliases", tuple(sorted(set(self.aliases))))
        object.__setattr__(self, "addresses", tuple(sorted(set(self.addresses))))

    @property
    def content_hash(self) -> str:
        """SHA-256 (hex) of the entry's canonical JSON: what `diff` compares between two lists."""
        canonical = {
            "uid": self.uid,
            "name": self.name,
            "kind": self.kind,
            # Sorted again here, not only at construction, so the hash never depends on an order.
            "programs": sorted(self.programs),
            "aliases": sorted(self.aliases),
            "addresses": sorted([a.currency, a.address] for a in self.addresses),
        }
        text = json.dumps(canonical, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _uid_order(uid: str) -> tuple[int, int, str]:
    # Numeric uids in numeric order (so 999 comes before 1000), anything else after them.
    return (0, int(uid), uid) if _UID_RE.fullmatch(uid) else (1, 0, uid)


@dataclass(frozen=True, slots=True)
class SanctionsList:
    """A loaded list: its entries in uid order, the format it was read from, and its fingerprints."""

    entries: tuple[SdnEntry, ...]
    source_format: str
    hashes: Mapping[str, str] = field(init=False, repr=False, compare=False)
    digest: str = field(init=False, repr=False, compare=False)
    _by_uid: Mapping[str, SdnEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.source_format not in SOURCE_FORMATS:
            raise ValueError(f"source_format must be one of {', '.join(SOURCE_FORMATS)}, was {self.source_format!r}")
        if len(self.entries) > ENTRIES_MAX:
            raise ValueError(f"a list holds at most {ENTRIES_MAX} entries, was {len(self.entries)}")
        entries = tuple(sorted(self.entries, key=lambda e: _uid_order(e.uid)))
        by_uid: dict[str, SdnEntry] = {}
        for entry in entries:
            if entry.uid in by_uid:
                raise ValueError(f"uid {entry.uid} appears twice in the list")
            by_uid[entry.uid] = entry
        hashes = {entry.uid: entry.content_hash for entry in entries}
        # The digest is over (uid, content_hash) pairs in uid order: the same content read from
        # rows in another order, or from the other format, gives the same digest.
        lines = "".join(f"{uid} {content_hash}\n" for uid, content_hash in hashes.items())
        object.__setattr__(self, "entries", entries)
        object.__setattr__(self, "_by_uid", MappingProxyType(by_uid))
        object.__setattr__(self, "hashes", MappingProxyType(hashes))
        object.__setattr__(self, "digest", hashlib.sha256(lines.encode("ascii")).hexdigest())

    @property
    def by_uid(self) -> Mapping[str, SdnEntry]:
        return self._by_uid

    def __len__(self) -> int:
        return len(self.entries)


@dataclass(frozen=True, slots=True)
class ListDiff:
    """What changed between the stored list and a new one, each tuple in uid order."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def diff(old: Mapping[str, str], new: SanctionsList) -> ListDiff:
    """Compare the `uid -> content_hash` map the caller stored from the previous load with a new list."""
    new_hashes = new.hashes
    added = [uid for uid in new_hashes if uid not in old]
    removed = [uid for uid in old if uid not in new_hashes]
    changed = [uid for uid, content_hash in new_hashes.items() if uid in old and old[uid] != content_hash]
    return ListDiff(
        added=tuple(sorted(added, key=_uid_order)),
        removed=tuple(sorted(removed, key=_uid_order)),
        changed=tuple(sorted(changed, key=_uid_order)),
    )


# --- Addresses ------------------------------------------------------------------------------


def chain_of_address(currency: str, address: str) -> str:
    """The family of keys an address belongs to, which is what screening compares within.

    An EVM-format address is "evm" under any currency (ETH, USDC, USDT, ARB, BSC...); XBT is
    "bitcoin"; a Tron-format address under TRX, USDT or USDC is "trx"; any other address is the
    currency code in lower case ("xmr", "ltc", "usdt" for an Omni address...).
    """
    if _EVM_ADDRESS_RE.fullmatch(address):
        return EVM
    code = currency.upper()
    if code in _BITCOIN_CURRENCIES:
        return BITCOIN
    if code in _TRON_CURRENCIES and _TRON_ADDRESS_RE.fullmatch(address):
        return TRON
    return code.lower()


def _address_key(chain: str, address: str) -> str:
    # EVM hex and bech32 are case-insensitive by definition (a mixed-case EVM address is only a
    # checksum spelling); base58 and the others are case-sensitive, so they compare exactly.
    address = address.strip()
    if chain == EVM:
        return address.lower()
    if chain == BITCOIN and address.lower().startswith(_BECH32_PREFIXES):
        return address.lower()
    return address


class AddressIndex:
    """Exact address screening: the uids that list an address, within one family of keys."""

    __slots__ = ("_uids",)

    def __init__(self, uids: Mapping[tuple[str, str], tuple[str, ...]]) -> None:
        self._uids = MappingProxyType(dict(uids))

    @classmethod
    def build(cls, entries: Iterable[SdnEntry]) -> AddressIndex:
        found: dict[tuple[str, str], set[str]] = {}
        for entry in entries:
            for address in entry.addresses:
                chain = address.chain
                found.setdefault((chain, _address_key(chain, address.address)), set()).add(entry.uid)
        return cls({key: tuple(sorted(uids, key=_uid_order)) for key, uids in found.items()})

    def lookup(self, chain: str, address: str) -> tuple[str, ...]:
        """The uids listing `address` in `chain` (a family from `chain_of_address`), or ()."""
        return self._uids.get((chain, _address_key(chain, address)), ())

    def __len__(self) -> int:
        return len(self._uids)


# --- Names ----------------------------------------------------------------------------------


def normalize_name(name: str) -> str:
    """Upper case, accents and punctuation gone, one space between words: "Ñúñez-Ruiz, José" -> "NUNEZ RUIZ JOSE".

    The order of words is kept: "LAST, First" stays in that order, and the matcher, not the
    normalization, makes order irrelevant.
    """
    decomposed = unicodedata.normalize("NFKD", name.translate(_FOLD))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(_NOT_A_NAME_CHARACTER_RE.sub(" ", bare.upper()).split())


def _match_key(name: str) -> str:
    # token_sort_ratio(a, b) is ratio() of both strings with their words sorted. Sorting the words
    # once here, for the query and for every indexed name, lets the matcher use plain ratio() and
    # get the same scores without re-sorting 40,000 names on every query. It also means an
    # individual's "LAST, First" needs no second "First LAST" entry: both sort to the same key.
    return " ".join(sorted(normalize_name(name).split()))


@dataclass(frozen=True, slots=True)
class NameMatch:
    """A list entry whose primary name or alias `matched` scored `score` (0-100) against the query."""

    uid: str
    matched: str
    score: int


class NameMatcher:
    """Fuzzy name screening over the primary names and aliases of the list.

    The scorer is token_sort_ratio: word order does not count ("Pavel ZAKHAROV" is
    "ZAKHAROV, Pavel"), a misspelt letter costs little, and the whole of both names is compared.
    WRatio and token_set_ratio are not used: they score a name that is only part of another one
    high ("BANK" against "BANK MELLI IRAN" scores 90 and 100), which would turn every short or
    common word into an alert. The cost is that a query without a listed middle name scores
    lower ("Sergei IVANOV" against "IVANOV, Sergei Petrovich": 72); aliases often cover that.
    """

    __slots__ = ("_keys", "_names", "_uids")

    def __init__(self, keys: list[str], uids: list[str], names: list[str]) -> None:
        if not len(keys) == len(uids) == len(names):
            raise ValueError(f"keys, uids and names must have one length, were {len(keys)}, {len(uids)}, {len(names)}")
        self._keys = keys
        self._uids = uids
        self._names = names

    @classmethod
    def build(cls, entries: Iterable[SdnEntry]) -> NameMatcher:
        keys: list[str] = []
        uids: list[str] = []
        names: list[str] = []
        for entry in entries:
            seen: set[str] = set()
            # The primary name goes first, so that it is the one reported when an alias scores the same.
            for name in (entry.name, *entry.aliases):
                key = _match_key(name)
                if len(key.replace(" ", "")) < NAME_CHARACTERS_MIN or key in seen:
                    continue
                seen.add(key)
                keys.append(key)
                uids.append(entry.uid)
                names.append(name)
        return cls(keys, uids, names)

    def match(
        self, name: str, threshold: int = NAME_THRESHOLD_DEFAULT, *, matches_max: int = MATCHES_MAX
    ) -> list[NameMatch]:
        """The entries whose best name scores at least `threshold`, best first, one per uid.

        A name with fewer than NAME_CHARACTERS_MIN letters or digits after normalization matches
        nothing: it cannot tell one party from another.
        """
        if not 1 <= threshold <= 100:
            raise ValueError(f"threshold must be within 1..100, was {threshold}")
        if not 1 <= matches_max <= ENTRIES_MAX:
            raise ValueError(f"matches_max must be within 1..{ENTRIES_MAX}, was {matches_max}")
        query = _match_key(name)
        if len(query.replace(" ", "")) < NAME_CHARACTERS_MIN:
            return []
        # limit=None returns every name at or above the cutoff; the cutoff is what bounds the result.
        scored = process.extract(
            query, self._keys, scorer=fuzz.ratio, processor=None, score_cutoff=threshold, limit=None
        )
        best: dict[str, NameMatch] = {}
        for _key, score, index in scored:
            uid = self._uids[index]
            # Rounded down, so a reported 100 always means the same words after normalization.
            found = NameMatch(uid=uid, matched=self._names[index], score=int(score))
            held = best.get(uid)
            if held is None or found.score > held.score:
                best[uid] = found
        ranked = sorted(best.values(), key=lambda m: (-m.score, _uid_order(m.uid)))
        return ranked[:matches_max]

    def __len__(self) -> int:
        return len(self._keys)


# --- Loading --------------------------------------------------------------------------------


def load_list(path: Path) -> SanctionsList:
    """Load the SDN list from a directory of the CSV set, an advanced XML file, or a directory holding one.

    A directory with `sdn.csv` is read as the CSV set (even if it also holds `sdn_advanced.xml`).
    Anything else, or a file that is not what it should be, raises SanctionsListError.
    """
    if path.is_dir():
        if (path / "sdn.csv").is_file():
            return _load_csv(path)
        if (path / "sdn_advanced.xml").is_file():
            return _load_xml(path / "sdn_advanced.xml")
        names = sorted(p.name for p in path.iterdir())
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "") if names else "nothing"
        raise SanctionsListError(f"{path}: expected a directory holding sdn.csv or sdn_advanced.xml, found {shown}")
    if path.is_file():
        if path.suffix.lower() == ".xml":
            return _load_xml(path)
        raise SanctionsListError(
            f"{path}: expected a directory of the CSV set or an .xml file, found the file {path.name}"
        )
    raise SanctionsListError(f"{path}: expected a directory of the CSV set or an .xml file, found nothing at that path")


def _read_bounded(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            # One byte more than the bound tells a file at the bound from one past it, even if it
            # grew after it was opened.
            data = file.read(FILE_BYTES_MAX + 1)
    except OSError as error:
        raise SanctionsListError(f"{path.name}: expected a readable file, found {error.strerror or error}") from error
    if len(data) > FILE_BYTES_MAX:
        raise SanctionsListError(f"{path.name}: expected at most {FILE_BYTES_MAX} bytes, found more")
    return data


class _BoundedReader:
    """A binary file that refuses to be read past FILE_BYTES_MAX, for the streaming XML parser."""

    def __init__(self, file: io.BufferedReader, name: str) -> None:
        self._file = file
        self._name = name
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size if size >= 0 else FILE_BYTES_MAX + 1)
        self._read += len(data)
        if self._read > FILE_BYTES_MAX:
            raise SanctionsListError(f"{self._name}: expected at most {FILE_BYTES_MAX} bytes, found more")
        return data


def _decode(data: bytes) -> str:
    # OFAC's files are published in Windows-1252 at times and UTF-8 at others, and a byte string
    # that decodes as UTF-8 is almost never meant as anything else. Latin-1 decodes every byte,
    # so a file with one of the five bytes Windows-1252 leaves undefined still loads.
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    for encoding in ("utf-8", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _csv_rows(path: Path, *, keep_raw: frozenset[int] = frozenset()) -> Iterator[tuple[int, list[str]]]:
    """The rows of one CSV file with their line numbers, fields stripped and `-0-` read as "".

    Columns in `keep_raw` keep their surrounding spaces: remarks are cut at a fixed length and
    continued in sdn_comments.csv, and a cut next to a space must not lose it.
    """
    name = path.name
    columns = _CSV_COLUMNS[name]
    text = _decode(_read_bounded(path)).rstrip(_EOF_MARKER + " \t\r\n")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows = 0
    line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise SanctionsListError(f"{name} line {line}: expected a CSV row, found an error: {error}") from error
        start, line = line, reader.line_num + 1
        if not row:
            continue
        rows += 1
        if rows > CSV_ROWS_MAX:
            raise SanctionsListError(f"{name} line {start}: expected at most {CSV_ROWS_MAX} rows, found more")
        if len(row) != columns:
            raise SanctionsListError(f"{name} line {start}: expected {columns} columns, found {len(row)}")
        fields = []
        for index, value in enumerate(row):
            stripped = value.strip()
            if stripped == _NULL:
                fields.append("")
            else:
                fields.append(value if index in keep_raw else stripped)
        if not _UID_RE.fullmatch(fields[0]):
            raise SanctionsListError(f"{name} line {start}: expected an ent_num of 1-12 digits, found {row[0]!r}")
        yield start, fields


def _programs(text: str) -> list[str]:
    # Several programs are written "SDGT] [IFSR" in the one Program column.
    return [part.strip(" []") for part in _PROGRAM_SPLIT_RE.split(text) if part.strip(" []")]


def _addresses_in_remarks(remarks: str, where: str) -> list[DigitalAddress]:
    found = []
    for match in _DCA_RE.finditer(remarks):
        address = match["address"].rstrip(".,")
        try:
            found.append(DigitalAddress(currency=match["currency"], address=address))
        except ValueError as error:
            raise SanctionsListError(f"{where}: expected a digital currency address, found {error}") from error
    # Every mention must have given an address: one that did not is a format this parser does not
    # know, and skipping it would leave an address unscreened.
    mentions = remarks.count(_DCA_PHRASE)
    if mentions != len(found):
        raise SanctionsListError(
            f"{where}: expected an address after each of the {mentions} '{_DCA_PHRASE}' in the remarks, "
            f"found {len(found)}"
        )
    return found


_SDN_TYPES: Final = {"": "entity", "individual": "individual", "vessel": "vessel", "aircraft": "aircraft"}


def _load_csv(directory: Path) -> SanctionsList:
    rows: dict[str, tuple[int, list[str]]] = {}
    for line, fields in _csv_rows(directory / "sdn.csv", keep_raw=frozenset({11})):
        uid = fields[0]
        if uid in rows:
            raise SanctionsListError(f"sdn.csv line {line}: ent_num {uid} appears a second time")
        if len(rows) >= ENTRIES_MAX:
            raise SanctionsListError(f"sdn.csv line {line}: expected at most {ENTRIES_MAX} entries, found more")
        rows[uid] = (line, fields)

    def known(name: str, line: int, uid: str) -> str:
        if uid not in rows:
            raise SanctionsListError(f"{name} line {line}: expected an ent_num of sdn.csv, found {uid}")
        return uid

    continued: dict[str, list[str]] = {}
    comments = directory / "sdn_comments.csv"
    if comments.exists():
        for line, fields in _csv_rows(comments, keep_raw=frozenset({1})):
            continued.setdefault(known(comments.name, line, fields[0]), []).append(fields[1])

    aliases: dict[str, list[str]] = {}
    alt = directory / "alt.csv"
    # alt.csv is required: a CSV set without it would load without a single alias and screen less
    # than it seems to.
    for line, fields in _csv_rows(alt):
        if not fields[3]:
            raise SanctionsListError(f"alt.csv line {line}: expected an alt_name, found an empty field")
        aliases.setdefault(known(alt.name, line, fields[0]), []).append(fields[3])

    # add.csv holds postal addresses, which nothing here screens on; it is still read, when present,
    # so that a broken or mismatched file is refused rather than ignored.
    add = directory / "add.csv"
    if add.exists():
        for line, fields in _csv_rows(add):
            known(add.name, line, fields[0])

    entries = []
    for uid, (line, fields) in rows.items():
        where = f"sdn.csv line {line} (ent_num {uid})"
        kind = _SDN_TYPES.get(fields[2])
        if kind is None:
            raise SanctionsListError(
                f"{where}: expected an SDN_Type of individual, vessel, aircraft or -0-, found {fields[2]!r}"
            )
        # The remarks and their continuation are joined as they are: the cut can fall inside a word.
        remarks = (fields[11] + "".join(continued.get(uid, ()))).strip()
        addresses = _addresses_in_remarks(remarks, where)
        try:
            entries.append(
                SdnEntry(
                    uid=uid,
                    name=fields[1],
                    kind=kind,
                    programs=tuple(_programs(fields[3])),
                    aliases=tuple(aliases.get(uid, ())),
                    addresses=tuple(addresses),
                )
            )
        except ValueError as error:
            raise SanctionsListError(f"{where}: {error}") from error
    return _nonempty_list(entries, "csv", "sdn.csv")


# --- The advanced XML -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _NamePart:
    group_id: str
    script_id: str
    value: str


@dataclass(frozen=True, slots=True)
class _Alias:
    identity_primary: bool
    primary: bool
    low_quality: bool
    # Each DocumentedName of the alias: the same name in one script each.
    documented_names: tuple[tuple[_NamePart, ...], ...]
    # NamePartGroupID -> NamePartTypeID, from the alias's identity.
    part_types: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class _Party:
    uid: str
    line: int
    profile_id: str
    subtype_id: str
    aliases: tuple[_Alias, ...]
    # (FeatureTypeID, the texts of its VersionDetails)
    features: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class _Measure:
    line: int
    profile_id: str
    sanctions_type_id: str
    comment: str


@dataclass(frozen=True, slots=True)
class _Reference:
    text: str
    attributes: Mapping[str, str]


def _local(element: etree._Element) -> str:
    tag = element.tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _text(element: etree._Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def _read_party(element: etree._Element, where: str) -> _Party:
    uid = element.get("FixedRef", "")
    if not _UID_RE.fullmatch(uid):
        raise SanctionsListError(f"{where}: expected a DistinctParty FixedRef of 1-12 digits, found {uid!r}")
    profiles = list(element.iterchildren("{*}Profile"))
    if len(profiles) != 1:
        raise SanctionsListError(f"{where} (FixedRef {uid}): expected one Profile, found {len(profiles)}")
    profile = profiles[0]
    aliases = []
    for identity in profile.iterchildren("{*}Identity"):
        part_types = {
            group.get("ID", ""): group.get("NamePartTypeID", "") for group in identity.iter("{*}NamePartGroup")
        }
        for alias in identity.iterchildren("{*}Alias"):
            documented_names = tuple(
                tuple(
                    _NamePart(
                        group_id=value.get("NamePartGroupID", ""),
                        script_id=value.get("ScriptID", ""),
                        value=_text(value),
                    )
                    for value in documented.iter("{*}NamePartValue")
                )
                for documented in alias.iterchildren("{*}DocumentedName")
            )
            aliases.append(
                _Alias(
                    # A lone Identity without the attribute is the party's only, so primary, identity.
                    identity_primary=identity.get("Primary") != "false",
                    primary=alias.get("Primary") == "true",
                    low_quality=alias.get("LowQuality") == "true",
                    documented_names=documented_names,
                    part_types=part_types,
                )
            )
    features = tuple(
        (
            feature.get("FeatureTypeID", ""),
            tuple(t for detail in feature.iter("{*}VersionDetail") if (t := _text(detail))),
        )
        for feature in element.iter("{*}Feature")
    )
    return _Party(
        uid=uid,
        line=element.sourceline or 0,
        profile_id=profile.get("ID", ""),
        subtype_id=profile.get("PartySubTypeID", ""),
        aliases=tuple(aliases),
        features=features,
    )


def _read_measures(element: etree._Element) -> list[_Measure]:
    return [
        _Measure(
            line=measure.sourceline or 0,
            profile_id=element.get("ProfileID", ""),
            sanctions_type_id=measure.get("SanctionsTypeID", ""),
            comment=_text(next(measure.iterchildren("{*}Comment"), None)),
        )
        for measure in element.iterchildren("{*}SanctionsMeasure")
    ]


def _read_references(element: etree._Element) -> dict[str, _Reference]:
    return {
        value.get("ID", ""): _Reference(text=_text(value), attributes=dict(value.attrib))
        for value in element.iterchildren()
        if isinstance(value.tag, str)
    }


def _stream_xml(path: Path) -> tuple[dict[str, dict[str, _Reference]], list[_Party], list[_Measure]]:
    """One pass over the file, keeping only what the list needs and freeing each party once read."""
    name = path.name
    try:
        with path.open("rb") as file:
            return _stream_open_xml(_BoundedReader(file, name), name)
    except OSError as error:
        raise SanctionsListError(f"{name}: expected a readable file, found {error.strerror or error}") from error


def _stream_open_xml(
    source: _BoundedReader, name: str
) -> tuple[dict[str, dict[str, _Reference]], list[_Party], list[_Measure]]:
    references: dict[str, dict[str, _Reference]] = {}
    parties: list[_Party] = []
    measures: list[_Measure] = []
    # Entities are never resolved, no DTD is loaded and nothing is fetched from the network; a
    # file with a DOCTYPE at all is refused below, since the published list has none.
    context = etree.iterparse(
        source,
        events=("start", "end"),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    depth = 0
    try:
        for event, element in context:
            if event == "start":
                depth += 1
                if depth == 1:
                    doctype = element.getroottree().docinfo.doctype
                    if doctype:
                        raise SanctionsListError(
                            f"{name} line {element.sourceline}: expected no DOCTYPE (the published list has none, "
                            f"and a DTD can declare entities that read files or the network), found {doctype!r}"
                        )
                    if _local(element) != "Sanctions":
                        raise SanctionsListError(
                            f"{name} line {element.sourceline}: expected the root element Sanctions, "
                            f"found {_local(element) or element.tag!r}"
                        )
                continue
            if depth == 3:
                section = _local(element.getparent())
                where = f"{name} line {element.sourceline}"
                if section == "DistinctParties" and _local(element) == "DistinctParty":
                    if len(parties) >= ENTRIES_MAX:
                        raise SanctionsListError(f"{where}: expected at most {ENTRIES_MAX} parties, found more")
                    parties.append(_read_party(element, where))
                elif section == "SanctionsEntries" and _local(element) == "SanctionsEntry":
                    measures.extend(_read_measures(element))
                elif section == "ReferenceValueSets":
                    references[_local(element)] = _read_references(element)
                # Free what was read: the file is large and nothing after it refers back to the tree.
                element.clear()
                parent = element.getparent()
                while parent is not None and element.getprevious() is not None:
                    del parent[0]
            elif depth == 2:
                element.clear()
            depth -= 1
    except etree.XMLSyntaxError as error:
        raise SanctionsListError(f"{name} line {error.lineno}: expected well-formed XML, found: {error.msg}") from error
    return references, parties, measures


def _ids_with_text(references: Mapping[str, _Reference], *texts: str) -> frozenset[str]:
    wanted = {t.casefold() for t in texts}
    return frozenset(ref_id for ref_id, ref in references.items() if ref.text.casefold() in wanted)


def _kinds(references: Mapping[str, Mapping[str, _Reference]]) -> dict[str, str]:
    subtypes = references.get("PartySubTypeValues")
    if not subtypes:
        return dict(_PARTY_SUBTYPE_FALLBACK)
    party_types = references.get("PartyTypeValues", {})
    kinds: dict[str, str] = {}
    for subtype_id, subtype in subtypes.items():
        # A vessel or an aircraft is named by its subtype; an individual or an entity only by its
        # party type (their subtypes read "Unknown").
        text = subtype.text.casefold()
        if text in ("vessel", "aircraft"):
            kinds[subtype_id] = text
            continue
        party_type = party_types.get(subtype.attributes.get("PartyTypeID", ""))
        if party_type is not None and party_type.text.casefold() in ("individual", "entity"):
            kinds[subtype_id] = party_type.text.casefold()
        elif party_type is None and subtype_id in _PARTY_SUBTYPE_FALLBACK:
            kinds[subtype_id] = _PARTY_SUBTYPE_FALLBACK[subtype_id]
    return kinds


def _latin_scripts(references: Mapping[str, Mapping[str, _Reference]]) -> frozenset[str]:
    scripts = references.get("ScriptValues")
    if not scripts:
        return _LATIN_SCRIPT_FALLBACK
    return frozenset(
        script_id
        for script_id, script in scripts.items()
        if script.text.casefold() == "latin" or script.attributes.get("ScriptCode", "").casefold() in ("latn", "latin")
    )


def _compose(
    parts: tuple[_NamePart, ...], part_types: Mapping[str, str], last: frozenset[str], individual: bool
) -> str:
    # The CSV set writes an individual "LAST, First Middle"; the XML has the same parts, tagged by
    # type. Composing them the CSV's way makes both formats give one name.
    values = [p.value for p in parts if p.value]
    if individual:
        surnames = [p.value for p in parts if p.value and part_types.get(p.group_id) in last]
        others = [p.value for p in parts if p.value and part_types.get(p.group_id) not in last]
        if surnames and others:
            return f"{' '.join(surnames)}, {' '.join(others)}"
    return " ".join(values)


def _load_xml(path: Path) -> SanctionsList:
    references, parties, measures = _stream_xml(path)
    name = path.name
    currencies = {
        type_id: ref.text.partition(" - ")[2].strip()
        for type_id, ref in references.get("FeatureTypeValues", {}).items()
        if ref.text.startswith(_DCA_PHRASE)
    }
    kinds = _kinds(references)
    name_part_types = references.get("NamePartTypeValues")
    last = _ids_with_text(name_part_types, "Last Name") if name_part_types else _LAST_NAME_TYPE_FALLBACK
    latin = _latin_scripts(references)
    sanctions_types = references.get("SanctionsTypeValues")
    program_types = _ids_with_text(sanctions_types, "Program") if sanctions_types else _PROGRAM_SANCTIONS_TYPE_FALLBACK

    uid_of_profile: dict[str, str] = {}
    for party in parties:
        if party.profile_id in uid_of_profile:
            raise SanctionsListError(f"{name} line {party.line}: Profile ID {party.profile_id} appears a second time")
        uid_of_profile[party.profile_id] = party.uid
    programs: dict[str, list[str]] = {}
    for measure in measures:
        uid = uid_of_profile.get(measure.profile_id)
        if uid is None:
            raise SanctionsListError(
                f"{name} line {measure.line}: expected a SanctionsEntry ProfileID of a listed party, "
                f"found {measure.profile_id!r}"
            )
        if measure.sanctions_type_id in program_types and measure.comment:
            programs.setdefault(uid, []).append(measure.comment)

    entries = []
    for party in parties:
        where = f"{name} line {party.line} (FixedRef {party.uid})"
        kind = kinds.get(party.subtype_id)
        if kind is None:
            raise SanctionsListError(f"{where}: expected a PartySubTypeID of a known kind, found {party.subtype_id!r}")
        primary: list[str] = []
        aliases: list[str] = []
        for alias in party.aliases:
            if alias.low_quality and not alias.primary:
                continue
            for documented in alias.documented_names:
                if not all(p.script_id in latin or not p.script_id for p in documented):
                    continue
                composed = _compose(documented, alias.part_types, last, kind == "individual")
                if not composed:
                    continue
                (primary if alias.primary and alias.identity_primary else aliases).append(composed)
        if not primary:
            raise SanctionsListError(f"{where}: expected a primary alias with a name in Latin script, found none")
        # A primary alias spelt more than one way in Latin script keeps the first as the name.
        addresses = []
        for type_id, details in party.features:
            currency = currencies.get(type_id)
            if currency is None:
                continue
            for detail in details:
                try:
                    addresses.append(DigitalAddress(currency=currency, address=detail))
                except ValueError as error:
                    raise SanctionsListError(f"{where}: expected a digital currency address, found {error}") from error
        try:
            entries.append(
                SdnEntry(
                    uid=party.uid,
                    name=primary[0],
                    kind=kind,
                    programs=tuple(programs.get(party.uid, ())),
                    aliases=tuple(primary[1:] + aliases),
                    addresses=tuple(addresses),
                )
            )
        except ValueError as error:
            raise SanctionsListError(f"{where}: {error}") from error
    return _nonempty_list(entries, "xml", name)


def _nonempty_list(entries: list[SdnEntry], source_format: str, name: str) -> SanctionsList:
    # An empty file is a failed download, not a list from which every party was removed: loading
    # it would make `diff` report the whole list as removed.
    if not entries:
        raise SanctionsListError(f"{name}: expected at least one entry, found none")
    try:
        return SanctionsList(entries=tuple(entries), source_format=source_format)
    except ValueError as error:
        raise SanctionsListError(f"{name}: {error}") from error
