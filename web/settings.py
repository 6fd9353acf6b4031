"""The web process's settings: where the service is, how the web port is guarded, cache sizes."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class WebSettings:
    """Everything :func:`web.app.create_app` needs.

    Attributes:
        server: the gRPC service, ``host:port``.
        token: bearer token for the service; held by this process, never sent to a browser.
        access_token: the web port's own token (login page, then an HttpOnly cookie); None: no login.
        tls: whether the service is reached over TLS; ca_file its CA bundle; cert_file and
            key_file the explorer's client certificate and key for a service with mutual TLS.
        max_upload_bytes: largest image the lab accepts (the service's decode budget still applies).
        upload_cache: uploads kept (least recently used evicted), at most upload_cache_bytes in
            all; visual_cache: feature
            visualizations kept, keyed by weights sha256, layer, unit and parameters.
        timeout: seconds for one unary SDK call.
        allowed_hosts: Host header names the explorer answers; None: loopback names only without
            an access token (a DNS-rebinding page cannot reach it), any with one; ``("*",)``: any.
    """

    server: str
    token: str | None = None
    access_token: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    max_upload_bytes: int = 8 * 1024 * 1024
    upload_cache: int = 64
    upload_cache_bytes: int = 64 * 1024 * 1024
    visual_cache: int = 4096
    timeout: float = 120.0
    allowed_hosts: tuple[str, ...] | None = None

    def hosts(self) -> tuple[str, ...]:
        """The Host names answered (``("*",)``: any), ``allowed_hosts`` resolved."""
        if self.allowed_hosts is not None:
            return self.allowed_hosts
        return ("*",) if self.access_token else tuple(sorted(LOOPBACK_NAMES))


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
