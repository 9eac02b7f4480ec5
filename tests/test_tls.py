"""The TLS context every HTTP client of andchain shares (nodes, custodians, webhook receivers)."""

import ssl

from andchain.tls import tls_context


def test_the_shared_context_is_built_once_and_verifies_certificates_and_host_names():
    assert tls_context() is tls_context(trust_env=True)
    for trust_env in (True, False):
        ctx = tls_context(trust_env=trust_env)
        assert ctx is tls_context(trust_env=trust_env)
        assert ctx.verify_mode == ssl.CERT_REQUIRED
        assert ctx.check_hostname
    assert tls_context(trust_env=False) is not tls_context(trust_env=True)
