"""Failpoints: named places where a test can make the process die on the spot.

`ANDCHAIN_FAILPOINT=mint:after_submit` makes the process SIGKILL itself the first
time it reaches that point: no cleanup, no flush, exactly like a power cut. Unset
(always, outside tests), a failpoint costs one dictionary look-up.
"""

from __future__ import annotations

import os
import signal


def hit(name: str) -> None:
    if os.environ.get("ANDCHAIN_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
