"""Waiting for a process the tests started to answer over HTTP."""

from __future__ import annotations

import time
from typing import Protocol

import httpx


class Running(Protocol):
    def poll(self) -> int | None: ...


def wait_until_answering(url: str, process: Running, *, timeout_s: float = 60.0) -> bool:
    """Whether `url` answers 200 within `timeout_s` while `process` lives (False: it exited or never answered).
    One HTTP client for all the tries: each new one sets up a TLS context, tens of milliseconds of CPU."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1) as http:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if http.get(url).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    return False
