"""The TLS context andchain's HTTP clients share."""

from __future__ import annotations

import functools
import ssl

import httpx


def tls_context(*, trust_env: bool = True) -> ssl.SSLContext:
    """The context httpx builds for a client by default (the CA bundle of SSL_CERT_FILE or SSL_CERT_DIR when
    `trust_env`, else certifi's), built once per process.

    Building one reads and parses a whole CA bundle: tens of milliseconds of CPU, where the client itself
    takes under one. andchain builds clients often (one per node for each status check, one per receiver
    for each round of webhook deliveries), so each gets this one. Never change it: every client shares it.
    The CA bundle is read once, so a new one takes effect when the process restarts.
    """
    return _context(trust_env)


@functools.cache
def _context(trust_env: bool) -> ssl.SSLContext:
    return httpx.create_ssl_context(trust_env=trust_env)
