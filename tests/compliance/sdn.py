"""Small OFAC SDN lists written for the tests, in the published CSV format (sdn.csv, alt.csv, add.csv)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

NULL = "-0- "


@dataclass(frozen=True)
class Listed:
    uid: str
    name: str
    kind: str = ""  # "" (an entity), "individual", "vessel", "aircraft"
    addresses: tuple[tuple[str, str], ...] = ()  # (currency, address)
    aliases: tuple[str, ...] = ()
    program: str = "CYBER2"
    extra: str = field(default="")


def write_list(directory: Path, parties: list[Listed]) -> Path:
    """Write the CSV set to `directory` (rows in the order given) and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    sdn, alt = [], []
    for p in parties:
        remarks = "; ".join(f"Digital Currency Address - {c} {a}" for c, a in p.addresses)
        remarks = (remarks + "; " + p.extra if p.extra else remarks) or ""
        kind = f'"{p.kind}"' if p.kind else NULL
        tail = f'"{remarks}."' if remarks else NULL
        sdn.append(f'{p.uid},"{p.name}",{kind},"{p.program}",' + ",".join([NULL] * 7) + f",{tail}")
        for i, alias in enumerate(p.aliases):
            alt.append(f'{p.uid},{p.uid}{i},"aka","{alias}",{NULL}')
    (directory / "sdn.csv").write_text("\r\n".join(sdn) + "\r\n", encoding="latin-1")
    (directory / "alt.csv").write_text("\r\n".join(alt) + ("\r\n" if alt else ""), encoding="latin-1")
    (directory / "add.csv").write_text("", encoding="latin-1")
    return directory
