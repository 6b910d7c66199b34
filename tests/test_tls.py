"""TLS settings of the clients: one context per process and ``verify_ssl`` setting, honoured."""

from __future__ import annotations

import ssl

from modelops_provider.core.transport import Auth, Service, new_sync_client


def _context(client) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    # httpx keeps the context in its connection pool (httpcore); there is no public accessor.
    return client._transport._pool._ssl_context


def test_clients_share_one_tls_context_per_verify_setting():
    verified = Service(name="x", base_url="https://127.0.0.1:1", auth=Auth())
    unverified = Service(name="x", base_url="https://127.0.0.1:1", auth=Auth(), verify=False)
    with new_sync_client(verified) as a, new_sync_client(verified) as b, new_sync_client(unverified) as c:
        assert _context(a) is _context(b)
        assert _context(a).verify_mode == ssl.CERT_REQUIRED and _context(a).check_hostname
        assert _context(c).verify_mode == ssl.CERT_NONE and not _context(c).check_hostname
