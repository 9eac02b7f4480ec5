"""Secrets of the embedded development defaults: generated once, kept in a file (0600) beside what
they protect, never used when the real one is configured.

Written whole under another name, then linked into place: a reader never sees it half written,
and of two processes starting at once the first to link wins and both read its value.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def dev_secret(path: Path) -> str:
    """The secret kept at `path`, generated there first if there is none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
        try:
            os.link(tmp, path)  # fails if another process made it first: keep theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    value = path.read_text().strip()
    if not value:
        raise ValueError(f"{path} is empty: remove it to generate the secret again")
    return value
